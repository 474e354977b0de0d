"""Sweeps as subprocesses: launchers, failures that do not stop the sweep, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hydra import compose, initialize_config_dir

from conftest import REPO, run_cli, tiny_overrides
from harness.config import CONF_DIR, register_configs
from harness.store.records import RESULT_FILE


def sweep_overrides(tmp_path):
    return [o for o in tiny_overrides(tmp_path) if not o.startswith("mechanism")] + ["mechanism=sliding_window"]


def records(tmp_path):
    return {path.parent.name: json.loads(path.read_text())
            for path in (tmp_path / "results" / "quick").glob(f"*/{RESULT_FILE}")}


@pytest.mark.parametrize("launcher", ["local_parallel", "submitit_local"])
def test_two_job_sweep_with_a_launcher(tmp_path, launcher):
    result = run_cli("-m", f"hydra/launcher={launcher}", "seed=0,1", *sweep_overrides(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stored = records(tmp_path)
    assert sorted(r["seed"] for r in stored.values()) == [0, 1]
    assert all(r["status"] == "ok" for r in stored.values())
    assert "sweep finished: 2 run(s): 2 ok" in result.stdout


FAIL_SEED_1 = """
import harness.engine.train
original = harness.engine.train.train
def train(model, task, config, segment_len, seed, *args, **kwargs):
    if seed == 1:
        raise RuntimeError("injected failure for seed 1")
    return original(model, task, config, segment_len, seed, *args, **kwargs)
harness.engine.train.train = train
import harness.engine.run
harness.engine.run.train = train
"""


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    plugin = tmp_path / "inject"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(FAIL_SEED_1)
    environment = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{REPO}"}
    code = "import sys; from harness.cli import main; sys.argv[0] = 'memarena'; main()"
    result = subprocess.run([sys.executable, "-c", code, "-m", "seed=0,1,2", *sweep_overrides(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 1
    assert "sweep finished: 3 run(s): 1 failed, 2 ok" in result.stdout
    by_seed = {r["seed"]: r for r in records(tmp_path).values()}
    assert [by_seed[s]["status"] for s in (0, 1, 2)] == ["ok", "failed", "ok"]
    assert "injected failure for seed 1" in by_seed[1]["error"] and "Traceback" in by_seed[1]["error"]
    report = (tmp_path / "reports" / "quick" / "leaderboard.md").read_text()
    assert "Runs without results" in report and "injected failure" in report


def test_a_diverging_run_is_recorded_as_diverged(tmp_path):
    result = run_cli(*tiny_overrides(tmp_path), "train.lr=1e30", "train.steps=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [record] = records(tmp_path).values()
    assert record["status"] == "diverged" and "training loss became" in record["error"]


def test_a_killed_sweep_resumes_without_redoing_or_duplicating_runs(tmp_path):
    code = "import sys; from harness.cli import main; sys.argv[0] = 'memarena'; main()"
    arguments = [sys.executable, "-c", code, "-m", "seed=0,1,2,3", *sweep_overrides(tmp_path), "train.steps=40"]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(arguments, cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while len(records(tmp_path)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = records(tmp_path)
    assert 2 <= len(before) < 4, "the sweep was not killed midway"

    result = subprocess.run(arguments, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = records(tmp_path)
    assert sorted(r["seed"] for r in after.values()) == [0, 1, 2, 3]
    assert len(list((tmp_path / "results" / "quick").iterdir())) == 4  # one directory per run
    for run_id, record in before.items():
        assert after[run_id]["provenance"]["time"] == record["provenance"]["time"], "a completed run was redone"
    assert result.stdout.count("already done (ok); skipped") == len(before)


def test_state_budget_sweep_sets_each_knob_and_rejects_what_cannot_fit(tmp_path):
    overrides = [o for o in sweep_overrides(tmp_path) if not o.startswith("mechanism")]
    result = run_cli("-m", "mechanism=lstm_gated,transformer_xl", "state_budget_bytes=65536", *overrides, cwd=tmp_path)
    assert result.returncode == 1
    assert "sweep finished: 2 run(s): 1 ok, 1 rejected" in result.stdout
    assert "lstm_gated: 65536 bytes need hidden_size=" in result.stderr
    [(run_id, record)] = records(tmp_path).items()
    assert record["mechanism"] == "transformer_xl"
    config = (tmp_path / "results" / "quick" / run_id / "config.yaml").read_text()
    assert "mem_len: 513" in config and "segment: 512" in config  # 65536 / (16 x 4) = mem_len + segment - 1
    assert {cell["state_bytes"] for cell in record["cells"]} == {511 * 16 * 4}  # the segment's buffer; no memory yet


def test_two_sweeps_started_in_the_same_second_get_their_own_folders():
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        first, second = (compose("config", return_hydra_config=True) for _ in range(2))
    assert first.hydra.sweep.dir != second.hydra.sweep.dir  # each resolved at its own microsecond
