"""Memory policies on a pretrained model's KV cache equal their definitions (tiny random models, no download).

``full`` generates what the model's own ``generate`` does; ``sliding_window`` equals Mistral's and
Qwen2's own sliding-window attention; the sinks equal StreamingLLM's pos-shift computed directly;
Transformer-XL equals a masked pass over the whole sequence and the compressive memory an attention
over pooled groups built from a cache that keeps everything (tests/pretrained_references.py).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from transformers import DynamicCache  # noqa: E402

from harness.pretrained import PretrainedLM, Prompt, build_policy, kv_bytes  # noqa: E402
from harness.pretrained.cache import layer_tensors  # noqa: E402
from harness.pretrained.tiny import tiny_model, tiny_tokenizer  # noqa: E402
import pretrained_references as reference  # noqa: E402

ARCHITECTURES = ["llama", "qwen2"]
NEW_TOKENS = 6
ATOL = 1e-4


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def language_model(architecture, tokenizer, sliding_window=None) -> PretrainedLM:
    return PretrainedLM(tiny_model(architecture, len(tokenizer), sliding_window), tokenizer)


def random_tokens(count: int, seed: int = 0) -> torch.Tensor:
    """Token ids that are not special (so no generation ends early)."""
    return torch.randint(3, 500, (count,), generator=torch.Generator().manual_seed(seed))


def streamed(lm: PretrainedLM, policy, tokens: torch.Tensor, segment_len: int) -> torch.Tensor:
    """Logits [T, V] of ``tokens`` read through ``policy`` in segments."""
    policy.bind(lm.model)
    policy.reset()
    logits, _ = lm.stream(tokens, policy, segment_len, DynamicCache(), all_logits=True)
    return logits[0]


def generated_matches(lm: PretrainedLM, policy, tokens: torch.Tensor, segment_len: int, logits_of) -> None:
    """Generation through ``policy`` equals greedy reading of the reference logits ``logits_of(sequence)``."""
    generation = lm.generate(Prompt(tokens, tokens[:0]), policy, segment_len, NEW_TOKENS)
    sequence = torch.cat((tokens, torch.tensor(generation.tokens[:-1], dtype=torch.long)))
    expected = logits_of(sequence)[len(tokens) - 1 :].argmax(-1)
    assert generation.tokens == expected.tolist()


@pytest.mark.parametrize("architecture", [*ARCHITECTURES, "mistral"])
@pytest.mark.parametrize("segment_len", [1, 5, 1000])
def test_pretrained_full_generates_what_hf_generate_does(architecture, segment_len, tokenizer):
    lm = language_model(architecture, tokenizer)
    prompt = lm.encode("Alice was beginning to get very tired of sitting by her sister on the bank.",
                       " What was she tired of?", " Answer:")
    assert len(prompt.context) > 5 and len(prompt.query) > 2
    ids = torch.cat((prompt.context, prompt.query))
    expected = lm.model.generate(ids[None], max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    generation = lm.generate(prompt, build_policy("full"), segment_len, 12)
    assert generation.tokens == expected[0, len(ids) :].tolist()
    assert generation.text == tokenizer.decode(generation.tokens, skip_special_tokens=True)


@pytest.mark.parametrize("architecture", ["mistral", "qwen2"])
@pytest.mark.parametrize("segment_len", [1, 3, 1000])
def test_pretrained_sliding_window_equals_the_models_own(architecture, segment_len, tokenizer):
    window = 7
    own = language_model(architecture, tokenizer, sliding_window=window)  # the model's own windowed attention
    lm = language_model(architecture, tokenizer)  # the same weights without it: the policy does the windowing
    for (name, mine), theirs in zip(lm.model.state_dict().items(), own.model.state_dict().values()):
        assert torch.equal(mine, theirs), name
    tokens = random_tokens(30)
    with torch.no_grad():
        expected = own.model(tokens[None]).logits[0]
        assert not torch.allclose(expected, lm.model(tokens[None]).logits[0], atol=1e-2)  # the window matters
    torch.testing.assert_close(streamed(lm, build_policy("sliding_window", window=window), tokens, segment_len),
                               expected, atol=ATOL, rtol=0)
    policy = build_policy("sliding_window", window=window)
    generation = lm.generate(Prompt(tokens, tokens[:0]), policy, segment_len, NEW_TOKENS)
    hf = own.model.generate(tokens[None], max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=2)
    assert generation.tokens == hf[0, len(tokens) :].tolist()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_pretrained_sinks_equal_streamingllm_pos_shift(architecture, tokenizer):
    """Read one token at a time (the paper's streaming), sinks + window with positions inside the cache."""
    sinks, window = 3, 6
    lm = language_model(architecture, tokenizer)
    tokens = random_tokens(24, seed=1)

    def expected(sequence):
        with reference.reference_attention(lm.model, reference.sinks_rows(sinks, window)):
            return reference.streamed_logits(lm.model, sequence, list(range(len(sequence))))

    policy = build_policy("sliding_window", window=window, sinks=sinks)
    reference_logits = expected(tokens)
    torch.testing.assert_close(streamed(lm, policy, tokens, 1), reference_logits, atol=ATOL, rtol=0)
    window_only = streamed(lm, build_policy("sliding_window", window=window), tokens, 1)
    assert not torch.allclose(window_only, reference_logits, atol=1e-2)  # the sinks matter
    generated_matches(lm, build_policy("sliding_window", window=window, sinks=sinks), tokens, 1, expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("segment_len", [1, 4, 7])
def test_pretrained_transformer_xl_equals_a_segment_masked_pass(architecture, segment_len, tokenizer):
    mem_len = 5
    lm = language_model(architecture, tokenizer)
    tokens = random_tokens(26, seed=2)

    def expected(sequence):
        visible = reference.xl_visible(len(sequence), segment_len, len(tokens), mem_len)
        return reference.mask_forward(lm.model, sequence, visible)

    torch.testing.assert_close(streamed(lm, build_policy("transformer_xl", mem_len=mem_len), tokens, segment_len),
                               expected(tokens), atol=ATOL, rtol=0)
    generated_matches(lm, build_policy("transformer_xl", mem_len=mem_len), tokens, segment_len, expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("segment_len", [1, 4])
def test_pretrained_compressive_equals_pooled_attention(architecture, segment_len, tokenizer):
    mem_len, cmem_len, rate = 6, 2, 3
    lm = language_model(architecture, tokenizer)
    tokens = random_tokens(30, seed=3)

    def expected(sequence):
        starts = reference.segment_starts(len(sequence), segment_len, len(tokens))
        rows = reference.compressive_rows(starts, mem_len, cmem_len, rate)
        with reference.reference_attention(lm.model, rows):
            return reference.streamed_logits(lm.model, sequence, sorted(set(starts.tolist())))

    policy = build_policy("compressive", mem_len=mem_len, cmem_len=cmem_len, rate=rate)
    reference_logits = expected(tokens)
    torch.testing.assert_close(streamed(lm, policy, tokens, segment_len), reference_logits, atol=ATOL, rtol=0)
    xl = streamed(lm, build_policy("transformer_xl", mem_len=mem_len), tokens, segment_len)
    assert not torch.allclose(xl, reference_logits, atol=1e-2)  # the compressed slots matter
    generated_matches(lm, build_policy("compressive", mem_len=mem_len, cmem_len=cmem_len, rate=rate), tokens,
                      segment_len, expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_pretrained_policies_reduce_to_full_when_nothing_is_evicted(architecture, tokenizer):
    lm = language_model(architecture, tokenizer)
    tokens = random_tokens(20, seed=4)
    full = streamed(lm, build_policy("full"), tokens, 4)
    for name, options in [("sliding_window", {"window": 64}), ("sliding_window", {"window": 64, "sinks": 4}),
                          ("transformer_xl", {"mem_len": 64}), ("compressive", {"mem_len": 64, "cmem_len": 8})]:
        torch.testing.assert_close(streamed(lm, build_policy(name, **options), tokens, 4), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name, options, kept", [
    ("full", {}, None),
    ("sliding_window", {"window": 8}, 7),
    ("sliding_window", {"window": 8, "sinks": 2}, 9),
    ("transformer_xl", {"mem_len": 10}, 10),
    ("compressive", {"mem_len": 8, "cmem_len": 3, "rate": 2}, 11),  # 3 pooled slots + 8 of memory
])
def test_pretrained_kv_bytes_are_the_cache_tensors_bytes(name, options, kept, dtype, tokenizer):
    lm = language_model("llama", tokenizer)
    lm.model.to(dtype)
    tokens = random_tokens(40, seed=5)
    policy = build_policy(name, **options)
    policy.bind(lm.model)
    cache = DynamicCache()
    _, largest = lm.stream(tokens, policy, 5, cache)
    storage = sum(tensor.untyped_storage().nbytes() for pair in layer_tensors(cache) for tensor in pair)
    assert kv_bytes(cache) == storage  # no evicted position stays alive behind a view
    config = lm.model.config
    positions = len(tokens) if kept is None else min(kept, policy.bound())
    head_dim = config.hidden_size // config.num_attention_heads
    per_position = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim
    assert kv_bytes(cache) == positions * per_position * dtype.itemsize
    assert largest >= kv_bytes(cache)
    assert policy.bound() is None if kept is None else largest <= policy.bound() * per_position * dtype.itemsize


def test_pretrained_unknown_policy_and_bad_options_are_clear():
    with pytest.raises(ValueError, match="known policies: compressive, full, kvpress, sliding_window, transformer_xl"):
        build_policy("h2o")
    with pytest.raises(ValueError, match="window must be a positive integer"):
        build_policy("sliding_window", window=0)
    with pytest.raises(ValueError, match="unexpected keyword argument 'mem'"):
        build_policy("transformer_xl", mem=3)
