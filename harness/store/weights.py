"""A run's trained weights, kept in its run directory so that later evaluations need no training."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from harness.store.records import write_atomic

WEIGHTS_FILE = "model.pt"


def save_atomic(content: object, path: Path) -> None:
    """``torch.save`` of ``content`` (tensors, numbers, strings and containers of them), written atomically."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    write_atomic(path, buffer.getvalue())


def save_weights(model: torch.nn.Module, run_dir: Path) -> None:
    """The model's state dict, into ``run_dir/model.pt`` (before the record marks the run complete)."""
    save_atomic(model.state_dict(), run_dir / WEIGHTS_FILE)


def load_weights(model: torch.nn.Module, run_dir: Path) -> None:
    """Load ``run_dir/model.pt`` into ``model`` (tensors only: ``weights_only=True`` runs no pickled code).

    Raises ValueError, leaving ``model`` untouched, if the file holds the weights of another model."""
    state = torch.load(run_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    found = {name: tuple(tensor.shape) for name, tensor in state.items()}
    if found != expected:
        differing = sorted(set(found.items()) ^ set(expected.items()))[:3]
        raise ValueError(f"{run_dir / WEIGHTS_FILE} holds the weights of another model (e.g. {differing})")
    model.load_state_dict(state)
