"""Training-step throughput of every mechanism at one stated shape (pytest-benchmark).

Run: ``python -m pytest benchmarks/test_train_throughput.py`` (not part of the test suite).
Each result's ``extra_info`` holds tokens/s; compare mechanisms within one run, on one machine.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness

#: the `quick` experiment's model and a typical training batch of it
SHAPE = {"vocab_size": 32, "d_model": 64, "n_layers": 2, "n_heads": 4}
BATCH, LENGTH, SEGMENT = 16, 128, 64


@pytest.mark.parametrize("mechanism", harness.mechanisms())
def test_training_step(benchmark, mechanism):
    torch.manual_seed(0)
    model = harness.build_model(mechanism, **SHAPE).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, LENGTH))

    def step():
        logits, _ = model.stream(tokens, model.init_state(BATCH), SEGMENT)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        auxiliary = model.auxiliary_loss()
        (loss if auxiliary is None else loss + auxiliary).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    benchmark.pedantic(step, rounds=20, warmup_rounds=3)
    benchmark.extra_info["tokens_per_s"] = BATCH * LENGTH / benchmark.stats.stats.mean
    benchmark.extra_info["shape"] = f"{SHAPE} batch={BATCH} length={LENGTH} segment={SEGMENT}"
