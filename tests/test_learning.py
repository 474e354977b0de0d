"""A tiny model learns a trivially learnable task through the real training and evaluation code.

This is what catches a loss aligned with the wrong position (labels shifted by one), an optimizer
that does not step, a loss that does not reach the weights, or predictions scored at the wrong
place: each leaves the model at chance while every shape and type still checks out. The example
cache is left out (its batches equal generated ones: test_example_cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import harness
from harness.config import EvalConfig, TrainConfig
from harness.engine.evaluate import evaluate
from harness.taskkit.task import IGNORE, Example, Task, TaskConfig
from harness.engine.train import train
from harness.taskkit.vocabulary import Vocabulary

SYMBOLS, CONTEXT_LEN, SEGMENT_LEN = 16, 32, 16
#: standard errors above chance that the trained model must score
Z = 4.0


@dataclass
class SuccessorConfig(TaskConfig):
    name: str = "successor"


class Successor(Task):
    """Pairs ``x, x + 1 (mod 16)`` of random symbols; the model names the second of each pair.

    Worked example, ``context_len=6``: tokens ``s3 s4 s15 s0 s7 s8``, labels ``s4 - s0 - s8 -``.
    The answer depends on the current token only, so any mechanism learns it within 100 steps.
    """

    name = "successor"
    Config = SuccessorConfig
    metrics = {"accuracy": True}

    def build_vocabulary(self) -> Vocabulary:
        return Vocabulary(f"s{i}" for i in range(SYMBOLS))

    def generate(self, rng: np.random.Generator, context_len: int) -> Example:
        first = rng.integers(0, SYMBOLS, context_len // 2)
        tokens = np.stack((first, (first + 1) % SYMBOLS), axis=1).reshape(-1)
        labels = np.full(context_len, IGNORE, dtype=np.int64)
        labels[0::2] = tokens[1::2]
        return Example(tokens, labels, {"context_len": context_len})

    def score(self, example: Example, predictions: np.ndarray) -> dict[str, float]:
        positions = example.answer_positions
        return {"accuracy": float((predictions[positions] == example.labels[positions]).mean())}

    def chance(self, **knobs: Any) -> dict[str, float]:
        return {"accuracy": 1 / SYMBOLS}


@pytest.fixture
def one_thread():
    """A model this small trains fastest on one thread; on a busy machine two threads wait on each other (10x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_tiny_model_learns_a_trivial_task_far_above_chance(one_thread):
    task = Successor(SuccessorConfig())
    model = harness.build_model("full_attention", vocab_size=task.vocab_size, d_model=32, n_layers=1, n_heads=2)
    device = torch.device("cpu")
    training = TrainConfig(steps=100, batch_size=16, context_len=CONTEXT_LEN, min_context_len=CONTEXT_LEN,
                           warmup_steps=10)
    summary = train(model, task, training, SEGMENT_LEN, seed=0, device=device, progress=False)
    evaluation = EvalConfig(grid={"context_len": [CONTEXT_LEN]}, examples_per_cell=32, batch_size=32)
    [cell], _ = evaluate(model, task, evaluation, SEGMENT_LEN, device, progress=False)
    chance, count = cell["chance"], cell["n"]
    # scores in [0, 1] with mean `chance` vary by at most chance (1 - chance): a margin of Z standard errors
    least = chance + Z * np.sqrt(chance * (1 - chance) / count)
    assert cell["value"] > least, (f"accuracy {cell['value']:.3f} after {summary.steps} steps (final loss "
                                   f"{summary.final_loss:.3f}); chance {chance:.3f}, needed above {least:.3f}")
    assert summary.final_loss < np.log(SYMBOLS) / 2  # half the loss of a uniform guess: the loss itself went down
