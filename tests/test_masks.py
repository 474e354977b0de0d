"""Cached attention masks: the same masks as built by definition, reusable across modes."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.nn.attention.bias import causal_lower_right

import harness
from harness.layers import masks
from harness.layers.masks import causal_mask, earlier_blocks_mask


def test_causal_mask_is_bottom_right_aligned_and_its_bias_hides_the_same_keys():
    mask = causal_mask(3, 5, torch.device("cpu"))
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    bias = causal_mask(3, 5, torch.device("cpu"), dtype=torch.float64)
    assert bias.dtype == torch.float64 and torch.equal(bias == 0, expected) and torch.isinf(bias[~expected]).all()
    assert causal_mask(3, 5, torch.device("cpu")) is mask  # built once


def test_the_cache_keeps_the_newest_masks_within_its_byte_budget(monkeypatch):
    """A stream through full attention asks for a longer mask every segment: old ones are let go."""
    monkeypatch.setattr(masks, "MAX_CACHED_BYTES", 3 * 8 * 100)  # three bool masks of 8 x 100
    device = torch.device("cpu")
    first = causal_mask(8, 100, device)
    assert causal_mask(8, 100, device) is first
    for keys in (101, 102, 103):
        causal_mask(8, keys, device)
    assert causal_mask(8, 100, device) is not first  # evicted, built again
    big = causal_mask(8, 10_000, device)  # over the budget alone: kept while it is the newest
    assert causal_mask(8, 10_000, device) is big


def test_torch_lower_right_causal_bias_is_the_same_mask():
    """On CUDA, full attention passes ``causal_lower_right`` instead of the cached mask: same alignment."""
    q, k, v = torch.randn(2, 2, 5, 8, dtype=torch.float64), *torch.randn(2, 2, 2, 9, 8, dtype=torch.float64)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(5, 9, torch.device("cpu")))
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(5, 9)), expected)


def test_earlier_blocks_mask_shows_completed_blocks_after_leading_columns():
    mask = earlier_blocks_mask(4, 2, torch.device("cpu"), copies=2, leading=1)
    row = torch.tensor([[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, torch.cat((row, row)))


def test_a_mask_first_built_in_inference_mode_serves_training():
    with torch.inference_mode():
        causal_mask(6, 9, torch.device("cpu"), dtype=torch.float32)
    q = torch.randn(1, 1, 6, 4, requires_grad=True)
    k = torch.randn(1, 1, 9, 4)
    bias = causal_mask(6, 9, torch.device("cpu"), dtype=torch.float32)
    F.scaled_dot_product_attention(q, k, k, attn_mask=bias).sum().backward()
    assert q.grad is not None


@pytest.mark.parametrize("mechanism", ["full_attention", "rmt", "infini_attention", "sliding_window"])
def test_evaluation_then_training_reuses_cached_masks_and_tables(mechanism):
    """Masks and rotary tables cached under inference mode must not break a later backward pass."""
    model = harness.build_model(mechanism, vocab_size=11, d_model=16, n_layers=1, n_heads=2)
    tokens = torch.randint(0, 11, (2, 24))
    with torch.inference_mode():
        model.stream(tokens, model.init_state(2), 8)
    logits, _ = model.stream(tokens, model.init_state(2), 8)
    logits.sum().backward()
    assert model.blocks[0].mixer.qkv.weight.grad.abs().sum() > 0
