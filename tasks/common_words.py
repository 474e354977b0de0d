"""Common words extraction, an aggregation task: RULER's CWE (Hsieh et al. 2024,
``scripts/data/synthetic/common_words_extraction.py``).

The context is a list of distinct made-up words, drawn per example from a pool of ``num_words``
without replacement, in random order: the ``num_cw`` common words occur ``freq_cw`` times each,
every other word ``freq_ucw`` times. Below ``short_below`` tokens the occurrences are
``short_freq_cw`` and ``short_freq_ucw`` instead (RULER: 6 and 1 below 4,096 tokens, 30 and 3
from there on). The list holds as many words as fit: RULER searches for the largest number whose
prompt and tokens to generate fit the length; here the list fills the room the question and the
answer leave, ``num_cw + (room - num_cw x freq_cw) // freq_ucw`` words, and the fewer than
``freq_ucw`` tokens left over open the example as ``<pad>``. The question asks for the common
words; the answer names them in the order of their first occurrence. Worked example with
``num_words=16``, ``num_cw=2``, ``context_len=32`` (room 20: 2 x 6 + 8 x 1)::

    nilu lata vovo nilu lata nilu nilu lamo mopa rosi lata kole lata nilu nilu lata dibi fano goru
    lata
    what are the 2 most common words ? answer : nilu lata

(nilu and lata 6 times each, the other eight words once.)

Knobs: ``context_len``. Metrics, on the generated answer: ``string_match_all`` (RULER's: the share
of the common words found in it, in any order; chance num_cw / num_words) and ``exact_match`` (all
of them, in order of first occurrence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.taskkit.haystack import word_pool
from harness.registry import register_task
from harness.taskkit.string_match import answer_scores
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.taskkit.vocabulary import Vocabulary

QUESTION = "what are the {k} most common words ? answer :"
PAD = "<pad>"


@dataclass
class CommonWordsConfig(TaskConfig):
    name: str = "common_words"
    #: pool of made-up words an example draws its distinct words from (at most 4,900)
    num_words: int = 1024
    #: common words, the answer (RULER: 10)
    num_cw: int = 2
    #: occurrences of each common and each other word from short_below tokens on (RULER: 30 and 3)
    freq_cw: int = 30
    freq_ucw: int = 3
    #: below this context_len the occurrences are short_freq_cw and short_freq_ucw (RULER: 4096, 6, 1)
    short_below: int = 4096
    short_freq_cw: int = 6
    short_freq_ucw: int = 1


@register_task("common_words")
class CommonWords(Task):
    Config = CommonWordsConfig
    metrics = {"string_match_all": True, "exact_match": True}

    def __init__(self, config: CommonWordsConfig):
        if not 1 <= config.num_cw < config.num_words:
            raise ValueError(f"common_words: num_cw must be in [1, num_words), got num_cw={config.num_cw}, "
                             f"num_words={config.num_words}")
        if config.num_words > len(word_pool()):  # no haystack: the pool's noise half is free
            raise ValueError(f"common_words: num_words={config.num_words} exceeds the {len(word_pool())} made-up words")
        for common, other in (("freq_cw", "freq_ucw"), ("short_freq_cw", "short_freq_ucw")):
            if not 1 <= getattr(config, other) < getattr(config, common):
                raise ValueError(f"common_words: need 1 <= {other} < {common} (the common words must stand out), "
                                 f"got {other}={getattr(config, other)}, {common}={getattr(config, common)}")
        self.words = list(word_pool()[: config.num_words])
        super().__init__(config)
        self.question = self.vocab.encode(QUESTION.format(k=config.num_cw))
        self.word_ids = self.vocab.encode(" ".join(self.words))
        self.pad = self.vocab.ids[PAD]

    def build_vocabulary(self) -> Vocabulary:
        return Vocabulary([*QUESTION.format(k=self.config.num_cw).split(), PAD, *self.words])

    def frequencies(self, context_len: int) -> tuple[int, int]:
        """Occurrences of each common word and of each other word at ``context_len``."""
        config = self.config
        if context_len < config.short_below:
            return config.short_freq_cw, config.short_freq_ucw
        return config.freq_cw, config.freq_ucw

    def room(self, context_len: int) -> int:
        """Tokens of an example of ``context_len`` left for the list (and its padding)."""
        return context_len - len(self.question) - self.config.num_cw

    def list_words(self, context_len: int) -> int:
        """Distinct words in the list of an example of ``context_len`` tokens."""
        common, other = self.frequencies(context_len)
        k = self.config.num_cw
        return k + (self.room(context_len) - k * common) // other

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        common, other = self.frequencies(knobs["context_len"])
        return len(self.question) + self.config.num_cw * (1 + common) + other  # at least one word not common

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        words = self.list_words(knobs["context_len"])
        if words > self.config.num_words:
            raise ValueError(f"common_words: context_len={knobs['context_len']} holds a list of {words} distinct "
                             f"words, more than num_words={self.config.num_words}")

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        k = self.config.num_cw
        common, other = self.frequencies(context_len)
        words = self.word_ids[rng.choice(len(self.word_ids), self.list_words(context_len), replace=False)]
        text = rng.permutation(np.concatenate((np.repeat(words[:k], common), np.repeat(words[k:], other))))
        in_order, first = np.unique(text[np.isin(text, words[:k])], return_index=True)
        answer = in_order[np.argsort(first)]
        padding = np.full(self.room(context_len) - len(text), self.pad)
        tokens = np.concatenate((padding, text, self.question, answer))
        return Example(tokens, answer_labels(context_len, answer), {"context_len": context_len})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        return answer_scores(self.vocab, predictions[positions], example.labels[positions], 1)

    def chance(self, **knobs: Any) -> dict[str, float]:
        k, n = self.config.num_cw, self.config.num_words
        return {"string_match_all": k / n, "exact_match": 1 / math.perm(n, k)}

    def oracle(self, example: Example) -> np.ndarray:
        """Count the words of the list and name the num_cw most frequent, in order of first occurrence."""
        k = self.config.num_cw
        text = example.tokens[: len(example.tokens) - k - len(self.question)]
        ids, first, counts = np.unique(text[text != self.pad], return_index=True, return_counts=True)
        top = np.argsort(-counts, kind="stable")[:k]
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = ids[top][np.argsort(first[top])]
        return predictions
