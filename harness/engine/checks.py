"""Checks of a run's inputs that need no work, each failing with one line that names the key.

Every size, rate and coefficient in range and finite; an experiment name that is one plain
directory name; no empty grid; a memory estimate of the largest training step and evaluated cell
within the machine's memory; and the store, report and cache directories created and writable.
``prepare`` (harness/engine/run.py) runs all but the last, which writes, before any work.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from harness.config import ModelConfig, RunConfig, TrainConfig, TuneConfig
from harness.registry import MECHANISMS
from harness.layers.mechanism import state_bytes
from harness.layers.model import StreamingLM
from harness.taskkit.task import EVAL_SPLITS, SCORINGS

#: an experiment name is one directory of the store: letters, digits, '.', '_' and '-', not starting with '.'
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
#: the early-stopping keys besides train.eval_every, at their defaults (which mean nothing while it is off)
EARLY_STOPPING_DEFAULTS = {key: TrainConfig.__dataclass_fields__[key].default
                           for key in ("patience", "min_delta", "loss_min_fall", "eval_examples", "eval_seed")}
#: numbers a training step keeps per token for the backward pass, per layer, as a multiple of
#: d_model: the block input, its two norms, q/k/v, the attention output and the MLP's hidden
#: layer before and after the activation (6 + 2 x mlp_ratio); attention scores are left out,
#: so the estimate is a lower bound
SAVED_PER_LAYER = 6
#: bytes per number of the estimate (fp32)
ELEMENT_BYTES = 4


class ConfigError(ValueError):
    """A config that cannot run; raised before any work or any write."""


def check_ranges(config: RunConfig) -> None:
    """Every size at least 1, every rate and coefficient finite and in range."""
    at_least_one = {
        "model.d_model": config.model.d_model, "model.n_layers": config.model.n_layers,
        "model.n_heads": config.model.n_heads,
        "model.segment_len": config.model.segment_len, "train.steps": 1 if config.train.steps is None else config.train.steps,
        "train.batch_size": config.train.batch_size, "train.context_len": config.train.context_len,
        "train.min_context_len": config.train.min_context_len,
        "eval.examples_per_cell": config.eval.examples_per_cell, "eval.batch_size": config.eval.batch_size,
    }
    if config.state_budget_bytes is not None:
        at_least_one["state_budget_bytes"] = config.state_budget_bytes
    for key, value in at_least_one.items():
        if value < 1:
            raise ConfigError(f"{key}={value}: must be an integer >= 1")
    for key, value in {"model.mlp_ratio": config.model.mlp_ratio, "train.warmup_steps": config.train.warmup_steps,
                       "seed": config.seed, "eval.seed": config.eval.seed, "data_workers": config.data_workers}.items():
        if value < 0:
            raise ConfigError(f"{key}={value}: must be an integer >= 0")
    _check_number("train.lr", config.train.lr, "> 0", config.train.lr > 0)
    _check_number("train.grad_clip", config.train.grad_clip, "> 0 (the largest gradient norm)", config.train.grad_clip > 0)
    _check_number("train.weight_decay", config.train.weight_decay, ">= 0", config.train.weight_decay >= 0)
    for key, value in (("checkpoint.every_steps", config.checkpoint.every_steps),
                       ("checkpoint.every_minutes", config.checkpoint.every_minutes)):
        if value is not None:
            _check_number(key, value, "> 0 or null (never)", value > 0)
    if config.eval.split not in EVAL_SPLITS:
        raise ConfigError(f"eval.split={config.eval.split!r}: choose one of {list(EVAL_SPLITS)}")
    if config.eval.scoring not in SCORINGS:
        raise ConfigError(f"eval.scoring={config.eval.scoring!r}: choose one of {list(SCORINGS)}")
    for lr in config.tune.lr_grid:
        _check_number("tune.lr_grid", lr, "> 0 for every rate", lr > 0)
    if config.tune.seed < 0:
        raise ConfigError(f"tune.seed={config.tune.seed}: must be an integer >= 0")
    if config.eval.max_memory_gb is not None:
        _check_number("eval.max_memory_gb", config.eval.max_memory_gb, "> 0 or null", config.eval.max_memory_gb > 0)
    if config.ceiling not in MECHANISMS.names():
        raise ConfigError(f"ceiling={config.ceiling!r}: not a mechanism; known mechanisms: {MECHANISMS.names()}")
    check_training_length(config.train)
    check_tuning_grid(config.tune)
    if config.train.min_context_len > config.train.context_len:
        raise ConfigError(
            f"train.min_context_len={config.train.min_context_len} exceeds train.context_len={config.train.context_len}"
        )


def check_training_length(train: TrainConfig) -> None:
    """The steps, the token budget and the early-stopping rule (harness/engine/early_stopping.py)."""
    if train.steps is None and train.max_tokens is None:
        raise ConfigError("train.steps=null trains until the token budget: set train.max_tokens too")
    if train.max_tokens is not None and train.max_tokens < train.batch_size * train.context_len:
        raise ConfigError(f"train.max_tokens={train.max_tokens}: must be at least one step of the longest length, "
                          f"train.batch_size x train.context_len = {train.batch_size * train.context_len}")
    if train.eval_every is None:
        unused = [f"train.{key}" for key, default in EARLY_STOPPING_DEFAULTS.items() if getattr(train, key) != default]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: set for early stopping, which is off; set train.eval_every too")
        return
    for key in ("eval_every", "patience", "eval_examples"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key}={getattr(train, key)}: must be an integer >= 1")
    if train.eval_seed < 0:
        raise ConfigError(f"train.eval_seed={train.eval_seed}: must be an integer >= 0")
    _check_number("train.min_delta", train.min_delta, ">= 0", train.min_delta >= 0)
    if train.loss_min_fall is not None:
        _check_number("train.loss_min_fall", train.loss_min_fall, "in [0, 1) (a share of the fall so far)",
                      0 <= train.loss_min_fall < 1)


def check_tuning_grid(tune: TuneConfig) -> None:
    """A rate grid given one way, log-spaced ranges in order, and extensions that have a neighbour to step from."""
    span = tune.lr_range
    if (span.low is None) != (span.high is None):
        raise ConfigError(f"tune.lr_range: low={span.low}, high={span.high}; give both ends, or neither")
    if span.low is not None:
        if tune.lr_grid:
            raise ConfigError("tune.lr_range and tune.lr_grid both set: give the grid one way")
        for end in ("low", "high"):
            _check_number(f"tune.lr_range.{end}", getattr(span, end), "> 0", getattr(span, end) > 0)
        if span.points < 2 or not span.low < span.high:
            raise ConfigError(f"tune.lr_range: low={span.low}, high={span.high}, points={span.points}; "
                              "needs low < high and points >= 2")
    if tune.max_extensions < 0:
        raise ConfigError(f"tune.max_extensions={tune.max_extensions}: must be an integer >= 0")
    if tune.max_extensions and len(set(tune.lr_grid)) < 2 and span.low is None:
        raise ConfigError("tune.max_extensions: extending the grid steps from its two end rates; give at least 2 rates")


def _check_number(key: str, value: float, allowed: str, in_range: bool) -> None:
    if not math.isfinite(value) or not in_range:
        raise ConfigError(f"{key}={value}: must be a finite number {allowed}")


def check_name(name: str) -> None:
    """The experiment name is one plain directory name under results_dir and reports_dir."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"name={name!r}: must be a plain non-empty name of letters, digits, '.', '_' or '-', "
                          "not starting with '.' (no path separators): runs are stored under <results_dir>/<name>/")


def check_directory_names(config: RunConfig) -> None:
    """The store, report and cache directories are paths a run can use as given.

    An empty value would put them in whatever directory the command runs from, and a leading ``~``
    reaches the store as a directory literally named ``~`` (Hydra does not expand it; only
    ``cache_dir`` is expanded, as its default ``~/.cache/memarena`` needs).
    """
    for key in ("results_dir", "reports_dir", "cache_dir"):
        value = getattr(config, key)
        if value is not None and not str(value).strip():
            raise ConfigError(f"{key}={value!r}: give a directory" + (" or null (no cache)" if key == "cache_dir" else ""))
        if key != "cache_dir" and str(value).startswith("~"):
            raise ConfigError(f"{key}={value!r}: '~' is not expanded here; give the full path (e.g. {key}=$HOME/...)")


def check_grid(eval_grid: dict[str, list[Any]], task_grid: dict[str, list[Any]]) -> None:
    """Every knob of the evaluation grid has at least one value."""
    for key, values in {**{f"task.grid.{k}": v for k, v in task_grid.items() if k not in eval_grid},
                        **{f"eval.grid.{k}": v for k, v in eval_grid.items()}}.items():
        if not values:
            raise ConfigError(f"{key}=[]: give at least one value")
    if not eval_grid:
        raise ConfigError("eval.grid is empty: give at least context_len")


def check_max_memory(max_memory_gb: float | None, weight_bytes: int) -> None:
    """A memory limit below the model's own weights would mark every cell out of memory."""
    if max_memory_gb is not None and max_memory_gb * 2**30 < weight_bytes:
        raise ConfigError(f"eval.max_memory_gb={max_memory_gb}: smaller than the model's weights "
                          f"({weight_bytes / 2**30:.2g} GB), every cell would be out of memory; give more or null")


def estimated_bytes(meta_model: StreamingLM, model: ModelConfig, batch_size: int, context_len: int,
                    tokens_kept: int, logits_kept: bool, examples_held: int) -> int:
    """A lower bound of the memory that reading ``batch_size`` sequences of ``context_len`` tokens takes.

    ``meta_model`` is the model built on the meta device: its fresh state's tensors give the size
    of a preallocated state (a sliding window's cache) without allocating it. An unbounded state
    (a KV cache) adds 2 x d_model numbers per layer and token. ``tokens_kept`` tokens keep their
    activations (all of them for training's backward pass, one segment for evaluation), and with
    ``logits_kept`` the logits of every token too (training's loss); ``examples_held`` examples
    are held as int64 tokens and labels (a training batch, or a whole evaluated cell).
    """
    numbers = state_bytes(meta_model.init_state(batch_size)) // ELEMENT_BYTES
    if not meta_model.bounded:
        numbers += 2 * model.d_model * model.n_layers * context_len * batch_size
    numbers += tokens_kept * batch_size * model.n_layers * (SAVED_PER_LAYER + 2 * model.mlp_ratio) * model.d_model
    numbers += examples_held * context_len * 4  # int64 tokens and labels: 16 bytes a token
    if logits_kept:
        numbers += 2 * batch_size * context_len * meta_model.vocab_size  # the logits and their gradient
    return numbers * ELEMENT_BYTES


def available_bytes(device: torch.device) -> tuple[int, str]:
    """The memory a run can use at most, and what it is: the GPU's, or the machine's RAM (or cgroup limit)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"memory of {torch.cuda.get_device_name(device)}"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and int(limit) < total:
            return int(limit), "memory limit of this container (cgroup)"
    except OSError:
        pass
    return total, "RAM of this machine"


def check_memory(config: RunConfig, meta_model: StreamingLM, eval_context_len: int, device: torch.device) -> None:
    """Refuse a run whose largest training step or evaluated cell cannot fit the device's memory."""
    available, what = available_bytes(device)
    train_bytes = estimated_bytes(meta_model, config.model, config.train.batch_size, config.train.context_len,
                                  config.train.context_len, logits_kept=True,
                                  examples_held=config.train.batch_size)
    eval_bytes = estimated_bytes(meta_model, config.model, config.eval.batch_size, eval_context_len,
                                 min(config.model.segment_len, eval_context_len), logits_kept=False,
                                 examples_held=config.eval.examples_per_cell)
    for needed, step in ((train_bytes, f"a training step (train.batch_size={config.train.batch_size} x "
                                       f"train.context_len={config.train.context_len} tokens)"),
                         (eval_bytes, f"the longest evaluated cell (eval.batch_size={config.eval.batch_size} x "
                                      f"context_len={eval_context_len} tokens)")):
        if needed > available:
            raise ConfigError(f"{step} needs at least {needed / 2**30:.3g} GB (state and activations, "
                              f"estimated), more than the {available / 2**30:.3g} GB {what}; make it smaller "
                              "(or the mechanism's memory: window, mem_len, ...)")


def prepare_directories(config: RunConfig) -> None:
    """Create the experiment's store and report directories and the cache, and check each is writable.

    All three are checked (their nearest existing ancestor is a writable directory) before any is
    created, so that a bad one leaves nothing behind; then each is created and a file written in it.
    """
    directories = {"results_dir": Path(config.results_dir) / config.name,
                   "reports_dir": Path(config.reports_dir) / config.name}
    if config.cache_dir is not None:
        directories["cache_dir"] = Path(config.cache_dir).expanduser()
    for key, path in directories.items():
        existing = next(parent for parent in (path, *path.parents) if parent.exists() or parent == parent.parent)
        if not existing.is_dir():
            _not_writable(config, key, path, f"{existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            _not_writable(config, key, path, f"{existing} is not writable")
    for key, path in directories.items():
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as error:
            _not_writable(config, key, path, error.strerror or str(error))


def _not_writable(config: RunConfig, key: str, path: Path, reason: str) -> None:
    raise ConfigError(f"{key}={getattr(config, key)!r}: cannot write to {path} ({reason})")
