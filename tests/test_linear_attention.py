"""Linear attention: the chunked forms equal the token-by-token recurrences they are defined by."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from baselines.linear_attention import additive_chunked, delta_chunked

B, H, T, E = 2, 3, 23, 5


def random_inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, B, H, T, E, dtype=torch.float64, generator=generator)
    return q, k, v, torch.rand(B, H, T, dtype=torch.float64, generator=generator), \
        torch.randn(B, H, E, E, dtype=torch.float64, generator=generator)


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_delta_rule_chunks_equal_the_recurrence(chunk):
    q, k, v, beta, S0 = random_inputs()
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    S, outputs = S0.clone(), []
    for t in range(T):
        kt, vt, bt = k[:, :, t], v[:, :, t], beta[:, :, t, None]
        retrieved = (S.transpose(-1, -2) @ kt.unsqueeze(-1)).squeeze(-1)
        S = S + (bt * kt).unsqueeze(-1) * (vt - retrieved).unsqueeze(-2)  # S + beta k (v - S^T k)^T
        outputs.append((S.transpose(-1, -2) @ q[:, :, t].unsqueeze(-1)).squeeze(-1))
    y, state = delta_chunked(q, k, v, beta, S0, chunk)
    torch.testing.assert_close(y, torch.stack(outputs, dim=2), rtol=0, atol=1e-12)
    torch.testing.assert_close(state["S"], S, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_additive_chunks_equal_the_recurrence(chunk):
    q, k, v, _, S0 = random_inputs(1)
    q, k, S0 = F.elu(q) + 1, F.elu(k) + 1, S0.abs()
    z0 = torch.rand(B, H, E, dtype=torch.float64)
    S, z, outputs = S0.clone(), z0.clone(), []
    for t in range(T):
        S, z = S + k[:, :, t].unsqueeze(-1) * v[:, :, t].unsqueeze(-2), z + k[:, :, t]
        read = (S.transpose(-1, -2) @ q[:, :, t].unsqueeze(-1)).squeeze(-1)
        outputs.append(read / (q[:, :, t] * z).sum(-1, keepdim=True))
    y, state = additive_chunked(q, k, v, S0, z0, chunk)
    torch.testing.assert_close(y, torch.stack(outputs, dim=2), rtol=0, atol=1e-12)
    torch.testing.assert_close(state["z"], z, rtol=0, atol=1e-12)


def test_delta_rule_overwrites_a_repeated_key():
    """Writing (k, v1) then (k, v2) at rate 1 leaves the memory returning v2 for k, not v1 + v2."""
    k = F.normalize(torch.randn(1, 1, 1, E, dtype=torch.float64), dim=-1).expand(1, 1, 2, E)
    v = torch.randn(1, 1, 2, E, dtype=torch.float64)
    _, state = delta_chunked(k, k, v, torch.ones(1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, E, E, dtype=torch.float64), 2)
    torch.testing.assert_close((state["S"].transpose(-1, -2) @ k[0, 0, 0].unsqueeze(-1)).squeeze(-1)[0, 0], v[0, 0, 1])


def test_rules_and_bad_options():
    assert "z" in harness.build_model("linear_attention", vocab_size=9, d_model=8, n_layers=1, n_heads=2,
                                      rule="additive").init_state(1)[0]
    with pytest.raises(ValueError, match="rule"):
        harness.build_model("linear_attention", vocab_size=9, d_model=8, n_layers=1, n_heads=2, rule="gated")
