"""Kernel operations per training step of every mechanism, counted on the CPU.

Shape (issue #24's): d_model 256, 4 layers, 4 heads, batch 2, 1024 tokens read in segments of
512, vocabulary 256; forward, loss, backward and fused AdamW step, counted on the second step (the
first creates the optimizer state and fills the caches of masks and rotary tables). On a GPU such
a step is launch-bound: the H200 step times measured for issue #24 fit 5.1 ms + 29.4 us per
kernel operation, so this count, the same on every machine, shows a regression before anyone pays
for a GPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from conftest import record
from kernel_ops import KernelCounter

SHAPE = {"vocab_size": 256, "d_model": 256, "n_layers": 4, "n_heads": 4}
BATCH, SEGMENT, LENGTH = 2, 512, 1024
#: kernel operations per step, at most (lstm_gated runs its recurrence in cuDNN / oneDNN steps)
TARGET = 1000
EXEMPT = {"lstm_gated"}
SECTION = "Kernel operations per training step"
INTRODUCTION = (f"d_model {SHAPE['d_model']}, {SHAPE['n_layers']} layers, {SHAPE['n_heads']} heads, batch {BATCH}, "
                f"{LENGTH} tokens read in segments of {SEGMENT}; forward, backward and fused AdamW step, fp32, counted "
                "on the CPU with a TorchDispatchMode (aten operations that launch a kernel; views and other metadata "
                f"operations apart). Target: at most {TARGET} per step for every mechanism but "
                f"{', '.join(sorted(EXEMPT))}. On the H200 of issue #24, step time = 5.1 ms + 29.4 us x kernel operations.")


def training_step(model, optimizer, tokens):
    logits, _ = model.stream(tokens, model.init_state(BATCH), SEGMENT)
    auxiliary = model.auxiliary_loss()
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    (loss if auxiliary is None else loss + auxiliary).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("mechanism", harness.mechanisms())
def test_kernel_operations_per_training_step(mechanism):
    torch.manual_seed(0)
    model = harness.build_model(mechanism, **SHAPE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, LENGTH))
    training_step(model, optimizer, tokens)
    counter = KernelCounter()
    with counter:
        training_step(model, optimizer, tokens)
    kernels = sum(counter.kernels.values())
    target = None if mechanism in EXEMPT else TARGET
    record(SECTION, INTRODUCTION, {
        "mechanism": mechanism, "kernel ops": kernels, "per layer": round(kernels / SHAPE["n_layers"]),
        "views (no kernel)": sum(counter.views.values()), "target": "-" if target is None else f"<= {target}",
        "most frequent": ", ".join(f"{name} {count}" for name, count in counter.kernels.most_common(4))})
    assert target is None or kernels <= target, f"{mechanism}: {kernels} kernel operations per step; target at most {target}"
