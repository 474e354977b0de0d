"""Shared fixtures: Hydra composition of the real config tree, and a tiny run configuration."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Tests never touch the network: `datasets` and the hub stay offline.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from hydra import compose, initialize_config_dir

import harness

from harness.config import CONF_DIR, register_configs
from harness.registry import TASKS

REPO = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` runs N test processes side by side: one thread each (and in the memarena processes
    # they start) keeps N workers from contending for the cores the way N x cores threads would
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

#: overrides that make a run take a second or two on a CPU
TINY = [
    "model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.segment_len=16",
    "train.steps=3", "train.batch_size=2", "train.context_len=48", "train.min_context_len=48",
    "eval.grid.context_len=[48,64]", "task.grid.depth=[0.0,1.0]", "eval.examples_per_cell=4", "eval.batch_size=4",
    "progress=false",
]
#: per-mechanism overrides that keep its memory small next to the tiny contexts
TINY_MECHANISM = {"sliding_window": ["mechanism.window=8"]}
#: each task's own default grid knobs
TASK_GRIDS = {name: TASKS.get(name).Config().grid for name in harness.tasks()}


def compose_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The overrides of each job of ``memarena experiment=<experiment>`` (a multirun preset), in the sweeper's order."""
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        params = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params
    choices = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [[f"experiment={experiment}", *job] for job in itertools.product(*choices)]


def tiny_overrides(tmp_path: Path, mechanism: str = "sliding_window", task: str = "passkey") -> list[str]:
    """A tiny run of ``mechanism`` on ``task``: passkey at two depths, another task on its first cell."""
    overrides = [f"mechanism={mechanism}", *TINY, *TINY_MECHANISM.get(mechanism, []),
                 f"results_dir={tmp_path / 'results'}", f"reports_dir={tmp_path / 'reports'}",
                 f"cache_dir={tmp_path / 'cache'}"]
    if task != "passkey":
        overrides = [o for o in overrides if not o.startswith("task.grid")] + [f"task={task}"]
        overrides += [f"task.grid.{knob}=[{values[0]}]" for knob, values in TASK_GRIDS[task].items()]
    return overrides


def run_cli(*args: str, cwd: Path, script: str = "memarena",
            pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """Run a console script of this checkout as a subprocess, as a user would (``pythonpath``: plug-ins)."""
    module = {"memarena": "main", "memarena-report": "report_main"}[script]
    code = f"import sys; from harness.cli import {module}; sys.argv[0] = {script!r}; {module}()"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, REPO])), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          env=environment, timeout=300)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def streamed_on_cpu_and_cuda(model, tokens, segment_len: int) -> list[tuple]:
    """(logits, gradient of the first block's qkv weight) of ``model`` streaming ``tokens``, on the CPU and on CUDA."""
    results = []
    for device in ("cpu", "cuda"):
        on_device = model.to(device)
        logits, _ = on_device.stream(tokens.to(device), on_device.init_state(tokens.shape[0]), segment_len)
        logits.square().sum().backward()
        results.append((logits.cpu(), on_device.blocks[0].mixer.qkv.weight.grad.cpu()))
        on_device.zero_grad(set_to_none=True)
    return results


def perturbed(layer):
    """The layer in float64, its parameters away from their initial values (so that a misplaced one shows)."""
    torch.manual_seed(0)
    layer = layer.double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return layer
