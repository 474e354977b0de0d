"""Rotary position embedding (Su et al. 2021) at absolute positions, for streaming attention.

Dimension letters: B batch, H heads, T positions, E head dimension.
Keys are rotated once, at the position where they were written, and cached rotated; a query at
absolute position p then sees every cached key at its own absolute position, so scores depend
only on the relative distance, however the input was split into segments.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

MAX_TABLES = 8  # (start, length, device, dtype) tables kept per module: a training run reuses a few


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", torch.cat((inv_freq, inv_freq)), persistent=False)  # E
        self.register_buffer("sin_sign", torch.cat((-torch.ones(head_dim // 2), torch.ones(head_dim // 2))), persistent=False)
        self._tables: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate x [..., T, E] as if its positions were start .. start + T - 1.

        Halves (a, b) of x become (a cos - b sin, b cos + a sin): x * [cos, cos] + [b, a] * [-sin, sin].
        The cos and sin tables of the last few (start, T, device, dtype) are kept: a training run
        asks for the same ones in every step, while a table by absolute position would grow with the
        context."""
        key = (start, x.shape[-2], x.device, x.dtype)
        if torch.compiler.is_compiling():
            return rotate(x, *self.table(*key))
        if key not in self._tables:
            with torch.inference_mode(False), torch.no_grad():  # tables that autograd may save later
                self._tables[key] = self.table(*key)
            if len(self._tables) > MAX_TABLES:
                self._tables.popitem(last=False)
        return rotate(x, *self._tables[key])

    def table(self, start: int, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos [T, E] and signed sin [T, E] of positions start .. start + length - 1."""
        return self.angles(torch.arange(start, start + length, device=device), dtype)

    def angles(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos [T, E] and signed sin [T, E] of ``positions`` [T] (any integers), in ``dtype``."""
        angles = torch.outer(positions.to(torch.float32), self.inv_freq)  # T, E
        return angles.cos().to(dtype), (angles.sin() * self.sin_sign).to(dtype)

    def at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate x [..., T, E] as if its positions were ``positions`` [T] (any integers)."""
        return rotate(x, *self.angles(positions, x.dtype))

    def _apply(self, fn, recurse=True):
        self._tables.clear()  # the buffers move or change dtype: tables are rebuilt from them
        return super()._apply(fn, recurse)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., T, E] rotated by the angles whose cos and signed sin [T, E] are given."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((second, first), dim=-1) * sin
