"""Infini-attention: local attention within blocks, a memory of earlier blocks read before it is written."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from baselines import infini_attention
from harness.layers.blocks import block_so_far, block_spans, keep_last
from harness.layers.masks import causal_mask

VOCAB = 19


def model(**options):
    return harness.build_model("infini_attention", vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2,
                               **options).double().eval()


def test_a_block_covering_the_input_with_the_gate_closed_is_full_attention():
    infini = model(block=64)
    reference = harness.build_model("full_attention", vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2).double().eval()
    reference.load_state_dict(infini.state_dict(), strict=False)
    with torch.no_grad():
        infini.blocks[0].mixer.gate.fill_(-torch.inf)  # sigmoid -> 0: local attention only
    tokens = torch.randint(0, VOCAB, (2, 40))
    torch.testing.assert_close(infini(tokens, infini.init_state(2))[0], reference(tokens, reference.init_state(2))[0],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("update", ["linear", "delta"])
def test_memory_holds_the_completed_blocks_and_reads_like_linear_attention(update):
    infini = model(block=4, update=update)
    mixer = infini.blocks[0].mixer
    x = torch.randn(1, 10, 16, dtype=torch.float64)
    _, state = mixer(x, mixer.init_state(1, torch.device("cpu"), torch.float64))
    _, k, v = mixer.qkv(x).view(1, 10, 3, 2, 8).permute(2, 0, 3, 1, 4)
    k = F.elu(k) + 1
    memory, norm = torch.zeros(1, 2, 8, 8, dtype=torch.float64), torch.zeros(1, 2, 8, dtype=torch.float64)
    for block in (slice(0, 4), slice(4, 8)):  # positions 8, 9 are an unfinished block: not written
        values = v[:, :, block] - (retrieve(k[:, :, block], memory, norm) if update == "delta" else 0)
        memory, norm = memory + k[:, :, block].transpose(-1, -2) @ values, norm + k[:, :, block].sum(2)
    torch.testing.assert_close(state["M"], memory, rtol=0, atol=1e-12)
    torch.testing.assert_close(state["z"], norm, rtol=0, atol=1e-12)
    assert state["pos"] == 10


def retrieve(features: torch.Tensor, memory: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Read-out s(q) M / (s(q) . z) for features [B, H, T, E] (0 from an empty memory)."""
    return (features @ memory) / (features @ norm.unsqueeze(-1)).clamp_min(1e-6)


def reference_forward(mixer, x, state):
    """The block-by-block implementation before all blocks were processed at once (memarena 10c21f1): the oracle."""
    B, T, D = x.shape
    N, pos = mixer.config.block, state["pos"]

    def rotary(t, start):
        return mixer.rotary.at(t, torch.arange(start, start + t.shape[-2]))

    q, k, v = mixer.qkv(x).view(B, T, 3, mixer.n_heads, mixer.head_dim).permute(2, 0, 3, 1, 4)
    q_rotated, k_rotated = rotary(q, pos), rotary(k, pos)
    q, k = F.elu(q) + 1, F.elu(k) + 1
    gate = torch.sigmoid(mixer.gate).view(1, -1, 1, 1)
    memory, norm = state["M"], state["z"]
    outputs = []
    for start, end, earlier in block_spans(pos, T, N):
        piece = slice(start, end)
        keys = block_so_far(state["k_rotated"], k_rotated[:, :, piece], earlier)
        values = block_so_far(state["v"], v[:, :, piece], earlier)
        local = F.scaled_dot_product_attention(q_rotated[:, :, piece], keys, values,
                                               attn_mask=causal_mask(end - start, keys.shape[2], x.device))
        outputs.append(gate * retrieve(q[:, :, piece], memory, norm) + (1 - gate) * local)
        if earlier + end - start == N:
            block_keys = block_so_far(state["k"], k[:, :, piece], earlier)
            if mixer.config.update == "delta":
                values = values - retrieve(block_keys, memory, norm)
            memory, norm = memory + block_keys.transpose(-1, -2) @ values, norm + block_keys.sum(dim=2)
    y = torch.cat(outputs, dim=2).transpose(1, 2).reshape(B, T, D)
    slots = N - 1
    new_state = {"M": memory, "z": norm, "k_rotated": keep_last(state["k_rotated"], k_rotated, slots),
                 "k": keep_last(state["k"], k, slots), "v": keep_last(state["v"], v, slots), "pos": pos + T}
    return mixer.out(y), new_state


def streamed(forward, mixer, x, segments, state):
    """Outputs and final state of reading x [B, T, D] in pieces of the given lengths from ``state``."""
    outputs, bounds = [], torch.tensor(segments).cumsum(0).tolist()
    for start, end in zip([0, *bounds[:-1]], bounds):
        y, state = forward(mixer, x[:, start:end], state)
        outputs.append(y)
    return torch.cat(outputs, dim=1), state


@pytest.mark.parametrize("update", ["linear", "delta"])
@pytest.mark.parametrize("block, segments, chunk", [(4, [16], 512), (4, [16], 8), (4, [3, 1, 6, 2, 4], 512),
                                                    (5, [7, 13, 1, 3], 512), (5, [7, 13, 1, 3], 12)])
def test_all_blocks_at_once_equal_the_block_by_block_reference(update, block, segments, chunk, monkeypatch):
    """Outputs, carried states and gradients equal the reference's in float64, for any segment split
    and memory chunk."""
    monkeypatch.setattr(infini_attention, "MEMORY_CHUNK", chunk)
    torch.manual_seed(0)
    mixer = model(block=block, update=update).train().blocks[0].mixer
    with torch.no_grad():
        mixer.gate.copy_(torch.randn(2))
    x = torch.randn(2, sum(segments), 16, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, sum(segments), 16, dtype=torch.float64)
    state = mixer.init_state(2, x.device, x.dtype)
    start = {**state, "M": torch.randn_like(state["M"]) * 0.1, "z": torch.rand_like(state["z"])}  # a used memory
    results = []
    for forward in (reference_forward, type(mixer).forward):
        y, state = streamed(forward, mixer, x, segments, start)
        loss = (y * weights).sum() + state["M"].square().sum() + state["z"].sum() + state["v"].sum()
        parameters = (x, *mixer.parameters())
        results.append((y, state, torch.autograd.grad(loss, parameters)))
    (expected, expected_state, expected_grads), (got, got_state, got_grads) = results
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert got_state.keys() == expected_state.keys() and got_state["pos"] == expected_state["pos"]
    for key in ("M", "z", "k_rotated", "k", "v"):
        torch.testing.assert_close(got_state[key], expected_state[key], rtol=1e-10, atol=1e-12)
    for got_grad, expected_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="update"):
        model(update="gated")
    with pytest.raises(ValueError, match="block"):
        model(block=0)
