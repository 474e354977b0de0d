"""The peer kernels' calling conventions (fla's chunk_delta_rule, mamba_ssm's SSD) as memarena maps onto them.

On the CPU: CPU ports of the peers' naive references (fla's ``delta_rule_recurrence`` in
fla/ops/delta_rule/naive.py; the selective recurrence that mamba_ssm's
``mamba_chunk_scan_combined`` documents, as its ``ssd_minimal_discrete`` test reference computes
it), written here from their code, stand in for the kernels: each layer's peer path, run through
them in float64, must equal its PyTorch path. That proves the layouts (head-dimension order, beta's
shape, the scale, the state's orientation, initial and final state).
On CUDA (skipped without one, or without the kernels installed): the real kernels against the
PyTorch path. Tolerances: bf16 inputs, outputs and final states within 5e-2 absolute + relative,
gradients within 5e-2 relative in norm; fp32 inputs (mamba_ssm only: fla refuses fp32) within
1e-3 (the kernels' TF32 products).
"""

from __future__ import annotations

import types

import pytest
import torch

import baselines.linear_attention as linear_attention_module
import baselines.mamba as mamba_module
import harness
from baselines.linear_attention import LinearAttention
from baselines.mamba import Mamba
from conftest import perturbed
from delta_rule_heads import delta_rule_by_heads
from harness.layers import peer_kernels


def fla_delta_rule_recurrence(q, k, v, beta, initial_state, scale):
    """fla's naive delta_rule_recurrence, ported: q, k, v [b, h, l, d], beta [b, h, l], S [b, h, d_k, d_v]."""
    q = q * scale
    S, outputs = initial_state.clone(), []
    for i in range(q.shape[2]):
        _k, _q, beta_i = k[:, :, i], q[:, :, i], beta[:, :, i, None]
        _v = (v[:, :, i] - (S * _k[..., None]).sum(-2)) * beta_i
        S = S + _k.unsqueeze(-1) * _v.unsqueeze(-2)
        outputs.append(torch.einsum("bhd,bhdm->bhm", _q, S))
    return torch.stack(outputs, dim=2), S


def fake_chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state=False, **_):
    """chunk_delta_rule's convention ([B, T, H, K] inputs, beta [B, T, H], scale default K**-0.5) on the naive port."""
    scale = k.shape[-1] ** -0.5 if scale is None else scale
    o, S = fla_delta_rule_recurrence(*(t.transpose(1, 2) for t in (q, k, v, beta)), initial_state, scale)
    return o.transpose(1, 2), (S if output_final_state else None)


def fake_mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                                   dt_softplus=False, return_final_states=False, **_):
    """mamba_chunk_scan_combined's documented recurrence: x [b, l, h, p], dt [b, l, h], A [h], B, C [b, l, g, n].

    dt = softplus(dt + dt_bias) where asked; h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T per head (head i
    reads group i // (h / g)), y_t = (h_t C_t (+ D x_t)) (* SiLU(z_t)).
    """
    heads, groups = x.shape[2], B.shape[2]
    B, C = B.repeat_interleave(heads // groups, dim=2), C.repeat_interleave(heads // groups, dim=2)
    dt = dt if dt_bias is None else dt + dt_bias
    dt = torch.nn.functional.softplus(dt) if dt_softplus else dt
    h, outputs = initial_states.clone(), []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t] * A)[..., None, None] * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        outputs.append(torch.einsum("bhpn,bhn->bhp", h, C[:, t]) + (0 if D is None else D[:, None] * x[:, t]))
    y = torch.stack(outputs, dim=1)
    return (y if z is None else y * torch.nn.functional.silu(z)), h


def test_the_torch_delta_rule_equals_fla_naive_recurrence():
    generator = torch.Generator().manual_seed(0)
    B, H, T, E = 2, 3, 21, 8
    q, k = (torch.nn.functional.normalize(torch.randn(B, H, T, E, dtype=torch.float64, generator=generator), dim=-1)
            for _ in range(2))
    v, S = torch.randn(B, H, T, E, dtype=torch.float64, generator=generator), torch.randn(B, H, E, E, dtype=torch.float64)
    beta = torch.rand(B, H, T, dtype=torch.float64, generator=generator)
    y, state = delta_rule_by_heads(q, k, v, beta, S, chunk=8, q_weight=E)
    expected_y, expected_S = fla_delta_rule_recurrence(q, k, v, beta, S, scale=E**-0.5)
    torch.testing.assert_close(y, expected_y, rtol=0, atol=1e-12)
    torch.testing.assert_close(state["S"], expected_S, rtol=0, atol=1e-12)


def run_layer(layer, x, splits=(6, 1, 12)):
    state, outputs = layer.init_state(x.shape[0], x.device, x.dtype), []
    for piece in x.split(splits, dim=1):
        y, state = layer(piece, state)
        outputs.append(y)
    return torch.cat(outputs, dim=1), state


def assert_same_run(run, expected):
    """Outputs and every carried state tensor equal to 1e-12."""
    (y, state), (expected_y, expected_state) = run, expected
    torch.testing.assert_close(y, expected_y, rtol=0, atol=1e-12)
    for key in expected_state:
        torch.testing.assert_close(state[key], expected_state[key], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["delta", "delta_bare"])
def test_the_fla_path_maps_onto_chunk_delta_rule(monkeypatch, rule):
    layer = perturbed(LinearAttention(16, 2, LinearAttention.Config(rule=rule, chunk=4)))
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    expected_y, expected_state = run_layer(layer, x)
    assert layer.numerics()["backend"] == "torch"
    monkeypatch.setattr(peer_kernels, "peer_module", lambda name: types.SimpleNamespace(chunk_delta_rule=fake_chunk_delta_rule))
    monkeypatch.setattr(linear_attention_module, "resolve_backend", lambda *_: "fla")
    y, state = run_layer(layer, x)
    assert layer.numerics()["backend"] == "fla chunk_delta_rule"
    assert_same_run((y, state), (expected_y, expected_state))


def test_the_mamba_ssm_path_maps_onto_mamba_chunk_scan_combined(monkeypatch):
    layer = perturbed(Mamba(16, 2, Mamba.Config(d_state=4, ssm_head_dim=8, chunk=4)))
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    expected_y, expected_state = run_layer(layer, x)
    monkeypatch.setattr(peer_kernels, "peer_module",
                        lambda name: types.SimpleNamespace(mamba_chunk_scan_combined=fake_mamba_chunk_scan_combined))
    monkeypatch.setattr(mamba_module, "resolve_backend", lambda *_: "mamba_ssm")
    y, state = run_layer(layer, x)
    assert layer.numerics()["backend"] == "mamba_ssm mamba_chunk_scan_combined"
    assert_same_run((y, state), (expected_y, expected_state))


def test_backend_choices_and_errors():
    cpu = torch.zeros(1)
    assert peer_kernels.resolve_backend("linear_attention", "auto", cpu) == "torch"
    assert peer_kernels.resolve_backend("mamba", "auto", cpu) == "torch"
    with pytest.raises(ValueError, match="CUDA"):
        peer_kernels.resolve_backend("mamba", "mamba_ssm", cpu)
    with pytest.raises(ValueError, match="backend"):
        harness.build_model("mamba", vocab_size=9, d_model=16, n_layers=1, n_heads=2, backend="fla")
    for name, backend in (("linear_attention", "fla"), ("mamba", "mamba_ssm")):
        if peer_kernels.peer_module(backend) is None:
            with pytest.raises(ValueError, match="memarena\\[gpu\\]"):
                harness.build_model(name, vocab_size=9, d_model=16, n_layers=1, n_heads=2, backend=backend)
    if peer_kernels.peer_module("fla") is not None:
        with pytest.raises(ValueError, match="additive"):
            harness.build_model("linear_attention", vocab_size=9, d_model=16, n_layers=1, n_heads=2, rule="additive",
                                backend="fla")


def gpu_skip(backend):
    if not torch.cuda.is_available():
        return pytest.mark.skip(reason="needs a CUDA device (the peer kernels are Triton kernels)")
    if peer_kernels.peer_module(backend) is None:
        return pytest.mark.skip(reason=f"needs {peer_kernels.MODULES[backend][1]} (pip install memarena[gpu])")
    return pytest.mark.usefixtures()


def compare_backends(make_layer, peer, dtype, tolerance):
    """The peer kernel against the PyTorch path on CUDA: outputs, final states, gradients of the parameters."""
    torch.manual_seed(0)
    x = torch.randn(2, 300, 64, device="cuda")
    results = []
    for backend in ("torch", peer):
        torch.manual_seed(1)
        layer = make_layer(backend).cuda()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            y, state = run_layer(layer, x, splits=(128, 172))
        (y.float().square().mean() + sum(t.float().square().mean() for t in state.values())).backward()
        results.append((y.float(), {k: t.float() for k, t in state.items()},
                        [p.grad.clone() for p in layer.parameters()], layer.numerics()["backend"]))
    (y, state, grads, ran_torch), (peer_y, peer_state, peer_grads, ran_peer) = results
    assert ran_torch == "torch" and ran_peer != "torch"
    torch.testing.assert_close(peer_y, y, rtol=tolerance, atol=tolerance)
    for key in state:
        torch.testing.assert_close(peer_state[key], state[key], rtol=tolerance, atol=tolerance)
    for grad, peer_grad in zip(grads, peer_grads):
        assert (peer_grad - grad).norm() <= tolerance * grad.norm() + 1e-6


@gpu_skip("fla")
def test_fla_kernel_matches_the_torch_path_in_bf16():
    compare_backends(lambda backend: LinearAttention(64, 4, LinearAttention.Config(backend=backend)), "fla",
                     torch.bfloat16, 5e-2)


@gpu_skip("mamba_ssm")
@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 5e-2), (torch.float32, 1e-3)])
def test_mamba_ssm_kernel_matches_the_torch_path(dtype, tolerance):
    compare_backends(lambda backend: Mamba(64, 4, Mamba.Config(backend=backend, chunk=64)), "mamba_ssm", dtype, tolerance)
