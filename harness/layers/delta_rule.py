"""DeltaNet's chunked delta rule as one autograd function, its backward pass written by hand.

Dimension letters: B batch, T new positions, H heads, E head dimension, N chunks, L chunk length,
Z = N x B x H (the chunks of all heads, one batch of small matrices).

For each head, with q and k scaled to unit length (q then times ``q_weight**-0.5``) and a write
rate beta_t in (0, 1), the memory S [E, E] evolves as
``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T`` and is read as ``o_t = S_t^T q_t``.

In chunks of L positions (the WY/UT form of Yang et al. 2024), with K, V, Q the chunk's rows and
S_n the memory at its start: one unit-lower-triangular solve per chunk
``(I + tril(diag(beta) K K^T, -1)) [W | U] = diag(beta) [K | V]``, the chunk's effective writes
``U_n - W S_n``, the next memory ``S_{n+1} = S_n + K^T (U - W S_n) = (I - K^T W) S_n + K^T U``
(the only loop: one matrix product per chunk) and the outputs
``O = Q S_n + tril(Q K^T) (U - W S_n)``.

Autograd through these steps costs about four kernels per forward one; the backward below
walks the same products in reverse (the memory's gradient through the same loop, transposed),
so that a training step launches a few dozen kernels per layer and segment whatever the length.
Inputs and outputs keep the layouts the layer has (q, k, v interleaved per position as its
projection writes them), and the gradients come back in them, so no copies surround the call.
"""

from __future__ import annotations

import functools

import torch


def delta_rule(qkv: torch.Tensor, beta: torch.Tensor, S: torch.Tensor, chunk: int,
               q_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta rule over raw q, k, v: outputs [B, T, H, E] and the last memory [B, H, E, E].

    qkv [B, T, 3, H, E] (q, k, v before their scaling to unit length), beta [B, T, H], S [B, H, E, E]
    the memory before the first position. Computed in S's dtype (autocast or not); the gradients
    of qkv and beta come back in their own dtypes. ``chunk`` positions per chunk (no effect on the
    result); ``q_weight`` E scales the unit q by E**-0.5 (DeltaNet), 1 leaves it a unit vector.
    """
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"delta_rule: qkv must be [B, T, 3, H, E], got {list(qkv.shape)}")
    B, T, _, H, E = qkv.shape
    if beta.shape != (B, T, H) or S.shape != (B, H, E, E):
        raise ValueError(f"delta_rule: beta {list(beta.shape)} and S {list(S.shape)} do not fit qkv {list(qkv.shape)}")
    if chunk < 1:
        raise ValueError(f"delta_rule: chunk must be at least 1, got {chunk}")
    return DeltaRule.apply(qkv, beta, S, chunk, q_weight)


def unit_length_scale(qkv: torch.Tensor, q_weight: float) -> torch.Tensor:
    """The factors [B, T, 3, H, 1] that scale q and k to unit length (q then by q_weight**-0.5), v by 1.

    ``1 / sqrt(weight |x|^2 + 1e-24)``: F.normalize but for a zero vector, in S's dtype where the
    caller casts (float64 stays float64, the rest computes in float32); differentiable (the fla back-end's path), and the scaling :func:`delta_rule` applies.
    """
    dtype = torch.float64 if qkv.dtype == torch.float64 else torch.float32
    weight, eps = _unit_length_constants(float(q_weight), qkv.device, dtype)
    return torch.addcmul(eps, torch.linalg.vector_norm(qkv, dim=-1, keepdim=True, dtype=weight.dtype).square(), weight).rsqrt()


@functools.cache
def _unit_length_constants(q_weight: float, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per q, k, v [3, 1, 1]: the weight of |x|^2 and the epsilon in ``x / sqrt(weight |x|^2 + eps)``.

    v's (0, 1) leaves it as it is, so that one product scales all three.
    """
    weight = torch.tensor([q_weight, 1.0, 0.0], device=device, dtype=dtype).view(3, 1, 1)
    eps = torch.tensor([1e-24, 1e-24, 1.0], device=device, dtype=dtype).view(3, 1, 1)
    return weight, eps


@functools.cache
def _identity(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.eye(size, device=device, dtype=dtype)


class DeltaRule(torch.autograd.Function):
    """See the module docstring; called through :func:`delta_rule`."""

    @staticmethod
    def forward(ctx, qkv, beta, S, chunk, q_weight):
        B, T, _, H, E = qkv.shape
        L = min(chunk, T)
        N = -(-T // L)
        Z, dtype, device = N * B * H, S.dtype, S.device
        weight, _ = _unit_length_constants(float(q_weight), device, dtype)
        # q, k, v scaled (q, k to unit length) into the chunks' layout [N, B, H, L, 3, E]; padded
        # positions are zero (no write: k = 0; their reads are dropped)
        qkv = _padded(qkv, N * L)
        X = torch.empty(N, B, H, L, 3, E, device=device, dtype=dtype)
        scale = unit_length_scale(qkv, q_weight).to(dtype)
        torch.mul(qkv.view(B, N, L, 3, H, E), scale.view(B, N, L, 3, H, 1), out=X.permute(1, 0, 3, 4, 2, 5))
        beta = _padded(beta, N * L)
        rates = torch.empty(N, B, H, L, 2, E, device=device, dtype=dtype)  # diag(beta) [K | V]
        torch.mul(X[..., 1:, :], _chunked_beta(beta, N, L)[..., None, None], out=rates)
        X, rates = X.view(Z, L, 3 * E), rates.view(Z, L, 2 * E)
        Q, K, V = X.split(E, dim=-1)
        # the solve reads only the strictly lower triangle of A (unitriangular): no mask
        A = torch.bmm(rates[..., :E], K.mT)
        WU = torch.linalg.solve_triangular(A, rates, upper=False, unitriangular=True)
        W, U = WU.split(E, dim=-1)
        KWU = torch.bmm(K.mT, WU).view(N, B * H, E, 2 * E)
        decay = torch.sub(_identity(E, device, dtype), KWU[..., :E])  # I - K^T W per chunk
        states = torch.empty(N + 1, B * H, E, E, device=device, dtype=dtype)
        states[0].copy_(S.reshape(B * H, E, E))
        for n in range(N):
            torch.baddbmm(KWU[n, ..., E:], decay[n], states[n], out=states[n + 1])
        starts = states[:N].view(Z, E, E)
        writes = torch.baddbmm(U, W, starts, alpha=-1)  # U - W S_n
        P = torch.bmm(Q, K.mT).tril_()
        Y = torch.baddbmm(torch.bmm(P, writes), Q, starts)
        y = torch.empty(B, N * L, H, E, device=device, dtype=dtype)
        y.view(B, N, L, H, E).permute(1, 0, 3, 2, 4).copy_(Y.view(N, B, H, L, E))
        ctx.save_for_backward(X, scale, rates, A, WU, decay, states, writes, P, weight, beta)
        ctx.dims, ctx.dtypes = (B, T, H, E, N, L), (qkv.dtype, beta.dtype, S.dtype)
        ctx.set_materialize_grads(False)  # a missing gradient (the last memory unused) comes as None
        return y[:, :T], states[N].view(B, H, E, E)

    @staticmethod
    def backward(ctx, dy, dS):
        X, scale, rates, A, WU, decay, states, writes, P, weight, beta = ctx.saved_tensors
        (B, T, H, E, N, L), (qkv_dtype, beta_dtype, S_dtype) = ctx.dims, ctx.dtypes
        Z, dtype, device = N * B * H, X.dtype, X.device
        Q, K, V = X.split(E, dim=-1)
        W, U = WU.split(E, dim=-1)
        starts = states[:N].view(Z, E, E)
        dY = torch.empty(N, B, H, L, E, device=device, dtype=dtype)
        if dy is None:
            dY.zero_()
        else:
            dY.permute(1, 0, 3, 2, 4).copy_(_padded(dy, N * L).view(B, N, L, H, E))
        dY = dY.view(Z, L, E)
        # the memory's gradient, chunk by chunk from the last: dS_n = (I - K^T W)^T dS_{n+1} + (Q - P W)^T dY
        PdY = torch.bmm(P.mT, dY)
        read = torch.baddbmm(torch.bmm(Q.mT, dY), W.mT, PdY, alpha=-1)
        dstates = torch.empty(N + 1, B * H, E, E, device=device, dtype=dtype)
        if dS is None:
            dstates[N].zero_()
        else:
            dstates[N].copy_(dS.reshape(B * H, E, E))
        for n in reversed(range(N)):
            torch.baddbmm(read.view(N, B * H, E, E)[n], decay[n].mT, dstates[n + 1], out=dstates[n])
        after = dstates[1:].view(Z, E, E)  # the gradient of the memory after each chunk
        dwrites = torch.baddbmm(PdY, K, after)
        # gradients of q, k, v (unit-length q, k) gathered in the chunks' layout
        dX = torch.empty(Z, L, 3 * E, device=device, dtype=dtype)
        dQ, dK, dV = dX.split(E, dim=-1)
        dP = torch.bmm(dY, writes.mT).tril_()
        torch.baddbmm(torch.bmm(dY, starts.mT), dP, K, out=dQ)
        # the solve's gradient: M^T [dW' | dU'] = [dW | dU], M = I + A's strictly lower triangle
        dWU = torch.cat((torch.baddbmm(writes, dwrites, starts.mT, beta=0, alpha=-1), dwrites), dim=-1)
        drates = torch.linalg.solve_triangular(A.mT, dWU, upper=True, unitriangular=True)
        dA = torch.bmm(drates, WU.mT).tril_(-1)  # minus the gradient of A's strictly lower triangle
        drates[..., :E].baddbmm_(dA, K, alpha=-1)  # the gradient of diag(beta) [K | V]
        dX6 = dX.view(N, B, H, L, 3, E)
        torch.mul(drates.view(N, B, H, L, 2, E), _chunked_beta(beta, N, L)[..., None, None], out=dX6[..., 1:, :])
        dbeta = torch.empty(B, N * L, H, device=device, dtype=dtype)
        torch.sum((drates * X[..., E:]).view(N, B, H, L, 2 * E), dim=-1, out=_chunked_beta(dbeta, N, L))
        dK.baddbmm_(dP.mT, Q).baddbmm_(writes, after.mT).baddbmm_(dA.mT, rates[..., :E], alpha=-1)
        # through the scaling to unit length: dx = scale (dx' - weight (x' . dx') x'), x' the scaled x
        X6 = X.view(N, B, H, L, 3, E).permute(1, 0, 3, 4, 2, 5)  # B, N, L, 3, H, E
        dX6 = dX6.permute(1, 0, 3, 4, 2, 5)
        dot = (X6 * dX6).sum(-1, keepdim=True)
        dqkv = torch.empty(B, N * L, 3, H, E, device=device, dtype=dtype)
        torch.mul(torch.addcmul(dX6, X6, dot.mul_(weight), value=-1), scale.view(B, N, L, 3, H, 1),
                  out=dqkv.view(B, N, L, 3, H, E))
        return (dqkv[:, :T].to(qkv_dtype), dbeta[:, :T].to(beta_dtype), dstates[0].view(B, H, E, E).to(S_dtype), None, None)


def _chunked_beta(beta: torch.Tensor, N: int, L: int) -> torch.Tensor:
    """A view [N, B, H, L] of beta [B, N * L, H]."""
    B, _, H = beta.shape
    return beta.view(B, N, L, H).permute(1, 0, 3, 2)


def _padded(x: torch.Tensor, length: int) -> torch.Tensor:
    """x [B, T, ...] zero-padded to ``length`` positions."""
    pad = length - x.shape[1]
    return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, pad)) if pad else x
