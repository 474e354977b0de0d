"""Rotary position embedding (Su et al. 2021) at absolute positions, for streaming attention.

Dimension letters: B batch, H heads, T positions, E head dimension.
Keys are rotated once, at the position where they were written, and cached rotated; a query at
absolute position p then sees every cached key at its own absolute position, so scores depend
only on the relative distance, however the input was split into segments.
"""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", torch.cat((inv_freq, inv_freq)), persistent=False)  # E
        self.register_buffer("sin_sign", torch.cat((-torch.ones(head_dim // 2), torch.ones(head_dim // 2))), persistent=False)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate x [..., T, E] as if its positions were start .. start + T - 1.

        Halves (a, b) of x become (a cos - b sin, b cos + a sin): x * [cos, cos] + [b, a] * [-sin, sin].
        The angles are computed per call (a table by absolute position would grow with the context)."""
        return self.at(x, torch.arange(start, start + x.shape[-2], device=x.device))

    def at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate x [..., T, E] as if its positions were ``positions`` [T] (any integers)."""
        positions = positions.to(torch.float32)
        angles = torch.outer(positions, self.inv_freq)  # T, E
        cos, sin = angles.cos().to(x.dtype), (angles.sin() * self.sin_sign).to(x.dtype)
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat((second, first), dim=-1) * sin
