"""The measurements themselves: peak memory, state bytes by formula, bounded memory, OOM as a result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness
import harness.engine.evaluate
from harness.config import EvalConfig
from harness.engine.evaluate import evaluate
from harness.engine.measure import MemoryBudgetExceeded, measure_example, peak_memory
from harness.taskkit.task import IGNORE, Example

CPU = torch.device("cpu")


def test_a_known_allocation_shows_in_the_peak_within_ten_percent():
    def region():
        big = torch.ones(2_000_000, dtype=torch.float32)  # 8 MB
        small = torch.ones(1_000, dtype=torch.float64)
        return (big.sum() + small.sum()).item()

    assert peak_memory(region, CPU) == pytest.approx(8_008_000, rel=0.1)


def test_peak_follows_the_live_maximum_not_the_sum_of_allocations():
    def region():
        for _ in range(5):
            block = torch.ones(1_000_000, dtype=torch.float32)  # 4 MB, freed each time
            del block

    assert peak_memory(region, CPU) == pytest.approx(4_000_000, rel=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_of_a_known_allocation():
    device = torch.device("cuda")

    def region():
        torch.ones(4_000_000, dtype=torch.float32, device=device).sum().item()

    assert peak_memory(region, device) == pytest.approx(16_000_000, rel=0.1)


D, L, H = 16, 2, 2


def formula(name: str, tokens: int, element: int) -> int:
    """Hand-written state sizes per sequence, from each mechanism's YAML."""
    return {
        "full_attention": 2 * L * D * tokens * element,
        "sliding_window": 2 * L * D * (6 - 1 + 2) * element,  # window 6, sinks 2
        "lstm_gated": 2 * L * 10 * element,  # hidden_size 10
        "transformer_xl": L * 5 * D * element,  # mem_len 5
        "compressive": L * (4 + 3) * D * element,  # mem_len 4, cmem_len 3 (rate 2; 40 tokens: no remainder)
        "linear_attention": L * (D * (D // H) + (4 - 1) * 3 * D) * element,  # delta: S, last 3 inputs of q, k, v
        "mamba": L * (D * 4 + (4 - 1) * (D + 2 * 4)) * element,  # expand 1, d_state 4, conv_width 4
        "infini_attention": L * (D * (D // H + 1) + 3 * D * (128 - 1)) * element,  # block 128
        "rmt": L * (3 * D + 3 * D * (128 - 1)) * element,  # memory_slots 3, block 128
    }[name]


OPTIONS = {
    "sliding_window": {"window": 6, "sinks": 2}, "lstm_gated": {"hidden_size": 10},
    "transformer_xl": {"mem_len": 5}, "compressive": {"mem_len": 4, "cmem_len": 3, "rate": 2},
    "linear_attention": {"conv_width": 4}, "mamba": {"d_state": 4, "ssm_head_dim": 8},
    # blocks of 128: the peak-memory test reads 16k tokens under the profiler, block by block
    "infini_attention": {"block": 128}, "rmt": {"memory_slots": 3, "block": 128},
}


@pytest.mark.parametrize("dtype, element", [(torch.float32, 4), (torch.float64, 8)])
@pytest.mark.parametrize("name", sorted(OPTIONS) + ["full_attention"])
def test_state_bytes_match_the_formulas(name, dtype, element):
    model = harness.build_model(name, vocab_size=11, d_model=D, n_layers=L, n_heads=H, **OPTIONS.get(name, {})).to(dtype)
    with torch.no_grad():
        _, state = model.stream(torch.randint(0, 11, (1, 40)), model.init_state(1), 8)
    assert model.state_bytes(state) == formula(name, 40, element)


def passkey_like(length: int) -> Example:
    tokens = np.random.default_rng(0).integers(0, 11, length)
    labels = np.full(length, IGNORE)
    labels[-4:-1] = tokens[-3:]
    return Example(tokens, labels, {"context_len": length})


@pytest.mark.parametrize("name", [n for n in harness.mechanisms() if n != "full_attention"])
def test_bounded_mechanisms_peak_memory_does_not_grow_with_the_context(name):
    model = harness.build_model(name, vocab_size=11, d_model=D, n_layers=L, n_heads=H, **OPTIONS.get(name, {})).eval()
    short = measure_example(model, passkey_like(1024), 256, CPU, None)["peak_memory_bytes"]
    long = measure_example(model, passkey_like(4096), 256, CPU, None)["peak_memory_bytes"]
    assert long <= 1.2 * short  # full attention's grows over 3x over the same lengths (the next test)


def test_full_attention_peak_memory_grows_with_the_context():
    model = harness.build_model("full_attention", vocab_size=11, d_model=D, n_layers=L, n_heads=H).eval()
    short = measure_example(model, passkey_like(1024), 256, CPU, None)["peak_memory_bytes"]
    long = measure_example(model, passkey_like(4096), 256, CPU, None)["peak_memory_bytes"]
    assert long > 3 * short


def test_measure_example_reports_every_figure():
    model = harness.build_model("sliding_window", vocab_size=11, d_model=D, n_layers=L, n_heads=H, window=8).eval()
    figures = measure_example(model, passkey_like(64), 16, CPU, None)
    assert figures["peak_memory_bytes"] > 0
    assert 0 < figures["prefill_tokens_per_s_min"] <= figures["prefill_tokens_per_s"] <= figures["prefill_tokens_per_s_max"]
    assert 0 < figures["decode_latency_p50_s"] <= figures["decode_latency_p95_s"]
    weights = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embed" not in name)
    assert weights * 2 <= figures["flops_per_token"] <= weights * 2 * 1.5  # multiply-adds, plus attention


def test_a_budget_below_the_peak_raises():
    model = harness.build_model("full_attention", vocab_size=11, d_model=D, n_layers=L, n_heads=H).eval()
    with pytest.raises(MemoryBudgetExceeded, match="max_memory_gb"):
        measure_example(model, passkey_like(64), 16, CPU, max_memory_bytes=10)


@pytest.fixture
def task():
    return harness.build_task("passkey", n_digits=3)


def test_an_out_of_memory_cell_is_recorded_and_the_others_go_on(task, monkeypatch):
    original = harness.engine.evaluate.measure_example

    def fails_at_64(model, example, *args):
        if len(example.tokens) == 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(model, example, *args)

    monkeypatch.setattr(harness.engine.evaluate, "measure_example", fails_at_64)
    model = harness.build_model("full_attention", vocab_size=task.vocab_size, d_model=D, n_layers=1, n_heads=H)
    config = EvalConfig(grid={"context_len": [48, 64], "depth": [0.5]}, examples_per_cell=3, batch_size=3)
    cells, outcomes = evaluate(model, task, config, 16, CPU, progress=False)
    status = {(c["knobs"]["context_len"], c["metric"]): c["status"] for c in cells}
    assert status == {(48, "exact_match"): "ok", (48, "digit_accuracy"): "ok",
                      (64, "exact_match"): "oom", (64, "digit_accuracy"): "oom"}
    assert all(c["value"] is None for c in cells if c["status"] == "oom")
    assert {row["context_len"] for row in outcomes} == {48}


def test_other_errors_in_a_cell_are_not_mistaken_for_out_of_memory(task, monkeypatch):
    def broken(*args):
        raise ValueError("a bug")

    monkeypatch.setattr(harness.engine.evaluate, "measure_example", broken)
    model = harness.build_model("full_attention", vocab_size=task.vocab_size, d_model=D, n_layers=1, n_heads=H)
    with pytest.raises(ValueError, match="a bug"):
        evaluate(model, task, EvalConfig(grid={"context_len": [48], "depth": [0.5]}, examples_per_cell=1), 16, CPU, False)


def test_the_memory_budget_is_enforced_on_cpu(task):
    model = harness.build_model("full_attention", vocab_size=task.vocab_size, d_model=D, n_layers=1, n_heads=H)
    config = EvalConfig(grid={"context_len": [48], "depth": [0.5]}, examples_per_cell=2, max_memory_gb=1e-9)
    cells, outcomes = evaluate(model, task, config, 16, CPU, progress=False)
    assert {c["status"] for c in cells} == {"oom"} and not outcomes


#: bytes of one step of each mechanism's memory knob at D=16, L=2, fp32 (compressive: 3 slots,
#: two uncompressed and one compressed, from its 2:1 split)
KNOB_STEP = {"sliding_window": 2 * L * D * 4, "lstm_gated": 2 * L * 4, "transformer_xl": L * D * 4,
             "compressive": 3 * L * D * 4}


@pytest.mark.parametrize("budget", [1000, 4096, 20000])
@pytest.mark.parametrize("name", sorted(KNOB_STEP))
def test_state_budget_options_fill_the_budget(name, budget):
    from harness.registry import MECHANISMS

    try:
        options = MECHANISMS.get(name).options_for_state_budget(budget, D, L, element_bytes=4)
    except ValueError as error:  # the cell width is capped at 4 x d_model = 64, i.e. 1 KiB here
        assert name == "lstm_gated" and budget > 2 * L * 4 * D * 4 and "hidden_size" in str(error)
        return
    model = harness.build_model(name, vocab_size=11, d_model=D, n_layers=L, n_heads=H, **options)
    with torch.no_grad():
        _, state = model.stream(torch.randint(0, 11, (1, 3000)), model.init_state(1), 100)
    assert budget - KNOB_STEP[name] < model.state_bytes(state) <= budget


def test_unbounded_mechanisms_have_no_budget_knob():
    from harness.registry import MECHANISMS

    with pytest.raises(ValueError, match="no knob"):
        MECHANISMS.get("full_attention").options_for_state_budget(4096, D, L, element_bytes=4)


def test_flop_counter_counts_cpu_attention_as_its_matrix_multiplies():
    from torch.nn import functional as F

    from harness.engine.measure import flop_counter

    q, k, v = torch.randn(3, 2, 4, 32, 8).unbind(0)
    with flop_counter() as fused:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with flop_counter() as explicit:
        (q @ k.transpose(-1, -2)).softmax(-1) @ v
    assert fused.get_total_flops() == explicit.get_total_flops() == 2 * (2 * 2 * 4 * 32 * 32 * 8)
