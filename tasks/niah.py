"""Needle in a haystack, generalising passkey as in RULER's NIAH family (Hsieh et al. 2024).

Needles "the special value for <key> is <digits> ." are hidden in a haystack. ``num_keys`` keys
each have ``values_per_key`` needles (different values); ``num_queries`` of the keys are asked
for, and the other keys' needles are distractors. The queried needles sit together at ``depth``
(0: the context opens with them, 1: right before the question), in random order; distractor
needles sit at uniformly random places. The answer lists, key by key in the order asked, each
key's values in the order they appear in the context. Worked example with ``num_keys=2``,
``value_digits=2``, ``context_len=48``, ``depth=0.5``, repeat haystack (one token per word)::

    the grass is the special value for vidu is 0 0 . green . the sky is blue    <- a distractor
    the special value for nudu is 2 3 . . the sun is yellow . here we go        <- the queried needle
    what are the special values for nudu ? answer : 2 3                         <- question, answer

The labels mark the positions whose next token is an answer digit (``:`` and ``2``). Knobs:
``context_len`` (all tokens) and ``depth``. Metrics: ``exact_match`` (every value of every queried
key right; chance 10^-(value_digits x num_queries x values_per_key)) and ``part_match`` (the share
of values with all their digits right; chance 10^-value_digits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.haystack import Haystack, HaystackConfig, insert, made_up_words
from harness.registry import register_task
from harness.task import IGNORE, Example, Task, TaskConfig, answer_labels
from harness.vocabulary import Vocabulary

NEEDLE = "the special value for {key} is {value} ."
QUESTION = "what are the special values for {keys} ? answer :"
DIGITS = [str(d) for d in range(10)]


@dataclass
class NiahConfig(HaystackConfig, TaskConfig):
    name: str = "niah"
    #: keys with needles in the context; the ``num_keys - num_queries`` not asked are distractors
    num_keys: int = 1
    values_per_key: int = 1
    num_queries: int = 1
    value_digits: int = 3
    #: pool of key names (made-up words) that keys are drawn from
    key_words: int = 64
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"depth": [0.0, 0.5, 1.0]})


@register_task("niah")
class Niah(Task):
    Config = NiahConfig
    cell_knobs = {"context_len": int, "depth": float}
    metrics = {"exact_match": True, "part_match": True}

    def __init__(self, config: NiahConfig):
        for key in ("num_keys", "values_per_key", "num_queries", "value_digits"):
            if getattr(config, key) < 1:
                raise ValueError(f"niah: {key} must be at least 1, got {getattr(config, key)}")
        if config.num_queries > config.num_keys:
            raise ValueError(f"niah: num_queries={config.num_queries} exceeds num_keys={config.num_keys}")
        if config.key_words < config.num_keys:
            raise ValueError(f"niah: key_words={config.key_words} is fewer than num_keys={config.num_keys}")
        self.haystack = Haystack(config.haystack, config.noise_words, config.corpus_path)
        self.keys = made_up_words(config.key_words)
        super().__init__(config)
        self.haystack.bind(self.vocab)
        self.needle_prefix = self.vocab.encode(NEEDLE.split("{key}")[0])
        self.needle_len = len(NEEDLE.split()) - 2 + 1 + config.value_digits
        self.answer_len = config.num_queries * config.values_per_key * config.value_digits

    def build_vocabulary(self) -> Vocabulary:
        template = f"{NEEDLE} {QUESTION}".replace("{key}", "").replace("{value}", "").replace("{keys}", "")
        return Vocabulary([*template.split(), *DIGITS, *self.keys, *self.haystack.words])

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        config = self.config
        question = len(QUESTION.split()) - 1 + config.num_queries
        return config.num_keys * config.values_per_key * self.needle_len + question + self.answer_len

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        if not 0.0 <= knobs["depth"] <= 1.0:
            raise ValueError(f"niah: depth must be in [0, 1], got {knobs['depth']}")

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        return {"context_len": context_len, "depth": float(rng.uniform(0.0, 1.0))}

    def _value(self, rng: np.random.Generator) -> str:
        return " ".join(str(d) for d in rng.integers(0, 10, self.config.value_digits))

    def generate(self, rng: np.random.Generator, context_len: int, depth: float) -> Example:
        config = self.config
        keys = [self.keys[i] for i in rng.choice(len(self.keys), config.num_keys, replace=False)]
        queried = keys[: config.num_queries]
        needles = [(key, self._value(rng)) for key in keys for _ in range(config.values_per_key)]
        question = self.vocab.encode(QUESTION.format(keys=" ".join(queried)))
        filler_len = context_len - len(needles) * self.needle_len - len(question) - self.answer_len
        at_depth = [needles[i] for i in rng.permutation(len(needles)) if needles[i][0] in queried]
        placed = [(round(depth * filler_len), needle) for needle in at_depth]
        placed += [(int(rng.integers(filler_len + 1)), needle) for needle in needles if needle[0] not in queried]
        placed.sort(key=lambda item: item[0])  # stable: the queried needles keep their drawn order
        context = insert(self.haystack.sample(rng, filler_len),
                         [self.vocab.encode(NEEDLE.format(key=key, value=value)) for _, (key, value) in placed],
                         [position for position, _ in placed])
        # each queried key's values in the order they appear in the context
        answer = self.vocab.encode(" ".join(value for key in queried for _, (k, value) in placed if k == key))
        tokens = np.concatenate((context, question, answer))
        return Example(tokens, answer_labels(context_len, answer), {"context_len": context_len, "depth": depth})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        correct = (predictions[positions] == example.labels[positions]).reshape(-1, self.config.value_digits)
        values_right = correct.all(axis=1)
        return {"exact_match": float(values_right.all()), "part_match": float(values_right.mean())}

    def chance(self, **knobs: Any) -> dict[str, float]:
        config = self.config
        value = 0.1**config.value_digits
        return {"exact_match": value ** (config.num_queries * config.values_per_key), "part_match": value}

    def oracle(self, example: Example) -> np.ndarray:
        """Read every needle of the context, then answer the question's keys from them."""
        digits, tokens = self.config.value_digits, example.tokens
        question_start = len(tokens) - self.answer_len - (len(QUESTION.split()) - 1 + self.config.num_queries)
        windows = np.lib.stride_tricks.sliding_window_view(tokens[:question_start], len(self.needle_prefix))
        found: dict[int, list[np.ndarray]] = {}
        for start in np.flatnonzero((windows == self.needle_prefix).all(axis=1)):
            key_at = start + len(self.needle_prefix)
            found.setdefault(int(tokens[key_at]), []).append(tokens[key_at + 2 : key_at + 2 + digits])
        asked = tokens[question_start + len(QUESTION.split("{keys}")[0].split()):][: self.config.num_queries]
        answer = np.concatenate([value for key in asked for value in found[int(key)]])
        predictions = np.full(len(tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = answer
        return predictions

