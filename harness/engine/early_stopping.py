"""Early stopping on a validation plateau: training stops when its validation score stops rising.

With ``train.eval_every`` set, training scores the model every ``eval_every`` steps (and after its last
step) on a fixed set of validation examples: ``train.eval_examples`` per cell of the evaluation grid
whose length lies within the training lengths (``context_len <= train.context_len``), drawn from the
validation split with seed ``train.eval_seed`` (split ``stopping`` in harness/taskkit/task.py ``EVAL_SPLITS``).
The validation split's examples come from a seed stream tagged apart from the test set's (a data-backed task
reads its own validation split), so no example that stops training is ever a test example. The examples
that stop training are never those that choose the rate: a generated task's run that is itself scored on
validation (a tuning run) must use an ``eval_seed`` other than ``eval.seed``, and a data-backed task stops on
one half of its validation split and tunes on the other.

The score is the task's headline metric averaged over those examples, its sign turned so that higher
is better. A check improves when it beats the best so far by more than ``train.min_delta``; after
``train.patience`` checks in a row without an improvement, training stops ("plateau"). Whatever
ends training (plateau, token budget, steps), the weights of the best check are restored, so the
weights evaluated and stored are those of step ``best_step`` in the record's ``early_stopping``.

This module holds the rule and the cells; harness/engine/validation.py scores the examples (with the
evaluator's scoring), and harness/engine/train.py runs the checks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from harness.config import TrainConfig
from harness.layers.model import StreamingLM
from harness.taskkit.task import Task


def stopping_cells(task: Task, grid: dict[str, list[Any]], config: TrainConfig) -> list[dict[str, Any]]:
    """The cells of the evaluation grid ``grid`` within the training lengths; ValueError if there is none."""
    cells = [knobs for knobs in task.evaluation_cells(grid) if knobs["context_len"] <= config.context_len]
    if not cells:
        raise ValueError(f"train.eval_every: early stopping scores the eval.grid cells of context_len <= "
                         f"train.context_len={config.context_len}, and eval.grid has none")
    return cells


class Validation(Protocol):
    """What training needs of the validation examples (harness/engine/validation.py builds them)."""

    def score(self, model: StreamingLM) -> float:
        """The model's validation score, higher is better; leaves the model in training mode."""

    def description(self) -> dict[str, Any]:
        """What the checks read, for the record."""


@dataclass
class Plateau:
    """The stopping rule: ``patience`` checks in a row without beating the best score by more than ``min_delta``."""

    patience: int
    min_delta: float
    best_score: float = -math.inf
    #: steps done at the best check (0: none yet)
    best_step: int = 0
    #: checks since the best one
    since_best: int = 0
    #: every check: {"step": steps done, "score": validation score (higher is better)}
    curve: list[dict[str, float]] = field(default_factory=list)

    def update(self, step: int, score: float) -> bool:
        """Record the check after ``step`` steps; True if it improved on the best (its weights are the new best)."""
        self.curve.append({"step": step, "score": score})
        if score > self.best_score + self.min_delta:
            self.best_score, self.best_step, self.since_best = score, step, 0
            return True
        self.since_best += 1
        return False

    @property
    def reached(self) -> bool:
        """Whether training should stop: ``patience`` checks without an improvement."""
        return self.since_best >= self.patience

    def state(self) -> dict[str, Any]:
        """Everything the rule depends on, for a checkpoint."""
        return asdict(self)
