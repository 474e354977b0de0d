"""The memory a pretrained run needs at least, checked against the device's before any work.

The pretrained counterpart of harness/engine/checks.py's ``check_memory``: from the model's config
alone (no weights loaded), the weights (its parameters, counted on the meta device, x the bytes of
the dtype it runs in) plus the KV cache at the longest cell: layers x 2 (keys, values) x key-value
heads x head dimension x dtype bytes x the positions the policy keeps. A bounded policy keeps its
bound and, during a forward pass, the segment it reads (``bound + segment_len``); ``full`` and a
kvpress press (which compresses after reading the whole context in one pass) keep the prompt and
the generated tokens. Activations are left out: the estimate is a floor, so a run it lets through
may still run out of memory (its cells are then stored as ``oom``), but one it refuses cannot fit.
"""

from __future__ import annotations

from typing import Optional

import torch

from harness.engine.checks import ConfigError, available_bytes
from harness.pretrained.evaluate import PretrainedRunConfig
from harness.pretrained.policies import build_policy

#: the largest generation budget of a benchmark template (RULER's NIAH), when model.max_new_tokens is null
LONGEST_TEMPLATE_BUDGET = 128


def kv_bytes_per_position(config, dtype: torch.dtype) -> int:
    """Bytes one cached position takes over all layers: layers x 2 x key-value heads x head dimension x dtype bytes."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers * 2 * kv_heads * head_dim * torch.finfo(dtype).bits // 8


def weight_bytes(config, dtype: torch.dtype) -> int:
    """The weights' bytes in ``dtype``: the parameters of the model built on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters()) * torch.finfo(dtype).bits // 8


def kept_positions(run: PretrainedRunConfig) -> int:
    """The most positions the run's cache holds: at the longest cell, while reading a segment or decoding."""
    whole = max(run.context_lens) + (run.max_new_tokens or LONGEST_TEMPLATE_BUDGET)
    bound = build_policy(run.policy, **run.policy_options).bound()
    return whole if bound is None else min(whole, bound + run.segment_len)


def check_pretrained_memory(run: PretrainedRunConfig, device: torch.device,
                            max_memory_gb: Optional[float] = None) -> None:
    """ConfigError (one line) if the weights and the KV cache at the longest cell exceed the device's memory
    (or ``max_memory_gb``); the model's config is read, its weights are not."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(run.model)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model.name={run.model!r}: cannot read its config: {str(error).splitlines()[0]}") from None
    dtype = getattr(torch, run.dtype) if run.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    available, what = available_bytes(device)
    if max_memory_gb is not None and max_memory_gb * 2**30 < available:
        available, what = int(max_memory_gb * 2**30), "budget of eval.max_memory_gb"
    weights, positions = weight_bytes(config, dtype), kept_positions(run)
    cache = positions * kv_bytes_per_position(config, dtype)
    if weights + cache > available:
        raise ConfigError(
            f"{run.model} with policy {run.policy} at context_len={max(run.context_lens)}: needs at least "
            f"{(weights + cache) / 2**30:.3g} GB (weights {weights / 2**30:.3g} GB in {str(dtype).removeprefix('torch.')}"
            f" + KV cache of {positions} positions {cache / 2**30:.3g} GB, estimated), more than the "
            f"{available / 2**30:.3g} GB {what}; use shorter lengths, a bounded policy (policy.budget=...) or a "
            "smaller model or dtype")
