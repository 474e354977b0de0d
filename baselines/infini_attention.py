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

from harness.layers.blocks import keep_last, whole_blocks
from harness.layers.masks import cached_mask, earlier_blocks_mask
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.layers.rotary import Rotary

UPDATES = ("linear", "delta")
EPSILON = 1e-6  # keeps the read-out of an empty memory at 0 / epsilon = 0
#: positions whose memory reads are computed together (rounded down to whole blocks): the reads
#: cost O(T x MEMORY_CHUNK) arithmetic and memory, and a loop step per chunk
MEMORY_CHUNK = 512


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
        H, E, N, pos = self.n_heads, self.head_dim, self.config.block, state["pos"]
        earlier = pos % N
        qk, v = self.qkv(x).view(B, T, 3, H, E).permute(2, 0, 3, 1, 4).split([2, 1])  # [2 | 1], B, H, T, E
        (q_rotated, k_rotated), v = self.rotary(qk, pos), v.squeeze(0)
        q, k = F.elu(qk) + 1  # memory features
        # every block at once: the current block's earlier tokens first, zeros up to whole blocks
        keys, values = whole_blocks(k_rotated, state["k_rotated"], earlier, N), whole_blocks(v, state["v"], earlier, N)
        L = keys.shape[2]
        queries = whole_blocks(q_rotated, None, earlier, N)
        local = F.scaled_dot_product_attention(*(by_block(t, N) for t in (queries, keys, values)), is_causal=True)
        local = local.view(B, L // N, H, N, E).transpose(1, 2).reshape(B, H, L, E)
        written = (earlier + T) // N * N  # positions of the completed blocks
        with torch.autocast(x.device.type, enabled=False):  # the state's precision: no bf16 triangular solve
            dtype, memory, norm = state["M"].dtype, state["M"], state["z"]
            chunk = max(MEMORY_CHUNK // N, 1) * N
            features = (whole_blocks(q, None, earlier, N).to(dtype), whole_blocks(k, state["k"], earlier, N).to(dtype),
                        values.to(dtype))
            reads = []
            for index, (q_chunk, k_chunk, v_chunk) in enumerate(
                    [features] if L <= chunk else zip(*(t.split(chunk, dim=2) for t in features))):
                read, memory, norm = self._memory(q_chunk, k_chunk, v_chunk, memory, norm,
                                                  min(max(written - index * chunk, 0), q_chunk.shape[2]))
                reads.append(read)
            read = reads[0] if len(reads) == 1 else torch.cat(reads, dim=2)
        gate = torch.sigmoid(self.gate).view(1, -1, 1, 1).to(local.dtype)
        y = torch.lerp(local, read.to(local.dtype), gate)
        y = y if L == T else y[:, :, earlier : earlier + T]
        slots = N - 1
        new_state = {"M": memory, "z": norm, "k_rotated": keep_last(state["k_rotated"], k_rotated, slots),
                     "k": keep_last(state["k"], k, slots), "v": keep_last(state["v"], v, slots), "pos": pos + T}
        return self.out(y.transpose(1, 2).reshape(B, T, D)), new_state

    def _memory(self, queries, keys, values, memory, norm, written):
        """Every block's memory read-out and the memory and normaliser after the first ``written``
        positions, for features ``queries``, ``keys`` and ``values`` [B, H, L, E] in whole blocks.

        With the memory before block b, M_b = M + sum over earlier blocks c of K_c^T W_c (W = V for
        the linear update, W_c = V_c - D_c K_c M_c for the delta rule, D_c = 1 / (K_c z_c)), block
        b reads (Q_b M + Q_b K_c^T W_c) / (Q_b z + Q_b K_c^T 1): scores over earlier blocks, masked,
        as in linear attention. The delta rule's W solves the block-triangular system
        W_b + D_b sum_c K_b K_c^T W_c = V_b - D_b K_b M, one triangular solve for all blocks.
        One product [Q; K] [M | z | K^T] holds every read of the memory before this input and
        every score; the normaliser rides along as the column after M and a column of ones after W."""
        N, (B, H, L, E) = self.config.block, queries.shape
        # the delta rule reads the memory for the keys too
        rows = torch.cat((queries, keys), dim=2) if self.config.update == "delta" else queries
        columns = torch.cat((memory, norm.unsqueeze(-1), keys.transpose(-1, -2)), dim=-1)  # B, H, E, E + 1 + L
        products = (rows @ columns) * earlier_blocks_mask(L, N, rows.device, copies=rows.shape[2] // L, leading=E + 1,
                                                          dtype=rows.dtype)  # [Q M | Q z | Q K^T masked]
        if self.config.update == "delta":
            products, key_products = products.split(L, dim=2)
            key_products = key_products / at_least(key_products[..., E:].sum(-1, keepdim=True))  # over K z + K K^T 1
            values = torch.linalg.solve_triangular(key_products[..., E + 1 :], values - key_products[..., :E],
                                                   upper=False, unitriangular=True)
        # products @ [I 0; 0 1; W 1] = [Q M + Q K^T W | Q z + Q K^T 1]: each block's numerator and normaliser
        reader = torch.cat((identity(E + 1, device=values.device, dtype=values.dtype).expand(B, H, -1, -1),
                            F.pad(values, (0, 1), value=1.0)), dim=2)
        read, read_norm = (products @ reader).split([E, 1], dim=-1)
        read = read / at_least(read_norm)
        if not written:
            return read, memory, norm
        written = E + 1 + written
        memory = torch.baddbmm(columns[..., : E + 1].reshape(B * H, E, E + 1),
                               columns[..., E + 1 : written].reshape(B * H, E, -1),
                               reader[:, :, E + 1 : written].reshape(B * H, -1, E + 1))
        memory, norm = memory.view(B, H, E, E + 1).split([E, 1], dim=-1)
        return read, memory, norm.squeeze(-1)


@cached_mask
def identity(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The identity matrix [size, size], built once per device and dtype (do not write into it)."""
    return torch.eye(size, device=device, dtype=dtype)


def at_least(x: torch.Tensor) -> torch.Tensor:
    """max(x, EPSILON), as ``clamp_min`` but with a one-kernel gradient (zero where x <= EPSILON)."""
    return F.threshold(x, EPSILON, EPSILON)


def by_block(sequence: torch.Tensor, block: int) -> torch.Tensor:
    """[B, H, L, E] in whole blocks -> [B x L / block, H, block, E] (a view where the layout allows)."""
    B, H, L, E = sequence.shape
    return sequence.view(B, H, L // block, block, E).transpose(1, 2).reshape(B * (L // block), H, block, E)
