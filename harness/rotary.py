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
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cos = self._sin = torch.empty(0)  # tables by position, grown on demand

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate x [..., T, E] as if its positions were start .. start + T - 1.

        Halves (a, b) of x become (a cos - b sin, b cos + a sin): x * [cos, cos] + [b, a] * [-sin, sin]."""
        end = start + x.shape[-2]
        if self._cos.shape[0] < end or self._cos.device != x.device or self._cos.dtype != x.dtype:
            self._tabulate(max(end, 2 * self._cos.shape[0]), x.device, x.dtype)
        first, second = x.chunk(2, dim=-1)
        return x * self._cos[start:end] + torch.cat((second, first), dim=-1) * self._sin[start:end]

    def _tabulate(self, positions: int, device: torch.device, dtype: torch.dtype) -> None:
        angles = torch.outer(torch.arange(positions, device=device, dtype=torch.float32), self.inv_freq.to(device))
        cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)  # positions, E/2
        self._cos, self._sin = torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)
