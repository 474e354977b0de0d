"""Sliding-window attention against a naive masked reference, and its relation to full attention."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from baselines.sliding_window import banded_attention, flex_banded_attention
from conftest import streamed_on_cpu_and_cuda


def naive_window_attention(q, k, v, window):
    """softmax(q k^T) over keys i - window < j <= i, from a full T x T mask."""
    T = q.shape[2]
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    mask = (j <= i) & (j > i - window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("window", [1, 2, 5, 16, 40])
@pytest.mark.parametrize("length", [1, 7, 33])
def test_banded_attention_matches_the_masked_definition(window, length):
    q, k, v = (torch.randn(2, 3, length, 8, dtype=torch.float64) for _ in range(3))
    empty_cache = torch.zeros(2, 3, window - 1, 8, dtype=torch.float64)
    got = banded_attention(q, torch.cat((empty_cache, k), 2), torch.cat((empty_cache, v), 2), window, valid_from=window - 1)
    torch.testing.assert_close(got, naive_window_attention(q, k, v, window))


def test_window_covering_the_input_is_full_attention():
    full = harness.build_model("full_attention", vocab_size=11, d_model=16, n_layers=2, n_heads=2).double()
    window = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=2, n_heads=2, window=30).double()
    window.load_state_dict(full.state_dict())
    tokens = torch.randint(0, 11, (2, 30))
    expected, _ = full(tokens, full.init_state(2))
    got, _ = window.stream(tokens, window.init_state(2), 7)
    torch.testing.assert_close(got, expected)


def test_window_shorter_than_the_input_differs_from_full_attention():
    full = harness.build_model("full_attention", vocab_size=11, d_model=16, n_layers=1, n_heads=2).double()
    window = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2, window=4).double()
    window.load_state_dict(full.state_dict())
    tokens = torch.randint(0, 11, (1, 12))
    expected, _ = full(tokens, full.init_state(1))
    got, _ = window(tokens, window.init_state(1))
    torch.testing.assert_close(got[:, :4], expected[:, :4])
    assert (got[:, 4:] - expected[:, 4:]).abs().max() > 1e-6


def test_token_outside_the_window_has_no_influence():
    model = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2, window=4).double()
    tokens = torch.randint(0, 11, (1, 12))
    changed = tokens.clone()
    changed[0, 3] = (changed[0, 3] + 1) % 11
    before, _ = model.stream(tokens, model.init_state(1), 5)
    after, _ = model.stream(changed, model.init_state(1), 5)
    torch.testing.assert_close(before[:, 7:], after[:, 7:])  # position 7 sees 4..7 only (one layer)
    assert (before[:, 3:7] - after[:, 3:7]).abs().max() > 1e-6


def test_invalid_window_is_rejected():
    with pytest.raises(ValueError, match="window"):
        harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2, window=0)
    with pytest.raises(ValueError, match="sink_positions"):
        harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2, sink_positions="shifted")


def naive_sink_attention(q, k, v, window, sinks):
    """The window plus the first ``sinks`` positions, each key once, from a full T x T mask."""
    T = q.shape[2]
    i = torch.arange(T).view(T, 1)
    j = torch.arange(T).view(1, T)
    mask = (j <= i) & ((j > i - window) | (j < sinks))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("window, sinks", [(1, 1), (3, 2), (4, 6), (8, 30)])
def test_attention_sinks_at_original_positions_match_the_masked_definition(window, sinks):
    model = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2,
                                window=window, sinks=sinks, sink_positions="original").double()
    layer = model.blocks[0].mixer
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    q, k, v = layer.qkv(x).view(2, 19, 3, 2, 8).permute(2, 0, 3, 1, 4)
    q, k = layer.rotary(q, 0), layer.rotary(k, 0)
    expected = layer.out(naive_sink_attention(q, k, v, window, sinks).transpose(1, 2).reshape(2, 19, 16))
    for segment_len in (1, 4, 19):
        state, outputs = layer.init_state(2, torch.device("cpu"), torch.float64), []
        for start in range(0, 19, segment_len):
            y, state = layer(x[:, start : start + segment_len], state)
            outputs.append(y)
        torch.testing.assert_close(torch.cat(outputs, dim=1), expected)
    assert model.state_bytes([state]) == 2 * 2 * 2 * (window - 1 + sinks) * 8 * 8


def streaming_llm_attention(layer, x, window, sinks):
    """StreamingLLM's attention, query by query: the keys a query sees, [sinks; window], rotated at
    their positions in that cache (0, 1, ...), and the query at the last of them."""
    B, T, D = x.shape
    q, k, v = layer.qkv(x).view(B, T, 3, 2, D // 2).permute(2, 0, 3, 1, 4)  # B, H, T, E
    outputs = []
    for i in range(T):
        seen = [j for j in range(i + 1) if j > i - window or j < sinks]
        cache_positions = torch.arange(len(seen))
        keys = layer.rotary.at(k[:, :, seen], cache_positions)
        query = layer.rotary.at(q[:, :, i : i + 1], cache_positions[-1:])
        outputs.append(F.scaled_dot_product_attention(query, keys, v[:, :, seen]))
    return layer.out(torch.cat(outputs, dim=2).transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("window, sinks", [(1, 1), (3, 2), (4, 6), (5, 3)])
def test_attention_sinks_at_cache_positions_are_streaming_llm(window, sinks):
    layer = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2,
                                window=window, sinks=sinks).double().blocks[0].mixer
    with torch.no_grad():
        layer.qkv.weight.mul_(4)  # sharper attention, so that the sinks' angles weigh
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    expected = streaming_llm_attention(layer, x, window, sinks)
    for segment_len in (1, 4, 23):
        state, outputs = layer.init_state(2, torch.device("cpu"), torch.float64), []
        for start in range(0, 23, segment_len):
            y, state = layer(x[:, start : start + segment_len], state)
            outputs.append(y)
        torch.testing.assert_close(torch.cat(outputs, dim=1), expected, rtol=0, atol=1e-12)
    original = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2, window=window,
                                   sinks=sinks, sink_positions="original").double().blocks[0].mixer
    original.load_state_dict(layer.state_dict())
    at_original, _ = original(x, original.init_state(2, torch.device("cpu"), torch.float64))
    far = slice(sinks + window, None)  # queries the window has moved past the sinks: only there they differ
    torch.testing.assert_close(at_original[:, : sinks + window], expected[:, : sinks + window], rtol=0, atol=1e-12)
    assert (at_original[:, far] - expected[:, far]).abs().max() > 1e-6


def test_sinks_keep_the_first_tokens_visible():
    model = harness.build_model("sliding_window", vocab_size=11, d_model=16, n_layers=1, n_heads=2,
                                window=4, sinks=1).double()
    tokens = torch.randint(0, 11, (1, 12))
    changed = tokens.clone()
    changed[0, 0] = (changed[0, 0] + 1) % 11
    before, _ = model.stream(tokens, model.init_state(1), 5)
    after, _ = model.stream(changed, model.init_state(1), 5)
    assert (before[:, -1] - after[:, -1]).abs().max() > 1e-6


@pytest.mark.filterwarnings("ignore:.*flex_attention called without torch.compile")
@pytest.mark.parametrize("window, length, filled", [(5, 33, 0), (16, 40, 7), (40, 7, 0)])
def test_flex_attention_band_equals_the_dense_form(window, length, filled):
    """The block-sparse form CUDA uses (FlexAttention, here unfused on the CPU) against the dense one."""
    q, k, v = (torch.randn(2, 3, length, 8, dtype=torch.float64) for _ in range(3))
    cache = torch.randn(2, 3, window - 1, 8, dtype=torch.float64)
    keys, values = torch.cat((cache, k), 2), torch.cat((cache, v), 2)
    valid_from = window - 1 - filled
    torch.testing.assert_close(flex_banded_attention(q, keys, values, window, valid_from),
                               banded_attention(q, keys, values, window, valid_from))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_mechanism_equals_the_cpu():
    """Through FlexAttention on CUDA (float32): outputs and gradients as on the CPU."""
    model = harness.build_model("sliding_window", vocab_size=11, d_model=64, n_layers=1, n_heads=2, window=16)
    tokens = torch.randint(0, 11, (2, 100))
    on_cpu, on_cuda = streamed_on_cpu_and_cuda(model, tokens, 40)
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-4)
