"""Streaming inference time and peak memory against context length, with fitted scaling exponents.

Every mechanism reads contexts of 1k to 64k tokens (batch 1, no gradients) in segments of 512 at
the quick experiment's model size; time is the fastest of three passes (in rounds over the lengths) after a warm-up, peak memory is measured as in
the results (torch.profiler's allocation records on CPU). The exponent is the slope of log time
(or log peak memory) against log length over 4k..64k. Targets: bounded mechanisms linear in time
(exponent <= 1.1) and constant in memory (peak at 64k within 1.2x of the peak at 4k); full
attention's quadratic time and linear memory are shown, not hidden.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy import stats

import harness
from conftest import record
from harness.engine.measure import peak_memory

SHAPE = {"vocab_size": 32, "d_model": 64, "n_layers": 2, "n_heads": 4}
SEGMENT = 512
LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
FITTED = [length for length in LENGTHS if length >= 4096]
#: targets of a bounded mechanism: time exponent at most, and peak memory at 64k over 4k at most
TARGET_TIME_EXPONENT, TARGET_MEMORY_RATIO = 1.1, 1.2


def read(model, tokens):
    return model.stream(tokens, model.init_state(1), SEGMENT, lambda logits: logits[:, -1:].clone())


@pytest.mark.parametrize("mechanism", harness.mechanisms())
def test_streaming_scaling(benchmark, mechanism):
    torch.manual_seed(0)
    model = harness.build_model(mechanism, **SHAPE).eval()
    inputs = {length: torch.randint(0, 32, (1, length)) for length in LENGTHS}
    timings = {length: [] for length in LENGTHS}
    with torch.no_grad():
        read(model, inputs[1024])  # warm-up
        # The fastest of three passes, taken in rounds over all lengths: a shared machine's noise only
        # ever adds time, and a burst of load then slows one pass of many lengths, not every pass of one.
        for _ in range(3):
            for length, tokens in inputs.items():
                start = time.perf_counter()
                read(model, tokens)
                timings[length].append(time.perf_counter() - start)
        peaks = [peak_memory(lambda: read(model, tokens), torch.device("cpu")) for tokens in inputs.values()]
    seconds = [min(timings[length]) for length in LENGTHS]
    benchmark.pedantic(read, args=(model, torch.randint(0, 32, (1, 4096))), rounds=1)
    fitted = [LENGTHS.index(length) for length in FITTED]
    time_exponent = stats.linregress(np.log(FITTED), np.log(np.array(seconds)[fitted])).slope
    memory_exponent = stats.linregress(np.log(FITTED), np.log(np.array(peaks)[fitted])).slope
    ratio = peaks[LENGTHS.index(65536)] / peaks[LENGTHS.index(4096)]
    benchmark.extra_info.update(time_exponent=time_exponent, memory_ratio=ratio)
    record("Streaming against context length",
           f"d_model {SHAPE['d_model']}, {SHAPE['n_layers']} layers, batch 1, segments of {SEGMENT}, no gradients. "
           f"Exponents: slope of log-log fits over 4k..64k. Targets for bounded mechanisms: time exponent <= "
           f"{TARGET_TIME_EXPONENT}, peak memory at 64k within {TARGET_MEMORY_RATIO}x of 4k.",
           {"mechanism": mechanism, "bounded": model.bounded,
            **{f"s @{length // 1024}k": round(s, 2) for length, s in zip(LENGTHS, seconds)},
            "tokens/s @64k": round(65536 / seconds[-1]), "time exponent": round(time_exponent, 2),
            "peak MB @4k": round(peaks[LENGTHS.index(4096)] / 2**20, 2), "peak MB @64k": round(peaks[-1] / 2**20, 2),
            "memory 64k/4k": round(ratio, 2), "memory exponent": round(memory_exponent, 2)})
    if model.bounded:
        assert time_exponent <= TARGET_TIME_EXPONENT, f"{mechanism}: time grows as length^{time_exponent:.2f}"
        assert ratio <= TARGET_MEMORY_RATIO, f"{mechanism}: peak memory at 64k is {ratio:.2f}x the peak at 4k"
