"""The CLI on a tiny config: a run lands in the store, reruns skip it, the report shows it."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import harness
import harness.engine.run

from conftest import run_cli, tiny_overrides
from harness.store.records import CONFIG_FILE, OUTCOMES_FILE, RESULT_FILE


def stored_runs(tmp_path):
    return sorted((tmp_path / "results" / "quick").glob(f"*/{RESULT_FILE}"))


def test_one_run_writes_a_record_and_a_report_then_skips_when_rerun(tmp_path):
    first = run_cli(*tiny_overrides(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "(sliding_window on passkey seed=0): ok" in first.stdout
    [result_path] = stored_runs(tmp_path)
    record = json.loads(result_path.read_text())
    assert record["status"] == "ok" and record["mechanism"] == "sliding_window" and record["task"] == "passkey"
    assert record["parameters"] > 0 and record["training"]["steps"] == 3
    assert record["provenance"]["torch"] and "time" in record["provenance"]
    assert record["measurement"]["cpu_allocator"].startswith("glibc")  # this machine's C library
    cells = pd.DataFrame([{**cell["knobs"], **cell} for cell in record["cells"]])
    assert sorted(set(zip(cells.context_len, cells.depth))) == [(48, 0.0), (48, 1.0), (64, 0.0), (64, 1.0)]
    assert set(cells.metric) == {"exact_match", "digit_accuracy"}
    assert (cells.n == 4).all() and ((cells.ci_low <= cells.value) & (cells.value <= cells.ci_high)).all()
    assert (cells.state_bytes == 2 * 16 * 7 * 4).all()  # k and v, one layer, width 16, window - 1, fp32
    outcomes = pd.read_csv(result_path.parent / OUTCOMES_FILE)
    assert len(outcomes) == 4 * 4 * 2
    assert "window: 8" in (result_path.parent / CONFIG_FILE).read_text()
    report = (tmp_path / "reports" / "quick" / "leaderboard.md").read_text()
    assert "## passkey" in report and "| sliding_window" in report and "exact_match @64" in report

    again = run_cli(*tiny_overrides(tmp_path), cwd=tmp_path)
    assert "already done (ok); skipped" in again.stdout
    assert stored_runs(tmp_path) == [result_path]
    assert json.loads(result_path.read_text())["provenance"]["time"] == record["provenance"]["time"]

    forced = run_cli(*tiny_overrides(tmp_path), "force=true", cwd=tmp_path)
    assert ": ok" in forced.stdout and stored_runs(tmp_path) == [result_path]


def test_sweep_over_mechanisms_and_seeds_and_report_regeneration(tmp_path):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("mechanism")]
    result = run_cli("-m", "mechanism=full_attention,sliding_window", "seed=0,1", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(path.read_text()) for path in stored_runs(tmp_path)]
    assert sorted((r["mechanism"], r["seed"]) for r in records) == [
        ("full_attention", 0), ("full_attention", 1), ("sliding_window", 0), ("sliding_window", 1)]
    assert all(r["status"] == "ok" for r in records)

    report = tmp_path / "reports" / "quick" / "leaderboard.md"
    report.unlink()
    regenerated = run_cli("--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
                          cwd=tmp_path, script="memarena-report")
    assert regenerated.returncode == 0, regenerated.stderr
    text = report.read_text()
    assert "| full_attention" in text and "| sliding_window" in text and "from 4 stored run(s)" in text


MECHANISMS = harness.mechanisms()


#: the matrix products of linear layers (projections, MLPs, output head): most of a step's FLOPs
LINEAR_PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}
#: mechanisms whose recurrence keeps some 2-D products in fp32 under autocast on purpose: mamba's SSD
#: (harness/layers/ssd.py: its backward's cumulative sums as products with a triangle of ones, in fp32 as mamba_ssm keeps
#: its decays and state); they show up among the products counted here
FP32_SCAN_PRODUCTS = {"mamba"}


class LinearProductDtypes(TorchDispatchMode):
    """Counts the dtypes of the inputs of every linear layer's product, as the kernels receive them.

    A dispatch mode sits below autocast: it sees the operands after autocast has cast them, in the
    forward and the backward pass alike. (Some mechanisms keep their recurrent state's products,
    bmm, in fp32 on purpose; they are not counted.)"""

    def __init__(self):
        super().__init__()
        self.dtypes: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in LINEAR_PRODUCTS:
            self.dtypes.update(arg.dtype for arg in args if isinstance(arg, torch.Tensor))
        return func(*args, **(kwargs or {}))


def observing_dtypes(function, dtypes: Counter):
    def observed(*args, **kwargs):
        with LinearProductDtypes() as mode:
            result = function(*args, **kwargs)
        dtypes.update(mode.dtypes)
        return result

    return observed


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_bf16_autocast_run_on_cpu_multiplies_in_bf16(tmp_path, monkeypatch, mechanism):
    from conftest import compose_config

    training, evaluation = Counter(), Counter()
    monkeypatch.setattr(harness.engine.run, "train", observing_dtypes(harness.engine.run.train, training))
    monkeypatch.setattr(harness.engine.run, "evaluate", observing_dtypes(harness.engine.run.evaluate, evaluation))
    record = harness.engine.run.run(compose_config([*tiny_overrides(tmp_path, mechanism), "precision=bf16", "device=cpu"]))
    assert record["status"] == "ok", record.get("error")
    assert record["measurement"]["precision"] == "bf16"
    if mechanism in FP32_SCAN_PRODUCTS:  # the linear layers in bf16, the scan's backward's few 2-D products in fp32
        assert set(training) == {torch.bfloat16, torch.float32} and set(evaluation) == {torch.bfloat16}, (
            training, evaluation)
        assert training[torch.float32] < training[torch.bfloat16] / 4, training
    else:
        assert set(training) == {torch.bfloat16} and set(evaluation) == {torch.bfloat16}, (training, evaluation)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_gpu_run_in_bf16(tmp_path, mechanism):
    from conftest import compose_config
    from harness.engine.run import run

    record = run(compose_config([*tiny_overrides(tmp_path, mechanism), "precision=bf16", "device=cuda",
                                 f"compile={mechanism in ('full_attention', 'sliding_window')}"]))
    assert record["status"] == "ok", record.get("error")
    assert record["measurement"]["peak_memory"].startswith("CUDA")
    assert all(cell["peak_memory_bytes"] > 0 for cell in record["cells"])
    assert record["provenance"]["device"] == torch.cuda.get_device_name()


def test_compile_option_compiles_every_block(tmp_path):
    from conftest import compose_config
    from harness.engine.plan import prepare

    plan = prepare(compose_config([*tiny_overrides(tmp_path), "compile=true"]))
    assert all(block._compiled_call_impl is not None for block in plan.model.blocks)
    assert prepare(compose_config(tiny_overrides(tmp_path))).model.blocks[0]._compiled_call_impl is None
