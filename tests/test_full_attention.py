"""Full attention on CUDA: the KV-cache segment through torch's lower-right causal bias."""

from __future__ import annotations

import pytest
import torch

import harness


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_a_cached_segment_equals_the_cpu():
    """The second segment reads the first from the cache with ``causal_lower_right`` (float32)."""
    model = harness.build_model("full_attention", vocab_size=11, d_model=64, n_layers=1, n_heads=2)
    tokens = torch.randint(0, 11, (2, 96))
    results = []
    for device in ("cpu", "cuda"):
        on_device = model.to(device)
        logits, _ = on_device.stream(tokens.to(device), on_device.init_state(2), 40)
        logits.square().sum().backward()
        results.append((logits.cpu(), on_device.blocks[0].mixer.qkv.weight.grad.cpu()))
        on_device.zero_grad(set_to_none=True)
    torch.testing.assert_close(results[1], results[0], rtol=1e-4, atol=1e-4)
