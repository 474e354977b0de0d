"""Full attention on CUDA: the KV-cache segment through torch's lower-right causal bias."""

from __future__ import annotations

import pytest
import torch

import harness
from conftest import streamed_on_cpu_and_cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_a_cached_segment_equals_the_cpu():
    """The second segment reads the first from the cache with ``causal_lower_right`` (float32)."""
    model = harness.build_model("full_attention", vocab_size=11, d_model=64, n_layers=1, n_heads=2)
    tokens = torch.randint(0, 11, (2, 96))
    on_cpu, on_cuda = streamed_on_cpu_and_cuda(model, tokens, 40)
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-4)
