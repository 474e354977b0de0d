"""Mamba: the chunked state-space-dual scan equals the selective recurrence it is defined by."""

from __future__ import annotations

import pytest
import torch

import harness
from baselines.mamba import ssd_chunked


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_chunked_scan_equals_the_recurrence(chunk):
    generator = torch.Generator().manual_seed(0)
    B, T, G, P, N = 2, 23, 3, 4, 5
    u = torch.randn(B, T, G, P, dtype=torch.float64, generator=generator)
    log_decay = -2 * torch.rand(B, T, G, dtype=torch.float64, generator=generator)
    b, c = torch.randn(2, B, T, N, dtype=torch.float64, generator=generator)
    h0 = torch.randn(B, G, P, N, dtype=torch.float64, generator=generator)
    h, outputs = h0.clone(), []
    for t in range(T):
        h = torch.exp(log_decay[:, t]).view(B, G, 1, 1) * h + u[:, t].unsqueeze(-1) * b[:, t].view(B, 1, 1, N)
        outputs.append(torch.einsum("bgpn,bn->bgp", h, c[:, t]))
    y, last = ssd_chunked(u, log_decay, b, c, h0, chunk)
    torch.testing.assert_close(y, torch.stack(outputs, dim=1), rtol=0, atol=1e-12)
    torch.testing.assert_close(last, h, rtol=0, atol=1e-12)


def test_default_is_parameter_matched_and_options_are_checked():
    def parameters(name):
        return harness.build_model(name, vocab_size=32, d_model=64, n_layers=2, n_heads=4).num_parameters()

    assert abs(parameters("mamba") - parameters("full_attention")) <= 0.1 * parameters("full_attention")
    with pytest.raises(ValueError, match="ssm_head_dim"):
        harness.build_model("mamba", vocab_size=9, d_model=24, n_layers=1, n_heads=2, ssm_head_dim=16)
