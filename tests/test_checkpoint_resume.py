"""A run killed mid-training resumes from its checkpoint and ends as an uninterrupted run would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import harness
from conftest import REPO, tiny_overrides
from harness.engine.checkpoint import CHECKPOINT_FILE, Checkpoints
from harness.config import CheckpointConfig, TrainConfig
from harness.store.records import OUTCOMES_FILE, RESULT_FILE
from harness.engine.train import train
from harness.store.weights import WEIGHTS_FILE

STEPS = 40
#: both runs on one thread: the numbers of a CPU run depend on the thread count
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
MEMARENA = [sys.executable, "-c", "import sys; from harness.cli import main; sys.argv[0] = 'memarena'; main()"]


def memarena(*overrides: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([*MEMARENA, *overrides], cwd=cwd, env=ENVIRONMENT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def comparable(run_dir):
    """What a run computed: its training (timings aside), cells (costs aside) and outcomes."""
    record = json.loads((run_dir / RESULT_FILE).read_text())
    training = {key: record["training"][key] for key in ("steps", "final_loss", "tokens", "curve")}
    cells = [{key: cell[key] for key in ("knobs", "metric", "n", "value", "ci_low", "ci_high", "state_bytes")}
             for cell in record["cells"]]
    return training, cells, (run_dir / OUTCOMES_FILE).read_text()


def test_a_run_killed_mid_training_resumes_and_ends_as_an_uninterrupted_run(tmp_path):
    overrides = [*tiny_overrides(tmp_path), f"train.steps={STEPS}", "checkpoint.every_steps=3", "device=cpu"]
    killed = memarena(*overrides, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "results").glob(f"quick/*/{CHECKPOINT_FILE}")):
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    [run_dir] = (tmp_path / "results" / "quick").iterdir()
    assert not (run_dir / RESULT_FILE).exists()  # killed mid-training
    checkpoint_step = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["step"]
    assert 0 < checkpoint_step < STEPS

    resumed = memarena(*overrides, cwd=tmp_path)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    record = json.loads((run_dir / RESULT_FILE).read_text())
    [resumed_at] = record["training"]["resumed_at_steps"]
    assert checkpoint_step <= resumed_at < STEPS and f"resumed at step {resumed_at}" in stdout
    assert not (run_dir / CHECKPOINT_FILE).exists() and (run_dir / WEIGHTS_FILE).exists()

    uninterrupted_dir = tmp_path / "uninterrupted"
    through = memarena(*overrides, "checkpoint.every_steps=null", "checkpoint.every_minutes=null",
                       f"results_dir={uninterrupted_dir}", cwd=tmp_path)
    assert through.wait(timeout=300) == 0, through.communicate()
    [uninterrupted] = (uninterrupted_dir / "quick").iterdir()
    assert uninterrupted.name == run_dir.name  # checkpointing is not part of what a run computes
    assert json.loads((uninterrupted / RESULT_FILE).read_text())["training"]["resumed_at_steps"] == []
    assert comparable(run_dir) == comparable(uninterrupted)  # exactly equal numbers


def test_a_damaged_checkpoint_starts_training_over_with_a_warning(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    task = harness.build_task("passkey")
    model = harness.build_model("sliding_window", vocab_size=task.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                window=8)
    config = TrainConfig(steps=2, batch_size=2, context_len=48, min_context_len=48)
    with pytest.warns(UserWarning, match="unreadable"):
        summary = train(model, task, config, 16, 0, torch.device("cpu"), progress=False, data_workers=0,
                        checkpoints=Checkpoints(tmp_path, CheckpointConfig(every_steps=1)))
    assert summary.resumed_at_steps == [] and summary.steps == 2
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"] == 1  # a fresh one replaced it
