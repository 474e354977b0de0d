"""lstm_gated's fused path against a bare torch.nn.LSTM of the same width, forward and backward."""

from __future__ import annotations

import time

import torch
from torch import nn

import harness
from conftest import record

D_MODEL, BATCH, LENGTH = 256, 16, 512
#: the fused mechanism's step time over torch.nn.LSTM's, at most
TARGET_RATIO = 1.5


def seconds_per_step(module, x, run) -> float:
    for _ in range(2):
        run(module, x).sum().backward()
    start = time.perf_counter()
    for _ in range(5):
        run(module, x).sum().backward()
    return (time.perf_counter() - start) / 5


def test_fused_lstm_mechanism_is_close_to_torch_lstm(benchmark):
    model = harness.build_model("lstm_gated", vocab_size=8, d_model=D_MODEL, n_layers=1, n_heads=4)
    mixer = model.blocks[0].mixer
    reference = nn.LSTM(D_MODEL, mixer.cell.hidden_size, batch_first=True)
    x = torch.randn(BATCH, LENGTH, D_MODEL, requires_grad=True)
    state = mixer.init_state(BATCH, x.device, x.dtype)
    mechanism_s = seconds_per_step(mixer, x, lambda m, x: m(x, state)[0])
    reference_s = benchmark.pedantic(seconds_per_step, args=(reference, x, lambda m, x: m(x)[0]), rounds=1)
    ratio = mechanism_s / reference_s
    benchmark.extra_info["ratio"] = ratio
    record("lstm_gated against torch.nn.LSTM",
           f"d_model {D_MODEL}, cell width {mixer.cell.hidden_size} (parameter-matched), batch {BATCH}, {LENGTH} "
           f"tokens, forward and backward, mean of 5 after 2 warm-ups. Target: at most {TARGET_RATIO}x.",
           {"mechanism s/step": round(mechanism_s, 3), "torch.nn.LSTM s/step": round(reference_s, 3),
            "ratio": round(ratio, 2)})
    assert ratio <= TARGET_RATIO, f"lstm_gated takes {ratio:.2f}x torch.nn.LSTM's time; target at most {TARGET_RATIO}x"
