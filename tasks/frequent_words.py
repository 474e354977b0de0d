"""Frequent words extraction, an aggregation proxy for summarization: RULER's FWE (Hsieh et al. 2024,
``scripts/data/synthetic/freq_words_extraction.py``).

The context is a coded text of ``T = context_len - top_k - 10`` words with RULER's Zipf counts:
the word of rank k (k >= 2) occurs ``floor(T x k^-zipf_alpha / zeta(zipf_alpha))`` times, and rank 1
is the noise word "..." (RULER's ``vocab[0] = '...'``), which also takes the tokens the floors
leave over, so that the text is exactly T words. The coded words are drawn per example from a pool
of ``num_words`` made-up words: all of them (memarena's own fixed vocabulary), or with
``tokens_per_vocab_word = n`` and ``tokens_to_generate = g`` ``(context_len - g) // n - 1`` of them,
so that the vocabulary grows with the context as RULER's does (``sys_kwext``: ``max_seq_length``
less its 50 tokens to generate, ``// 50`` entries, the first the noise). The words are shuffled. The
question asks for the ``top_k`` most frequent coded words (ranks 2 .. top_k + 1), most frequent
first. Worked example with ``num_words=8``, ``top_k=2``, ``context_len=48`` (T = 36)::

    ... ... goru ... ... ... goru goru ... ... goru ... ... ... ... ... ... ... ... ... goru ...
    ... ... lamo ... ... ... ... ... ... ... ... kupe ... lamo
    what are the 2 most frequent words ? answer : goru lamo

(goru floor(36 / 4 / zeta(2)) = 5 times, lamo floor(36 / 9 / 1.645) = 2, kupe 1, the other coded
words none; "..." the other 28).

Knobs: ``context_len``. Metrics, on the generated answer: ``string_match_all`` (RULER's: the share
of the top_k words found in it, in any order; chance top_k / num_words for a guess of distinct
words) and ``exact_match`` (all of them, in order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import zeta

from harness.taskkit.haystack import word_pool
from harness.registry import register_task
from harness.taskkit.string_match import answer_scores
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.taskkit.vocabulary import Vocabulary

QUESTION = "what are the {k} most frequent words ? answer :"
NOISE = "..."


@dataclass
class FrequentWordsConfig(TaskConfig):
    name: str = "frequent_words"
    #: pool of coded words (made-up words, at most 4,900)
    num_words: int = 32
    #: 0: every example uses all ``num_words`` words; n: ``(context_len - tokens_to_generate) // n - 1``
    #: of them (RULER: 50, its vocabulary of ``(max_seq_length - 50) // 50`` entries, the first the noise "...")
    tokens_per_vocab_word: int = 0
    #: tokens taken off context_len before the vocabulary is sized with tokens_per_vocab_word (RULER: its
    #: tokens_to_generate, 50); the answer is top_k tokens whatever this is
    tokens_to_generate: int = 0
    #: coded words asked for (RULER: 3; 2 fits examples of 48 tokens, 3 needs 66)
    top_k: int = 2
    #: exponent of the Zipf counts (RULER's alpha), above 1
    zipf_alpha: float = 2.0


@register_task("frequent_words")
class FrequentWords(Task):
    Config = FrequentWordsConfig
    metrics = {"string_match_all": True, "exact_match": True}

    def __init__(self, config: FrequentWordsConfig):
        if not 1 <= config.top_k <= config.num_words:
            raise ValueError(f"frequent_words: top_k must be in [1, num_words], got top_k={config.top_k}, "
                             f"num_words={config.num_words}")
        if config.zipf_alpha <= 1:
            raise ValueError(f"frequent_words: zipf_alpha must be above 1 (zeta diverges), got {config.zipf_alpha}")
        for key in ("tokens_per_vocab_word", "tokens_to_generate"):
            if getattr(config, key) < 0:
                raise ValueError(f"frequent_words: {key} must be at least 0, got {getattr(config, key)}")
        if config.num_words > len(word_pool()):  # no haystack: the pool's noise half is free for coded words
            raise ValueError(f"frequent_words: num_words={config.num_words} exceeds the {len(word_pool())} made-up words")
        self.words = list(word_pool()[: config.num_words])
        super().__init__(config)
        self.question = self.vocab.encode(QUESTION.format(k=config.top_k))
        self.word_ids = self.vocab.encode(" ".join(self.words))
        self.noise = self.vocab.ids[NOISE]
        self.zeta = float(zeta(config.zipf_alpha))
        self.min_text_len = self._min_text_len()

    def build_vocabulary(self) -> Vocabulary:
        return Vocabulary([*QUESTION.format(k=self.config.top_k).split(), NOISE, *self.words])

    def coded_words(self, context_len: int) -> int:
        """Coded words in an example of ``context_len`` tokens."""
        per_word = self.config.tokens_per_vocab_word
        return self.config.num_words if per_word == 0 else (context_len - self.config.tokens_to_generate) // per_word - 1

    def counts(self, text_len: int, words: int) -> np.ndarray:
        """Occurrences of the coded words of ranks 2 .. words + 1 in a text of ``text_len`` words."""
        ranks = np.arange(2, words + 2, dtype=np.float64)
        return np.floor(text_len * ranks**-self.config.zipf_alpha / self.zeta).astype(np.int64)

    def _min_text_len(self) -> int:
        """The shortest text from which on the top_k + 1 highest counts all differ (the answer and its
        order are unique): below the length where consecutive ranks' expected counts differ by one."""
        k, alpha = self.config.top_k, self.config.zipf_alpha
        surely = int(np.ceil(self.zeta / ((k + 1) ** -alpha - (k + 2) ** -alpha)))
        for text_len in range(surely, 0, -1):
            if not (np.diff(self.counts(text_len, k + 1)) < 0).all():
                return text_len + 1
        return 1

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        least = self.min_text_len + len(self.question) + self.config.top_k
        per_word = self.config.tokens_per_vocab_word
        if per_word == 0:
            return least
        return max(least, self.config.tokens_to_generate + per_word * (self.config.top_k + 1))  # top_k coded words

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        if self.coded_words(knobs["context_len"]) > self.config.num_words:
            raise ValueError(f"frequent_words: context_len={knobs['context_len']} asks for "
                             f"{self.coded_words(knobs['context_len'])} coded words, more than num_words="
                             f"{self.config.num_words}")

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        k = self.config.top_k
        text_len = context_len - len(self.question) - k
        words = self.word_ids[rng.choice(len(self.word_ids), self.coded_words(context_len), replace=False)]
        counts = self.counts(text_len, len(words))
        text = np.concatenate((np.repeat(words, counts), np.full(text_len - counts.sum(), self.noise)))
        answer = words[:k]  # ranks 2 .. k + 1
        tokens = np.concatenate((rng.permutation(text), self.question, answer))
        return Example(tokens, answer_labels(context_len, answer), {"context_len": context_len})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        return answer_scores(self.vocab, predictions[positions], example.labels[positions], 1)

    def chance(self, **knobs: Any) -> dict[str, float]:
        k, n = self.config.top_k, self.config.num_words
        exact = 1.0
        for i in range(k):
            exact /= n - i
        return {"string_match_all": k / n, "exact_match": exact}

    def oracle(self, example: Example) -> np.ndarray:
        """Count the coded words of the text (not the noise) and name the top_k, most frequent first."""
        k = self.config.top_k
        text = example.tokens[: len(example.tokens) - k - len(self.question)]
        ids, counts = np.unique(text[text != self.noise], return_counts=True)
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = ids[np.argsort(-counts, kind="stable")[:k]]
        return predictions
