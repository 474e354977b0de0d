"""A pretrained run that cannot fit the device's memory is refused before any work, from the model's config."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from conftest import compose_config  # noqa: E402
from harness.engine.checks import ConfigError  # noqa: E402
from harness.pretrained import PretrainedLM, build_policy  # noqa: E402
from harness.pretrained.evaluate import PretrainedRunConfig  # noqa: E402
from harness.pretrained.memory import (check_pretrained_memory, kept_positions, kv_bytes_per_position,  # noqa: E402
                                       weight_bytes)
from harness.pretrained.run import run_pretrained_job  # noqa: E402
from harness.pretrained.tiny import save_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "llama")


def test_pretrained_memory_estimate_counts_the_cache_and_weights_it_measures(model_dir):
    lm = PretrainedLM.load(str(model_dir))
    prompt = lm.encode("the grass is green. " * 20, "\nWhat colour is the grass?", " Answer:")
    generation = lm.generate(prompt, build_policy("full"), 16, 3)
    per_position = kv_bytes_per_position(lm.model.config, torch.float32)
    assert per_position == 2 * 2 * 2 * 16 * 4  # layers x (keys, values) x key-value heads x head dimension x fp32
    assert generation.kv_bytes == (len(prompt) + len(generation.tokens) - 1) * per_position
    assert weight_bytes(lm.model.config, torch.float32) == sum(p.numel() * 4 for p in lm.model.parameters())
    assert weight_bytes(lm.model.config, torch.bfloat16) == sum(p.numel() * 2 for p in lm.model.parameters())
    run = PretrainedRunConfig(model=str(model_dir), task="niah", context_lens=[512, 1024], segment_len=64,
                              max_new_tokens=8)
    assert kept_positions(run) == 1024 + 8
    bounded = PretrainedRunConfig(model=str(model_dir), task="niah", context_lens=[1024], policy="transformer_xl",
                                  policy_options={"mem_len": 100}, segment_len=64, max_new_tokens=8)
    assert kept_positions(bounded) == 100 + 64


def test_pretrained_run_too_long_for_the_device_is_refused_before_any_work(model_dir, tmp_path):
    impossible = 10**9  # 10^9 positions x 512 bytes: about 477 GB of KV cache
    cfg = compose_config(["model=hf", f"model.name={model_dir}", "task=niah", f"eval.grid.context_len=[{impossible}]",
                          "eval.examples_per_cell=1", f"results_dir={tmp_path / 'results'}",
                          f"reports_dir={tmp_path / 'reports'}", "cache_dir=null", "device=cpu"])
    with pytest.raises(ConfigError) as caught:
        run_pretrained_job(cfg)
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(rf".* with policy full at context_len={impossible}: needs at least [\d.]+ GB \(weights [\d.e-]+ GB "
                        r"in float32 \+ KV cache of \d+ positions [\d.]+ GB, estimated\), more than the [\d.]+ GB .*", message)
    assert not (tmp_path / "results").exists()  # nothing written
    bounded = PretrainedRunConfig(model=str(model_dir), task="niah", context_lens=[impossible], policy="sliding_window",
                                  policy_options={"window": 64})
    check_pretrained_memory(bounded, torch.device("cpu"))  # a bounded cache fits at any length
    with pytest.raises(ConfigError, match="more than the 0.0001 GB budget of eval.max_memory_gb"):
        check_pretrained_memory(bounded, torch.device("cpu"), max_memory_gb=0.0001)
