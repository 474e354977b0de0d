"""Build models and tasks by registered name, with options checked against their Config."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from omegaconf import OmegaConf

from harness.layers.model import StreamingLM
from harness.registry import MECHANISMS, TASKS, Registry
from harness.taskkit.task import Task


def mechanisms() -> list[str]:
    return MECHANISMS.names()


def tasks() -> list[str]:
    return TASKS.names()


def build_model(
    name: str, vocab_size: int, d_model: int, n_layers: int, n_heads: int, mlp_ratio: int = 4, **options: Any
) -> StreamingLM:
    """A streaming language model whose blocks mix tokens with mechanism ``name``."""
    mechanism = MECHANISMS.get(name)
    config = _typed_config(MECHANISMS, mechanism, name, options)
    return StreamingLM(mechanism, config, vocab_size, d_model, n_layers, n_heads, mlp_ratio)


def build_task(name: str, **options: Any) -> Task:
    task = TASKS.get(name)
    return task(_typed_config(TASKS, task, name, options))


def _typed_config(registry: Registry, cls: type, name: str, options: dict[str, Any]):
    """``cls.Config`` filled from ``options``; an unknown key or a wrong type names the key."""
    options = {key: value for key, value in options.items() if key != "name"}
    known = {f.name for f in fields(cls.Config)} - {"name"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{registry.kind} {name!r} has no option(s) {unknown}; its options: {sorted(known)}")
    schema = OmegaConf.structured(cls.Config)
    merged = OmegaConf.merge(schema, options)  # raises ValidationError naming a mistyped key
    return OmegaConf.to_object(merged)
