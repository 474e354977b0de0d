"""Attention masks, built once per shape and device and then reused.

A training step asks for the same few masks in every layer and every segment; building each anew
costs a handful of kernel launches per attention call, which on a GPU is most of the time of a
small model. ``cached_mask`` memoises a mask builder per (arguments, device, dtype). The tensors it
returns are shared between callers: read them, never write into them.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Callable

import torch
from torch.nn.attention.bias import CausalBias, causal_lower_right

MAX_CACHED = 64  # masks kept per builder; a training run asks for a handful
#: bytes of tensors kept per builder beyond the newest mask: full attention's mask grows with the
#: context, and a long stream must not keep one per segment
MAX_CACHED_BYTES = 64 * 2**20


def cached_mask(builder: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Memoise ``builder(*sizes, device=..., dtype=...)`` per (sizes, device, dtype), keeping the
    newest masks up to ``MAX_CACHED`` of them and ``MAX_CACHED_BYTES`` (the newest always).

    Masks are built outside inference mode (so that autograd may save them later) and without
    gradient; under ``torch.compile`` the builder is traced as it is, so that a compiled graph
    holds its own constant rather than a tensor of this cache."""
    cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    @functools.wraps(builder)
    def cached(*sizes, device: torch.device, dtype: torch.dtype = torch.bool) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return builder(*sizes, device=device, dtype=dtype)
        key = (sizes, torch.device(device), dtype)
        if key not in cache:
            with torch.inference_mode(False), torch.no_grad():
                cache[key] = builder(*sizes, device=device, dtype=dtype)
            while len(cache) > 1 and (len(cache) > MAX_CACHED or sum(map(_bytes, cache.values())) > MAX_CACHED_BYTES):
                cache.popitem(last=False)  # the least recently built
        return cache[key]

    return cached


def _bytes(value) -> int:
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def as_bias(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as an additive attention bias: 0 where visible, -inf elsewhere."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(~visible, float("-inf"))


def _causal(queries: int, keys: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    visible = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
    return visible if dtype == torch.bool else as_bias(visible, dtype)


_cached_causal = cached_mask(_causal)


def causal_mask(queries: int, keys: int, device: torch.device, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """[queries, keys], True where visible: the queries are the last ``queries`` of the ``keys``
    positions, so query i sees keys up to keys - queries + i (aligned bottom-right; SDPA's
    ``is_causal=True`` aligns top-left, which is wrong once a cache or memory adds keys).

    With a floating ``dtype``, the same mask as an additive bias (0 visible, -inf hidden), which
    SDPA takes without converting it on every call. Cached: do not write into it."""
    return _cached_causal(queries, keys, device=device, dtype=dtype)


def _earlier_blocks(length: int, block: int, copies: int, leading: int, device: torch.device,
                    dtype: torch.dtype) -> torch.Tensor:
    index = torch.arange(length, device=device) // block
    visible = (index.view(-1, 1) > index.view(1, -1)).repeat(copies, 1)
    visible = torch.cat((visible.new_ones(copies * length, leading), visible), dim=1)
    return visible if dtype == torch.bool else visible.to(dtype)


_cached_earlier_blocks = cached_mask(_earlier_blocks)


def earlier_blocks_mask(length: int, block: int, device: torch.device, copies: int = 1, leading: int = 0,
                        dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """[copies x length, leading + length]: True (1 in a floating ``dtype``) where the key's block
    of ``block`` positions precedes the query's (a memory of completed blocks, read before the
    query's own block is written), after ``leading`` columns visible to every query (a memory from
    before these positions); the queries' ``length`` rows repeated ``copies`` times. Cached: do not
    write into it."""
    return _cached_earlier_blocks(length, block, copies, leading, device=device, dtype=dtype)


def cached_causal(queries: int, keys: int, like: torch.Tensor) -> torch.Tensor | CausalBias:
    """The bottom-right causal mask for attention of ``queries`` over ``keys`` positions, in the form
    that keeps SDPA on its fused kernels: on CUDA torch's ``causal_lower_right`` bias (nothing
    stored; the flash and memory-efficient kernels take it), elsewhere the cached additive bias in
    ``like``'s dtype (the CPU's flash kernel takes a float mask as it is)."""
    if like.device.type == "cuda":
        return causal_lower_right(queries, keys)
    return causal_mask(queries, keys, like.device, dtype=like.dtype)
