"""The contract every task keeps.

A task turns a random generator and the values of its knobs (one cell of the evaluation grid,
such as ``context_len`` and ``depth``) into an ``Example``: a token sequence plus, at the
positions where the model must answer, the expected next token. Training and evaluation use the
same format. An answer of several tokens is one run of labelled positions; by default
(``eval.scoring=generate``) the model writes it: from the first labelled position to the end of
the example it reads its own greedy outputs, never the true answer (``generated_positions``).
Answers of one token each (MQAR's queries) may be spread through the example: the argmax given
the true prefix is the greedy answer. ``eval.scoring=teacher_forced`` scores the argmax at every
labelled position given the true prefix instead, a diagnosis that agrees with generation on
exact match but not on partial credit.

Examples are deterministic in (task config, seed, split, knobs, index): a generator is seeded
from those values, with the split tag in the seed, so that training and test examples come from
disjoint seed streams.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from harness.taskkit.vocabulary import Vocabulary

IGNORE = -100  # label of positions that are not scored (as in torch's cross_entropy)
TRAIN, TEST, VALIDATION = 0, 1, 2  # split tags in the seed: no two splits ever share a seed
#: evaluation splits: the test set, validation examples for choosing hyperparameters (never the test set), and
#: the examples of early stopping's checks: a generated task draws them as validation examples (with their own
#: seed, ``train.eval_seed``); a data-backed task takes them from the other half of its validation split than
#: tuning does, so that what stops training never chooses the rate (harness/taskkit/text_task.py)
EVAL_SPLITS = {"test": TEST, "validation": VALIDATION, "stopping": VALIDATION}
#: how answers are scored (``eval.scoring``, see the module docstring)
SCORINGS = ("generate", "teacher_forced")


@dataclass
class TaskConfig:
    """Options shared by all tasks; each task subclasses this with its own knobs."""

    name: str = "???"
    #: the published setting this config reproduces (e.g. "ruler/niah_single_1", docs/tasks.md
    #: names its reference and remaining differences); None: memarena's own, not comparable with a paper
    preset: Optional[str] = None
    #: values of the task's own grid knobs (all but context_len) for the evaluation grid;
    #: ``eval.grid`` overrides any of them
    grid: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Example:
    tokens: np.ndarray  # [T] int64 input ids
    labels: np.ndarray  # [T] int64: the token expected after position t, IGNORE where unscored
    knobs: dict[str, Any] = field(default_factory=dict)
    #: [T] targets of the training loss, when a task trains on more than it scores (None: labels)
    targets: np.ndarray | None = None
    #: facts about this example recorded with its outcome (say, its length before truncation)
    info: dict[str, Any] = field(default_factory=dict)
    #: reference answers as text, for tasks that score text (ROUGE, token F1)
    references: list[str] | None = None

    @property
    def training_targets(self) -> np.ndarray:
        return self.labels if self.targets is None else self.targets

    @property
    def answer_positions(self) -> np.ndarray:
        return np.flatnonzero(self.labels != IGNORE)

    def generated_positions(self) -> int:
        """How many final positions the model writes itself when its answer is generated: from the
        position after the first labelled one to the end (the first labelled position reads the
        prompt's last token), or 0 when every answer is a single token (the argmax given the true
        prefix is then the greedy answer). Raises ValueError if a multi-token answer is followed
        by more labelled positions, which generation cannot score."""
        positions = self.answer_positions
        if len(positions) == 0:
            raise ValueError("an example has no labelled position to score")
        runs = np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1)
        if len(runs) == 1 and len(positions) > 1:
            return len(self.tokens) - int(positions[0]) - 1
        if all(len(run) == 1 for run in runs):
            return 0
        raise ValueError("an example labels several answers of more than one token; to be generated, an answer "
                         "of several tokens must be the example's last labelled run")


class Task:
    """Base class of a task (see the module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    #: knobs that form the evaluation grid, with the types their values must have
    cell_knobs: ClassVar[dict[str, type]] = {"context_len": int}
    #: metric name -> higher is better; the first one is the task's headline metric
    metrics: ClassVar[dict[str, bool]] = {}
    #: whether generated examples may be cached (see harness/taskkit/example_cache.py)
    cacheable: ClassVar[bool] = True

    def __init__(self, config: TaskConfig):
        self.config = config
        self.vocab = self.build_vocabulary()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def primary_metric(self) -> str:
        return next(iter(self.metrics))

    def build_vocabulary(self) -> Vocabulary:
        raise NotImplementedError

    def generate(self, rng: np.random.Generator, **knobs: Any) -> Example:
        """One example for the given cell knobs."""
        raise NotImplementedError

    def training_knobs(self, rng: np.random.Generator, context_len: int) -> dict[str, Any]:
        """Knobs of a training example of ``context_len`` tokens (other knobs drawn at random)."""
        return {"context_len": context_len}

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        """Per-example metric values; ``predictions`` holds the argmax token at every position."""
        raise NotImplementedError

    def chance(self, **knobs: Any) -> dict[str, float]:
        """Expected metric values of a guesser that ignores the context."""
        raise NotImplementedError

    def oracle(self, example: Example) -> np.ndarray:
        """A reference answerer that reads the tokens; scores 1.0 on every example."""
        raise NotImplementedError

    def evaluation_grid(self, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """``grid`` (eval.grid) completed with the task's own values for the knobs it leaves out."""
        return {**grid, **{key: values for key, values in self.config.grid.items() if key not in grid}}

    def evaluation_cells(self, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """The cells evaluated for ``grid`` (eval.grid): the product of the completed grid's values;
        a task whose knobs are tied to each other (one per length) narrows it."""
        return grid_cells(self.evaluation_grid(grid))

    def data_sources(self) -> dict[str, Any]:
        """What the task reads besides its options (a background corpus: its name, words and hash), for
        every run's record (``provenance.data``); {} for a task that reads nothing."""
        return {}

    def min_context_len(self, knobs: dict[str, Any]) -> int:
        """The fewest tokens an example of the cell ``knobs`` (context_len aside) can have."""
        return 1

    def check_knobs(self, knobs: dict[str, Any]) -> None:
        """Raise ValueError naming the knob whose value is out of range (types are checked already)."""

    def validate_cell(self, knobs: dict[str, Any]) -> None:
        """Raise ValueError naming the problem if ``knobs`` is not a valid cell of this task."""
        unknown = sorted(set(knobs) - set(self.cell_knobs))
        if unknown:
            raise ValueError(f"task {self.name!r} has no grid knob(s) {unknown}; its knobs: {sorted(self.cell_knobs)}")
        missing = sorted(set(self.cell_knobs) - set(knobs))
        if missing:
            raise ValueError(f"task {self.name!r} needs grid knob(s) {missing}")
        for key, kind in self.cell_knobs.items():
            value = knobs[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"task {self.name!r}: knob {key}={value!r} must be {kind.__name__}")
        self.check_knobs(knobs)
        least = self.min_context_len(knobs)
        if knobs["context_len"] < least:
            raise ValueError(f"{self.name}: context_len={knobs['context_len']} is shorter than {least} tokens, "
                             "the least an example takes with these options")

    def check_data(self, cells: list[dict[str, Any]], count: int, test_seed: int, training_lengths: tuple[int, ...],
                   batch_size: int, training_seed: int, split: str = "test") -> None:
        """Raise ValueError if the task's data cannot give ``count`` test examples of every cell, or a
        training batch of ``batch_size`` at each of ``training_lengths``; generated tasks always can."""

    def test_examples(self, seed: int, knobs: dict[str, Any], count: int, split: str = "test") -> list[Example]:
        """``count`` examples of one cell of an evaluation split (``EVAL_SPLITS``), reproducible from
        (config, seed, split, knobs, index)."""
        self.validate_cell(knobs)
        return [self.generate(self._test_generator(seed, knobs, index, split), **knobs) for index in range(count)]

    def sized_example(self, seed: int, knobs: dict[str, Any], index: int, context_len: int,
                      split: str = "test") -> Example | None:
        """Example ``index`` of the cell ``knobs`` of an evaluation split, laid out at ``context_len`` of the
        task's own tokens instead of ``knobs["context_len"]``, with the cell's random draws whatever the
        length; None when the task leaves it out at that length, IndexError past the end of a split of
        data. For models that count lengths in other tokens (harness/pretrained/sizing.py chooses the length)."""
        return self.generate(self._test_generator(seed, knobs, index, split), **{**knobs, "context_len": context_len})

    @staticmethod
    def _test_generator(seed: int, knobs: dict[str, Any], index: int, split: str) -> np.random.Generator:
        """The generator of example ``index`` of a cell of an evaluation split."""
        cell_key = int.from_bytes(hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).digest()[:8], "little")
        return np.random.default_rng([seed, EVAL_SPLITS[split], cell_key, index])

    def training_examples(self, seed: int, step: int, count: int, context_len: int) -> list[Example]:
        """The ``count`` training examples of one step, with the other knobs drawn at random."""
        rng = np.random.default_rng([seed, TRAIN, step])
        return [self.generate(rng, **self.training_knobs(rng, context_len)) for _ in range(count)]


def grid_cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid's knob values, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def answer_labels(length: int, answer: np.ndarray) -> np.ndarray:
    """Labels of an example whose last ``len(answer)`` tokens are its answer (predicted one step early)."""
    labels = np.full(length, IGNORE, dtype=np.int64)
    labels[length - len(answer) - 1 : -1] = answer
    return labels


def stack_tokens(examples: list[Example], device: torch.device) -> torch.Tensor:
    """Tokens [B, T] of examples that share one length."""
    lengths = {len(example.tokens) for example in examples}
    if len(lengths) != 1:
        raise ValueError(f"examples in one batch must share a length, got lengths {sorted(lengths)}")
    return torch.from_numpy(np.stack([example.tokens for example in examples])).to(device)
