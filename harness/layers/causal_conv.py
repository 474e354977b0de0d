"""A short causal depthwise convolution that streams: its last inputs are carried in the state.

Dimension letters: B batch, T new positions, C channels, K width.
Mamba (on x, B, C) and DeltaNet (on q, k, v) mix each channel over its last K inputs before the
recurrence. Output t is sum_i w[c, i] x[t - K + 1 + i] (+ bias); the K - 1 inputs before the first
new position come from the carried state (zeros at the start of a sequence, i.e. zero padding), so
reading a sequence in segments equals one pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CausalConv1d(nn.Conv1d):
    """Depthwise convolution over time on inputs [B, T, C] with K - 1 carried inputs [B, K - 1, C]."""

    def __init__(self, channels: int, width: int, bias: bool):
        super().__init__(channels, channels, width, groups=channels, bias=bias)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(batch_size, self.kernel_size[0] - 1, self.in_channels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, carried: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolved x [B, T, C] and the last K - 1 inputs to carry."""
        inputs = torch.cat((carried, x), dim=1)  # B, K-1+T, C
        y = F.conv1d(inputs.transpose(1, 2), self.weight, self.bias, groups=self.groups).transpose(1, 2)
        return y, inputs[:, inputs.shape[1] - carried.shape[1] :]
