"""Sliding-window causal attention with rotary positions and a bounded KV cache.

Dimension letters: B batch, H heads, T new positions, W window, S sinks, N query blocks, Q block size,
L keys per block (Q + W - 1), E head dimension, D model.

Window semantics: the query at absolute position i attends to the W keys at positions
i - W + 1 .. i, its own included. With W >= the whole input it is exactly full attention.
Optional attention sinks (StreamingLLM, Xiao et al. 2023): the first S tokens stay visible to
every later query as well (each key counted once). ``sink_positions`` says where a sink sits for
the rotary positions:

- ``cache`` (the default, StreamingLLM's form): positions within the cache, as StreamingLLM assigns
  them: the keys a query sees, [sinks; window], are numbered contiguously and the query is the
  last, so once the window has passed them the sinks sit right before it and the query at
  min(i, S + W - 1). Sink j is then seen at distance at most S + W - 1 - j, however long the
  context: a model evaluated beyond its training lengths meets no unseen angle.
- ``original``, a departure kept as an option: sinks at their original positions j, seen at
  distance i - j, which grows with the context.

The window keys are at the same relative distances either way, and with S = 0 the two agree.

The state is a cache of the last min(W - 1, tokens read) rotated keys and values and of the S sinks
(zeros before they are filled) plus the number of tokens read: it grows to W - 1 positions and then
stays, so ``state_bytes`` is the same at any context length of at least W - 1 tokens, and a window
longer than the context costs only what the context holds: 2 (k and v) x B x H x (W - 1 + S) x E x
bytes per element, per layer, once full. The
cache is shifted functionally, one O(W) copy per segment, rather than written in place as a ring
buffer: states stay immutable (callers may keep them, gradients flow through them), and the
copy costs the same order as the attention it serves.

Computation is blocked: queries are cut into blocks of Q = min(W, T) positions, and each block
attends to the L = Q + W - 1 keys ending at its last query (an ``unfold`` view over
[cache; new keys]), with a band mask. The cost is O(T x (Q + W)), linear in the length, not a
masked T x T matrix. On CUDA without sinks, FlexAttention's block-sparse kernel computes the same band.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from torch.utils._triton import has_triton

from harness.layers.masks import as_bias, cached_mask
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism
from harness.layers.rotary import Rotary


SINK_POSITIONS = ("cache", "original")
#: head dimensions FlexAttention's CUDA kernel takes (others use the dense form)
FLEX_HEAD_DIMS = (16, 32, 64, 128, 256)


@dataclass
class SlidingWindowConfig(MechanismConfig):
    name: str = "sliding_window"
    window: int = 32
    #: attention sinks: the first `sinks` tokens stay visible to every query
    sinks: int = 0
    #: rotary positions of the sinks: cache (StreamingLLM's positions within the cache) | original
    sink_positions: str = "cache"


@register_mechanism("sliding_window")
class SlidingWindow(Mechanism):
    Config = SlidingWindowConfig

    def __init__(self, d_model: int, n_heads: int, config: SlidingWindowConfig):
        super().__init__(d_model, n_heads, config)
        if config.window < 1 or config.sinks < 0:
            raise ValueError(f"sliding_window: need window >= 1 and sinks >= 0, got {config.window} and {config.sinks}")
        if config.sink_positions not in SINK_POSITIONS:
            raise ValueError(f"sliding_window: sink_positions={config.sink_positions!r}; choose one of {list(SINK_POSITIONS)}")
        self.window = config.window
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(self.head_dim)

    @classmethod
    def options_for_state_budget(cls, budget_bytes, d_model, n_layers, element_bytes):
        slots = budget_bytes // (2 * n_layers * d_model * element_bytes)  # window - 1 + sinks
        if slots < 1:
            raise ValueError(f"sliding_window: {budget_bytes} bytes hold no cached token")
        return {"window": slots + 1, "sinks": 0}

    def reach(self) -> int | None:
        return None if self.config.sinks else self.window - 1

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        # the cache grows to W - 1 positions as they are read: a window longer than the context
        # costs what the context holds, no more
        cache = torch.zeros(batch_size, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        sinks = torch.zeros(batch_size, self.n_heads, self.config.sinks, self.head_dim, device=device, dtype=dtype)
        return {"k": cache, "v": cache, "sink_k": sinks, "sink_v": sinks, "pos": 0}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, D = x.shape
        W, pos = self.window, state["pos"]
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
        S = self.config.sinks
        sink_q = None
        if S and self.config.sink_positions == "cache":  # the query's position in the cache [sinks; window]
            sink_q = self.rotary.at(q, torch.arange(pos, pos + T, device=x.device).clamp(max=S + W - 1))
        q, k = self.rotary(q, pos), self.rotary(k, pos)  # sink j's cache position is j, its original one
        sink_k, sink_v = fill_sinks(state["sink_k"], k, pos), fill_sinks(state["sink_v"], v, pos)
        k = torch.cat((state["k"], k), dim=2)  # B, H, C+T, E: the C = min(W - 1, pos) cached positions first
        v = torch.cat((state["v"], v), dim=2)
        # a window reaching past everything read so far sees what a window of pos + T sees
        reach = min(W, pos + T)
        unfilled = reach - 1 - state["k"].shape[2]  # slots before the first position, masked out
        padded = (F.pad(k, (0, 0, unfilled, 0)), F.pad(v, (0, 0, unfilled, 0))) if unfilled else (k, v)
        y = banded_attention(q, *padded, reach, valid_from=unfilled, sinks=(sink_k, sink_v, pos, sink_q))
        y = y.transpose(1, 2).reshape(B, T, D)
        kept = min(W - 1, pos + T)
        new_state = {"k": k[:, :, k.shape[2] - kept :], "v": v[:, :, v.shape[2] - kept :],
                     "sink_k": sink_k, "sink_v": sink_v, "pos": pos + T}
        return self.out(y), new_state


def fill_sinks(sinks: torch.Tensor, new: torch.Tensor, pos: int) -> torch.Tensor:
    """The sink slots [B, H, S, E] with those of positions pos .. pos + T - 1 filled from ``new``."""
    S = sinks.shape[2]
    if pos >= S:
        return sinks
    count = min(new.shape[2], S - pos)
    return torch.cat((sinks[:, :, :pos], new[:, :, :count], sinks[:, :, pos + count :]), dim=2)


def banded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, valid_from: int,
    sinks: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Attention of queries q [B, H, T, E] over keys k, v [B, H, W-1+T, E] within a window.

    Key index j is at the same position as query j - (W - 1); keys before ``valid_from`` are
    unfilled cache slots and are masked out. ``sinks`` = (keys, values [B, H, S, E], absolute
    position of the first query, queries [B, H, T, E] that score the sinks or None: q does): sink j
    is also seen by queries at positions >= j + W, where the window no longer covers it.
    """
    if (sinks is None or not sinks[0].shape[2]) and q.device.type == "cuda" and q.shape[-1] in FLEX_HEAD_DIMS and has_triton():
        return flex_banded_attention(q, k, v, window, valid_from)
    B, H, T, E = q.shape
    W = window
    Q = min(W, T)
    N = -(-T // Q)
    L = Q + W - 1
    pad = N * Q - T
    sink_q = sinks[3] if sinks is not None and sinks[0].shape[2] else None
    if pad:
        q = F.pad(q, (0, 0, 0, pad))
        k = F.pad(k, (0, 0, 0, pad))
        v = F.pad(v, (0, 0, 0, pad))
        sink_q = None if sink_q is None else F.pad(sink_q, (0, 0, 0, pad))
    q = q.view(B, H, N, Q, E)
    k = k.unfold(2, L, Q).transpose(-1, -2)  # B, H, N, L, E
    v = v.unfold(2, L, Q).transpose(-1, -2)  # B, H, N, L, E
    if sinks is not None and sinks[0].shape[2]:
        mask = band_mask(N, Q, W, valid_from, device=q.device)  # N, Q, L
        sink_k, sink_v, start, _ = sinks
        S = sink_k.shape[2]
        if sink_q is not None:  # one softmax, two query rotations: [q, sink_q] . [k, 0] and . [0, sink_k]
            q = torch.cat((q, sink_q.view(B, H, N, Q, E)), dim=-1)
            k = torch.cat((k, torch.zeros_like(k)), dim=-1)
            sink_k = torch.cat((torch.zeros_like(sink_k), sink_k), dim=-1)
        k = torch.cat((sink_k.unsqueeze(2).expand(-1, -1, N, -1, -1), k), dim=3)  # B, H, N, S+L, E (2E: see above)
        v = torch.cat((sink_v.unsqueeze(2).expand(B, H, N, S, E), v), dim=3)
        query = torch.arange(Q, device=q.device).view(1, Q, 1)
        block_start = torch.arange(N, device=q.device).view(N, 1, 1) * Q
        sink = torch.arange(S, device=q.device).view(1, 1, S)
        mask = torch.cat((sink <= start + block_start + query - W, mask), dim=-1)  # N, Q, S+L
    else:
        mask = band_mask(N, Q, W, valid_from, device=q.device, dtype=q.dtype)  # as a bias, converted once
    # 4-D, the blocks as heads: the fused kernels take no 5-D input (SDPA would fall back to its math path)
    q, k, v = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)  # B H, N, Q or S+L, E
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.unsqueeze(0), scale=None if sink_q is None else E**-0.5)
    return y.reshape(B, H, N * Q, E)[:, :, :T]  # B H, N, Q, E -> B, H, T, E


@cached_mask
def band_mask(blocks: int, size: int, window: int, valid_from: int, device: torch.device,
              dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """[N, Q, L]: query i of block n (key index i + W - 1 of its L = Q + W - 1 keys) sees keys
    i .. i + W - 1 of its block, those before ``valid_from`` (unfilled cache slots) excepted."""
    query = torch.arange(size, device=device).view(1, size, 1)
    key = torch.arange(size + window - 1, device=device).view(1, 1, -1)
    block_start = torch.arange(blocks, device=device).view(blocks, 1, 1) * size
    visible = (key >= query) & (key <= query + window - 1) & (block_start + key >= valid_from)
    return visible if dtype == torch.bool else as_bias(visible, dtype)


def flex_banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, valid_from: int) -> torch.Tensor:
    """``banded_attention`` without sinks through FlexAttention's block-sparse kernel: only the key
    blocks the band touches are computed. On CUDA the kernel is compiled (once per shape); elsewhere
    FlexAttention runs its unfused reference, so the CPU uses the dense form instead."""
    mask = band_block_mask(q.shape[2], k.shape[2], window, valid_from, device=q.device)
    attention = flex_attention if q.device.type != "cuda" or torch.compiler.is_compiling() else _compiled_flex_attention()
    return attention(q, k, v, block_mask=mask)


@cached_mask
def band_block_mask(queries: int, keys: int, window: int, valid_from: int, device: torch.device,
                    dtype: torch.dtype = torch.bool) -> BlockMask:
    """FlexAttention's block mask of the band: query i (key index i + W - 1) sees keys i .. i + W - 1
    from ``valid_from`` on (``dtype`` is unused: a block mask has none)."""
    def band(batch, head, query, key):
        return (key >= query) & (key <= query + window - 1) & (key >= valid_from)

    return create_block_mask(band, None, None, queries, keys, device=device)


@functools.cache
def _compiled_flex_attention():
    return torch.compile(flex_attention, dynamic=False)
