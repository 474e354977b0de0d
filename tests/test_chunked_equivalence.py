"""The vectorised chunked forms of linear_attention and mamba compute what the looped forms of 10c21f1 did.

Outputs, carried states and gradients, in float64 to 1e-12, for several chunk lengths (shorter,
longer than and not dividing the segments) and segment splits (the state carried across them).
The oracle is tests/reference_chunked.py, the code as it was before the vectorisation.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import reference_chunked as reference
from conftest import perturbed
from delta_rule_heads import delta_rule_by_heads
from harness.layers.delta_rule import delta_rule
from baselines.linear_attention import LinearAttention, additive_chunked
from baselines.mamba import Mamba
from harness.layers.ssd import ssd

SPLITS = [(37,), (13, 1, 23), (16, 16, 5)]
CHUNKS = [1, 4, 7, 16, 64]


def leaves(tree) -> list[torch.Tensor]:
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in leaves(value)]
    if isinstance(tree, (list, tuple)):
        return [t for value in tree for t in leaves(value)]
    return [tree] if isinstance(tree, torch.Tensor) else []


def assert_same_run(run, run_reference, inputs: list[torch.Tensor]):
    """run(...) and run_reference(...) -> (outputs, state): equal values and gradients w.r.t. inputs."""
    results = []
    for function in (run, run_reference):
        for tensor in inputs:
            tensor.grad = None
        outputs = leaves(function())
        generator = torch.Generator().manual_seed(7)
        loss = sum((t * torch.randn(t.shape, dtype=t.dtype, generator=generator)).sum() for t in outputs)
        loss.backward()
        results.append(([t.detach() for t in outputs], [t.grad.clone() for t in inputs]))
    (outputs, grads), (expected_outputs, expected_grads) = results
    assert len(outputs) == len(expected_outputs)
    for got, expected in zip(outputs + grads, expected_outputs + expected_grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def segments(core, split, tensors, time_dim, state):
    """core over the pieces of tensors split along time_dim, the state carried: [outputs, last state]."""
    outputs = []
    for pieces in zip(*(t.split(split, dim=time_dim) for t in tensors)):
        y, state = core(*pieces, state)
        outputs.append(y)
    return [torch.cat(outputs, dim=time_dim), state]


def heads_inputs(seed, T=37, B=2, H=3, E=5):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, B, H, T, E, dtype=torch.float64, generator=generator)
    beta = torch.rand(B, H, T, dtype=torch.float64, generator=generator)
    S = torch.randn(B, H, E, E, dtype=torch.float64, generator=generator)
    return [t.requires_grad_() for t in (q, k, v, beta, S)]


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("split", SPLITS)
def test_delta_rule_equals_the_looped_form(chunk, split):
    q, k, v, beta, S = heads_inputs(0)

    E = q.shape[-1]

    def ours(q, k, v, beta, state):  # scales q and k itself: to unit length, q then by E**-0.5
        return delta_rule_by_heads(q, k, v, beta, state["S"], chunk, q_weight=E)

    def looped(q, k, v, beta, state):
        return reference.delta_chunked(F.normalize(q, dim=-1) * E**-0.5, F.normalize(k, dim=-1), v, beta, state["S"], chunk)

    def run(step):
        return lambda: segments(step, split, (q, k, v, beta), 2, {"S": S})

    assert_same_run(run(ours), run(looped), [q, k, v, beta, S])


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("split", SPLITS)
def test_additive_rule_equals_the_looped_form(chunk, split):
    q, k, v, _, S = heads_inputs(1)
    z = torch.rand(S.shape[:-1], dtype=torch.float64).requires_grad_()

    def run(core):
        def step(q, k, v, state):
            return core(F.elu(q) + 1, F.elu(k) + 1, v, state["S"], state["z"], chunk)
        return lambda: segments(step, split, (q, k, v), 2, {"S": S.abs(), "z": z})

    assert_same_run(run(additive_chunked), run(reference.additive_chunked), [q, k, v, S, z])


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("split", SPLITS)
def test_ssd_equals_the_looped_form(chunk, split):
    generator = torch.Generator().manual_seed(2)
    B, T, G, P, N = 2, 37, 3, 4, 5

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=generator).requires_grad_()

    xbc, dt, z, h = leaf(B, T, G * P + 2 * N), leaf(B, T, G), leaf(B, T, G * P), leaf(B, G, P, N)
    dt_bias, A_log, D = leaf(G), leaf(G), leaf(G)

    def ours(xbc, dt, z, h):
        return ssd(xbc, dt, dt_bias, A_log, D, z, h, chunk)

    def looped(xbc, dt, z, h):  # the looped scan takes x dt and the log decays dt A, and has no D and no gate
        x, b, c = F.silu(xbc).split([G * P, N, N], dim=-1)
        x, dt = x.reshape(*dt.shape, P), F.softplus(dt + dt_bias)
        y, h = reference.ssd_chunked(x * dt.unsqueeze(-1), dt * -torch.exp(A_log), b, c, h, chunk)
        return (y + x * D.view(-1, 1)).flatten(2) * F.silu(z), h

    def run(core):
        return lambda: segments(core, split, (xbc, dt, z), 1, h)

    assert_same_run(run(ours), run(looped), [xbc, dt, dt_bias, A_log, D, z, h])


@pytest.mark.parametrize("options", [dict(chunk=4), dict(chunk=64), dict(rule="delta_bare", chunk=3),
                                     dict(rule="additive", chunk=5)])
def test_linear_attention_layer_equals_the_looped_form(options):
    layer = perturbed(LinearAttention(12, 3, LinearAttention.Config(**options)))
    x = torch.randn(2, 19, 12, dtype=torch.float64, requires_grad=True)

    def run(forward):
        return lambda: segments(lambda x, state: forward(layer, x, state), (5, 1, 13), (x,), 1,
                                layer.init_state(2, x.device, x.dtype))

    assert_same_run(run(LinearAttention.forward), run(reference.linear_attention_forward), [x, *layer.parameters()])


@pytest.mark.parametrize("options", [dict(chunk=4), dict(chunk=64), dict(rmsnorm=False, chunk=6)])
def test_mamba_layer_equals_the_looped_form(options):
    layer = perturbed(Mamba(16, 2, Mamba.Config(d_state=4, ssm_head_dim=8, **options)))
    x = torch.randn(2, 19, 16, dtype=torch.float64, requires_grad=True)

    def run(forward):
        return lambda: segments(lambda x, state: forward(layer, x, state), (5, 1, 13), (x,), 1,
                                layer.init_state(2, x.device, x.dtype))

    assert_same_run(run(Mamba.forward), run(reference.mamba_forward), [x, *layer.parameters()])


def test_hand_written_backwards_pass_gradcheck():
    """The delta rule's and the SSD's backward passes against finite differences (chunks of 3; T = 7: a padded last chunk)."""
    generator = torch.Generator().manual_seed(3)

    def leaf(*shape, low=None):
        t = torch.rand(*shape, dtype=torch.float64, generator=generator) if low is not None else \
            torch.randn(*shape, dtype=torch.float64, generator=generator)
        return (t + low if low is not None else t).requires_grad_()

    assert torch.autograd.gradcheck(lambda qkv, beta, S: delta_rule(qkv, beta, S, 3, 4.0),
                                    (leaf(1, 7, 3, 2, 4), leaf(1, 7, 2, low=0.0), leaf(1, 2, 4, 4)))
    for T in (7, 6):  # the last chunk padded, and not
        assert torch.autograd.gradcheck(lambda xbc, dt, dt_bias, A_log, D, z, h: ssd(xbc, dt, dt_bias, A_log, D, z, h, 3),
                                        (leaf(2, T, 2 * 3 + 2 * 4), leaf(2, T, 2), leaf(2), leaf(2), leaf(2), leaf(2, T, 2 * 3),
                                         leaf(2, 2, 3, 4)))
