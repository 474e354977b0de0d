"""compressive: equals transformer_xl without compressed slots; compression and its loss."""

from __future__ import annotations

import pytest
import torch

import harness


def compressive(n_layers=1, **options):
    return harness.build_model("compressive", vocab_size=17, d_model=16, n_layers=n_layers, n_heads=2, **options).double()


@pytest.mark.parametrize("segment_len", [1, 3, 8])
def test_without_compressed_slots_it_is_transformer_xl(segment_len):
    txl = harness.build_model("transformer_xl", vocab_size=17, d_model=16, n_layers=2, n_heads=2, mem_len=5).double()
    model = compressive(n_layers=2, mem_len=5, cmem_len=0)
    model.load_state_dict(txl.state_dict(), strict=False)
    tokens = torch.randint(0, 17, (2, 26))
    expected, _ = txl.stream(tokens, txl.init_state(2), segment_len)
    got, _ = model.stream(tokens, model.init_state(2), segment_len)
    torch.testing.assert_close(got, expected)


def test_own_segments_equal_the_callers_segments_of_that_length_in_any_split():
    reference = compressive(n_layers=2, mem_len=3, cmem_len=2, rate=2)
    model = compressive(n_layers=2, mem_len=3, cmem_len=2, rate=2, segment=5)
    model.load_state_dict(reference.state_dict())
    tokens = torch.randint(0, 17, (2, 33))
    expected, _ = reference.stream(tokens, reference.init_state(2), 5)
    for segment_len in (1, 4, 33):
        got, _ = model.stream(tokens, model.init_state(2), segment_len)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert model.blocks[0].mixer.reach() == 5 - 1 + 3 + 2 - 1 + 2 * 2


def test_compressed_slots_change_the_output_and_hold_the_compressed_evictions():
    model = compressive(mem_len=4, cmem_len=3, rate=2, compression="mean")
    layer = model.blocks[0].mixer
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    state = layer.init_state(1, torch.device("cpu"), torch.float64)
    _, state = layer(x[:, :6], state)  # memory 6 > 4: positions 0, 1 evicted into one slot
    torch.testing.assert_close(state["cmem"], x[:, 0:2].mean(1, keepdim=True))
    torch.testing.assert_close(state["mem"], x[:, 2:6])
    _, state = layer(x[:, 6:12], state)  # evicts 2..7 into three slots
    torch.testing.assert_close(state["cmem"], x[:, 2:8].view(1, 3, 2, 16).mean(2))
    torch.testing.assert_close(state["mem"], x[:, 8:12])


def test_eviction_happens_in_whole_groups_of_the_rate():
    layer = compressive(mem_len=4, cmem_len=8, rate=3, compression="max").blocks[0].mixer
    state = layer.init_state(1, torch.device("cpu"), torch.float64)
    _, state = layer(torch.randn(1, 5, 16, dtype=torch.float64), state)  # 1 over: nothing evicted yet
    assert state["mem"].shape[1] == 5 and state["cmem"].shape[1] == 0
    _, state = layer(torch.randn(1, 2, 16, dtype=torch.float64), state)  # 3 over: one slot
    assert state["mem"].shape[1] == 4 and state["cmem"].shape[1] == 1


def test_reconstruction_loss_is_zero_for_identity_compression_and_positive_otherwise():
    for rate, identity in ((1, True), (2, False)):
        model = compressive(mem_len=2, cmem_len=4, rate=rate, compression="mean").train()
        model.stream(torch.randint(0, 17, (2, 12)), model.init_state(2), 4)
        loss = model.auxiliary_loss()
        assert loss is not None
        assert loss.item() < 1e-25 if identity else loss.item() > 1e-12  # float64 rounding vs a real gap
        assert model.auxiliary_loss() is None  # popped


def test_reconstruction_loss_trains_only_the_compression():
    model = compressive(mem_len=2, cmem_len=4, rate=2, compression="conv").train()
    model.stream(torch.randint(0, 17, (2, 12)), model.init_state(2), 4)
    model.auxiliary_loss().backward()
    layer = model.blocks[0].mixer
    assert layer.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for name, p in model.named_parameters() if not name.endswith(("conv.weight", "conv.bias")))
    assert all(p.requires_grad for p in model.parameters())


def test_no_reconstruction_loss_in_evaluation():
    model = compressive(mem_len=2, cmem_len=4, rate=2).eval()
    model.stream(torch.randint(0, 17, (1, 12)), model.init_state(1), 4)
    assert model.auxiliary_loss() is None


def test_full_convolution_option_is_the_papers():
    depthwise = compressive(rate=2).blocks[0].mixer.conv
    full = compressive(rate=2, conv_groups=1).blocks[0].mixer.conv
    assert depthwise.weight.shape == (16, 1, 2) and full.weight.shape == (16, 16, 2)


@pytest.mark.parametrize("options, message", [
    ({"compression": "zip"}, "compression"), ({"rate": 0}, "rate"), ({"conv_groups": 3}, "conv_groups"),
])
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        compressive(**options)
