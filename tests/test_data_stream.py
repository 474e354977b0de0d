"""The training stream: generated on the fly, equal to the task's own examples, bounded in memory."""

from __future__ import annotations

import multiprocessing
import time
import tracemalloc

import numpy as np
import pytest
import torch

import harness
import harness.engine.training_stream
from harness.config import TrainConfig
from harness.engine.training_stream import PREFETCH, TrainingStream, step_lengths, training_batches

CONFIG = TrainConfig(steps=12, batch_size=3, context_len=64, min_context_len=48)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", ["passkey", "babi_qa"])
def test_batches_equal_the_tasks_own_examples_from_any_first_step(name, workers):
    task = harness.build_task(name)
    lengths = step_lengths(5, CONFIG)
    assert len(set(lengths.tolist())) > 1 and lengths.min() >= 48 and lengths.max() <= 64
    for first in (0, 7):
        batches = list(training_batches(task, 5, lengths, CONFIG.batch_size, first, workers))
        assert len(batches) == CONFIG.steps - first
        for step, (tokens, targets) in enumerate(batches, start=first):
            examples = task.training_examples(5, step, CONFIG.batch_size, int(lengths[step]))
            assert tokens.dtype == targets.dtype == torch.int64 and tokens.shape == (3, lengths[step])
            assert np.array_equal(tokens.numpy(), np.stack([e.tokens for e in examples]))
            assert np.array_equal(targets.numpy(), np.stack([e.training_targets for e in examples]))


def test_workers_run_ahead_of_training_by_at_most_their_prefetch(monkeypatch):
    generated = multiprocessing.Value("i", 0)  # shared with the forked workers
    original = TrainingStream.__getitem__

    def counted(self, step):
        batch = original(self, step)
        with generated.get_lock():
            generated.value += 1
        return batch

    monkeypatch.setattr(harness.engine.training_stream.TrainingStream, "__getitem__", counted)
    workers, steps = 2, 40
    config = TrainConfig(steps=steps, batch_size=2, context_len=48, min_context_len=48)
    consumed, ahead = 0, []
    for _ in training_batches(harness.build_task("passkey"), 0, step_lengths(0, config), 2, workers=workers):
        consumed += 1
        time.sleep(0.02)  # a training step: the workers fill their prefetch meanwhile
        ahead.append(generated.value - consumed)
    assert consumed == steps
    assert max(ahead) <= workers * PREFETCH  # bounded, whatever the number of steps
    assert max(ahead) >= PREFETCH  # and generation does run ahead of training


def peak_bytes_of_generating(steps: int) -> int:
    """tracemalloc's peak (Python and numpy allocations) while reading a whole stream in this process.

    The steps' lengths (8 bytes a step, drawn before training) are left out: generation is measured.
    """
    config = TrainConfig(steps=steps, batch_size=4, context_len=64, min_context_len=48)
    task, lengths = harness.build_task("passkey"), step_lengths(0, config)
    tracemalloc.start()
    try:
        for _ in training_batches(task, 0, lengths, config.batch_size, workers=0):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_generating_the_stream_does_not_grow_with_the_steps():
    peak_bycount = {steps: peak_bytes_of_generating(steps) for steps in (50, 1000)}
    assert peak_bycount[1000] < 1.2 * peak_bycount[50], peak_bycount
