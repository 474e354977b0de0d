"""RMT: tokens reach later blocks only through the memory, and bptt_blocks cuts the gradient there."""

from __future__ import annotations

import pytest
import torch

import harness

VOCAB = 19


def model(**options):
    return harness.build_model("rmt", vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, block=4, memory_slots=2,
                               **options).double()


def gradient_to_first_block(rmt) -> float:
    """Size of the gradient of the last block's outputs with respect to the first block's inputs."""
    x = torch.randn(1, 12, 16, dtype=torch.float64, requires_grad=True)
    mixer = rmt.blocks[0].mixer
    y, _ = mixer(x, mixer.init_state(1, torch.device("cpu"), torch.float64))
    y[:, 8:].sum().backward()
    return x.grad[:, :4].abs().sum().item()


def test_gradients_flow_through_the_memory_unless_cut():
    assert gradient_to_first_block(model()) > 0
    assert gradient_to_first_block(model(bptt_blocks=1)) == 0


def test_without_a_completed_block_the_memory_is_its_initial_value():
    rmt = model().eval()
    mixer = rmt.blocks[0].mixer
    _, state = mixer(torch.randn(2, 3, 16, dtype=torch.float64), mixer.init_state(2, torch.device("cpu"), torch.float64))
    torch.testing.assert_close(state["memory"], mixer.memory_init.expand(2, -1, -1))
    _, state = mixer(torch.randn(2, 1, 16, dtype=torch.float64), state)  # completes the block
    assert not torch.allclose(state["memory"], mixer.memory_init.expand(2, -1, -1))


@pytest.mark.parametrize("offset", [0, 2])
def test_reading_the_memory_does_not_depend_on_the_absolute_position(offset):
    """The same memory, pending tokens and block give the same outputs at stream position 0 and 4096."""
    mixer = model().eval().blocks[0].mixer
    torch.manual_seed(0)
    with torch.no_grad():
        mixer.qkv.weight.mul_(5)  # sharper attention, so that positions weigh as in a trained model
    state = mixer.init_state(2, torch.device("cpu"), torch.float64)
    state = {**state, "memory": torch.randn_like(state["memory"])}
    if offset:  # tokens already in the block
        _, state = mixer(torch.randn(2, offset, 16, dtype=torch.float64), state)
    x = torch.randn(2, 6, 16, dtype=torch.float64)  # completes the block, then starts the next
    early, early_state = mixer(x, state)
    late, late_state = mixer(x, {**state, "pos": 4096 + offset})
    torch.testing.assert_close(late, early, rtol=0, atol=1e-12)
    torch.testing.assert_close(late_state["memory"], early_state["memory"], rtol=0, atol=1e-12)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="bptt_blocks"):
        model(bptt_blocks=0)
