"""Training checkpoints, so that a run killed mid-training (preempted, out of time) resumes.

``checkpoint.pt`` in the run directory holds everything the rest of training depends on: the
model's and the optimizer's states, the number of steps done (the training stream restarts
there, see harness/engine/training_stream.py), the losses so far, and torch's random states. It is
written atomically and is not a record (``result.json`` alone marks a run complete); the run
removes it once its record is stored. Loaded with ``weights_only=True``: no pickled code runs.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.config import CheckpointConfig
from harness.store.weights import save_atomic

CHECKPOINT_FILE = "checkpoint.pt"


def random_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}


def restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class Checkpoints:
    """Saves a training state into ``directory`` every ``config.every_steps`` steps or ``every_minutes``."""

    directory: Path
    config: CheckpointConfig
    _last_step: int = 0
    _last_time: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    def due(self, steps_done: int) -> bool:
        """Whether a checkpoint is due after ``steps_done`` steps (host clock only: no device sync)."""
        every_steps, every_minutes = self.config.every_steps, self.config.every_minutes
        return ((every_steps is not None and steps_done - self._last_step >= every_steps)
                or (every_minutes is not None and time.monotonic() - self._last_time >= 60 * every_minutes))

    def save(self, state: dict[str, Any]) -> None:
        save_atomic(state, self.path)
        self._last_step, self._last_time = state["step"], time.monotonic()

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None if there is none (or it cannot be read: then training starts over)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged checkpoint costs the steps since the start, not the run
            warnings.warn(f"checkpoint {self.path} is unreadable ({type(error).__name__}: {error}); training from step 0")
            return None
        self._last_step = state["step"]
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
