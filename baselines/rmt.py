"""Recurrent Memory Transformer (Bulatov et al. 2022), per layer: memory slots read and written once per block.

Dimension letters: B batch, H heads, T new positions, N block length, M memory slots,
E head dimension, D model.

The input is cut into blocks of ``block`` absolute positions. Every layer carries ``memory_slots``
memory vectors R [M, D] (learned initial values). Within a block, each token attends with softmax
to all memory slots (the read) and, causally, to the earlier tokens of its block. Positions are
those of RMT's input, where the read memory tokens come first: rotary positions 0 .. M - 1 for the
memory slots, M + i for the token at offset i of its block, whatever the block's place in the
stream. The read is therefore the same at stream position 0 and 4096 and a model trained on short
contexts meets no unseen angles on long ones (lucidrains' recurrent-memory-transformer-pytorch
likewise keeps memory at fixed positions and tokens at in-segment positions). When the block is
complete, the memory slots attend to [memory; the whole block] without positions (the write, as
RMT's write tokens at the end of a segment) and the result, added to R and layer-normalised, is
the memory of the next block. Gradients flow through the memory across blocks;
``bptt_blocks`` cuts them every that many blocks (null: never).

How this differs from the paper: RMT's memory tokens pass through the whole stack and the last
layer's write outputs feed the first layer's read of the next segment; here every layer keeps its
own memory, because memarena's mechanisms are token-mixing layers (see DESIGN.md). The state is R
and the unfinished block's keys and values: M x D + 3 x H x (block - 1) x E numbers per layer and
sequence, whatever the context length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from harness.layers.blocks import block_so_far, block_spans, keep_last
from harness.layers.masks import causal_mask
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.layers.rotary import Rotary


@dataclass
class RmtConfig(MechanismConfig):
    name: str = "rmt"
    memory_slots: int = 8
    #: N: positions per block, read with one memory and written into the next
    block: int = 32
    #: cut the gradient through the memory every this many blocks (null: never)
    bptt_blocks: Optional[int] = None


@register_mechanism("rmt")
class Rmt(Mechanism):
    Config = RmtConfig

    def __init__(self, d_model: int, n_heads: int, config: RmtConfig):
        super().__init__(d_model, n_heads, config)
        if config.block < 1 or config.memory_slots < 1:
            raise ValueError(f"rmt: block and memory_slots must be at least 1, got {config.block} and {config.memory_slots}")
        if config.bptt_blocks is not None and config.bptt_blocks < 1:
            raise ValueError(f"rmt: bptt_blocks must be at least 1 or null, got {config.bptt_blocks}")
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.memory_init = nn.Parameter(torch.randn(config.memory_slots, d_model) * 0.02)
        self.memory_norm = nn.LayerNorm(d_model)
        self.rotary = Rotary(self.head_dim)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        H, E, N = self.n_heads, self.head_dim, self.config.block
        pending = torch.zeros(batch_size, H, N - 1, E, device=device, dtype=dtype)
        # a copy, not an expanded view: a view of a parameter made under no_grad confuses autograd hooks
        memory = self.memory_init.to(device=device, dtype=dtype).repeat(batch_size, 1, 1)
        return {"memory": memory, "k_rotated": pending, "k": pending, "v": pending, "pos": 0}

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)  # B, H, T, E

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, D = x.shape
        N, pos = self.config.block, state["pos"]
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
        M = self.config.memory_slots
        memory = state["memory"]
        outputs, k_rotated = [], []
        for start, end, earlier in block_spans(pos, T, N):
            piece = slice(start, end)
            memory_q, memory_k, memory_v = (self._heads(p) for p in self.qkv(memory).chunk(3, dim=-1))  # B, H, M, E
            k_rotated.append(self.rotary(k[:, :, piece], M + earlier))  # at their offsets in the block, after the memory
            keys = block_so_far(state["k_rotated"], k_rotated[-1], earlier)
            values = block_so_far(state["v"], v[:, :, piece], earlier)
            visible = torch.cat((torch.ones(end - start, M, dtype=torch.bool, device=x.device),
                                 causal_mask(end - start, keys.shape[2], x.device)), dim=1)
            outputs.append(F.scaled_dot_product_attention(
                self.rotary(q[:, :, piece], M + earlier), torch.cat((self.rotary(memory_k, 0), keys), dim=2),
                torch.cat((memory_v, values), dim=2), attn_mask=visible))
            if earlier + end - start == N:  # the block is complete: the memory slots write it
                block_keys = block_so_far(state["k"], k[:, :, piece], earlier)
                written = F.scaled_dot_product_attention(memory_q, torch.cat((memory_k, block_keys), dim=2),
                                                         torch.cat((memory_v, values), dim=2))
                memory = self.memory_norm(memory + self.out(written.transpose(1, 2).reshape(B, -1, D)))
                completed = (pos + end) // N
                if self.config.bptt_blocks is not None and completed % self.config.bptt_blocks == 0:
                    memory = memory.detach()
        y = torch.cat(outputs, dim=2).transpose(1, 2).reshape(B, T, D)
        slots = N - 1
        new_state = {"memory": memory, "k_rotated": keep_last(state["k_rotated"], torch.cat(k_rotated, dim=2), slots),
                     "k": keep_last(state["k"], k, slots), "v": keep_last(state["v"], v, slots), "pos": pos + T}
        return self.out(y), new_state
