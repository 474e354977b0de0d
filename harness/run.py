"""One run: check the config, skip it if its record is stored, train, evaluate, store, report."""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from harness.build import build_model, build_task
from harness.checkpoint import Checkpoints
from harness.checks import (ConfigError, check_grid, check_max_memory, check_memory, check_name, check_ranges,
                            prepare_directories)
from harness.config import RunConfig, semantic_config
from harness.cpu_allocator import DESCRIPTION as ALLOCATOR
from harness.cpu_allocator import retain_freed_memory
from harness.evaluate import evaluate, grid_cells
from harness.example_cache import ExampleCache
from harness.measure import FLOP_METHOD, MEMORY_METHOD
from harness.model import StreamingLM
from harness.registry import MECHANISMS
from harness.report import write_report
from harness.store import FINAL_STATUSES, completed_status, read_result, run_id, write_run
from harness.sweep import leaderboard_line
from harness.task import Task
from harness.train import Diverged, train
from harness.tuning import TuningFailed, tuned_config
from harness.weights import save_weights

REPO_DIR = Path(__file__).resolve().parent.parent


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
MODES = ("train", "eval")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=PRECISIONS[precision] or torch.float32,
                          enabled=PRECISIONS[precision] is not None)


@dataclass
class Plan:
    config: RunConfig
    config_yaml: str
    task: Task
    model: StreamingLM
    device: torch.device
    run_id: str
    run_dir: Path
    #: the resolved config that ``run_id`` hashes (``harness.config.semantic_config``)
    semantic: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device={name!r} is not a device: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available; use device=cpu or device=auto")
    return device


def prepare(cfg: DictConfig) -> Plan:
    """Check everything that can be checked without work or writes, and build the task and model."""
    container = OmegaConf.to_container(cfg, resolve=True)
    config: RunConfig = OmegaConf.to_object(cfg)
    check_name(config.name)
    check_ranges(config)
    if config.mode not in MODES:
        raise ConfigError(f"mode={config.mode!r}; choose one of {list(MODES)}")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision={config.precision!r}; choose one of {list(PRECISIONS)}")
    device = resolve_device(config.device)
    try:
        task = build_task(**container["task"])
        check_grid(config.eval.grid, task.config.grid)
        cells = grid_cells(task.evaluation_grid(config.eval.grid))
        for knobs in cells:
            task.validate_cell(knobs)
        rng = np.random.default_rng(0)
        for length in (config.train.min_context_len, config.train.context_len):
            task.validate_cell(task.training_knobs(rng, length))
        tuned = bool(config.tune.lr_grid) and config.eval.split == "test"
        for split in {config.eval.split, *(["validation"] if tuned else [])}:  # tuning reads validation examples
            task.check_data(cells, config.eval.examples_per_cell, config.eval.seed,
                            (config.train.min_context_len, config.train.context_len), config.train.batch_size,
                            config.seed, split)
        if config.state_budget_bytes is not None:
            mechanism = MECHANISMS.get(config.mechanism.name)
            container["mechanism"].update(mechanism.options_for_state_budget(
                config.state_budget_bytes, config.model.d_model, config.model.n_layers, element_bytes=4))
        model_options = dict(vocab_size=task.vocab_size, d_model=config.model.d_model, n_layers=config.model.n_layers,
                             n_heads=config.model.n_heads, mlp_ratio=config.model.mlp_ratio, **container["mechanism"])
        with torch.device("meta"):
            meta_model = build_model(**model_options)
        check_memory(config, meta_model, max(knobs["context_len"] for knobs in cells), device)
        check_max_memory(config.eval.max_memory_gb, sum(p.numel() * p.element_size() for p in meta_model.parameters()))
        torch.manual_seed(config.seed)
        model = build_model(**model_options).to(device)
        if config.compile:
            for block in model.blocks:
                block.compile(dynamic=True)
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(str(error)) from None
    semantic = semantic_config(container)
    identifier = run_id(semantic)
    run_dir = Path(config.results_dir) / config.name / identifier
    return Plan(config, OmegaConf.to_yaml(OmegaConf.create(container)), task, model, device, identifier, run_dir,
                semantic)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one config end to end and return its record (or the stored one's status if skipped).

    With ``tune.lr_grid``, the learning rate is first chosen on validation examples (harness/tuning.py).
    """
    tuning = None
    if cfg.tune.lr_grid and cfg.eval.split == "test":
        prepare(cfg)  # every check before the first tuning run
        try:
            cfg, tuning = tuned_config(cfg, run)
        except TuningFailed as error:
            raise ConfigError(f"tuning: {error}") from None
    plan = prepare(cfg)
    prepare_directories(plan.config)
    config, label = plan.config, f"{plan.config.mechanism.name} on {plan.config.task.name} seed={plan.config.seed}"
    stored = completed_status(plan.run_dir)
    settings = numerics(plan.device, config.precision)
    if stored is not None and not config.force:
        print(f"[memarena] {config.name}/{plan.run_id} ({label}): already done ({stored}); skipped, force=true reruns it"
              + settings_mismatch(read_result(plan.run_dir)["provenance"].get("numerics"), settings))
        return {"status": stored, "skipped": True, "run_id": plan.run_id}
    record: dict[str, Any] = {
        "run_id": plan.run_id, "experiment": config.name, "mechanism": config.mechanism.name,
        "task": config.task.name, "seed": config.seed, "parameters": plan.model.num_parameters(),
        "bounded_state": plan.model.bounded, "primary_metric": plan.task.primary_metric,
        "provenance": {**provenance(plan.device), "numerics": settings}, **({"tuning": tuning} if tuning else {}),
        "measurement": {"peak_memory": MEMORY_METHOD[plan.device.type], "flops": FLOP_METHOD,
                        "precision": config.precision},
    }
    if plan.device.type == "cpu" and retain_freed_memory():
        record["measurement"]["cpu_allocator"] = ALLOCATOR
    outcomes_csv = None
    checkpoints = Checkpoints(plan.run_dir, config.checkpoint)
    try:
        precision = autocast(plan.device, config.precision)
        progress = show_progress(config.progress)
        summary = train(plan.model, plan.task, config.train, config.model.segment_len, config.seed, plan.device,
                        progress, precision, config.data_workers, checkpoints)
        if config.keep_weights:
            save_weights(plan.model, plan.run_dir)
        cells, outcomes = evaluate(plan.model, plan.task, config.eval, config.model.segment_len, plan.device,
                                   progress, precision, ExampleCache(config.cache_dir))
        record.update(status="ok", error=None, training=asdict(summary), cells=cells)
        outcomes_csv = _outcomes_csv(outcomes)
    except Diverged as error:
        record.update(status="diverged", error=str(error), training=None, cells=[])
    except Exception as error:  # one failing run is a result of the sweep, not the end of it
        record.update(status="failed", error=f"{type(error).__name__}: {error}\n{traceback.format_exc()}",
                      training=None, cells=[])
    write_run(plan.run_dir, plan.config_yaml, record, outcomes_csv)
    if record["status"] in FINAL_STATUSES:  # a failed run is retried, from its last checkpoint
        checkpoints.remove()
    leaderboard = write_report(Path(config.results_dir), Path(config.reports_dir), config.name)
    print(f"[memarena] {config.name}/{plan.run_id} ({label}): {summary_line(record)}")
    print(leaderboard_line(leaderboard))
    return record



def show_progress(setting: bool | None) -> bool:
    """Progress bars on stderr: as set, or (null) only when stderr is a terminal, never in a redirected log."""
    return sys.stderr.isatty() if setting is None else setting


def summary_line(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record['error'].splitlines()[0]}"
    primary = [cell["value"] for cell in record["cells"]
               if cell["metric"] == record["primary_metric"] and cell["status"] == "ok"]
    out_of_memory = sum(cell["status"] == "oom" for cell in record["cells"] if cell["metric"] == record["primary_metric"])
    training = record["training"]
    return (
        f"ok, {record['primary_metric']} {np.mean(primary) if primary else float('nan'):.3f} "
        f"(mean over {len(primary)} cells{f', {out_of_memory} out of memory' if out_of_memory else ''}), "
        f"final loss {training['final_loss']:.3f}, {training['tokens_per_s']:.0f} train tokens/s, "
        f"{training['wall_time_s']:.0f}s training"
        + "".join(f", resumed at step {step}" for step in training["resumed_at_steps"])
    )


def _outcomes_csv(outcomes: list[dict[str, Any]]) -> str:
    return pd.DataFrame(outcomes).to_csv(index=False)


def provenance(device: torch.device) -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    return {
        "git_commit": commit,
        # the store and the reports may live in the checkout; writing them changes no code
        "git_dirty": bool(_git("status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)reports"))
        if commit else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }


def numerics(device: torch.device, precision: str) -> dict[str, Any]:
    """Settings that change a run's numbers in their last digits (the order of floating-point sums)
    without changing what it computes: recorded with the run, not part of its run_id."""
    return {"threads": torch.get_num_threads(), "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "device": str(device), "precision": precision}


def settings_mismatch(stored: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """'' if the stored run was computed with the current settings, else a sentence naming the differences."""
    if stored is None:
        return "; it records no thread count or device (an older record)"
    differences = [f"{key}={stored.get(key)} (here {value})" for key, value in current.items() if stored.get(key) != value]
    return f"; it was computed with {', '.join(differences)}, so its numbers may differ slightly" if differences else ""


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
