"""Evaluation over the grid: every cell's test examples, read in segments with a fresh state each.

Returns one row per (cell, metric) with its interval and cost figures, and one row per
(example, metric) so that reports can run paired tests between mechanisms on the same examples.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from harness.config import EvalConfig
from harness.model import StreamingLM
from harness.stats import mean_interval
from harness.task import Task, stack


def grid_cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid's knob values, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(
    model: StreamingLM, task: Task, config: EvalConfig, segment_len: int, device: torch.device,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    model.eval()
    cells, outcomes = [], []
    for knobs in tqdm(grid_cells(config.grid), desc=f"eval {model.mechanism_name}", disable=not progress, leave=False):
        examples = task.test_examples(config.seed, knobs, config.examples_per_cell)
        scores: dict[str, list[float]] = {metric: [] for metric in task.metrics}
        elapsed, tokens, per_sequence_state = 0.0, 0, 0
        for first in range(0, len(examples), config.batch_size):
            batch = examples[first : first + config.batch_size]
            inputs, _ = stack(batch, device)
            synchronize(device)
            start = time.perf_counter()
            logits, state = model.stream(inputs, model.init_state(len(batch)), segment_len)
            predictions = logits.argmax(dim=-1).cpu().numpy()
            elapsed += time.perf_counter() - start
            tokens += inputs.numel()
            per_sequence_state = model.state_bytes(state) // len(batch)
            for offset, (example, predicted) in enumerate(zip(batch, predictions)):
                for metric, value in task.score(example, predicted).items():
                    scores[metric].append(value)
                    outcomes.append({**knobs, "example": first + offset, "metric": metric, "value": value})
        chance = task.chance(**knobs)
        for metric, higher_is_better in task.metrics.items():
            value, low, high = mean_interval(np.array(scores[metric]))
            cells.append({
                "knobs": knobs, "metric": metric, "higher_is_better": higher_is_better,
                "n": len(scores[metric]), "value": value, "ci_low": low, "ci_high": high,
                "chance": chance[metric], "state_bytes": per_sequence_state,
                "tokens_per_s": tokens / elapsed if elapsed else None,
            })
    return cells, outcomes
