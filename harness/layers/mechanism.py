"""The contract every memory mechanism keeps.

A mechanism is the token-mixing layer of one block of the streaming language model. It reads a
segment ``x`` of shape [B, T, D] together with the state it carried from earlier segments and
returns its output and the new state:

    state = layer.init_state(batch_size, device, dtype)
    y, state = layer(x, state)

The state is a dict whose values are tensors (and, for bookkeeping such as the absolute position,
Python ints). It is never mutated in place: a new dict is returned, so callers may keep old states.
The contracts checked for every registered mechanism by the property tests are listed in
DESIGN.md: causality, streaming equivalence, state accounting and reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

State = dict[str, Any]


@dataclass
class MechanismConfig:
    """Options shared by all mechanisms; each mechanism subclasses this with its own knobs."""

    name: str = "???"


class Mechanism(nn.Module):
    """Base class of a memory mechanism layer (see the module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type[MechanismConfig]] = MechanismConfig
    #: True when the state stays the same size however long the context is.
    bounded: ClassVar[bool] = True
    #: options under which reading an input in segments must equal one pass over it (empty: any
    #: options, as for attention with a cache or a recurrent cell; a segment memory needs its
    #: memory to cover the whole input)
    exact_streaming_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, d_model: int, n_heads: int, config: MechanismConfig):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.config = config

    @classmethod
    def options_for_state_budget(cls, budget_bytes: int, d_model: int, n_layers: int, element_bytes: int) -> dict[str, Any]:
        """Options whose state, per sequence over all layers, is as large as fits in ``budget_bytes``.

        Under these options the state holds everything a query can read (no context beyond it, such
        as the rest of the caller's segment), so that ``reach()`` is what the budget buys.

        Raises ValueError when no setting of this mechanism's memory knob fits the budget.
        """
        raise ValueError(f"{cls.name} has no knob that bounds its state to a budget")

    def reach(self) -> int | None:
        """The most positions before a query that the query can read, from the state and the
        current input alike; None when unbounded (a recurrent summary, attention sinks, or a
        segment recurrence over whatever segments the caller passes)."""
        return None

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def pop_auxiliary_loss(self) -> torch.Tensor | None:
        """The mechanism's own training loss accumulated since the last call (None: it has none)."""
        return None

    def numerics(self) -> dict[str, str]:
        """Who computed the last forward and how (recorded in each run's ``provenance.numerics.mechanism``):
        PyTorch by default; a mechanism with peer kernels names the back-end that ran."""
        return {"backend": "torch"}


def state_bytes(state: Any) -> int:
    """Bytes held by the tensors of a (nested) state, from their real sizes and dtypes."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(value) for value in state)
    return 0
