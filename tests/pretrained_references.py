"""Direct computations of the memory policies' definitions, to test harness/pretrained/policies.py against.

None of these cuts a cache. Transformer-XL and the sliding window are one forward pass over the
whole sequence with a mask; StreamingLLM's sinks and the compressive memory are a forward pass
that keeps every key at its absolute position and an attention function (registered with
``transformers``' AttentionInterface) that builds, for each query, the keys the definition lets it
see: sinks and window re-rotated to their slots, or mean-pooled groups and the raw memory.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.models.llama.modeling_llama import rotate_half

from harness.pretrained.model import cache_argument

REFERENCE = "memarena_reference"


def mask_forward(model, tokens: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Logits [T, V] of one pass over ``tokens`` [T] where query t sees key j iff ``visible[t, j]``."""
    mask = torch.zeros(visible.shape, dtype=model.dtype).masked_fill(~visible, torch.finfo(model.dtype).min)
    with torch.no_grad():
        return model(input_ids=tokens[None], attention_mask=mask[None, None]).logits[0]


def segment_starts(length: int, segment_len: int, prompt_len: int) -> torch.Tensor:
    """Start of the segment of every position: segments of ``segment_len`` over the prompt, then one token each."""
    positions = torch.arange(length)
    return torch.where(positions < prompt_len, positions // segment_len * segment_len, positions)


def xl_visible(length: int, segment_len: int, prompt_len: int, mem_len: int) -> torch.Tensor:
    """A segment starting at s sees the positions [s - mem_len, s) and itself, causally."""
    start = segment_starts(length, segment_len, prompt_len)[:, None]
    keys = torch.arange(length)[None, :]
    return (keys <= torch.arange(length)[:, None]) & (keys >= start - mem_len)


def window_visible(length: int, window: int) -> torch.Tensor:
    distance = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    return (distance >= 0) & (distance < window)


def _rotate(model, tensor: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``tensor`` [B, H, N, E] turned by ``shift`` [N] positions with the model's own cos/sin."""
    cos, sin = model.model.rotary_emb(tensor, shift[None].to(tensor.device))  # 1, N, E
    return tensor * cos[:, None] + rotate_half(tensor) * sin[:, None]


def _attend(query, keys, values, scaling):
    """One query [H, E] over keys and values [K, N, E] with grouped heads."""
    groups = query.shape[0] // keys.shape[0]
    keys, values = keys.repeat_interleave(groups, 0), values.repeat_interleave(groups, 0)  # H, N, E
    weights = torch.softmax((keys @ query[:, :, None]).squeeze(-1) * scaling, dim=-1)  # H, N
    return (weights[:, None, :] @ values).squeeze(1)  # H, E


@contextlib.contextmanager
def reference_attention(model, rows):
    """Run ``model`` with attention computed row by row: ``rows(module, t, query, keys, values)`` gives the
    (query [H, E], keys [K, N, E], values [K, N, E]) that query t attends with, from the full cache."""
    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        batch, _, length, _ = query.shape
        first = key.shape[2] - length
        out = torch.stack([torch.stack([_attend(*rows(model, first + i, query[b, :, i], key[b], value[b]), scaling)
                                        for i in range(length)]) for b in range(batch)])  # B, L, H, E
        return out, None

    AttentionInterface.register(REFERENCE, attention)
    saved = model.config._attn_implementation
    model.config._attn_implementation = REFERENCE
    try:
        yield
    finally:
        model.config._attn_implementation = saved


def streamed_logits(model, tokens: torch.Tensor, segment_starts_: list[int]) -> torch.Tensor:
    """Logits [T, V] of ``tokens`` fed in segments starting at ``segment_starts_``, every key kept at its
    absolute position (a cache that never evicts)."""
    cache, logits = DynamicCache(), []
    bounds = [*segment_starts_, len(tokens)]
    with torch.no_grad():
        for start, stop in zip(bounds, bounds[1:]):
            output = model(input_ids=tokens[None, start:stop], use_cache=True, **{cache_argument(model): cache})
            logits.append(output.logits[0])
    return torch.cat(logits)


def sinks_rows(sinks: int, window: int):
    """StreamingLLM read one token at a time: query t sees the first ``sinks`` tokens and the tokens j
    with t - j < ``window``, numbered by their rank among them (positions inside the cache)."""
    def rows(model, t, query, keys, values):
        seen = [j for j in range(t + 1) if j < sinks or t - j < window]
        seen_tensor = torch.tensor(seen)
        slots = torch.arange(len(seen))
        moved = _rotate(model, keys[None, :, seen_tensor], slots - seen_tensor)[0]
        turned = _rotate(model, query[None, :, None], torch.tensor([len(seen) - 1 - t]))[0, :, 0]
        return turned, moved, values[:, seen_tensor]
    return rows


def compressive_rows(starts: torch.Tensor, mem_len: int, cmem_len: int, rate: int):
    """The Compressive Transformer's memory: a segment starting at s sees the mean-pooled groups of c
    positions evicted by then (the newest ``cmem_len``), the memory [evicted, s) and itself, causally.
    ``starts`` [T]: the start of each position's segment."""
    def rows(model, t, query, keys, values):
        start = int(starts[t])
        evicted = max(0, (start - mem_len) // rate * rate)
        groups = range(max(0, evicted // rate - cmem_len), evicted // rate)
        pooled_keys = [keys[:, g * rate : (g + 1) * rate].mean(1) for g in groups]
        pooled_values = [values[:, g * rate : (g + 1) * rate].mean(1) for g in groups]
        raw = slice(evicted, t + 1)
        return (query, torch.cat([torch.stack(pooled_keys, 1) if groups else keys[:, :0], keys[:, raw]], 1),
                torch.cat([torch.stack(pooled_values, 1) if groups else values[:, :0], values[:, raw]], 1))
    return rows
