"""The KV cache of a Hugging Face causal LM as tensors: read, replace, and count its bytes.

A ``transformers`` ``DynamicCache`` holds one layer object per decoder layer with ``keys`` and
``values`` tensors of shape [B, K, N, E] (B batch, K key-value heads, N cached positions, E head
dimension). Memory policies (harness/pretrained/policies.py) cut and rewrite these tensors
between forward passes; the measured size of a cache is the sum of the bytes of those tensors,
whatever their dtype.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def layer_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) of every layer, each [B, K, N, E]."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def set_layer(cache: DynamicCache, index: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Replace layer ``index``'s cached keys and values (same layout, any number of positions)."""
    layer = cache.layers[index]
    layer.keys, layer.values = keys, values


def cached_positions(cache: DynamicCache) -> int:
    """Positions held per layer (every policy keeps the same number in every layer)."""
    return 0 if not cache.layers or not cache.is_initialized else int(cache.layers[0].keys.shape[2])


def kv_bytes(cache: DynamicCache) -> int:
    """Bytes of all key and value tensors in the cache, counted from the tensors themselves."""
    return sum(tensor.numel() * tensor.element_size() for pair in layer_tensors(cache) for tensor in pair
               if tensor is not None)
