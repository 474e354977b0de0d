"""One pretrained-model job of the CLI (``model=hf``): check, skip if stored, evaluate, store.

The pretrained family's counterpart of harness/engine/run.py, for a composed config whose model is a
``PretrainedModelConfig``: ``plan_pretrained(cfg)`` checks everything that needs no work (names,
ranges, the policy and its options, the task, its grid and data, that the task has a text form;
the examples are sized to the model's tokens when it runs)
and fixes the run's identity; ``run_pretrained_job(cfg)`` skips a run whose record is stored, refuses one whose
weights and KV cache at the longest cell cannot fit the device (harness/pretrained/memory.py), loads
the model, runs ``run_pretrained`` (harness/pretrained/evaluate.py) and writes the record atomically
to ``<results_dir>/<name>/<run_id>/`` (harness/store/records.py), as trained runs are stored. A
model that cannot be loaded is a ConfigError (nothing stored); a run that raises while evaluating is
stored as ``failed`` with its traceback, and the sweep goes on. ``mechanism``, ``train``, ``tune``,
``state_budget_bytes`` and the top-level ``seed`` do not apply (greedy decoding has no seed; the
test examples follow ``eval.seed``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from harness.build import build_task
from harness.config import RunConfig
from harness.engine.checks import ConfigError, check_directory_names, check_grid, check_name, prepare_directories
from harness.engine.plan import resolve_device
from harness.engine.provenance import provenance
from harness.pretrained.evaluate import PretrainedRunConfig, run_pretrained, semantic
from harness.pretrained.memory import check_pretrained_memory
from harness.pretrained.model import PretrainedLM
from harness.pretrained.policies import build_policy, sized_options
from harness.pretrained.prompts import check_text_form
from harness.store.records import completed_status, run_id, write_run

DTYPES = (None, "float32", "bfloat16", "float16")


@dataclass
class PlannedPretrainedRun:
    config: RunConfig  # the composed config, typed
    run: PretrainedRunConfig
    primary_metric: str
    run_id: str
    run_dir: Path
    config_yaml: str


def plan_pretrained(cfg: DictConfig) -> PlannedPretrainedRun:
    """Check a ``model=hf`` config and fix its run; ConfigError, before any work or write, if anything is wrong."""
    try:
        config: RunConfig = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as error:
        raise ConfigError(f"{error.full_key}: required; model=hf needs model.name=<a hub name or a local "
                          "directory saved with save_pretrained>") from None
    model, policy = config.model, config.policy
    check_name(config.name)
    check_directory_names(config)
    if config.mode != "train":
        raise ConfigError(f"mode={config.mode!r}: a pretrained model is evaluated directly (mode=eval re-evaluates "
                          "stored trained models); leave mode at its default")
    if not str(model.name).strip():
        raise ConfigError("model.name='': give a hub name or a local directory saved with save_pretrained")
    for key, value in {"model.segment_len": model.segment_len, "eval.examples_per_cell": config.eval.examples_per_cell,
                       **({"model.max_new_tokens": model.max_new_tokens} if model.max_new_tokens is not None else {})
                       }.items():
        if value < 1:
            raise ConfigError(f"{key}={value}: must be an integer >= 1")
    if config.eval.seed < 0:
        raise ConfigError(f"eval.seed={config.eval.seed}: must be an integer >= 0")
    if model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={model.dtype!r}; choose one of {['null', *DTYPES[1:]]}")
    device = resolve_device(config.device)
    container = OmegaConf.to_container(cfg, resolve=True)
    policy_name, options = "full", {}
    if policy is not None:
        options = {key: value for key, value in container["policy"].items() if key not in ("name", "budget")}
        policy_name = policy.name
    task_options = {key: value for key, value in container["task"].items() if key != "name"}
    grid = dict(container["eval"]["grid"])
    try:
        options = sized_options(policy_name, policy.budget if policy is not None else None, options)
        build_policy(policy_name, **options)
        check_grid(grid, config.task.grid)
        if "context_len" not in grid:
            raise ConfigError("eval.grid has no context_len: give the lengths to evaluate")
        task = build_task(**container["task"])
        cells = task.evaluation_cells(grid)
        for knobs in cells:
            task.validate_cell(knobs)
        check_text_form(task)  # the examples are sized to the model's tokens when it runs (sizing.py)
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(str(error)) from None
    run = PretrainedRunConfig(
        model=model.name, task=config.task.name, context_lens=list(grid.pop("context_len")), task_options=task_options,
        policy=policy_name, policy_options=options, grid=grid, examples_per_cell=config.eval.examples_per_cell,
        seed=config.eval.seed, segment_len=model.segment_len, max_new_tokens=model.max_new_tokens,
        chat_template=model.chat_template, device=str(device),
        # resolved here, so that a run in bfloat16 on CUDA and one in float32 on the CPU have different run_ids
        dtype=model.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    identifier = run_id(semantic(run))
    return PlannedPretrainedRun(config, run, task.primary_metric, identifier, Path(config.results_dir) / config.name / identifier,
                                OmegaConf.to_yaml(OmegaConf.create({"name": config.name, **semantic(run)})))


def run_pretrained_job(cfg: DictConfig) -> dict[str, Any]:
    """Check, then run and store one pretrained-model config; returns its record (or the stored one's status)."""
    planned = plan_pretrained(cfg)
    config, run = planned.config, planned.run
    label = f"{run.model} with policy {run.policy} on {run.task}"
    stored = completed_status(planned.run_dir)
    if stored is not None and not config.force:
        print(f"[memarena] {config.name}/{planned.run_id} ({label}): already done ({stored}); skipped, "
              "force=true reruns it")
        return {"status": stored, "skipped": True, "run_id": planned.run_id}
    check_pretrained_memory(run, torch.device(run.device), config.eval.max_memory_gb)
    prepare_directories(config)
    try:
        lm = PretrainedLM.load(run.model, run.device, run.dtype, run.chat_template)
    except ValueError as error:
        raise ConfigError(f"model.name={run.model!r}: {error}") from None
    outcomes_csv = None
    where = provenance(lm.device)  # before the run: a failed record says where it failed too
    try:
        record, outcomes = run_pretrained(run, lm)
        outcomes_csv = pd.DataFrame(outcomes).to_csv(index=False)
    except Exception as error:  # one failing run is a result of the sweep, not the end of it
        record = {"run_id": planned.run_id, "family": "pretrained", "mechanism": f"pretrained/{run.policy}",
                  "model": run.model, "policy": run.policy, "policy_options": run.policy_options, "task": run.task,
                  "seed": run.seed, "parameters": lm.parameters, "primary_metric": planned.primary_metric,
                  "provenance": where, "status": "failed", "training": None, "cells": [],
                  "error": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"}
    record["experiment"] = config.name
    write_run(planned.run_dir, planned.config_yaml, record, outcomes_csv)
    print(f"[memarena] {config.name}/{planned.run_id} ({label}): {summary_line(record)}")
    return record


def summary_line(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record['error'].splitlines()[0]}"
    primary = [cell for cell in record["cells"] if cell["metric"] == record["primary_metric"]]
    values = [cell["value"] for cell in primary if cell["status"] == "ok"]
    out_of_memory = len(primary) - len(values)
    largest = max((cell["state_bytes"] for cell in primary if cell["status"] == "ok"), default=0)
    return (f"ok, {record['primary_metric']} {np.mean(values) if values else float('nan'):.3f} (mean over "
            f"{len(values)} cells{f', {out_of_memory} out of memory' if out_of_memory else ''}), "
            f"KV cache up to {largest} bytes")
