"""Multi-query associative recall (MQAR), after Zoology's ``multiquery_ar`` (Arora et al. 2023).

The context opens with ``num_kv_pairs`` key-value pairs; the rest is noise in which every key is
queried once, at a place drawn with a power law that favours short gaps (``power_a``; Zoology's
``alpha``), and the model must name the key's value at the position of the query. Keys come from
the first half of the vocabulary and values from the second; noise tokens come from the whole
vocabulary (as in Zoology), so a key may also appear as noise, unlabelled. Worked example with
``vocab_size=16``, ``num_kv_pairs=2``, ``context_len=12``::

    k5 v2 k7 v1 | v2 v6 v0 v1 k7 v3 k5 v0
                              ^     ^
    the labels at the two queries: k7 -> v1, k5 -> v2 (the tokens after a query are noise)

Knobs: ``context_len`` and ``num_kv_pairs`` (at most ``context_len / 4``: the queries need room).
With ``kv_pairs_per_token`` set, the evaluation ties the pairs to the length
(``num_kv_pairs = context_len x kv_pairs_per_token``, Zoology's test sets use 1/4) instead of
sweeping them. Metrics: ``accuracy`` (share of queries answered; chance 2 / vocab_size, one value
of the vocab_size / 2) and ``exact_match`` (every query of the example right). Each answer is one
token read at its query, so the argmax given the true prefix is the model's greedy answer.

The defaults (vocab 64, power_a 0.1, up to 16 pairs) are memarena's CPU setting, not comparable
with Zoology: with 64 tokens a queried key also appears in the noise before its query in 28-76% of
queries. ``task=zoology/mqar`` is Zoology's distribution (docs/tasks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from harness.registry import register_task
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig
from harness.taskkit.vocabulary import Vocabulary


@dataclass
class MqarConfig(TaskConfig):
    name: str = "mqar"
    #: keys are the first half of the vocabulary, values the second
    vocab_size: int = 64
    #: the most pairs in a training example (see training_pairs)
    max_kv_pairs: int = 16
    #: query places are drawn with probability proportional to gap^(power_a - 1)
    power_a: float = 0.1
    #: if set, each evaluated length L has num_kv_pairs = L x this (at most 1/4), training at most
    #: that many, and the num_kv_pairs grid is not swept
    kv_pairs_per_token: Optional[float] = None
    #: "uniform": training draws num_kv_pairs uniformly from 1 to the most that fit (max_kv_pairs, and
    #: context_len / 4 or context_len x kv_pairs_per_token); "most": always the most that fit, as Zoology
    #: trains (a fixed number of pairs per length)
    training_pairs: str = "uniform"
    #: false: every position that is neither a pair nor a query holds one blank token (k0, then never a
    #: key), as in Zoology's Figure 2 (``random_non_queries=False``); true: random tokens (noise)
    random_non_queries: bool = True
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"num_kv_pairs": [4, 8, 16]})


#: the token of every non-query position with ``random_non_queries=false`` (k0, as Zoology's 0)
BLANK = 0


def first_key(config: MqarConfig) -> int:
    """The first token drawn as a key: 0, or past the blank when there is one (the blank is never a key)."""
    return 0 if config.random_non_queries else BLANK + 1


@register_task("mqar")
class Mqar(Task):
    Config = MqarConfig
    cell_knobs = {"context_len": int, "num_kv_pairs": int}
    metrics = {"accuracy": True, "exact_match": True}

    def __init__(self, config: MqarConfig):
        if config.vocab_size < 4 or config.vocab_size % 2:
            raise ValueError(f"mqar: vocab_size must be even and at least 4, got {config.vocab_size}")
        keys = config.vocab_size // 2 - first_key(config)
        if not 1 <= config.max_kv_pairs <= keys:
            raise ValueError(f"mqar: max_kv_pairs must be in [1, the number of keys = {keys}], got {config.max_kv_pairs}")
        if config.training_pairs not in ("uniform", "most"):
            raise ValueError(f"mqar: training_pairs must be 'uniform' or 'most', got {config.training_pairs!r}")
        if config.power_a <= 0:
            raise ValueError(f"mqar: power_a must be positive, got {config.power_a}")
        if config.kv_pairs_per_token is not None and not 0 < config.kv_pairs_per_token <= 0.25:
            raise ValueError(f"mqar: kv_pairs_per_token must be in (0, 1/4] (the queries need room), "
                             f"got {config.kv_pairs_per_token}")
        super().__init__(config)
        self.half = config.vocab_size // 2

    def build_vocabulary(self) -> Vocabulary:
        half = self.config.vocab_size // 2
        return Vocabulary([*(f"k{i}" for i in range(half)), *(f"v{i}" for i in range(half))])

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        keys = self.half - first_key(self.config)
        if not 1 <= knobs["num_kv_pairs"] <= keys:
            raise ValueError(f"mqar: num_kv_pairs must be in [1, the number of keys = {keys}], got {knobs['num_kv_pairs']}")

    def evaluation_cells(self, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
        per_token = self.config.kv_pairs_per_token
        if per_token is None:
            return super().evaluation_cells(grid)
        if "num_kv_pairs" in grid:
            raise ValueError(f"mqar: num_kv_pairs is tied to context_len (kv_pairs_per_token={per_token}); "
                             "leave it out of eval.grid, or set task.kv_pairs_per_token=null to sweep it")
        return [{"context_len": length, "num_kv_pairs": max(1, int(length * per_token))}
                for length in grid["context_len"]]

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        return 4 * knobs["num_kv_pairs"]  # the pairs, then room to query each on its own even offset

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        per_token = self.config.kv_pairs_per_token
        room = context_len // 4 if per_token is None else int(context_len * per_token)  # the same at 1/4
        most = max(1, min(self.config.max_kv_pairs, room))
        pairs = most if self.config.training_pairs == "most" else int(rng.integers(1, most + 1))
        return {"context_len": context_len, "num_kv_pairs": pairs}

    def generate(self, rng: np.random.Generator, context_len: int, num_kv_pairs: int) -> Example:
        noise, first = self.config.random_non_queries, first_key(self.config)
        keys = first + rng.choice(self.half - first, num_kv_pairs, replace=False)
        values = self.half + rng.choice(self.half, num_kv_pairs, replace=False)
        pairs_len = 2 * num_kv_pairs
        # noise (or the blank) everywhere, then the pairs and queries
        tokens = rng.integers(0, 2 * self.half, context_len) if noise else np.full(context_len, BLANK)
        tokens[0:pairs_len:2], tokens[1:pairs_len:2] = keys, values
        slots = (context_len - pairs_len) // 2  # queries sit on even offsets after the pairs
        weights = np.arange(1, slots + 1, dtype=np.float64) ** (self.config.power_a - 1)
        gaps = rng.choice(slots, num_kv_pairs, replace=False, p=weights / weights.sum())
        queries = pairs_len + 2 * gaps
        tokens[queries] = keys
        labels = np.full(context_len, IGNORE, dtype=np.int64)
        labels[queries] = values
        return Example(tokens.astype(np.int64), labels, {"context_len": context_len, "num_kv_pairs": num_kv_pairs})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        correct = predictions[positions] == example.labels[positions]
        return {"accuracy": float(correct.mean()), "exact_match": float(correct.all())}

    def chance(self, **knobs: Any) -> dict[str, float]:
        return {"accuracy": 1 / self.half, "exact_match": (1 / self.half) ** knobs["num_kv_pairs"]}

    def oracle(self, example: Example) -> np.ndarray:
        """Read the pairs at the start, then answer each labelled query from them."""
        pairs = example.knobs["num_kv_pairs"]
        table = dict(zip(example.tokens[0 : 2 * pairs : 2].tolist(), example.tokens[1 : 2 * pairs : 2].tolist()))
        predictions = np.full(len(example.tokens), IGNORE, dtype=np.int64)
        positions = example.answer_positions
        predictions[positions] = [table[int(key)] for key in example.tokens[positions]]
        return predictions
