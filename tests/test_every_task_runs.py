"""Every task runs end to end (a tiny model, a few steps), as `memarena task=<name>`, each with three
mechanisms and each mechanism with at least two tasks: a covering of the task x mechanism matrix
(mechanisms see only tokens, so the whole matrix repeats the same paths at three times the cost)."""

from __future__ import annotations

import itertools
import json
import math

import pandas as pd
import pytest

import harness
from conftest import compose_config, run_cli, tiny_overrides
from harness.registry import TASKS
from harness.engine.run import run
from harness.store.records import OUTCOMES_FILE, RESULT_FILE


def covering(tasks: list[str], mechanisms: list[str], per_mechanism: int = 2) -> list[tuple[str, str]]:
    """(task, mechanism) pairs: each task with the next few mechanisms of a cycle through them, enough
    that every mechanism meets ``per_mechanism`` tasks (or all of them)."""
    per_task = min(len(mechanisms), max(2, math.ceil(per_mechanism * len(mechanisms) / len(tasks))))
    cycle = itertools.cycle(mechanisms)
    return [(task, next(cycle)) for task in tasks for _ in range(per_task)]


PAIRS = covering([name for name in harness.tasks() if name != "passkey"], harness.mechanisms())


def test_the_covering_meets_every_task_and_every_mechanism_twice():
    tasks = [name for name in harness.tasks() if name != "passkey"]
    assert {task for task, _ in PAIRS} == set(tasks)
    for mechanism in harness.mechanisms():
        assert len({task for task, other in PAIRS if other == mechanism}) >= min(2, len(tasks))


@pytest.mark.parametrize("task, mechanism", PAIRS)
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
