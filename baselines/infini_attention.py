"""Infini-attention (Munkhdalai et al. 2024): local softmax attention plus a compressive linear-attention memory.

Dimension letters: B batch, H heads, T new positions, N block length, E head dimension, D model.

The input is cut into blocks of ``block`` absolute positions. A query attends, with softmax and
rotary positions, to the earlier tokens of its own block, and reads a per-head matrix memory
M [E, E] (with normaliser z [E]) that holds all earlier blocks:

    A_mem = s(q) M / (s(q) . z),     s = elu + 1 (on the unrotated q and k)
    y     = g A_mem + (1 - g) A_local,     g = sigmoid(a learned scalar per head)

The memory is read before the block is written into it (writing first would let a query see
later tokens of its own block): once a block is complete, ``update=linear`` adds
``s(K)^T V`` and ``update=delta`` adds ``s(K)^T (V - s(K) M / (s(K) z))``, only what the memory
did not already return; z adds the sum of s(K). The state is M and z and the unfinished block's
keys and values: H x E x (E + 1) + 3 x H x (block - 1) x E numbers per layer and sequence,
whatever the context length. Blocks are absolute, so streaming in any segments equals one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from harness.layers.blocks import block_so_far, block_spans, keep_last
from harness.layers.masks import causal_mask
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.layers.rotary import Rotary

UPDATES = ("linear", "delta")
EPSILON = 1e-6  # keeps the read-out of an empty memory at 0 / epsilon = 0


@dataclass
class InfiniAttentionConfig(MechanismConfig):
    name: str = "infini_attention"
    #: N: positions per block, the span of the local attention and of one memory write
    block: int = 32
    update: str = "delta"  # linear | delta


@register_mechanism("infini_attention")
class InfiniAttention(Mechanism):
    Config = InfiniAttentionConfig

    def __init__(self, d_model: int, n_heads: int, config: InfiniAttentionConfig):
        super().__init__(d_model, n_heads, config)
        if config.block < 1:
            raise ValueError(f"infini_attention: block must be at least 1, got {config.block}")
        if config.update not in UPDATES:
            raise ValueError(f"infini_attention: update={config.update!r}; choose one of {list(UPDATES)}")
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.gate = nn.Parameter(torch.zeros(n_heads))
        self.rotary = Rotary(self.head_dim)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        H, E, N = self.n_heads, self.head_dim, self.config.block
        pending = torch.zeros(batch_size, H, N - 1, E, device=device, dtype=dtype)
        return {"M": torch.zeros(batch_size, H, E, E, device=device, dtype=dtype),
                "z": torch.zeros(batch_size, H, E, device=device, dtype=dtype),
                "k_rotated": pending, "k": pending, "v": pending, "pos": 0}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, D = x.shape
        N, pos = self.config.block, state["pos"]
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
        q_rotated, k_rotated = self.rotary(q, pos), self.rotary(k, pos)
        q, k = F.elu(q) + 1, F.elu(k) + 1  # memory features
        gate = torch.sigmoid(self.gate).view(1, -1, 1, 1)
        memory, norm = state["M"], state["z"]
        outputs = []
        for start, end, earlier in block_spans(pos, T, N):
            piece = slice(start, end)
            keys = block_so_far(state["k_rotated"], k_rotated[:, :, piece], earlier)
            values = block_so_far(state["v"], v[:, :, piece], earlier)
            local = F.scaled_dot_product_attention(q_rotated[:, :, piece], keys, values,
                                                   attn_mask=causal_mask(end - start, keys.shape[2], x.device))
            outputs.append(gate * retrieve(q[:, :, piece], memory, norm) + (1 - gate) * local)
            if earlier + end - start == N:  # the block is complete: write it into the memory
                block_keys = block_so_far(state["k"], k[:, :, piece], earlier)
                memory, norm = self._write(memory, norm, block_keys, values)
        y = torch.cat(outputs, dim=2).transpose(1, 2).reshape(B, T, D)
        slots = N - 1
        new_state = {"M": memory, "z": norm, "k_rotated": keep_last(state["k_rotated"], k_rotated, slots),
                     "k": keep_last(state["k"], k, slots), "v": keep_last(state["v"], v, slots), "pos": pos + T}
        return self.out(y), new_state

    def _write(self, memory, norm, keys, values):
        """Memory and normaliser after writing one block's keys and values [B, H, N, E]."""
        if self.config.update == "delta":
            values = values - retrieve(keys, memory, norm)
        return memory + keys.transpose(-1, -2) @ values, norm + keys.sum(dim=2)


def retrieve(features: torch.Tensor, memory: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Read-out s(q) M / (s(q) . z) for features [B, H, T, E] (0 from an empty memory)."""
    return (features @ memory) / (features @ norm.unsqueeze(-1)).clamp_min(EPSILON)
