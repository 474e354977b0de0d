"""The pretrained family through the CLI: the README's TINY_MODEL_PATH command end to end, checks before any
work, skipping a stored run, and the report keeping pretrained rows apart from trained ones."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from conftest import REPO, compose_config  # noqa: E402
from harness.engine.checks import ConfigError  # noqa: E402
from harness.pretrained.run import plan_pretrained, run_pretrained_job  # noqa: E402
from harness.pretrained.tiny import main as save_tiny  # noqa: E402
from harness.report import build_leaderboard  # noqa: E402
from harness.store.records import load_experiment, read_result  # noqa: E402

README = (REPO / "README.md").read_text()
PER_POSITION = 2 * 2 * 2 * 16 * 4  # the tiny model: layers x (keys, values) x key-value heads x head dimension x fp32


def readme_line(prefix: str) -> list[str]:
    """The README's one line that starts with ``prefix`` and names TINY_MODEL_PATH, as arguments."""
    lines = [line.strip().strip("`") for line in README.splitlines() if "TINY_MODEL_PATH" in line]
    found = [match for line in lines for match in re.findall(rf"{re.escape(prefix)}[^`]*", line)]
    assert len(found) == 1, f"the README should have one {prefix!r} line with TINY_MODEL_PATH, found {found}"
    return shlex.split(found[0])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny") / "model"
    arguments = readme_line("python -m harness.pretrained.tiny")
    save_tiny([str(directory) if argument == "TINY_MODEL_PATH" else argument for argument in arguments[3:]])
    return directory


def test_pretrained_readme_tiny_model_command_writes_records_and_report(model_dir, tmp_path):
    command = readme_line("memarena experiment=")
    command = [sys.executable, "-m", "harness.cli",
               *[argument.replace("TINY_MODEL_PATH", str(model_dir)) for argument in command[1:]]]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "10 run(s): 10 ok" in completed.stdout
    records = load_experiment(tmp_path / "results", "pretrained_ruler")
    assert len(records) == 10 and {r["task"] for r in records} == {"niah", "variable_tracking"}
    assert {r["mechanism"] for r in records} == {"pretrained/full", "pretrained/sliding_window",
                                                 "pretrained/transformer_xl", "pretrained/compressive"}
    for record in records:
        assert record["family"] == "pretrained" and record["training"] is None and record["status"] == "ok"
        assert record["provenance"]["data"] == {}  # RULER's noise haystack reads no corpus (an essay one names it)
        for cell in record["cells"]:
            assert cell["n"] == 2 and cell["prompt_tokens_max"] <= 512 and cell["peak_memory_bytes"] > 0
            if record["policy"] == "full":
                assert cell["state_bytes"] >= cell["prompt_tokens_mean"] * PER_POSITION
            else:  # every bounded policy keeps the budget's 32 positions between passes, and a segment of 64
                assert record["kv_positions"] == 32 and cell["state_bytes"] <= (32 + 64) * PER_POSITION
    report = (tmp_path / "reports" / "pretrained_ruler" / "leaderboard.md").read_text()
    assert "## niah (pretrained models)" in report and "## variable_tracking (pretrained models)" in report
    assert "pretrained/sliding_window window=29 sinks=4" in report  # the two sliding windows are two rows
    assert "pretrained/sliding_window window=33 sinks=0" in report


def _overrides(model_dir: Path, tmp_path: Path, *extra: str, task: str = "ruler/niah_single_1",
               length: int = 256) -> list[str]:
    return ["model=hf", f"model.name={model_dir}", f"task={task}", f"eval.grid.context_len=[{length}]",
            "eval.examples_per_cell=1", "model.segment_len=64", "model.max_new_tokens=2", "progress=false",
            f"results_dir={tmp_path / 'results'}", f"reports_dir={tmp_path / 'reports'}", "cache_dir=null", *extra]


@pytest.mark.parametrize("extra, message", [
    ([], None),
    (["policy=sliding_window", "policy.window=0"], "window must be a positive integer"),
    (["policy=kvpress", "policy.budget=8"], "kvpress"),
    (["policy=transformer_xl", "policy.budget=-1"], "budget must be a positive integer"),
    (["task.num_keys=0"], "num_keys"),
    (["model.dtype=float8"], "model.dtype"),
    (["model.segment_len=0"], "model.segment_len=0"),
    (["eval.grid.context_len=[16]"], "context_len=16"),
    (["eval.grid.context_len=[]"], "eval.grid.context_len=[]"),
    (["mode=eval"], "mode='eval'"),
    (["name=a/b"], "name='a/b'"),
])
def test_pretrained_config_is_checked_before_any_work(model_dir, tmp_path, extra, message):
    cfg = compose_config(_overrides(model_dir, tmp_path, *extra))
    if message is None:
        assert plan_pretrained(cfg).run.policy == "full"  # no policy: the reference
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_pretrained(cfg)
    assert not (tmp_path / "results").exists()


def test_pretrained_config_needs_a_model_name_and_trained_runs_refuse_a_policy(tmp_path):
    cfg = compose_config(["model=hf", f"results_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="model.name: required"):
        plan_pretrained(cfg)
    with pytest.raises(ConfigError, match="has no text form"):
        plan_pretrained(compose_config(["model=hf", "model.name=x", "task=passkey", f"results_dir={tmp_path}"]))
    from harness.engine.plan import prepare

    with pytest.raises(ConfigError, match="memory policies apply to pretrained models"):
        prepare(compose_config(["policy=sinks", f"results_dir={tmp_path}"]))
    with pytest.raises(Exception, match="policy.windw"):
        compose_config(["model=hf", "model.name=x", "policy=sinks", "policy.windw=3"])


def test_pretrained_budget_sizes_each_policy_and_names_the_run(model_dir, tmp_path):
    budgeted = plan_pretrained(compose_config(_overrides(model_dir, tmp_path, "policy=compressive", "policy.budget=35")))
    assert budgeted.run.policy_options == {"mem_len": 16, "cmem_len": 16, "rate": 4}  # 16 + 16 + 4 - 1 = 35
    explicit = plan_pretrained(compose_config(_overrides(
        model_dir, tmp_path, "policy=compressive", "policy.mem_len=16", "policy.cmem_len=16")))
    assert explicit.run_id == budgeted.run_id  # the same computation, the same run


def test_pretrained_job_stores_once_and_skips_a_stored_run(model_dir, tmp_path, capsys):
    cfg = compose_config(_overrides(model_dir, tmp_path, "policy=sinks", "policy.budget=16"))
    record = run_pretrained_job(cfg)
    run_dir = tmp_path / "results" / record["experiment"] / record["run_id"]
    assert read_result(run_dir)["status"] == "ok" and (run_dir / "outcomes.csv").is_file()
    assert "name: sliding_window" in (run_dir / "config.yaml").read_text()
    again = run_pretrained_job(cfg)
    assert again == {"status": "ok", "skipped": True, "run_id": record["run_id"]}
    assert "already done" in capsys.readouterr().out


def test_pretrained_rows_form_their_own_section_beside_trained_ones(model_dir, tmp_path):
    from harness.engine.run import run

    from conftest import tiny_overrides

    run(compose_config([*tiny_overrides(tmp_path, "sliding_window", "niah"), "eval.grid.context_len=[64]"]))
    run_pretrained_job(compose_config(_overrides(model_dir, tmp_path, task="niah", length=256)))
    board = build_leaderboard(tmp_path / "results", "quick")
    assert board.tasks == ["niah", "niah (pretrained models)"]
    assert list(board.ranking("niah").index) == ["sliding_window"]
    assert list(board.ranking("niah (pretrained models)").index) == ["pretrained/full"]
    assert board.tests("niah").empty  # never paired across the families
    from harness.report.display import cost_notes, pretrained_notes

    pretrained, trained = (" ".join(cost_notes(board, task)) for task in ("niah (pretrained models)", "niah"))
    assert "Final loss" in trained and "Final loss" not in pretrained
    assert "Nothing here is trained" in pretrained and "the KV cache's bytes" in pretrained
    assert "context_len counts the model's tokens" in pretrained_notes(board, "niah (pretrained models)")[0]
    assert pretrained_notes(board, "niah") == []
