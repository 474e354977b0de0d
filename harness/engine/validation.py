"""The validation examples that early stopping scores training on (harness/engine/early_stopping.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.config import EvalConfig, TrainConfig
from harness.engine.early_stopping import stopping_cells
from harness.engine.evaluate import example_scores
from harness.layers.model import StreamingLM
from harness.taskkit.example_cache import ExampleCache
from harness.taskkit.task import Example, Task


@dataclass
class ValidationCheck:
    """The validation examples that training is scored on, and how to score them."""

    task: Task
    cells: list[dict[str, Any]]
    examples: list[list[Example]]
    #: batch size and scoring of the evaluation; its split and seed are those the examples were drawn with
    config: EvalConfig
    segment_len: int
    device: torch.device
    autocast: torch.autocast | None = None

    @classmethod
    def build(cls, task: Task, train: TrainConfig, evaluation: EvalConfig, segment_len: int, device: torch.device,
              autocast: torch.autocast | None = None, cache: ExampleCache | None = None) -> "ValidationCheck":
        """The check of a run: ``train.eval_examples`` validation examples (seed ``train.eval_seed``) per cell."""
        cells = stopping_cells(task, evaluation.grid, train)
        config = EvalConfig(grid=evaluation.grid, examples_per_cell=train.eval_examples,
                            batch_size=evaluation.batch_size, seed=train.eval_seed, split="stopping",
                            scoring=evaluation.scoring)
        examples = (cache or ExampleCache(None)).test_cells(task, config.seed, cells, config.examples_per_cell,
                                                            config.split)
        return cls(task, cells, examples, config, segment_len, device, autocast)

    def score(self, model: StreamingLM) -> float:
        """The headline metric averaged over every example, negated where lower is better; leaves the model
        in training mode."""
        metric = self.task.primary_metric
        values = []
        with self.autocast or contextlib.nullcontext():
            for knobs, examples in zip(self.cells, self.examples):
                values += example_scores(model, self.task, examples, knobs, self.config, self.segment_len,
                                         self.device)[metric]
        model.train()
        mean = float(np.mean(values))
        return mean if self.task.metrics[metric] else -mean

    def description(self) -> dict[str, Any]:
        """What the check reads, for the record."""
        return {"metric": self.task.primary_metric, "split": self.config.split, "seed": self.config.seed,
                "cells": self.cells, "examples_per_cell": self.config.examples_per_cell,
                "higher_is_better": bool(self.task.metrics[self.task.primary_metric])}
