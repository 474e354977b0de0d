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
``harness.layers.relative_attention`` (fused on CPU). ``position: rotary`` instead rotates queries and
keys at absolute positions that continue across segments (then the layer has exactly full
attention's parameters, and with ``mem_len`` covering the input it computes the same function).

Segments: by default a segment is whatever the harness passes in one call (model.segment_len),
and its tokens read each other on top of the memory, uncounted in the state. ``segment`` makes the
segments the layer's own, cut at absolute multiples of ``segment`` positions: the inputs of the
unfinished segment wait in a buffer of segment - 1 slots carried in the state, and the memory is
written when a segment completes. Then everything a query can read, memory and the segment so far,
is in the state (mem_len + segment - 1 inputs: a query reads at most that many positions back),
and streaming in any split equals one pass. The memory budget (``options_for_state_budget``) uses
it so that a budget covers the whole reach.

State: the memory, mem_len x D x bytes per element per layer and sequence once full, plus
(segment - 1) x D for the buffer when ``segment`` is set (and the token count), at any context
length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from harness.layers.blocks import block_spans
from harness.layers.masks import causal_mask
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.layers.relative_attention import relative_attention
from harness.layers.rotary import Rotary


@dataclass
class TransformerXLConfig(MechanismConfig):
    name: str = "transformer_xl"
    mem_len: int = 64
    #: "relative" (sinusoidal distances with u, v biases, as in the paper) or "rotary"
    position: str = "relative"
    #: positions per segment of the recurrence, cut at absolute multiples (null: the harness's segments)
    segment: Optional[int] = None


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
        if config.segment is not None and config.segment < 1:
            raise ValueError(f"{self.name}: segment must be at least 1 or null, got {config.segment}")
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
        """Half of the slots for the memory, half for the segment's buffer (the paper's mem_len =
        segment length), so that mem_len + segment - 1, all a query can read, fills the budget."""
        slots = budget_bytes // (n_layers * d_model * element_bytes)
        if slots < 1:
            raise ValueError(f"{cls.name}: {budget_bytes} bytes hold no memory slot")
        segment = (slots + 1) // 2
        return {"mem_len": slots + 1 - segment, "segment": segment}

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        state = {"mem": torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype), "pos": 0}
        if self.config.segment is not None:
            state["pending"] = torch.zeros(batch_size, self.config.segment - 1, self.d_model, device=device, dtype=dtype)
        return state

    def reach(self) -> int | None:
        return None if self.config.segment is None else self.config.mem_len + self.config.segment - 1

    def context(self, state: State) -> torch.Tensor:
        """The memory a segment's queries read before the segment itself: [B, M, D]."""
        return state["mem"]

    def write(self, state: State, segment: torch.Tensor) -> State:
        """The memory entries of the state after a complete segment [B, T, D]."""
        return {"mem": self.update_memory(state["mem"], segment)}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        pos, size = state["pos"], self.config.segment
        if size is None:
            return self.attend(x, self.context(state), pos), {**state, **self.write(state, x), "pos": pos + x.shape[1]}
        pending, outputs = state["pending"], []
        for start, end, earlier in block_spans(pos, x.shape[1], size):
            so_far = torch.cat((pending[:, pending.shape[1] - earlier :], x[:, start:end]), dim=1)  # the segment so far
            outputs.append(self.attend(x[:, start:end], torch.cat((self.context(state), so_far[:, :earlier]), dim=1),
                                       pos + start))
            if earlier + end - start == size:
                state = {**state, **self.write(state, so_far)}
        joined = torch.cat((pending, x), dim=1)
        return torch.cat(outputs, dim=1), {**state, "pending": joined[:, joined.shape[1] - (size - 1) :], "pos": pos + x.shape[1]}

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
