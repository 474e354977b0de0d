"""The training loss applies the head at the labelled positions only (``harness.engine.train.task_loss``).

A task labels a few answers per example (passkey its digits, MQAR one query per 16 or more positions),
and the head costs V x D multiply-adds per position: at Zoology's vocabulary of 8,192 it dominates a small
model's step. Measured here: a training step (forward, loss, backward, fused AdamW) of the tiny model
(d_model 64, 2 layers) with ``task_loss`` against the same step with the full logits [B, T, V] and
cross entropy over the labelled positions (what training did before), on the same batch, fp32.
Interleaved in one process, median of 5 rounds after one warm-up round. Target: at least 2x on
zoology/mqar at 256 tokens (a vocabulary of 8,192); no slower on passkey (a vocabulary of 20).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import harness
from conftest import record
from harness.engine.train import task_loss
from harness.taskkit.task import IGNORE

BATCH, SEGMENT, ROUNDS = 16, 64, 5
SECTION = "Training loss at the labelled positions"
TASKS = {"zoology/mqar, 256 tokens": ("mqar", {"vocab_size": 8192, "max_kv_pairs": 64, "power_a": 0.01,
                                                "kv_pairs_per_token": 0.0625, "random_non_queries": False}, 256),
         "passkey, 256 tokens": ("passkey", {}, 256)}


def full_logits_loss(model, inputs, labels, segment_len, device):
    logits, _ = model.stream(inputs, model.init_state(len(inputs)), segment_len)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


def step(model, optimizer, loss_function, inputs, labels) -> float:
    start = time.perf_counter()
    loss_function(model, inputs, labels, SEGMENT, torch.device("cpu")).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


@pytest.mark.parametrize("label", TASKS)
def test_labelled_positions_only(label):
    name, options, length = TASKS[label]
    task = harness.build_task(name, **options)
    rng = np.random.default_rng(0)
    examples = [task.generate(rng, **task.training_knobs(rng, length)) for _ in range(BATCH)]
    inputs = torch.as_tensor(np.stack([example.tokens for example in examples]))
    labels = torch.as_tensor(np.stack([example.labels for example in examples]))
    torch.manual_seed(0)
    model = harness.build_model("full_attention", vocab_size=task.vocab_size, d_model=64, n_layers=2, n_heads=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    losses = (full_logits_loss, task_loss)
    assert torch.allclose(*(loss(model, inputs, labels, SEGMENT, torch.device("cpu")) for loss in losses), rtol=1e-5)
    rounds = [[step(model, optimizer, loss, inputs, labels) for loss in losses] for _ in range(ROUNDS + 1)][1:]
    full_s, answers_s = (statistics.median(column) for column in zip(*rounds))
    speedup = statistics.median(full / answers for full, answers in rounds)
    record(SECTION, __doc__.split("\n\n")[1].replace("\n", " "), {
        "task": label, "vocabulary": task.vocab_size, "labelled positions": int((labels != IGNORE).sum()),
        "positions": labels.numel(), "full logits tokens/s": round(BATCH * length / full_s),
        "labelled only tokens/s": round(BATCH * length / answers_s), "speed-up (median)": round(speedup, 2)})
    assert speedup >= (2.0 if task.vocab_size >= 8192 else 0.9)
