"""Memory policies on the KV cache of a pretrained causal LM: what the cache keeps between segments.

A pretrained model reads its input in segments (harness/pretrained/model.py): each segment is one
forward pass over the cache plus the segment's own tokens, after which the policy cuts the cache.
A policy answers three questions per segment: the rotary positions of the segment's tokens, which
cached and new positions each new token may see (a mask, or None for causal attention over all
of them), and what the cache keeps afterwards. Definitions (t: absolute index of a token in the
stream, counted from 0; "sees" includes the token itself):

- ``full``: keeps everything; the reference. Positions absolute.
- ``sliding_window`` (``window`` W, ``sinks`` S = 0): token t sees the tokens j with t - j < W, at
  any segment split, as Mistral's and Qwen2's own sliding-window attention; keeps the last W - 1
  between segments. Positions absolute.
  With ``sinks`` S > 0 (StreamingLLM, Xiao et al. 2023), the first S tokens stay visible to every
  later token as well (counted once), the cache keeps them plus the last W - 1, and positions are
  taken inside the cache as in the paper (mit-han-lab/streaming-llm's pos-shift attention): cached
  positions are numbered by slot, 0 .. N - 1, and a segment's tokens follow at N, N + 1, ...; the
  window keys move to their new slots when the cache evicts (harness/pretrained/rotary.py). Read
  one token at a time (``segment_len=1``, and always while decoding) this is exactly the paper's
  streaming; a longer segment numbers its tokens after the whole cache, so its later tokens see
  the sinks a little farther away than token-by-token reading would put them.
- ``transformer_xl`` (``mem_len`` M): a segment sees at most M cached positions plus itself
  (causally): the cache keeps the last M. Positions absolute, so rotary distances are the true
  distances (Transformer-XL's relative positions).
- ``compressive`` (``mem_len`` M, ``cmem_len`` C, ``rate`` c): the Compressive Transformer's
  scheme without training (Rae et al. 2019): the cache is [compressed; memory]. After a segment,
  the oldest memory positions beyond M leave it in whole groups of c (the memory holds up to
  c - 1 extra positions meanwhile); each group is mean-pooled, keys with keys and values with
  values, into one compressed slot, and the compressed memory keeps its newest C slots. A pooled
  key is the mean of rotary-rotated keys (pretrained models have no compression function to
  train); new tokens take absolute positions. With rate 1 and C = 0 it is ``transformer_xl``.
- ``kvpress`` (harness/pretrained/kvpress_policy.py): any kvpress press compresses the context
  while it is read in one pass; the question and the answer then follow uncompressed.

``bound()`` is the most positions a policy keeps between segments (None: unbounded).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn
from transformers import DynamicCache

from harness.config import (CompressiveOptions, FullOptions, KvPressOptions, SlidingWindowOptions,
                            TransformerXLOptions)
from harness.pretrained.cache import cached_positions, layer_tensors, set_layer
from harness.pretrained.rotary import rotary_frequencies, shift_keys

POLICIES: dict[str, type["Policy"]] = {}


def register_policy(name: str) -> Callable[[type["Policy"]], type["Policy"]]:
    def decorator(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls
    return decorator


def policies() -> list[str]:
    """Names of the memory policies (``kvpress`` included; it needs the optional ``kvpress`` package)."""
    import harness.pretrained.kvpress_policy  # noqa: F401  registers "kvpress" (kvpress itself loads when built)

    return sorted(POLICIES)


def build_policy(name: str, **options: Any) -> "Policy":
    """A fresh policy ``name`` with its options; unknown names and options raise ValueError naming the known ones."""
    known = policies()
    if name not in known:
        raise ValueError(f"unknown memory policy {name!r}; known policies: {', '.join(known)}")
    try:
        return POLICIES[name](**options)
    except TypeError as error:
        raise ValueError(f"memory policy {name!r}: {error}") from None


def sized_options(name: str, budget: Optional[int], options: dict[str, Any]) -> dict[str, Any]:
    """The options of policy ``name`` with its memory knobs sized to keep ``budget`` positions (None: as given);
    ValueError for an unknown policy or a budget it cannot take."""
    if budget is None:
        return dict(options)
    known = policies()
    if name not in known:
        raise ValueError(f"unknown memory policy {name!r}; known policies: {', '.join(known)}")
    _positive(name, budget=budget)
    return POLICIES[name].options_for_budget(budget, dict(options))


@dataclass
class Policy:
    """Base of the policies: full attention over everything, nothing evicted (see the module docstring)."""

    name: ClassVar[str]
    #: the context must be read in one forward pass (a kvpress press compresses it then)
    whole_context: ClassVar[bool] = False

    def bind(self, model: nn.Module) -> None:
        """Called once with the model before the first sequence (for what the policy reads from it)."""

    def reset(self) -> None:
        """Forget the previous sequence (a fresh cache follows)."""

    def positions(self, cache: DynamicCache, read: int, length: int) -> torch.Tensor:
        """Rotary positions [length] of the next ``length`` tokens, after ``read`` tokens of the stream."""
        return torch.arange(read, read + length)

    def mask(self, cache: DynamicCache, read: int, length: int) -> Optional[torch.Tensor]:
        """Visibility [length, cached + length] (True: may attend), or None for causal over all."""
        return None

    def evict(self, cache: DynamicCache, read: int) -> None:
        """Cut the cache after a segment; ``read`` counts the tokens read so far, the segment's included."""

    def context(self, model: nn.Module):
        """A context manager around the forward pass that reads the context (kvpress: the press)."""
        return contextlib.nullcontext()

    def bound(self) -> Optional[int]:
        return None

    @classmethod
    def options_for_budget(cls, budget: int, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with the policy's memory knobs set so that ``bound()`` is ``budget`` positions
        (the unbounded ``full`` keeps everything and ignores it)."""
        return options

    def check(self) -> None:
        """Raise ValueError for options out of range."""

    def __post_init__(self) -> None:
        self.check()
        self.reset()


def _positive(policy: str, **values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"memory policy {policy!r}: {key} must be a positive integer, got {value!r}")


def _keep(cache: DynamicCache, index: torch.Tensor) -> None:
    """Keep the cached positions ``index`` (in that order) in every layer."""
    for layer, (keys, values) in enumerate(layer_tensors(cache)):
        index = index.to(keys.device)
        set_layer(cache, layer, keys.index_select(2, index), values.index_select(2, index))


@register_policy("full")
@dataclass
class Full(Policy, FullOptions):
    pass


@register_policy("sliding_window")
@dataclass
class SlidingWindow(Policy, SlidingWindowOptions):

    def check(self) -> None:
        _positive(self.name, window=self.window)
        if not isinstance(self.sinks, int) or self.sinks < 0:
            raise ValueError(f"memory policy 'sliding_window': sinks must be an integer >= 0, got {self.sinks!r}")

    def bind(self, model: nn.Module) -> None:
        self.inv_freq = rotary_frequencies(model) if self.sinks else None

    def bound(self) -> int:
        return self.sinks + self.window - 1

    @classmethod
    def options_for_budget(cls, budget: int, options: dict[str, Any]) -> dict[str, Any]:
        sinks = options.get("sinks", cls.sinks)
        return {**options, "window": budget - sinks + 1}

    def _cached_tokens(self, cache: DynamicCache, read: int) -> torch.Tensor:
        """Stream indices of the cached positions: the sinks, then the last tokens before ``read``."""
        count = cached_positions(cache)
        sinks = min(self.sinks, read, count)
        return torch.cat((torch.arange(sinks), torch.arange(read - (count - sinks), read)))

    def positions(self, cache: DynamicCache, read: int, length: int) -> torch.Tensor:
        start = cached_positions(cache) if self.sinks else read
        return torch.arange(start, start + length)

    def mask(self, cache: DynamicCache, read: int, length: int) -> torch.Tensor:
        keys = torch.cat((self._cached_tokens(cache, read), torch.arange(read, read + length)))  # N + L
        queries = torch.arange(read, read + length)[:, None]  # L, 1
        distance = queries - keys[None, :]  # L, N + L
        return (distance >= 0) & ((distance < self.window) | (keys[None, :] < self.sinks))

    def evict(self, cache: DynamicCache, read: int) -> None:
        tokens, count = self._cached_tokens(cache, read), cached_positions(cache)
        keep = torch.nonzero((tokens < self.sinks) | (tokens > read - self.window)).squeeze(1)
        if len(keep) == count:
            return
        _keep(cache, keep)
        if self.sinks:  # renumber by slot: every kept key moves back by the evicted positions before it
            shift = keep - torch.arange(len(keep))
            for layer, (keys, values) in enumerate(layer_tensors(cache)):
                set_layer(cache, layer, shift_keys(keys, -shift, self.inv_freq), values)


@register_policy("transformer_xl")
@dataclass
class TransformerXL(Policy, TransformerXLOptions):

    def check(self) -> None:
        _positive(self.name, mem_len=self.mem_len)

    def bound(self) -> int:
        return self.mem_len

    @classmethod
    def options_for_budget(cls, budget: int, options: dict[str, Any]) -> dict[str, Any]:
        return {**options, "mem_len": budget}

    def evict(self, cache: DynamicCache, read: int) -> None:
        count = cached_positions(cache)
        if count > self.mem_len:
            _keep(cache, torch.arange(count - self.mem_len, count))


@register_policy("compressive")
@dataclass
class Compressive(Policy, CompressiveOptions):

    def check(self) -> None:
        _positive(self.name, mem_len=self.mem_len, rate=self.rate)
        if not isinstance(self.cmem_len, int) or self.cmem_len < 0:
            raise ValueError(f"memory policy 'compressive': cmem_len must be an integer >= 0, got {self.cmem_len!r}")

    def reset(self) -> None:
        self.compressed = 0  # slots of compressed memory at the front of the cache

    def bound(self) -> int:
        return self.cmem_len + self.mem_len + self.rate - 1

    @classmethod
    def options_for_budget(cls, budget: int, options: dict[str, Any]) -> dict[str, Any]:
        """Half the positions (after the rate - 1 a memory holds while a group fills) to the memory, half to
        the compressed slots, which reach ``rate`` times as far."""
        room = budget - options.get("rate", cls.rate) + 1
        return {**options, "mem_len": room - room // 2, "cmem_len": room // 2}

    def evict(self, cache: DynamicCache, read: int) -> None:
        memory = cached_positions(cache) - self.compressed
        leaving = max(0, memory - self.mem_len) // self.rate * self.rate
        if not leaving:
            return
        slots = min(self.cmem_len, self.compressed + leaving // self.rate)
        for layer, (keys, values) in enumerate(layer_tensors(cache)):
            parts = []
            for tensor in (keys, values):
                batch, heads, _, dim = tensor.shape
                old = tensor[:, :, self.compressed : self.compressed + leaving]  # B, K, leaving, E
                pooled = old.reshape(batch, heads, leaving // self.rate, self.rate, dim).mean(dim=3)
                compressed = torch.cat((tensor[:, :, : self.compressed], pooled), dim=2)
                parts.append(torch.cat((compressed[:, :, compressed.shape[2] - slots :],
                                        tensor[:, :, self.compressed + leaving :]), dim=2))
            set_layer(cache, layer, *parts)
        self.compressed = slots
