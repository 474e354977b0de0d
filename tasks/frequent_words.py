"""Frequent words extraction, an aggregation proxy for summarization, after RULER's FWE (Hsieh et al. 2024).

The context is a text of ``context_len - top_k - 10`` words drawn from a Zipf distribution
(exponent ``zipf_alpha``) over ``num_words`` made-up words, with the ranks given to the words at
random in every example, so that only counting tells which are frequent. The question asks for the
``top_k`` most frequent words, most frequent first. Counts are redrawn until the ``top_k + 1``
highest are all different, so the answer and its order are unique. Worked example with
``num_words=8``, ``top_k=2``, ``context_len=30``::

    fano kupe lamo fano lamo nilu fano lamo vovo lamo fano lamo vovo lamo lamo lamo lamo lamo
    what are the 2 most frequent words ? answer : lamo fano

(lamo 10 times, fano 4, vovo 2, kupe and nilu once). Knobs: ``context_len``. Metrics: ``set_recall`` (the share of the
top_k words named anywhere in the answer; chance top_k / num_words for a guess of distinct words)
and ``exact_match`` (all of them, in order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.haystack import made_up_words
from harness.registry import register_task
from harness.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.vocabulary import Vocabulary

QUESTION = "what are the {k} most frequent words ? answer :"


@dataclass
class FrequentWordsConfig(TaskConfig):
    name: str = "frequent_words"
    num_words: int = 32
    top_k: int = 3
    zipf_alpha: float = 2.0


@register_task("frequent_words")
class FrequentWords(Task):
    Config = FrequentWordsConfig
    cell_knobs = {"context_len": int}
    metrics = {"set_recall": True, "exact_match": True}

    def __init__(self, config: FrequentWordsConfig):
        if not 1 <= config.top_k < config.num_words:
            raise ValueError(f"frequent_words: top_k must be in [1, num_words), got top_k={config.top_k}, "
                             f"num_words={config.num_words}")
        if config.zipf_alpha <= 0:
            raise ValueError(f"frequent_words: zipf_alpha must be positive, got {config.zipf_alpha}")
        self.words = made_up_words(config.num_words)
        super().__init__(config)
        self.question = self.vocab.encode(QUESTION.format(k=config.top_k))
        ranks = np.arange(1, config.num_words + 1, dtype=np.float64)
        self.probabilities = ranks**-config.zipf_alpha / (ranks**-config.zipf_alpha).sum()

    def build_vocabulary(self) -> Vocabulary:
        return Vocabulary([*QUESTION.format(k=self.config.top_k).split(), *self.words])

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        """Room for a text in which the top_k + 1 counts can all differ: 0 + 1 + ... + top_k words."""
        k = self.config.top_k
        return k * (k + 1) // 2 + len(QUESTION.split()) + k

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        k, n = self.config.top_k, self.config.num_words
        text_len = context_len - len(self.question) - k
        word_of_rank = rng.permutation(n)  # which word plays each Zipf rank
        while True:
            ranks = rng.choice(n, text_len, p=self.probabilities)
            counts = np.bincount(word_of_rank[ranks], minlength=n)
            top = np.argsort(-counts, kind="stable")[: k + 1]
            if len(set(counts[top].tolist())) == k + 1:
                break
        answer = np.array([self.vocab.ids[self.words[i]] for i in top[:k]], dtype=np.int64)
        text = np.array([self.vocab.ids[w] for w in self.words], dtype=np.int64)[word_of_rank[ranks]]
        tokens = np.concatenate((text, self.question, answer))
        return Example(tokens, answer_labels(context_len, answer), {"context_len": context_len})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        truth = example.labels[positions]
        named = set(predictions[positions].tolist())
        return {"set_recall": len(named & set(truth.tolist())) / len(truth),
                "exact_match": float((predictions[positions] == truth).all())}

    def chance(self, **knobs: Any) -> dict[str, float]:
        k, n = self.config.top_k, self.config.num_words
        exact = 1.0
        for i in range(k):
            exact /= n - i
        return {"set_recall": k / n, "exact_match": exact}

    def oracle(self, example: Example) -> np.ndarray:
        """Count the words of the text and name the top_k, most frequent first."""
        k = self.config.top_k
        text = example.tokens[: len(example.tokens) - k - len(self.question)]
        ids, counts = np.unique(text, return_counts=True)
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = ids[np.argsort(-counts, kind="stable")[:k]]
        return predictions
