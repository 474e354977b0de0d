"""The plan of a run: every check that needs no work or writes, and the runs to execute in order.

``plan(cfg)`` checks the config (names, ranges, grid, data, memory), builds the task, and fixes the
identity of each run it needs: with a rate grid (``tune.lr_grid`` or ``tune.lr_range``) the tuning runs
first (one per rate, validation examples, harness/engine/tuning.py), then the run itself at the rate
they choose. A tuning run that extends the grid beyond an end (``tune.max_extensions``) is planned the
same way, with ``prepare(trial_config(cfg, rate))``, once the runs before it have chosen that rate.
Nothing is trained, written or put on the device here; a planned run builds its model when it is executed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from harness.build import build_model, build_task
from harness.config import RunConfig, semantic_config
from harness.engine.compile import compile_blocks
from harness.engine.checks import (ConfigError, check_directory_names, check_grid, check_max_memory, check_memory,
                                   check_name, check_ranges, check_tuning_grid)
from harness.engine.early_stopping import stopping_cells
from harness.engine.tuning import listed, planned_grid, trial_config, tuned
from harness.layers.model import StreamingLM
from harness.registry import MECHANISMS
from harness.store.records import run_id
from harness.taskkit.task import Task

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
MODES = ("train", "eval")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=PRECISIONS[precision] or torch.float32,
                          enabled=PRECISIONS[precision] is not None)


def show_progress(setting: bool | None) -> bool:
    """Progress bars on stderr: as set, or (null) only when stderr is a terminal, never in a redirected log."""
    return sys.stderr.isatty() if setting is None else setting


@dataclass
class PlannedRun:
    """One checked run: its typed config, task, device and place in the store; its model on first use."""

    config: RunConfig
    config_yaml: str
    task: Task
    device: torch.device
    run_id: str
    run_dir: Path
    #: the resolved config that ``run_id`` hashes (``harness.config.semantic_config``)
    semantic: dict[str, Any]
    model_options: dict[str, Any] = field(repr=False)

    @cached_property
    def model(self) -> StreamingLM:
        """The model, freshly initialised from the run's seed, on the run's device."""
        torch.manual_seed(self.config.seed)
        model = build_model(**self.model_options).to(self.device)
        if self.config.compile:
            compile_blocks(model)
        return model


@dataclass
class Plan:
    """The runs one config needs, in order: its tuning runs, then the run (at the rate they choose)."""

    #: the composed config (with tuning runs, the run itself is prepared again at the rate they choose)
    cfg: DictConfig
    run: PlannedRun
    tuning_runs: list[PlannedRun]


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


def plan(cfg: DictConfig) -> Plan:
    """Check ``cfg`` and list the runs it needs; ConfigError, before any work, if anything is wrong."""
    check_tuning_grid(OmegaConf.to_object(cfg.tune))
    cfg = listed(cfg)
    planned = prepare(cfg)
    return Plan(cfg, planned, [prepare(trial_config(cfg, lr), planned.task) for lr in planned_grid(cfg)]
                if tuned(cfg) else [])


def prepare(cfg: DictConfig, task: Task | None = None) -> PlannedRun:
    """Check everything about one run that can be checked without work or writes, and build its task (or take
    ``task``, built from the same task config: a tuning run shares its run's)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    config: RunConfig = OmegaConf.to_object(cfg)
    if config.policy is not None:
        raise ConfigError(f"policy={config.policy.name}: memory policies apply to pretrained models (model=hf "
                          "model.name=...); a model trained here takes mechanism=...")
    check_name(config.name)
    check_directory_names(config)
    check_ranges(config)
    if config.mode not in MODES:
        raise ConfigError(f"mode={config.mode!r}; choose one of {list(MODES)}")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision={config.precision!r}; choose one of {list(PRECISIONS)}")
    device = resolve_device(config.device)
    try:
        task = task or build_task(**container["task"])  # a tuning run's task is its run's: trial_config keeps task.*
        check_grid(config.eval.grid, task.config.grid)
        cells = task.evaluation_cells(config.eval.grid)
        for knobs in cells:
            task.validate_cell(knobs)
        rng = np.random.default_rng(0)
        for length in (config.train.min_context_len, config.train.context_len):
            task.validate_cell(task.training_knobs(rng, length))
        for split in {config.eval.split, *(["validation"] if tuned(cfg) else [])}:  # tuning reads validation examples
            task.check_data(cells, config.eval.examples_per_cell, config.eval.seed,
                            (config.train.min_context_len, config.train.context_len), config.train.batch_size,
                            config.seed, split)
        if config.train.eval_every is not None:  # early stopping reads validation examples of its own seed
            if config.eval.split == "validation" and config.train.eval_seed == config.eval.seed:
                raise ConfigError(f"train.eval_seed={config.train.eval_seed} is eval.seed: a run scored on validation "
                                  "examples (a tuning run) must stop training on others; give another train.eval_seed")
            task.check_data(stopping_cells(task, config.eval.grid, config.train), config.train.eval_examples,
                            config.train.eval_seed, (config.train.min_context_len, config.train.context_len),
                            config.train.batch_size, config.seed, "stopping")
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
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigError(str(error)) from None
    semantic = semantic_config(container)
    identifier = run_id(semantic)
    return PlannedRun(config, OmegaConf.to_yaml(OmegaConf.create(container)), task, device, identifier,
                      Path(config.results_dir) / config.name / identifier, semantic, model_options)
