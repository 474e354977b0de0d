"""kvpress presses as memory policies (skipped where the optional kvpress package is not installed).

Two checks on tiny random models: the sinks policy's eviction of a cache, with its keys moved to
their slots, is what kvpress's StreamingLLMPress wrapped in KeyRerotationPress leaves after the
same prefill at the same budget; and the ``kvpress`` policy generates what a direct computation
does: the context read in one pass and cut by the press's rule, the question and answer after it
at their absolute positions.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

pytest.importorskip("transformers")
kvpress = pytest.importorskip("kvpress")

from transformers import DynamicCache  # noqa: E402

from harness.pretrained import PretrainedLM, Prompt, build_policy  # noqa: E402
from harness.pretrained.cache import layer_tensors  # noqa: E402
from harness.pretrained.model import cache_argument  # noqa: E402
from harness.pretrained.tiny import tiny_model, tiny_tokenizer  # noqa: E402

SINKS, CONTEXT, RATIO = 4, 40, 0.5
KEPT = int(CONTEXT * (1 - RATIO))  # kvpress keeps this many positions: SINKS + (window - 1)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lm(request):
    tokenizer = tiny_tokenizer()
    return PretrainedLM(tiny_model(request.param, len(tokenizer)), tokenizer)


def context_tokens() -> torch.Tensor:
    return torch.randint(3, 500, (CONTEXT,), generator=torch.Generator().manual_seed(0))


def prefill(lm: PretrainedLM, tokens: torch.Tensor, press=None) -> DynamicCache:
    cache = DynamicCache()
    with torch.no_grad(), (press(lm.model) if press is not None else contextlib.nullcontext()):
        lm.model(input_ids=tokens[None], use_cache=True, **{cache_argument(lm.model): cache})
    return cache


def test_pretrained_sinks_eviction_equals_kvpress_streamingllm_with_key_rerotation(lm):
    press = kvpress.KeyRerotationPress(kvpress.StreamingLLMPress(compression_ratio=RATIO, n_sink=SINKS))
    theirs = prefill(lm, context_tokens(), press)
    mine = prefill(lm, context_tokens())
    policy = build_policy("sliding_window", window=KEPT - SINKS + 1, sinks=SINKS)
    policy.bind(lm.model)
    policy.evict(mine, CONTEXT)
    for (my_keys, my_values), (keys, values) in zip(layer_tensors(mine), layer_tensors(theirs)):
        assert my_keys.shape[2] == KEPT
        torch.testing.assert_close(my_keys, keys, atol=1e-5, rtol=0)
        torch.testing.assert_close(my_values, values, atol=0, rtol=0)


def test_pretrained_kvpress_policy_generates_from_the_pressed_cache(lm):
    tokens, query = context_tokens(), torch.tensor([7, 8, 9, 10])
    generation = lm.generate(Prompt(tokens, query), build_policy(
        "kvpress", press="StreamingLLMPress", press_options={"compression_ratio": RATIO, "n_sink": SINKS}), 3, 5)
    cache = prefill(lm, tokens)  # direct: the whole context, then the press's rule (first SINKS and the newest)
    keep = torch.cat((torch.arange(SINKS), torch.arange(CONTEXT - (KEPT - SINKS), CONTEXT)))
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, keep], layer.values[:, :, keep]
    expected, sequence, read = [], query, CONTEXT
    with torch.no_grad():
        while len(expected) < len(generation.tokens):
            logits = lm.model(input_ids=sequence[None], position_ids=torch.arange(read, read + len(sequence))[None],
                              use_cache=True, **{cache_argument(lm.model): cache}).logits
            read += len(sequence)
            expected.append(int(logits[0, -1].argmax()))
            sequence = torch.tensor(expected[-1:])
    assert generation.tokens == expected
    per_position = 2 * 2 * 2 * 16 * 4  # layers x (keys, values) x key-value heads x head dimension x float32 bytes
    assert generation.kv_bytes == (KEPT + len(query) + len(generation.tokens) - 1) * per_position


def test_pretrained_kvpress_unknown_press_is_named():
    with pytest.raises(ValueError, match="kvpress has no press 'NoSuchPress'; its presses: .*StreamingLLMPress"):
        build_policy("kvpress", press="NoSuchPress")
