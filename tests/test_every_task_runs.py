"""Every task runs end to end with every mechanism (a tiny model, a few steps), as `memarena task=<name>`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import harness
from conftest import compose_config, run_cli, tiny_overrides
from harness.registry import TASKS
from harness.run import run
from harness.store import OUTCOMES_FILE, RESULT_FILE


@pytest.mark.parametrize("mechanism", harness.mechanisms())
@pytest.mark.parametrize("task", [name for name in harness.tasks() if name != "passkey"])
def test_task_runs_with_mechanism(task, mechanism, tmp_path):
    record = run(compose_config([*tiny_overrides(tmp_path, mechanism, task), "hydra.mode=RUN"]))
    assert record["status"] == "ok", record.get("error")
    assert record["task"] == task and record["primary_metric"] == next(iter(TASKS.get(task).metrics))
    metrics = {cell["metric"] for cell in record["cells"]}
    assert metrics == set(TASKS.get(task).metrics)
    assert all(cell["status"] == "ok" and 0.0 <= cell["value"] <= 1.0 for cell in record["cells"])


@pytest.mark.parametrize("task", ["qa", "mqar"])
def test_cli_runs_a_task_and_records_per_example_facts(task, tmp_path):
    result = run_cli(*tiny_overrides(tmp_path, "full_attention", task), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"(full_attention on {task} seed=0): ok" in result.stdout
    [path] = (tmp_path / "results" / "quick").glob(f"*/{RESULT_FILE}")
    assert json.loads(path.read_text())["task"] == task
    outcomes = pd.read_csv(path.parent / OUTCOMES_FILE)
    if task == "qa":  # the length of every example before truncation is recorded with its outcome
        assert {"document_tokens", "document_dropped"} <= set(outcomes.columns)
        assert (outcomes.document_tokens > 0).all()
    else:
        assert set(outcomes.num_kv_pairs) == {4}
    assert f"## {task}" in (tmp_path / "reports" / "quick" / "leaderboard.md").read_text()
