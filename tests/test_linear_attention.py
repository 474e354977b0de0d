"""Linear attention: the chunked forms equal the token-by-token recurrences they are defined by."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from baselines.linear_attention import LinearAttention, additive_chunked
from delta_rule_heads import delta_rule_by_heads

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
    y, state = delta_rule_by_heads(q, k, v, beta, S0, chunk)
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


def deltanet_by_definition(layer: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """The DeltaNet layer (Yang et al. 2024, flash-linear-attention's defaults) token by token.

    Short causal convolution (zero history) and SiLU on the q, k, v projections; q, k L2-normalised,
    q scaled by E**-0.5; beta = sigmoid(W_beta x); S_t = S_{t-1} + beta k (v - S^T k)^T, o = S^T q;
    RMSNorm of each head's o; output projection.
    """
    batch, length, d_model = x.shape
    heads, width = layer.n_heads, layer.head_dim
    kernel = layer.conv.weight[:, 0]  # 3D, K
    projected = x @ layer.qkv.weight.T  # B, T, 3D
    history = torch.cat((torch.zeros(batch, kernel.shape[1] - 1, 3 * d_model, dtype=x.dtype), projected), dim=1)
    S, outputs = torch.zeros(batch, heads, width, width, dtype=x.dtype), []
    for t in range(length):
        convolved = (history[:, t : t + kernel.shape[1]] * kernel.T).sum(1)  # B, 3D
        q, k, v = F.silu(convolved).view(batch, 3, heads, width).unbind(1)
        q = q / q.norm(dim=-1, keepdim=True) / width**0.5
        k = k / k.norm(dim=-1, keepdim=True)
        beta = torch.sigmoid(x[:, t] @ layer.beta.weight.T).unsqueeze(-1)  # B, H, 1
        retrieved = torch.einsum("bhij,bhi->bhj", S, k)
        S = S + torch.einsum("bhi,bhj->bhij", beta * k, v - retrieved)
        o = torch.einsum("bhij,bhi->bhj", S, q)
        o = o / torch.sqrt(o.square().mean(-1, keepdim=True) + 1e-5) * layer.norm.weight
        outputs.append(o.reshape(batch, d_model) @ layer.out.weight.T)
    return torch.stack(outputs, dim=1)


def test_default_is_the_published_deltanet_layer():
    torch.manual_seed(0)
    layer = LinearAttention(12, 3, LinearAttention.Config(chunk=4)).double()
    with torch.no_grad():  # away from the initial values, so that a misplaced weight shows
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(2, 19, 12, dtype=torch.float64)
    state, outputs = layer.init_state(2, x.device, x.dtype), []
    for piece in x.split([5, 1, 13], dim=1):  # the convolution's history crosses the segments
        y, state = layer(piece, state)
        outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, dim=1), deltanet_by_definition(layer, x), rtol=0, atol=1e-12)
    assert state["conv"].shape == (2, 3, 36)  # conv_width - 1 inputs of q, k, v, counted as state


def test_delta_rule_overwrites_a_repeated_key():
    """Writing (k, v1) then (k, v2) at rate 1 leaves the memory returning v2 for k, not v1 + v2."""
    k = F.normalize(torch.randn(1, 1, 1, E, dtype=torch.float64), dim=-1).expand(1, 1, 2, E)
    v = torch.randn(1, 1, 2, E, dtype=torch.float64)
    _, state = delta_rule_by_heads(k, k, v, torch.ones(1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, E, E, dtype=torch.float64), 2)
    torch.testing.assert_close((state["S"].transpose(-1, -2) @ k[0, 0, 0].unsqueeze(-1)).squeeze(-1)[0, 0], v[0, 0, 1])


def test_rules_and_bad_options():
    assert "z" in harness.build_model("linear_attention", vocab_size=9, d_model=8, n_layers=1, n_heads=2,
                                      rule="additive").init_state(1)[0]
    assert "conv" not in harness.build_model("linear_attention", vocab_size=9, d_model=8, n_layers=1, n_heads=2,
                                             rule="delta_bare").init_state(1)[0]
    with pytest.raises(ValueError, match="rule"):
        harness.build_model("linear_attention", vocab_size=9, d_model=8, n_layers=1, n_heads=2, rule="gated")
    with pytest.raises(ValueError, match="conv_width"):
        harness.build_model("linear_attention", vocab_size=9, d_model=8, n_layers=1, n_heads=2, conv_width=0)
