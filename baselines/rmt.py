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

from harness.layers.blocks import keep_last, whole_blocks
from harness.layers.masks import as_bias, cached_mask
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

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, D = x.shape
        H, E, N, M, pos = self.n_heads, self.head_dim, self.config.block, self.config.memory_slots, state["pos"]
        earlier = pos % N
        qkv = self.qkv(x).view(B, T, 3, H, E).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
        # every block at once: the current block's earlier tokens first, zeros up to whole blocks
        pending = torch.stack((torch.zeros_like(state["k"]), state["k"], state["v"])) if earlier else None
        qkv = whole_blocks(qkv, pending, earlier, N)  # 3, B, H, L, E
        L = qkv.shape[-2]
        memory, projections = self._write(state["memory"], qkv[1].split(N, dim=-2), qkv[2].split(N, dim=-2),
                                          (pos - earlier) // N, (earlier + T) // N)
        # reads: a block's tokens at positions M .. M + N - 1 see its memory at 0 .. M - 1; all blocks in one call
        q, k = self.rotary(qkv[:2].unflatten(-2, (L // N, N)), M).transpose(2, 3).flatten(1, 2)  # 2, B nb, H, N, E
        memory_k, memory_v = projections.view(B, L // N, M, 3, H, E)[:, :, :, 1:].permute(3, 0, 1, 4, 2, 5).flatten(1, 2)
        keys = torch.cat((self.rotary(memory_k, 0), k), dim=2)  # B nb, H, M + N, E
        values = torch.cat((memory_v, qkv[2].unflatten(-2, (L // N, N)).transpose(1, 2).flatten(0, 1)), dim=2)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=read_mask(N, M, device=x.device, dtype=q.dtype))
        y = y.transpose(1, 2).reshape(B, L, D)  # B nb, H, N, E -> B, L, D
        k_rotated = k.unflatten(0, (B, L // N)).transpose(1, 2).flatten(2, 3)  # B, H, L, E
        k, v = qkv[1], qkv[2]
        if L != T:
            y, k_rotated, k, v = y[:, earlier : earlier + T], *(t[:, :, earlier : earlier + T] for t in (k_rotated, k, v))
        slots = N - 1
        new_state = {"memory": memory, "k_rotated": keep_last(state["k_rotated"], k_rotated, slots),
                     "k": keep_last(state["k"], k, slots), "v": keep_last(state["v"], v, slots), "pos": pos + T}
        return self.out(y), new_state

    def _write(self, memory: torch.Tensor, keys: tuple[torch.Tensor, ...], values: tuple[torch.Tensor, ...],
               first: int, complete: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory [B, M, D] after writing the first ``complete`` blocks of ``keys`` and ``values``
        ([B, H, N, E] each; ``first``: the number of blocks before them in the stream), and the
        memory's projections [B, nb, M, 3 D] that each block reads (those of the memory before it).

        The writes are sequential by definition: block b's memory slots attend to [memory; block b]
        without positions and, added to the memory and layer-normalised, become block b + 1's. Each
        weight enters every block as its own view of one expanded tensor, so that its gradient is
        one stack and sum rather than an addition per block."""
        B, M, D = memory.shape
        H, E = self.n_heads, self.head_dim
        weights = (self.qkv.weight, self.out.weight.t(), self.memory_norm.weight, self.memory_norm.bias)
        per_block = zip(*(w.expand(len(keys), *w.shape).unbind(0) for w in weights))
        projections = []
        for index, (block_keys, block_values, (qkv, out, norm_weight, norm_bias)) in enumerate(zip(keys, values, per_block)):
            projections.append(F.linear(memory, qkv))
            if index == complete:  # an unfinished block: read, not written
                break
            query, key, value = (t.transpose(1, 2) for t in projections[-1].view(B, M, 3, H, E).unbind(2))  # B, H, M, E
            written = F.scaled_dot_product_attention(query, torch.cat((key, block_keys), dim=2),
                                                     torch.cat((value, block_values), dim=2))  # B, H, M, E
            written = written.transpose(1, 2).reshape(B * M, D)
            if torch.is_autocast_enabled(memory.device.type):  # autocast's addmm would add the residual in bf16
                written = memory.reshape(B * M, D) + written @ out
            else:
                written = torch.addmm(memory.reshape(B * M, D), written, out)
            memory = F.layer_norm(written.view(B, M, D), (D,), norm_weight, norm_bias, self.memory_norm.eps)
            if self.config.bptt_blocks is not None and (first + index + 1) % self.config.bptt_blocks == 0:
                memory = memory.detach()
        return memory, torch.stack(projections, dim=1)


@cached_mask
def read_mask(block: int, slots: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[N, M + N]: a block's tokens see every memory slot and, causally, the tokens of their block."""
    visible = torch.ones(block, slots + block, dtype=torch.bool, device=device)
    visible[:, slots:] = visible[:, slots:].tril()
    return visible if dtype == torch.bool else as_bias(visible, dtype)
