"""The causal mask of a segment's queries over a longer run of keys."""

from __future__ import annotations

import torch


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """[queries, keys], True where visible: the queries are the last ``queries`` of the ``keys``
    positions, so query i sees keys up to keys - queries + i (aligned bottom-right; SDPA's
    ``is_causal=True`` aligns top-left, which is wrong once a cache or memory adds keys)."""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
