"""Infini-attention: local attention within blocks, a memory of earlier blocks read before it is written."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from baselines.infini_attention import retrieve

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


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="update"):
        model(update="gated")
    with pytest.raises(ValueError, match="block"):
        model(block=0)
