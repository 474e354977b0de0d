"""What ``compile=true`` (harness/engine/compile.py) costs and gains per mechanism: compile time and speed-up.

Shape (small, so that nine compilations fit a CPU session): d_model 64, 2 layers, 4 heads, batch 4,
512 tokens read in segments of 128, vocabulary 256; a training step is the forward over the
segments, cross entropy (+ the mechanism's own loss), backward and fused AdamW. Compile time: the
first two compiled steps (they meet every shape and recompile once where a size changes) less two
eager steps. Speed-up: eager and compiled steps interleaved in one process, 5 rounds after the
warm-up, median over rounds of the eager step time over the compiled one.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch.nn import functional as F

import harness
from conftest import record
from harness.engine.compile import compile_blocks

SHAPE = {"vocab_size": 256, "d_model": 64, "n_layers": 2, "n_heads": 4}
BATCH, SEGMENT, LENGTH, ROUNDS = 4, 128, 512, 5
SECTION = "compile=true"
INTRODUCTION = (f"Training step at d_model {SHAPE['d_model']}, {SHAPE['n_layers']} layers, {SHAPE['n_heads']} heads, batch "
                f"{BATCH}, {LENGTH} tokens in segments of {SEGMENT}, fp32. Compile time: the first two compiled steps less "
                f"two eager ones. Speed-up: eager over compiled step time, median of {ROUNDS} interleaved rounds.")


def step(model, optimizer, tokens) -> float:
    start = time.perf_counter()
    logits, _ = model.stream(tokens, model.init_state(len(tokens)), SEGMENT)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    auxiliary = model.auxiliary_loss()
    (loss if auxiliary is None else loss + auxiliary).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


@pytest.mark.parametrize("mechanism", harness.mechanisms())
def test_compile_speedup(mechanism):
    torch._dynamo.reset()
    models = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = harness.build_model(mechanism, **SHAPE).train()
        if compiled:
            compile_blocks(model)
        models.append((model, torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)))
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, LENGTH))
    eager_warmup, compiled_warmup = (sum(step(model, optimizer, tokens) for _ in range(2)) for model, optimizer in models)
    rounds = [[step(model, optimizer, tokens) for model, optimizer in models] for _ in range(ROUNDS)]
    eager_s, compiled_s = (statistics.median(column) for column in zip(*rounds))
    record(SECTION, INTRODUCTION, {
        "mechanism": mechanism, "compile s": round(compiled_warmup - eager_warmup, 1),
        "eager tokens/s": round(BATCH * LENGTH / eager_s), "compiled tokens/s": round(BATCH * LENGTH / compiled_s),
        "speed-up (median)": round(statistics.median(e / c for e, c in rounds), 2)})
