"""transformer_xl: relative scores against their definition, memory reach, stop-gradient, rotary option."""

from __future__ import annotations

import pytest
import torch

import harness
from test_relative_attention import by_definition


def xl(n_layers=1, **options):
    return harness.build_model("transformer_xl", vocab_size=17, d_model=16, n_layers=n_layers, n_heads=2, **options).double()


def test_distance_embeddings_follow_the_definition():
    layer = xl().blocks[0].mixer
    keys = 9
    got = layer.distance_embeddings(keys)  # H, K, E: rows from distance K-1 down to 0
    for distance in range(keys):
        angles = distance * layer.inv_freq.double()
        r = layer.distance_proj(torch.cat((angles.sin(), angles.cos())))  # W_r R_distance: D
        torch.testing.assert_close(got[:, keys - 1 - distance], r.view(2, 8))


def test_attention_follows_the_definition():
    """score(i, j) = ((q_i + u) . k_j + (q_i + v) . W_r R_{i-j}) / sqrt(E), causal over [context; x]."""
    layer = xl().blocks[0].mixer
    with torch.no_grad():
        layer.u.normal_(), layer.v.normal_()
    x, context = torch.randn(2, 4, 16, dtype=torch.float64), torch.randn(2, 3, 16, dtype=torch.float64)
    q = (x @ layer.qkv.weight[:16].T).view(2, 4, 2, 8).transpose(1, 2)
    k, v = (torch.cat((context, x), 1) @ layer.qkv.weight[16:].T).view(2, 7, 2, 2, 8).permute(2, 0, 3, 1, 4)
    y = by_definition(q + layer.u, q + layer.v, k, v, layer.distance_embeddings(7))
    expected = layer.out(y.transpose(1, 2).reshape(2, 4, 16))
    torch.testing.assert_close(layer.attend(x, context, 0), expected)


@pytest.mark.parametrize("segment_len", [1, 3, 10])
def test_memory_covering_the_input_equals_one_pass(segment_len):
    model = xl(n_layers=2, mem_len=30)
    tokens = torch.randint(0, 17, (2, 30))
    whole, _ = model(tokens, model.init_state(2))
    streamed, _ = model.stream(tokens, model.init_state(2), segment_len)
    torch.testing.assert_close(streamed, whole)


@pytest.mark.parametrize("position", ["relative", "rotary"])
def test_own_segments_equal_the_callers_segments_of_that_length_in_any_split(position):
    """With segment=4 the layer is Transformer-XL read in segments of 4, however the caller splits the input."""
    reference = xl(n_layers=2, mem_len=3, position=position)
    model = xl(n_layers=2, mem_len=3, position=position, segment=4)
    model.load_state_dict(reference.state_dict())
    tokens = torch.randint(0, 17, (2, 30))
    expected, _ = reference.stream(tokens, reference.init_state(2), 4)
    for segment_len in (1, 3, 7, 30):
        got, state = model.stream(tokens, model.init_state(2), segment_len)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert model.state_bytes(state) == 2 * 2 * (3 + 4 - 1) * 16 * 8  # memory and the segment's buffer
    assert model.blocks[0].mixer.reach() == 3 + 4 - 1 and reference.blocks[0].mixer.reach() is None
    with pytest.raises(ValueError, match="segment"):
        xl(segment=0)


def test_tokens_beyond_memory_have_no_influence():
    model = xl(mem_len=3)
    tokens = torch.randint(0, 17, (1, 16))
    changed = tokens.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 17
    before, _ = model.stream(tokens, model.init_state(1), 4)
    after, _ = model.stream(changed, model.init_state(1), 4)
    # Segment 8..11 sees memory 5..7; segment 4..7 sees memory 1..3, so position 2 reaches it.
    assert (before[:, 4:8] - after[:, 4:8]).abs().max() > 1e-6
    torch.testing.assert_close(before[:, 8:], after[:, 8:])


def test_no_gradient_flows_into_the_memory():
    model = xl(mem_len=8)
    layer = model.blocks[0].mixer
    first = torch.randn(1, 4, 16, dtype=torch.float64, requires_grad=True)
    _, state = layer(first, layer.init_state(1, torch.device("cpu"), torch.float64))
    y, _ = layer(torch.randn(1, 4, 16, dtype=torch.float64), state)
    assert not state["mem"].requires_grad
    y.sum().backward()
    assert first.grad is None


def test_rotary_option_with_covering_memory_is_full_attention():
    full = harness.build_model("full_attention", vocab_size=17, d_model=16, n_layers=2, n_heads=2).double()
    rotary = xl(n_layers=2, mem_len=64, position="rotary")
    rotary.load_state_dict(full.state_dict())
    tokens = torch.randint(0, 17, (2, 24))
    expected, _ = full(tokens, full.init_state(2))
    got, _ = rotary.stream(tokens, rotary.init_state(2), 5)
    torch.testing.assert_close(got, expected)


def test_rotary_option_has_full_attention_parameters():
    full = harness.build_model("full_attention", vocab_size=17, d_model=16, n_layers=2, n_heads=2)
    assert xl(n_layers=2, position="rotary").num_parameters() == full.num_parameters()


def test_state_is_the_last_mem_len_inputs():
    model = xl(mem_len=5)
    _, state = model.stream(torch.randint(0, 17, (1, 13)), model.init_state(1), 4)
    assert state[0]["mem"].shape == (1, 5, 16)
    assert model.state_bytes(state) == 5 * 16 * 8


@pytest.mark.parametrize("options, message", [({"mem_len": -1}, "mem_len"), ({"position": "absolute"}, "position")])
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        xl(**options)


