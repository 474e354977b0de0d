"""Mamba: the chunked state-space-dual scan equals the selective recurrence it is defined by."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import harness
from baselines.mamba import Mamba
from harness.layers.ssd import ssd


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_chunked_scan_equals_the_recurrence(chunk):
    generator = torch.Generator().manual_seed(0)
    B, T, G, P, N = 2, 23, 3, 4, 5

    def randn(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=generator)

    xbc, dt_raw, z, h0 = randn(B, T, G * P + 2 * N), randn(B, T, G), randn(B, T, G * P), randn(B, G, P, N)
    dt_bias, A_log, D = randn(G), randn(G), randn(G)
    x, b, c = F.silu(xbc).split([G * P, N, N], dim=-1)
    dt, A, gate = F.softplus(dt_raw + dt_bias), -torch.exp(A_log), F.silu(z).view(B, T, G, P)
    h, outputs = h0.clone(), []
    for t in range(T):  # h_t = exp(dt_t A) h_{t-1} + dt_t x_t b_t^T, y_t = (h_t c_t + D x_t) SiLU(z_t)
        x_t = x[:, t].view(B, G, P)
        h = torch.exp(dt[:, t] * A).view(B, G, 1, 1) * h + (dt[:, t, :, None] * x_t).unsqueeze(-1) * b[:, t].view(B, 1, 1, N)
        outputs.append((torch.einsum("bgpn,bn->bgp", h, c[:, t]) + D[:, None] * x_t) * gate[:, t])
    y, last = ssd(xbc, dt_raw, dt_bias, A_log, D, z, h0, chunk)
    torch.testing.assert_close(y, torch.stack(outputs, dim=1).view(B, T, G * P), rtol=0, atol=1e-12)
    torch.testing.assert_close(last, h, rtol=0, atol=1e-12)


def mamba2_by_definition(layer: Mamba, x: torch.Tensor) -> torch.Tensor:
    """Mamba2Simple's forward (Dao & Gu 2024) token by token, its gated RMSNorm included.

    in_proj -> z, xBC, dt; causal depthwise convolution (with bias, zero history) and SiLU on xBC;
    dt = softplus(dt + dt_bias), A = -exp(A_log); per head h = exp(dt A) h + dt x B^T,
    y = h C + D x; y = RMSNorm(y * SiLU(z)) with norm_before_gate=False; out_proj.
    """
    batch, length, _ = x.shape
    G, P, N, inner = layer.ssm_heads, layer.config.ssm_head_dim, layer.config.d_state, layer.inner
    kernel, width = layer.conv.weight[:, 0], layer.conv.weight.shape[-1]  # C, K
    z, xbc, dt = (x @ layer.in_proj.weight.T).split([inner, layer.channels, G], dim=-1)
    history = torch.cat((torch.zeros(batch, width - 1, layer.channels, dtype=x.dtype), xbc), dim=1)
    A = -torch.exp(layer.A_log)
    h, outputs = torch.zeros(batch, G, P, N, dtype=x.dtype), []
    for t in range(length):
        convolved = F.silu((history[:, t : t + width] * kernel.T).sum(1) + layer.conv.bias)
        u, B, C = convolved.split([inner, N, N], dim=-1)
        u = u.view(batch, G, P)
        step = F.softplus(dt[:, t] + layer.dt_bias)  # batch, G
        h = torch.exp(step * A).view(batch, G, 1, 1) * h + (step.view(batch, G, 1) * u).unsqueeze(-1) * B.view(batch, 1, 1, N)
        y = (torch.einsum("bgpn,bn->bgp", h, C) + layer.D.view(1, G, 1) * u).reshape(batch, inner) * F.silu(z[:, t])
        y = y / torch.sqrt(y.square().mean(-1, keepdim=True) + 1e-5) * layer.norm.weight
        outputs.append(y @ layer.out_proj.weight.T)
    return torch.stack(outputs, dim=1)


def test_default_is_mamba2_with_its_gated_rmsnorm():
    torch.manual_seed(0)
    layer = Mamba(16, 2, Mamba.Config(d_state=4, ssm_head_dim=8, chunk=4)).double()
    with torch.no_grad():  # away from the initial values (norm weights of one), so that a misplaced weight shows
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    state, outputs = layer.init_state(2, x.device, x.dtype), []
    for piece in x.split([5, 1, 13], dim=1):
        y, state = layer(piece, state)
        outputs.append(y)
    torch.testing.assert_close(torch.cat(outputs, dim=1), mamba2_by_definition(layer, x), rtol=0, atol=1e-12)
    assert Mamba(16, 2, Mamba.Config(rmsnorm=False)).norm is None


def test_default_is_parameter_matched_and_options_are_checked():
    def parameters(name):
        return harness.build_model(name, vocab_size=32, d_model=64, n_layers=2, n_heads=4).num_parameters()

    assert abs(parameters("mamba") - parameters("full_attention")) <= 0.1 * parameters("full_attention")
    with pytest.raises(ValueError, match="ssm_head_dim"):
        harness.build_model("mamba", vocab_size=9, d_model=24, n_layers=1, n_heads=2, ssm_head_dim=16)
