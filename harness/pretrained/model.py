"""A pretrained causal LM from ``transformers``, streamed in segments through a memory policy.

Dimension letters: B batch (1: prompts differ in length), L segment positions, N cached
positions, V vocabulary.

``PretrainedLM.load(name_or_path)`` loads any causal LM that ``AutoModelForCausalLM`` loads (a
hub name or a directory saved with ``save_pretrained``) with its own tokenizer, in bfloat16 on
CUDA and float32 on CPU. ``generate`` reads a prompt (a context, then a query: the question and
the answer prefix) in segments of ``segment_len`` tokens through a memory policy
(harness/pretrained/policies.py), then writes at most ``max_new_tokens`` greedily, one token per
forward pass, the policy cutting the cache after every pass. Each pass passes the policy's rotary
positions and, where the policy has one, its visibility mask (as an additive [B, 1, L, N + L]
mask, which the model applies as it is); without one the model's own causal masking applies.

Measured per generation: the KV-cache bytes (the largest the cache was between passes, summed
from its tensors), the seconds of the prefill (the whole prompt) and of each decoded token.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from harness.pretrained.cache import kv_bytes
from harness.pretrained.policies import Policy


@dataclass
class Prompt:
    """A prompt in the model's tokens: the context (what a policy may compress) and the query after it."""

    context: torch.Tensor  # [T_context] token ids
    query: torch.Tensor  # [T_query] token ids: the question and the answer prefix

    def __len__(self) -> int:
        return len(self.context) + len(self.query)


@dataclass
class Generation:
    tokens: list[int]  # generated ids, the end-of-sequence id included when it came
    text: str  # the generated text, special tokens left out
    prompt_tokens: int
    kv_bytes: int  # largest cache between passes, in bytes summed from its tensors
    prefill_s: float
    decode_s: list[float] = field(default_factory=list)  # seconds of each decoded token after the first


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PretrainedLM:
    """A causal LM and its tokenizer (see the module docstring)."""

    def __init__(self, model, tokenizer, chat_template: bool = False):
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"chat_template=True but the tokenizer of {model.name_or_path!r} has no chat template")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self._cache_argument = cache_argument(model)
        self.eos = set(_ids(model.generation_config.eos_token_id) or _ids(tokenizer.eos_token_id))

    @classmethod
    def load(cls, name_or_path: str, device: Optional[str] = None, dtype: Optional[str] = None,
             chat_template: bool = False, attn_implementation: str = "sdpa") -> "PretrainedLM":
        """Model and tokenizer ``name_or_path``; dtype bfloat16 on CUDA and float32 on CPU unless given."""
        target = torch.device(device) if device else default_device()
        chosen = getattr(torch, dtype) if dtype else (torch.bfloat16 if target.type == "cuda" else torch.float32)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=chosen,
                                                         attn_implementation=attn_implementation)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot load a causal LM from {name_or_path!r}: {error}") from None
        return cls(model.to(target), tokenizer, chat_template)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())

    def encode(self, context: str, question: str, answer_prefix: str = "") -> Prompt:
        """``context + question + answer_prefix`` in the model's tokens, split where the context ends. With the
        chat template, context and question are the user's turn and the answer prefix opens the assistant's."""
        if self.chat_template:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": context + question}],
                                                      tokenize=False, add_generation_prompt=True) + answer_prefix
        else:
            text = context + question + answer_prefix
        end = text.index(context) + len(context)
        # the chat template's text starts with its own special tokens; a plain prompt gets the tokenizer's
        encoded = self.tokenizer(text, add_special_tokens=not self.chat_template, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        split = next((i for i, (first, last) in enumerate(offsets) if first >= end and last > first), len(ids))
        ids = torch.tensor(ids, dtype=torch.long)
        return Prompt(ids[:split], ids[split:])

    def forward(self, tokens: torch.Tensor, cache: DynamicCache, policy: Policy, read: int,
                all_logits: bool = False) -> torch.Tensor:
        """Logits [1, L, V] (or [1, 1, V], the last) of ``tokens`` [L] read after ``read`` tokens; the policy
        cuts the cache after."""
        length = len(tokens)
        positions = policy.positions(cache, read, length).to(self.device)[None]  # 1, L
        visible = policy.mask(cache, read, length)
        mask = None
        if visible is not None:  # L, N + L -> additive 1, 1, L, N + L
            dtype = self.model.dtype
            mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
            mask = mask.to(self.device)[None, None]
        output = self.model(input_ids=tokens.to(self.device)[None], position_ids=positions, attention_mask=mask,
                            use_cache=True, logits_to_keep=0 if all_logits else 1, **{self._cache_argument: cache})
        policy.evict(cache, read + length)
        return output.logits

    @torch.no_grad()
    def stream(self, tokens: torch.Tensor, policy: Policy, segment_len: int, cache: DynamicCache, read: int = 0,
               all_logits: bool = False) -> tuple[torch.Tensor, int]:
        """Read ``tokens`` [T] in segments of ``segment_len`` after ``read`` tokens: the logits [1, T, V] of every
        position with ``all_logits``, else [1, 1, V] of the last, and the largest cache between passes in bytes."""
        if segment_len < 1:
            raise ValueError(f"segment_len must be at least 1, got {segment_len}")
        logits, largest = [], 0
        for start in range(0, len(tokens), segment_len):
            logits.append(self.forward(tokens[start : start + segment_len], cache, policy, read + start, all_logits))
            largest = max(largest, kv_bytes(cache))
        return (torch.cat(logits, dim=1) if all_logits else logits[-1]), largest

    @torch.no_grad()
    def generate(self, prompt: Prompt, policy: Policy, segment_len: int, max_new_tokens: int) -> Generation:
        """Greedy generation of at most ``max_new_tokens`` after reading ``prompt`` through ``policy``."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if len(prompt) == 0:
            raise ValueError("the prompt is empty")
        policy.bind(self.model)
        policy.reset()
        cache, largest, read = DynamicCache(), 0, 0
        synchronize(self.device)
        start = time.perf_counter()
        if len(prompt.context):
            with policy.context(self.model):
                segment = len(prompt.context) if policy.whole_context else segment_len
                logits, largest = self.stream(prompt.context, policy, segment, cache)
            read = len(prompt.context)
        if len(prompt.query):
            logits, query_largest = self.stream(prompt.query, policy, segment_len, cache, read)
            largest, read = max(largest, query_largest), read + len(prompt.query)
        token = int(logits[0, -1].argmax())
        synchronize(self.device)
        prefill = time.perf_counter() - start
        tokens, decode = [token], []
        while len(tokens) < max_new_tokens and token not in self.eos:
            start = time.perf_counter()
            logits = self.forward(torch.tensor([token]), cache, policy, read)
            token = int(logits[0, -1].argmax())
            synchronize(self.device)
            decode.append(time.perf_counter() - start)
            largest, read = max(largest, kv_bytes(cache)), read + 1
            tokens.append(token)
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Generation(tokens, text, len(prompt), largest, prefill, decode)


def cache_argument(model) -> str:
    """The name of the forward pass's cache argument: ``cache`` in newer transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]
