"""Full causal multi-head attention with rotary positions; streams through a growing KV cache.

Dimension letters: B batch, H heads, T new positions, C cached positions, E head dimension, D model.

The reference mechanism: every query sees every earlier token. Its state is the KV cache of all
tokens read so far, so ``state_bytes`` grows linearly with the context:
2 (k and v) x B x H x C x E x bytes per element, per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from harness.layers.masks import cached_causal
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.layers.rotary import Rotary


@dataclass
class FullAttentionConfig(MechanismConfig):
    name: str = "full_attention"


@register_mechanism("full_attention")
class FullAttention(Mechanism):
    Config = FullAttentionConfig
    bounded = False

    def __init__(self, d_model: int, n_heads: int, config: FullAttentionConfig):
        super().__init__(d_model, n_heads, config)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(self.head_dim)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        empty = torch.zeros(batch_size, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"k": empty, "v": empty}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
        cached = state["k"].shape[2]
        (q, k), v = self.rotary(qkv[:2], cached), qkv[2]  # the new keys share the queries' positions
        k = torch.cat((state["k"], k), dim=2)  # B, H, C+T, E
        v = torch.cat((state["v"], v), dim=2)
        if cached == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:  # one new token sees every key
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cached_causal(T, cached + T, q))
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.out(y), {"k": k, "v": v}

