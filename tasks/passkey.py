"""Passkey retrieval, in the style of Landmark Attention's test (Mohtashami & Jaggi 2023).

A needle naming a random pass key is hidden at a chosen depth in repetitive filler; a question
at the end asks for the key, and the model must produce its digits. Worked example with
``n_digits=3``, ``context_len=48``, ``depth=0.5`` (one token per word)::

    the grass is green . the sky is                                  <- filler, 8 tokens
    the pass key is 8 6 5 . remember it . 8 6 5 is the pass key .   <- needle, 19 tokens
    blue . the sun is yellow . here                                  <- filler, 8 tokens
    what is the pass key ? the pass key is 8 6 5                     <- question and answer, 13

The labels mark the three positions whose next token is an answer digit (``is``, ``8``, ``6``).
Knobs: ``context_len`` (total tokens, question and answer included) and ``depth`` in [0, 1]
(0: the needle opens the context; 1: it sits right before the question; the filler before it is
``round(depth x filler length)`` tokens). Metrics: ``exact_match`` (all digits right; chance
10^-n_digits) and ``digit_accuracy`` (chance 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.registry import register_task
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig
from harness.taskkit.vocabulary import Vocabulary

FILLER = "the grass is green . the sky is blue . the sun is yellow . here we go . there and back again ."
NEEDLE = "the pass key is {key} . remember it . {key} is the pass key ."
QUESTION = "what is the pass key ? the pass key is"
DIGITS = [str(d) for d in range(10)]


@dataclass
class PasskeyConfig(TaskConfig):
    name: str = "passkey"
    n_digits: int = 3
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"depth": [0.0, 0.5, 1.0]})


@register_task("passkey")
class Passkey(Task):
    Config = PasskeyConfig
    cell_knobs = {"context_len": int, "depth": float}
    metrics = {"exact_match": True, "digit_accuracy": True}

    def __init__(self, config: PasskeyConfig):
        if config.n_digits < 1:
            raise ValueError(f"passkey: n_digits must be at least 1, got {config.n_digits}")
        super().__init__(config)
        self.filler = self.vocab.encode(FILLER)
        self.repeated_filler = self.filler
        self.question = self.vocab.encode(QUESTION)
        self.needle_prefix, self.needle_middle, self.needle_suffix = map(self.vocab.encode, NEEDLE.split("{key}"))
        self.digit_ids = self.vocab.encode(" ".join(DIGITS))

    def build_vocabulary(self) -> Vocabulary:
        return Vocabulary([*FILLER.split(), *NEEDLE.replace("{key}", "").split(), *QUESTION.split(), *DIGITS])

    def needle_len(self) -> int:
        return len(NEEDLE.replace("{key}", "").split()) + 2 * self.config.n_digits

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        return self.needle_len() + len(self.question) + self.config.n_digits

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        if not 0.0 <= knobs["depth"] <= 1.0:
            raise ValueError(f"passkey: depth must be in [0, 1], got {knobs['depth']}")

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        return {"context_len": context_len, "depth": float(rng.uniform(0.0, 1.0))}

    def generate(self, rng: np.random.Generator, context_len: int, depth: float) -> Example:
        answer = self.digit_ids[rng.integers(0, 10, self.config.n_digits)]  # the key
        needle = np.concatenate((self.needle_prefix, answer, self.needle_middle, answer, self.needle_suffix))
        filler_len = context_len - len(needle) - len(self.question) - len(answer)
        if len(self.repeated_filler) < filler_len:  # made once for the longest context so far
            self.repeated_filler = np.resize(self.filler, 2 * filler_len)
        haystack = self.repeated_filler[:filler_len]
        before = round(depth * filler_len)
        tokens = np.concatenate((haystack[:before], needle, haystack[before:], self.question, answer))
        labels = np.full(context_len, IGNORE, dtype=np.int64)
        labels[context_len - len(answer) - 1 : -1] = answer
        # Training also predicts the key's second copy in the needle: the same copying skill at a
        # short distance, which the model learns sooner than copying across the whole haystack.
        targets = labels.copy()
        second_key = before + len(needle) - len(self.needle_suffix) - len(answer)
        targets[second_key - 1 : second_key - 1 + len(answer)] = answer
        return Example(tokens, labels, {"context_len": context_len, "depth": depth}, targets)

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        correct = predictions[positions] == example.labels[positions]
        return {"exact_match": float(correct.all()), "digit_accuracy": float(correct.mean())}

    def chance(self, **knobs: Any) -> dict[str, float]:
        return {"exact_match": 0.1**self.config.n_digits, "digit_accuracy": 0.1}

    def oracle(self, example: Example) -> np.ndarray:
        """Find the first 'the pass key is' in the context and read the digits after it."""
        context = example.tokens[: len(example.tokens) - self.config.n_digits]
        prefix = self.needle_prefix
        windows = np.lib.stride_tricks.sliding_window_view(context, len(prefix))
        start = int(np.flatnonzero((windows == prefix).all(axis=1))[0]) + len(prefix)
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        predictions[example.answer_positions] = context[start : start + self.config.n_digits]
        return predictions
