"""Transformer-XL segment-level recurrence (Dai et al. 2019).

Dimension letters: B batch, H heads, T segment positions, M memory positions, K = M + T keys,
E head dimension, D model width.

Each layer keeps a memory of the last ``mem_len`` inputs it has seen (its hidden states, with no
gradient into them). A segment's queries attend over keys and values computed from
[memory; segment], causally, aligned bottom-right: query i sees memory and segment positions up
to its own. Positions are relative (the paper's scheme):

    score(i, j) = (q_i + u) . k_j + (q_i + v) . W_r R_{i-j}

with R the sinusoidal embedding of the distance i - j, W_r a projection and u, v biases, all per
layer (the reference implementation's ``untie_r``, which its published runs use), computed by
``harness.relative_attention`` (fused on CPU). ``position: rotary`` instead rotates queries and
keys at absolute positions that continue across segments (then the layer has exactly full
attention's parameters, and with ``mem_len`` covering the input it computes the same function).

State: the memory, mem_len x D x bytes per element per layer and sequence once full (plus the
token count for rotary), at any context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from harness.masks import causal_mask
from harness.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.relative_attention import relative_attention
from harness.rotary import Rotary


@dataclass
class TransformerXLConfig(MechanismConfig):
    name: str = "transformer_xl"
    mem_len: int = 64
    #: "relative" (sinusoidal distances with u, v biases, as in the paper) or "rotary"
    position: str = "relative"


@register_mechanism("transformer_xl")
class TransformerXL(Mechanism):
    Config = TransformerXLConfig
    exact_streaming_options = {"mem_len": 1 << 20}

    def __init__(self, d_model: int, n_heads: int, config: TransformerXLConfig):
        super().__init__(d_model, n_heads, config)
        if config.mem_len < 1:
            raise ValueError(f"{self.name}: mem_len must be >= 1 (0 would read each segment alone), got {config.mem_len}")
        if config.position not in ("relative", "rotary"):
            raise ValueError(f"{self.name}: position must be 'relative' or 'rotary', got {config.position!r}")
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        if config.position == "rotary":
            self.rotary = Rotary(self.head_dim)
        else:
            self.distance_proj = nn.Linear(d_model, d_model, bias=False)  # W_r
            inv_freq = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
            self.register_buffer("inv_freq", inv_freq, persistent=False)
            self.u = nn.Parameter(torch.zeros(n_heads, 1, self.head_dim))
            self.v = nn.Parameter(torch.zeros(n_heads, 1, self.head_dim))

    @classmethod
    def options_for_state_budget(cls, budget_bytes, d_model, n_layers, element_bytes):
        slots = budget_bytes // (n_layers * d_model * element_bytes)
        if slots < 1:
            raise ValueError(f"{cls.name}: {budget_bytes} bytes hold no memory slot")
        return {"mem_len": slots}

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"mem": torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype), "pos": 0}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        memory = state["mem"]
        y = self.attend(x, memory, state["pos"])
        return y, {"mem": self.update_memory(memory, x), "pos": state["pos"] + x.shape[1]}

    def update_memory(self, memory: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The last mem_len inputs, without gradient."""
        combined = torch.cat((memory, x.detach()), dim=1)  # B, M+T, D
        return combined[:, combined.shape[1] - min(self.config.mem_len, combined.shape[1]) :]

    def attend(self, x: torch.Tensor, context: torch.Tensor, pos: int) -> torch.Tensor:
        """Attention of the segment x [B, T, D] over [context; x] with the context [B, M, D] before it."""
        B, T, D = x.shape
        M = context.shape[1]
        H, E = self.n_heads, self.head_dim
        q = F.linear(x, self.qkv.weight[:D]).view(B, T, H, E).transpose(1, 2)  # B, H, T, E
        k, v = F.linear(torch.cat((context, x), dim=1), self.qkv.weight[D:]).view(B, M + T, 2, H, E).permute(2, 0, 3, 1, 4)  # 2, B, H, K, E
        if self.config.position == "rotary":
            q, k = self.rotary(q, pos), self.rotary(k, pos - M)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, M + T, x.device))
        else:
            y = relative_attention(q + self.u, q + self.v, k, v, self.distance_embeddings(M + T))
        return self.out(y.transpose(1, 2).reshape(B, T, D))

    def distance_embeddings(self, keys: int) -> torch.Tensor:
        """W_r R_d for the distances d = keys - 1 down to 0, split into heads: H, K, E."""
        distances = torch.arange(keys - 1, -1, -1, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(distances, self.inv_freq)  # K, D/2
        embedding = torch.cat((angles.sin(), angles.cos()), dim=-1).to(self.distance_proj.weight.dtype)  # K, D
        return self.distance_proj(embedding).view(keys, self.n_heads, self.head_dim).transpose(0, 1)
