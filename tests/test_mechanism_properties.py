"""The contracts of DESIGN.md, checked for every registered mechanism."""

from __future__ import annotations

import pytest
import torch

import harness
from harness.registry import MECHANISMS

VOCAB = 23
#: small memory settings so that the tests exercise eviction at short lengths
SMALL_OPTIONS = {
    "sliding_window": {"window": 6},
    "transformer_xl": {"mem_len": 5},
    "compressive": {"mem_len": 4, "cmem_len": 3, "rate": 2},
    "infini_attention": {"block": 4},
    "rmt": {"block": 4, "memory_slots": 3},
    "linear_attention": {"chunk": 4},
    "mamba": {"chunk": 4, "ssm_head_dim": 8, "d_state": 4},
}


#: settings for the 64k-token state test: larger chunks and blocks read faster, same contract
LONG_OPTIONS = {
    "infini_attention": {"block": 64},
    "rmt": {"block": 64, "memory_slots": 3},
    "linear_attention": {"chunk": 256},
    "mamba": {"chunk": 256, "ssm_head_dim": 8, "d_state": 4},
}


def tiny_model(name: str, dtype: torch.dtype = torch.float64, **extra):
    model = harness.build_model(name, vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2,
                                **{**SMALL_OPTIONS.get(name, {}), **extra})
    return model.to(dtype).eval()


@pytest.fixture(params=harness.mechanisms())
def name(request):
    return request.param


def test_causal(name):
    model = tiny_model(name)
    tokens = torch.randint(0, VOCAB, (2, 29))
    changed = tokens.clone()
    changed[:, 17] = (changed[:, 17] + 1) % VOCAB
    before, _ = model(tokens, model.init_state(2))
    after, _ = model(changed, model.init_state(2))
    torch.testing.assert_close(before[:, :17], after[:, :17], rtol=0, atol=1e-12)
    assert (before[:, 17:] - after[:, 17:]).abs().max() > 1e-6, "changing a token changed nothing after it"


def streaming_model(name: str):
    """The mechanism with options under which streaming must equal one pass."""
    return tiny_model(name, **MECHANISMS.get(name).exact_streaming_options)


@pytest.mark.parametrize("segment_len", [1, 4, 7, 29])
def test_streaming_in_segments_equals_one_pass(name, segment_len):
    model = streaming_model(name)
    tokens = torch.randint(0, VOCAB, (2, 29))
    whole, _ = model(tokens, model.init_state(2))
    streamed, _ = model.stream(tokens, model.init_state(2), segment_len)
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-10)


def test_streaming_with_uneven_segments(name):
    model = streaming_model(name)
    tokens = torch.randint(0, VOCAB, (1, 30))
    whole, _ = model(tokens, model.init_state(1))
    state, outputs, start = model.init_state(1), [], 0
    for length in (3, 1, 9, 2, 15):
        logits, state = model(tokens[:, start : start + length], state)
        outputs.append(logits)
        start += length
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole, rtol=0, atol=1e-10)


def _state_after(model, length: int, segment_len: int):
    state = model.init_state(1)
    with torch.no_grad():
        for start in range(0, length, segment_len):
            _, state = model(torch.randint(0, VOCAB, (1, min(segment_len, length - start))), state)
    return state


def test_state_accounting(name):
    model = tiny_model(name, dtype=torch.float32, **LONG_OPTIONS.get(name, {}))
    if model.bounded:
        short = model.state_bytes(_state_after(model, 1024, 512))
        long = model.state_bytes(_state_after(model, 65536, 1024))
        assert short == long > 0
    else:
        assert model.state_bytes(_state_after(model, 2048, 512)) == 2 * model.state_bytes(_state_after(model, 1024, 512))


def test_state_bytes_follow_dtype(name):
    wide = tiny_model(name, dtype=torch.float64)
    narrow = tiny_model(name, dtype=torch.float32)
    wide_bytes = wide.state_bytes(_state_after(wide, 40, 8))
    assert wide_bytes > 0
    assert wide_bytes == 2 * narrow.state_bytes(_state_after(narrow, 40, 8))


def test_fresh_state_per_example_leaks_nothing(name):
    model = tiny_model(name)
    first, second = torch.randint(0, VOCAB, (1, 25)), torch.randint(0, VOCAB, (1, 25))
    alone, _ = model(first, model.init_state(1))
    model(second, model.init_state(1))
    again, _ = model(first, model.init_state(1))
    together, _ = model(torch.cat((first, second)), model.init_state(2))
    torch.testing.assert_close(again, alone, rtol=0, atol=0)
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=1e-12)


def test_state_is_not_mutated(name):
    model = tiny_model(name)
    state = model.init_state(1)
    _, state = model(torch.randint(0, VOCAB, (1, 9)), state)
    snapshot = [{key: value.clone() if torch.is_tensor(value) else value for key, value in layer.items()} for layer in state]
    model(torch.randint(0, VOCAB, (1, 5)), state)
    for layer, saved in zip(state, snapshot):
        for key, value in saved.items():
            assert torch.equal(layer[key], value) if torch.is_tensor(value) else layer[key] == value


def test_state_follows_model_device_and_dtype(name):
    model = tiny_model(name, dtype=torch.float64)
    for layer in model.init_state(3):
        for value in layer.values():
            if torch.is_tensor(value) and value.is_floating_point():
                assert value.dtype == torch.float64


@pytest.mark.parametrize("budget", [1792, 4096])
def test_a_state_budget_bounds_the_reach(name, budget):
    """Under a budget of B bytes a token influences no output further than n_layers x the reach B
    buys, however long the caller's segments: memory and within-segment context are both counted."""
    try:
        options = MECHANISMS.get(name).options_for_state_budget(budget, 16, 2, element_bytes=8)
    except ValueError as error:  # no budget knob, or none that fits this budget
        pytest.skip(str(error))
    model = harness.build_model(name, vocab_size=VOCAB, d_model=16, n_layers=2, n_heads=2, **options).double().eval()
    reach = model.blocks[0].mixer.reach()
    if reach is None:
        pytest.skip(f"{name} carries a summary: its reach is unbounded, its state alone bounded")
    tokens = torch.randint(0, VOCAB, (1, 80))
    changed = tokens.clone()
    changed[0, 5] = (changed[0, 5] + 1) % VOCAB
    before, state = model.stream(tokens, model.init_state(1), 64)
    after, _ = model.stream(changed, model.init_state(1), 64)
    assert model.state_bytes(state) <= budget
    assert 5 + 2 * reach < 79 and (before[:, 5] - after[:, 5]).abs().max() > 1e-6
    torch.testing.assert_close(before[:, 5 + 2 * reach + 1 :], after[:, 5 + 2 * reach + 1 :], rtol=0, atol=1e-12)


def test_gradients_reach_every_parameter(name):
    model = tiny_model(name, dtype=torch.float32).train()
    logits, _ = model.stream(torch.randint(0, VOCAB, (2, 20)), model.init_state(2), 8)
    loss = logits.square().mean()
    auxiliary = model.auxiliary_loss()
    (loss if auxiliary is None else loss + auxiliary).backward()
    missing = [key for key, parameter in model.named_parameters() if parameter.grad is None or not parameter.grad.abs().sum()]
    assert not missing
