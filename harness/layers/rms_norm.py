"""RMSNorm over the last dimension with a backward pass written by hand where torch has no fused kernel.

``y = x / sqrt(mean(x^2) + eps) * weight``, as ``torch.nn.RMSNorm`` (same parameter, same state
dict). On CUDA ``F.rms_norm`` runs torch's fused kernel (one launch each way) and is used as it
is. Elsewhere (the CPU) it decomposes into about 6 operations forward and 14 backward; the
function below needs 5 and 7: the backward as
``dx = r (g - xhat mean(g xhat))``, ``g = dy weight``, ``dweight = sum(dy xhat)``, r the
reciprocal root mean square and xhat = x r. Computed in float32 for lower-precision inputs (as
torch's composite does), returned in the input's dtype.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


class RMSNorm(nn.RMSNorm):
    """``torch.nn.RMSNorm`` over the last dimension, with learned weights and a given eps."""

    def __init__(self, size: int, eps: float):
        super().__init__(size, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            return super().forward(x)
        return _RMSNorm.apply(x, self.weight, self.eps)


@functools.cache
def _epsilon(eps: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(eps, device=device, dtype=dtype)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        size = x.shape[-1]
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=dtype)
        r = torch.addcmul(_epsilon(eps, x.device, dtype), norm, norm, value=1 / size).rsqrt_()  # 1/sqrt(mean x^2 + eps)
        xhat = x * r
        ctx.save_for_backward(xhat, r, weight)
        ctx.x_dtype = x.dtype
        return (xhat * weight).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        xhat, r, weight = ctx.saved_tensors
        dweight = None
        if ctx.needs_input_grad[1]:
            dweight = (dy * xhat).sum(tuple(range(xhat.dim() - 1))).to(weight.dtype)
        g = dy * weight
        dot = torch.bmm(g.reshape(-1, 1, g.shape[-1]), xhat.reshape(-1, g.shape[-1], 1)).view(xhat.shape[:-1] + (1,))
        dx = torch.addcmul(g, xhat, dot, value=-1 / xhat.shape[-1]).mul_(r)
        return dx.to(ctx.x_dtype), dweight, None
