"""Evaluation over the grid: every cell's test examples, read in segments with a fresh state each.

Returns one row per (cell, metric) with its interval and cost figures, and one row per
(example, metric) so that reports can run paired tests between mechanisms on the same examples.
A cell that runs out of memory (the device's, or the ``eval.max_memory_gb`` budget checked
against the measured peak of one example) is recorded with status ``oom`` and no value, and the
other cells go on.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from harness.config import EvalConfig
from harness.taskkit.example_cache import ExampleCache
from harness.engine.measure import is_out_of_memory, measure_example, synchronize
from harness.layers.model import StreamingLM
from harness.report.stats import mean_interval
from harness.taskkit.task import Task, stack_tokens


@torch.no_grad()
def evaluate(
    model: StreamingLM, task: Task, config: EvalConfig, segment_len: int, device: torch.device,
    progress: bool = True, autocast: torch.autocast | None = None, cache: ExampleCache | None = None,
    cells_knobs: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per (cell, metric) and per (example, metric) of the cells ``cells_knobs`` (default: the grid's)."""
    model.eval()
    budget = int(config.max_memory_gb * 2**30) if config.max_memory_gb is not None else None
    cells, outcomes = [], []
    if cells_knobs is None:
        cells_knobs = task.evaluation_cells(config.grid)
    test_cells = (cache or ExampleCache(None)).test_cells(task, config.seed, cells_knobs, config.examples_per_cell,
                                                             config.split)
    for knobs, examples in tqdm(list(zip(cells_knobs, test_cells)), desc=f"eval {model.mechanism_name}",
                                disable=not progress, leave=False):
        chance = task.chance(**knobs)
        try:
            with autocast or contextlib.nullcontext():
                costs = measure_example(model, examples[0], segment_len, device, budget)
                scores, cell_outcomes, throughput = _score_cell(model, task, examples, knobs, config, segment_len, device)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            for metric, higher_is_better in task.metrics.items():
                cells.append({"knobs": knobs, "metric": metric, "higher_is_better": higher_is_better, "status": "oom",
                              "error": str(error).splitlines()[0], "n": 0, "value": None, "chance": chance[metric]})
            continue
        outcomes += cell_outcomes
        for metric, higher_is_better in task.metrics.items():
            value, low, high = mean_interval(np.array(scores[metric]))
            cells.append({
                "knobs": knobs, "metric": metric, "higher_is_better": higher_is_better, "status": "ok",
                "n": len(scores[metric]), "value": value, "ci_low": low, "ci_high": high,
                "chance": chance[metric], **throughput, **costs,
            })
    return cells, outcomes


@torch.no_grad()
def example_scores(model: StreamingLM, task: Task, examples: list, knobs: dict[str, Any], config: EvalConfig,
                   segment_len: int, device: torch.device) -> dict[str, list[float]]:
    """Each example's score per metric, scored as ``evaluate`` scores a cell (``config``: batch size, scoring)."""
    model.eval()
    return _score_cell(model, task, examples, knobs, config, segment_len, device)[0]


def _score_cell(model, task, examples, knobs, config, segment_len, device):
    """Every example of a cell, in batches: scores per metric, outcome rows, state and throughput."""
    scores: dict[str, list[float]] = {metric: [] for metric in task.metrics}
    outcomes = []
    elapsed, tokens, per_sequence_state = 0.0, 0, 0
    for first in range(0, len(examples), config.batch_size):
        indices = range(first, min(first + config.batch_size, len(examples)))
        # examples whose answers start at different places are decoded apart (each reads its own prompt)
        for generated, group in _by_generated_positions(examples, indices, config.scoring).items():
            batch = [examples[index] for index in group]
            inputs = stack_tokens(batch, device)
            synchronize(device)
            start = time.perf_counter()
            predictions, state = model.predict(inputs, segment_len, generated)
            predictions = predictions.cpu().numpy()
            elapsed += time.perf_counter() - start
            tokens += inputs.numel()
            per_sequence_state = model.state_bytes(state) // len(batch)
            for index, example, predicted in zip(group, batch, predictions):
                for metric, value in task.score(example, predicted).items():
                    scores[metric].append(value)
                    outcomes.append({**knobs, "example": index, **example.info, "metric": metric, "value": value})
    throughput = {"state_bytes": per_sequence_state, "tokens_per_s": tokens / elapsed if elapsed else None}
    return scores, outcomes, throughput


def _by_generated_positions(examples, indices, scoring: str) -> dict[int, list[int]]:
    """Example indices grouped by how many final positions the model generates (0 for all when teacher-forced)."""
    groups: dict[int, list[int]] = {}
    for index in indices:
        generated = examples[index].generated_positions() if scoring == "generate" else 0
        groups.setdefault(generated, []).append(index)
    return groups
