"""The tiny random model in bfloat16 on a GPU (skipped without CUDA): the policies run and agree with generate."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from harness.pretrained import PretrainedLM, Prompt, build_policy  # noqa: E402
from harness.pretrained.tiny import save_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return PretrainedLM.load(str(save_tiny_model(tmp_path_factory.mktemp("tiny"), "llama")))


def test_pretrained_cuda_loads_in_bfloat16_and_full_matches_generate(lm):
    assert lm.device.type == "cuda" and lm.model.dtype == torch.bfloat16
    prompt = lm.encode("Alice was beginning to get very tired of sitting by her sister on the bank.",
                       " What was she tired of?", " Answer:")
    ids = torch.cat((prompt.context, prompt.query)).to(lm.device)
    expected = lm.model.generate(ids[None], max_new_tokens=8, do_sample=False, pad_token_id=2)
    assert lm.generate(prompt, build_policy("full"), 1000, 8).tokens == expected[0, len(ids) :].tolist()


@pytest.mark.parametrize("name, options, positions", [
    ("sliding_window", {"window": 8, "sinks": 2}, 9),
    ("transformer_xl", {"mem_len": 10}, 10),
    ("compressive", {"mem_len": 8, "cmem_len": 3, "rate": 2}, 12),
])
def test_pretrained_cuda_policies_keep_bounded_bfloat16_caches(lm, name, options, positions):
    tokens = torch.randint(3, 500, (60,), generator=torch.Generator().manual_seed(0))
    generation = lm.generate(Prompt(tokens, tokens[:0]), build_policy(name, **options), 7, 6)
    per_position = 2 * 2 * 2 * 16 * 2  # layers x (keys, values) x key-value heads x head dimension x bfloat16 bytes
    assert generation.kv_bytes <= positions * per_position and len(generation.tokens) >= 1
