"""harness.layers.rms_norm: torch.nn.RMSNorm's values and gradients with a hand-written backward."""

from __future__ import annotations

import torch
from torch import nn

from harness.layers.rms_norm import RMSNorm


def test_equals_torch_rmsnorm_with_its_gradients():
    torch.manual_seed(0)
    ours, theirs = RMSNorm(6, eps=1e-5).double(), nn.RMSNorm(6, eps=1e-5).double()
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
    x = torch.randn(2, 5, 3, 6, dtype=torch.float64).transpose(1, 2).requires_grad_()  # strided, as a layer passes it
    grad = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    results = []
    for layer in (ours, theirs):
        y = layer(x)
        (y * grad).sum().backward()
        results.append((y.detach(), x.grad, layer.weight.grad))
        x.grad = None
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_gradcheck_and_state_dict():
    layer = RMSNorm(4, eps=1e-5).double()
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    assert list(layer.state_dict()) == list(nn.RMSNorm(4, eps=1e-5).state_dict())


def test_the_cpu_runs_the_hand_written_backward():
    """Off CUDA (no fused kernel there: F.rms_norm decomposes into about 20 operations) the function here runs."""
    x = torch.randn(3, 4, requires_grad=True)
    assert RMSNorm(4, eps=1e-5)(x).grad_fn.name() == "_RMSNormBackward"
