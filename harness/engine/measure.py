"""Cost measurements of one example: peak memory, prefill throughput, decode latency, FLOPs.

Every figure is measured, not computed from a formula, and its method is named in the record:

- peak memory: the peak of tensor memory allocated while the model reads one example, above
  what was allocated when the region started (so the weights are not counted). On CUDA from the
  caching allocator's peak statistics (reset before, synchronised after); on CPU from the
  allocation records of torch's profiler (``profile_memory=True``), summed in time order.
- prefill: tokens/s reading the context up to the first answer position, after one warm-up: the
  median, minimum and maximum of ``PREFILL_REPEATS`` passes (a shared machine's noise shows).
- decode: seconds per answer token fed one at a time after the prefill (p50 and p95).
- FLOPs per token: torch's FlopCounterMode over the prefill (matrix multiplies and attention).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from harness.layers.model import StreamingLM
from harness.taskkit.task import Example

MEMORY_METHOD = {
    "cuda": "CUDA caching allocator peak (max_memory_allocated) above the region's start",
    "cpu": "torch.profiler allocation records (profile_memory) peak above the region's start",
}
#: timed prefill passes per measured example
PREFILL_REPEATS = 5
FLOP_METHOD = "torch.utils.flop_counter.FlopCounterMode over the prefill (CPU flash attention counted too)"


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode, taught the CPU flash-attention kernels that it does not count.

    Without them, scaled_dot_product_attention on CPU counts 0 FLOPs while attention written as
    matrix multiplies (Transformer-XL's) is counted. Attention is counted as torch counts it on
    CUDA: the full Q K^T and P V products, whatever the mask skips.
    """
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
    })


class MemoryBudgetExceeded(RuntimeError):
    """A measured peak above ``eval.max_memory_gb``: recorded as out of memory."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and for the CPU allocator's failure to allocate."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryBudgetExceeded)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Bytes of tensor memory allocated at the peak of ``fn()``, above the start of the call."""
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return _allocation_peak(prof)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide the two lines torch's native profiler prints to stderr at every start and stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _allocation_peak(prof: profile) -> int:
    """Peak of the running sum of the profiler's CPU allocation records (frees are negative), in time order.

    The raw records, not torch.profiler's memory-timeline analysis: the same peak (checked on
    every mechanism), 10 to 30 times faster on inputs of thousands of small operations.
    """
    records = [event for event in prof.profiler.kineto_results.events()
               if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU]
    current = peak = 0
    for event in sorted(records, key=lambda event: event.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def split_prompt(example: Example) -> tuple[np.ndarray, np.ndarray]:
    """The context up to the first answer position, and the answer tokens fed after it."""
    positions = example.answer_positions
    first = int(positions[0]) + 1 if len(positions) else len(example.tokens)
    return example.tokens[:first], example.tokens[first : first + len(positions)]


@torch.no_grad()
def measure_example(
    model: StreamingLM, example: Example, segment_len: int, device: torch.device, max_memory_bytes: int | None
) -> dict[str, Any]:
    """Cost figures of reading one example (batch 1); raises MemoryBudgetExceeded over budget."""
    prompt, answer = split_prompt(example)
    prompt_tokens = torch.from_numpy(prompt).to(device).unsqueeze(0)  # 1, T
    answer_tokens = torch.from_numpy(answer).to(device).unsqueeze(0)  # 1, A

    def prefill():  # keeps each segment's last logits only (a copy, not a view that pins the segment's)
        return model.stream(prompt_tokens, model.init_state(1), segment_len, lambda logits: logits[:, -1:].clone())

    peak = peak_memory(prefill, device)
    if max_memory_bytes is not None and peak > max_memory_bytes:
        raise MemoryBudgetExceeded(f"peak {peak} bytes exceeds eval.max_memory_gb ({max_memory_bytes} bytes)")
    with flop_counter() as counter:
        prefill()
    prefill()  # warm-up
    rates = []
    for _ in range(PREFILL_REPEATS):
        synchronize(device)
        start = time.perf_counter()
        _, state = prefill()
        synchronize(device)
        rates.append(prompt_tokens.shape[1] / (time.perf_counter() - start))
    latencies = []
    for position in range(answer_tokens.shape[1]):
        start = time.perf_counter()
        _, state = model(answer_tokens[:, position : position + 1], state)
        synchronize(device)
        latencies.append(time.perf_counter() - start)
    return {
        "peak_memory_bytes": peak,
        "prefill_tokens_per_s": float(np.median(rates)),
        "prefill_tokens_per_s_min": min(rates),
        "prefill_tokens_per_s_max": max(rates),
        "decode_latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "decode_latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        "flops_per_token": counter.get_total_flops() / prompt_tokens.shape[1],
    }
