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
``train.patience`` checks in a row without an improvement, training stops ("plateau"). With
``train.loss_min_fall`` set, a check whose training loss (the mean since the previous check) is lower than
the lowest at a check so far by more than that share of the loss's fall so far (from the first check to that
lowest: scale-free, as the report's "still falling" flag) also restarts the patience, though its weights are
not the best: an all-or-nothing score (RULER's string_match_all over 7 digits) sits at 0 while a model learns
the answer digit by digit, and its plateau is then not a plateau of learning. Whatever
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
    """The stopping rule: ``patience`` checks in a row without beating the best score by more than ``min_delta``
    (nor, with ``loss_min_fall``, the lowest training loss by more than that share of its fall so far)."""

    patience: int
    min_delta: float
    loss_min_fall: float | None = None
    best_score: float = -math.inf
    #: steps done at the best check (0: none yet)
    best_step: int = 0
    #: checks since the best one, or since the last that lowered the loss by more than loss_min_fall
    since_best: int = 0
    #: every check: {"step": steps done, "score": validation score (higher is better)}, and its "loss" with
    #: loss_min_fall
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def lowest_loss(self) -> float:
        """The lowest training loss at a check so far (with loss_min_fall; inf before the first check)."""
        return min((check["loss"] for check in self.curve), default=math.inf)

    def update(self, step: int, score: float, loss: float | None = None) -> bool:
        """Record the check after ``step`` steps (``loss``: the training loss since the previous check, read with
        loss_min_fall); True if its score improved on the best (its weights are the new best)."""
        reads_loss = self.loss_min_fall is not None
        if reads_loss and loss is None:
            raise ValueError("Plateau.update: loss_min_fall is set, so each check needs its training loss")
        learning = reads_loss
        if reads_loss and self.curve:  # below the lowest by more than loss_min_fall of the fall from the first check
            lowest = self.lowest_loss
            learning = loss < lowest - self.loss_min_fall * (self.curve[0]["loss"] - lowest)
        self.curve.append({"step": step, "score": score, **({"loss": loss} if reads_loss else {})})
        if score > self.best_score + self.min_delta:
            self.best_score, self.best_step, self.since_best = score, step, 0
            return True
        self.since_best = 0 if learning else self.since_best + 1
        return False

    @property
    def reached(self) -> bool:
        """Whether training should stop: ``patience`` checks without an improvement."""
        return self.since_best >= self.patience

    def state(self) -> dict[str, Any]:
        """Everything the rule depends on, for a checkpoint."""
        return asdict(self)
