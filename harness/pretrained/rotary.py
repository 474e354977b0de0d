"""Moving cached keys to other rotary positions (StreamingLLM's positions inside the cache).

A key cached by a rotary model is R(p) k: its projection k rotated by the angles p * inv_freq of
its position p. Rotations compose, R(q) = R(q - p) R(p), so a cached key moves to position q by
one more rotation through q - p, with no access to k itself. This is how the cache of a policy
that renumbers positions by cache slot (the sinks of harness/pretrained/policies.py) keeps the
keys it holds at their slots after evicting others: the same trick as kvpress's
KeyRerotationPress and transformers' former SinkCache.

The angles come from the model's own ``rotary_emb.inv_freq`` (not its cos/sin tables, which some
scalings multiply by an attention factor that must not be applied twice). Rotary halves are
paired as in Llama (``rotate_half``); with partial rotary (fewer frequencies than half the head
dimension) only the leading dimensions turn, as GPT-NeoX applies them.
"""

from __future__ import annotations

import torch
from torch import nn


def rotary_frequencies(model: nn.Module) -> torch.Tensor:
    """inv_freq [F] of a decoder whose rotary embedding is shared by its layers (Llama, Qwen2, Mistral, ...)."""
    rotary = getattr(getattr(model, "model", model), "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        raise ValueError(f"{type(model).__name__} has no shared rotary embedding (model.model.rotary_emb.inv_freq): "
                         "positions inside the cache need a rotary model such as Llama, Qwen2 or Mistral")
    return rotary.inv_freq


def shift_keys(keys: torch.Tensor, shift: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Keys [B, K, N, E] rotated by ``shift`` [N] more positions each (negative: back)."""
    angles = shift.to(inv_freq.device, torch.float32)[:, None] * inv_freq.float()[None, :]  # N, F
    cos, sin = angles.cos().to(keys.dtype), angles.sin().to(keys.dtype)
    turned = 2 * inv_freq.shape[0]
    first, second, rest = keys[..., : turned // 2], keys[..., turned // 2 : turned], keys[..., turned:]
    return torch.cat((first * cos - second * sin, second * cos + first * sin, rest), dim=-1)
