"""RMT: tokens reach later blocks only through the memory, and bptt_blocks cuts the gradient there."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from harness.layers.blocks import block_so_far, block_spans, keep_last
from harness.layers.masks import causal_mask

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


def reference_forward(mixer, x, state):
    """The block-by-block implementation before the reads were batched (memarena 10c21f1): the oracle."""
    B, T, D = x.shape
    N, pos, M = mixer.config.block, state["pos"], mixer.config.memory_slots

    def rotary(t, start):
        return mixer.rotary.at(t, torch.arange(start, start + t.shape[-2]))

    def heads(t):
        return t.view(t.shape[0], t.shape[1], mixer.n_heads, mixer.head_dim).transpose(1, 2)

    q, k, v = mixer.qkv(x).view(B, T, 3, mixer.n_heads, mixer.head_dim).permute(2, 0, 3, 1, 4)
    memory = state["memory"]
    outputs, k_rotated = [], []
    for start, end, earlier in block_spans(pos, T, N):
        piece = slice(start, end)
        memory_q, memory_k, memory_v = (heads(p) for p in mixer.qkv(memory).chunk(3, dim=-1))
        k_rotated.append(rotary(k[:, :, piece], M + earlier))
        keys = block_so_far(state["k_rotated"], k_rotated[-1], earlier)
        values = block_so_far(state["v"], v[:, :, piece], earlier)
        visible = torch.cat((torch.ones(end - start, M, dtype=torch.bool),
                             causal_mask(end - start, keys.shape[2], x.device)), dim=1)
        outputs.append(F.scaled_dot_product_attention(
            rotary(q[:, :, piece], M + earlier), torch.cat((rotary(memory_k, 0), keys), dim=2),
            torch.cat((memory_v, values), dim=2), attn_mask=visible))
        if earlier + end - start == N:
            block_keys = block_so_far(state["k"], k[:, :, piece], earlier)
            written = F.scaled_dot_product_attention(memory_q, torch.cat((memory_k, block_keys), dim=2),
                                                     torch.cat((memory_v, values), dim=2))
            memory = mixer.memory_norm(memory + mixer.out(written.transpose(1, 2).reshape(B, -1, D)))
            if mixer.config.bptt_blocks is not None and (pos + end) // N % mixer.config.bptt_blocks == 0:
                memory = memory.detach()
    y = torch.cat(outputs, dim=2).transpose(1, 2).reshape(B, T, D)
    slots = N - 1
    new_state = {"memory": memory, "k_rotated": keep_last(state["k_rotated"], torch.cat(k_rotated, dim=2), slots),
                 "k": keep_last(state["k"], k, slots), "v": keep_last(state["v"], v, slots), "pos": pos + T}
    return mixer.out(y), new_state


@pytest.mark.parametrize("bptt_blocks", [None, 2])
@pytest.mark.parametrize("block, segments", [(4, [16]), (4, [3, 1, 6, 2, 4]), (5, [7, 13, 1, 3])])
def test_batched_reads_equal_the_block_by_block_reference(bptt_blocks, block, segments):
    """Outputs, carried states and gradients equal the reference's in float64, for any segment split."""
    torch.manual_seed(0)
    mixer = harness.build_model("rmt", vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, block=block, memory_slots=3,
                                bptt_blocks=bptt_blocks).double().blocks[0].mixer
    x = torch.randn(2, sum(segments), 16, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, sum(segments), 16, dtype=torch.float64)
    start = mixer.init_state(2, x.device, x.dtype)
    results = []
    for forward in (reference_forward, type(mixer).forward):
        state, outputs = start, []
        for piece in x.split(segments, dim=1):
            y, state = forward(mixer, piece, state)
            outputs.append(y)
        y = torch.cat(outputs, dim=1)
        loss = (y * weights).sum() + state["memory"].square().sum() + state["k_rotated"].sum() + state["v"].sum()
        results.append((y, state, torch.autograd.grad(loss, (x, *mixer.parameters()))))
    (expected, expected_state, expected_grads), (got, got_state, got_grads) = results
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert got_state.keys() == expected_state.keys() and got_state["pos"] == expected_state["pos"]
    for key in ("memory", "k_rotated", "k", "v"):
        torch.testing.assert_close(got_state[key], expected_state[key], rtol=1e-10, atol=1e-12)
    for got_grad, expected_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="bptt_blocks"):
        model(bptt_blocks=0)
