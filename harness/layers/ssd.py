"""Mamba-2's chunked state-space-dual scan (SSD) as one autograd function, its backward written by hand.

Dimension letters: B batch, T new positions, G SSM heads, P head dimension, N state size,
K chunks, L chunk length.

Per head, with decay rate A < 0, step sizes dt_t, inputs x_t [P] and maps b_t, c_t [N] (shared
by the heads), the state h [P, N] and the outputs follow

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t b_t^T,      y_t = h_t c_t + D x_t

(mamba_ssm's ``mamba_chunk_scan_combined`` with D, one group). In chunks of L positions (Dao &
Gu 2024, their listing 1, with the carried state), cs the within-chunk cumulative sum of dt A:
an L x L matrix of decays exp(cs_t - cs_s) times (c_t . b_s) within a chunk; each chunk's own
writes ``sum_s exp(cs_L - cs_s) dt_s x_s b_s^T``; the states at the chunk starts from a
(K + 1) x (K + 1) matrix of decays between chunk ends applied to [h, writes]; their read-out
``exp(cs_t) h c_t``. Padded positions (T not a multiple of L) decay by nothing and write nothing.

Autograd through these steps costs about four kernels per forward one; the backward below needs
about two (each product's two gradients; the cumulative sums' gradients as products with
triangles of ones).
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, b: torch.Tensor, c: torch.Tensor, D: torch.Tensor,
        h: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan over x [B, T, G, P], dt [B, T, G], A [G], b, c [B, T, N], D [G] from h [B, G, P, N].

    Returns y [B, T, G, P] and the last state [B, G, P, N]. Computed in h's dtype; the gradients
    come back in their inputs' dtypes. ``chunk`` positions per chunk (no effect on the result).
    """
    Bsz, T, G, P = x.shape
    N = b.shape[-1]
    if dt.shape != (Bsz, T, G) or b.shape != (Bsz, T, N) or c.shape != b.shape or h.shape != (Bsz, G, P, N):
        raise ValueError(f"ssd: shapes x {list(x.shape)}, dt {list(dt.shape)}, b {list(b.shape)}, c {list(c.shape)}, "
                         f"h {list(h.shape)} do not fit together")
    if chunk < 1:
        raise ValueError(f"ssd: chunk must be at least 1, got {chunk}")
    return SSD.apply(x, dt, A, b, c, D, h, chunk)


@functools.cache
def _triangles(L: int, K: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the cumulative sums as one product: [3L + 1, L] and [K + 1, K] matrices of ones.

    Rows of the first: t >= s (three times: the within-chunk decays, the read-out's decays, then
    t < s for the decays to the chunk's end), then a row of ones (the chunk total). The second:
    j > k (chunk ends after chunk k).
    """
    at_or_after = torch.ones(L, L, device=device, dtype=dtype).tril()
    before = torch.ones(L, L, device=device, dtype=dtype).triu(1)
    within = torch.cat((at_or_after, at_or_after, before, torch.ones(1, L, device=device, dtype=dtype)))
    return within, torch.ones(K + 1, K, device=device, dtype=dtype).tril(-1)


class SSD(torch.autograd.Function):
    """See the module docstring; called through :func:`ssd`."""

    @staticmethod
    def forward(ctx, x, dt, A, b, c, D, h, chunk):
        Bsz, T, G, P = x.shape
        N = b.shape[-1]
        L = min(chunk, T)
        K = -(-T // L)
        dtype, device = h.dtype, h.device
        x, dt, b, c = (_padded(t, K * L) for t in (x, dt, b, c))
        A, D = A.to(dtype), D.to(dtype)
        xk, dtk = x.view(Bsz, K, L, G, P), dt.view(Bsz, K, L, G)
        bk, ck = b.reshape(Bsz * K, L, N).to(dtype), c.reshape(Bsz * K, L, N).to(dtype)
        cs = torch.empty(Bsz, G, K, L, device=device, dtype=dtype)  # cumulative dt A within each chunk
        torch.mul(dtk.permute(0, 3, 1, 2), A.view(G, 1, 1), out=cs)
        cs.cumsum_(-1)
        xdt = torch.empty(Bsz, G, K, L, P, device=device, dtype=dtype)
        torch.mul(xk.permute(0, 3, 1, 2, 4), dtk.permute(0, 3, 1, 2).unsqueeze(-1), out=xdt)
        # within each chunk: y = (decays * C B^T) xdt (exp of the upper triangle overflows harmlessly: zeroed)
        CB = torch.bmm(ck, bk.mT).view(Bsz, 1, K, L, L)
        decays = (cs.unsqueeze(-1) - cs.unsqueeze(-2)).exp_().tril_()
        M = decays * CB
        y_within = torch.bmm(M.view(-1, L, L), xdt.view(-1, L, P))
        # each chunk's writes to the state, and the states at the chunk starts
        to_end = (cs[..., -1:] - cs).exp_()
        xdt_to_end = xdt * to_end.unsqueeze(-1)
        b_heads = bk.view(Bsz, 1, K, L, N).expand(Bsz, G, K, L, N).reshape(-1, L, N)
        writes = torch.bmm(xdt_to_end.view(-1, L, P).mT, b_heads)  # B*G*K, P, N
        ends = F.pad(cs[..., -1], (1, 0)).cumsum_(-1)
        between = (ends.unsqueeze(-1) - ends.unsqueeze(-2)).exp_().tril_().view(Bsz * G, K + 1, K + 1)
        sources = torch.cat((h.to(dtype).unsqueeze(2), writes.view(Bsz, G, K, P, N)), dim=2).view(Bsz * G, K + 1, P * N)
        states = torch.bmm(between, sources).view(Bsz, G, K + 1, P, N)
        starts = torch.empty(Bsz, K, G, P, N, device=device, dtype=dtype)  # the heads side by side, for C h^T
        starts.copy_(states[:, :, :K].transpose(1, 2))
        read = torch.bmm(ck, starts.view(Bsz * K, G * P, N).mT).view(Bsz, K, L, G, P)
        decay_from_start = cs.exp().permute(0, 2, 3, 1).unsqueeze(-1)  # B, K, L, G, 1
        read.mul_(decay_from_start)
        y = torch.empty(Bsz, K * L, G, P, device=device, dtype=dtype)
        torch.addcmul(read, xk, D.view(G, 1), out=y.view(Bsz, K, L, G, P))
        y.view(Bsz, K, L, G, P).add_(y_within.view(Bsz, G, K, L, P).permute(0, 2, 3, 1, 4))
        ctx.save_for_backward(xk, dtk, A, D, bk, ck, decays, M, xdt, to_end, xdt_to_end, b_heads, between, sources, starts,
                              read, decay_from_start, cs)
        ctx.dims, ctx.dtypes = (Bsz, T, G, P, N, K, L), tuple(t.dtype for t in (x, dt, A, b, c, D, h))
        ctx.set_materialize_grads(False)  # a missing gradient (the last state unused) comes as None
        return y[:, :T], states[:, :, K]

    @staticmethod
    def backward(ctx, dy, dh):
        (xk, dtk, A, D, bk, ck, decays, M, xdt, to_end, xdt_to_end, b_heads, between, sources, starts, read,
         decay_from_start, cs) = ctx.saved_tensors
        (Bsz, T, G, P, N, K, L), dtypes = ctx.dims, ctx.dtypes
        dtype, device = cs.dtype, cs.device
        dY = torch.zeros(Bsz, K, L, G, P, device=device, dtype=dtype) if dy is None else \
            _padded(dy.to(dtype), K * L).reshape(Bsz, K, L, G, P)
        dD = (dY * xk).sum((0, 1, 2, 4))
        # the read-out of the chunk starts: read = exp(cs) C h^T
        dread = dY * decay_from_start
        dcs_read = _row_dots(dY, read).view(Bsz, K, L, G)
        dc = torch.bmm(dread.view(Bsz * K, L, G * P), starts.view(Bsz * K, G * P, N))
        dstarts = torch.bmm(dread.view(Bsz * K, L, G * P).mT, ck).view(Bsz, K, G, P, N).transpose(1, 2)
        if dh is None:
            dstates = F.pad(dstarts, (0, 0, 0, 0, 0, 1))
        else:
            dstates = torch.cat((dstarts, dh.to(dtype).unsqueeze(2)), dim=2)
        dstates = dstates.reshape(Bsz * G, K + 1, P * N)
        # the states from [h, writes] through the decays between chunk ends
        dwrites = torch.bmm(between[..., 1:].mT, dstates).view(-1, P, N)
        dh0 = torch.bmm(between[..., :1].mT, dstates).view(Bsz, G, P, N) if ctx.needs_input_grad[6] else None
        dlog_between = torch.bmm(dstates, sources.mT).mul_(between)
        dtotals = ((dlog_between - dlog_between.mT).sum(-1) @ _triangles(L, K, device, dtype)[1]).view(Bsz, G, K, 1)
        # the writes: xdt_to_end^T b
        dxdt_to_end = torch.bmm(b_heads, dwrites.mT)
        db = torch.bmm(xdt_to_end.view(-1, L, P), dwrites).view(Bsz, G, K * L, N).sum(1).view(Bsz * K, L, N)
        dxdt = dxdt_to_end.view(Bsz, G, K, L, P) * to_end.unsqueeze(-1)
        dcs_to_end = _row_dots(dxdt_to_end, xdt_to_end).view(Bsz, G, K, L)
        # within each chunk: y = M xdt, M = decays * C B^T
        dY_heads = torch.empty(Bsz, G, K, L, P, device=device, dtype=dtype)
        dY_heads.permute(0, 2, 3, 1, 4).copy_(dY)
        dM = torch.bmm(dY_heads.view(-1, L, P), xdt.view(-1, L, P).mT)
        dxdt.view(-1, L, P).baddbmm_(M.view(-1, L, L).mT, dY_heads.view(-1, L, P))
        dlog_decays = dM * M.view(-1, L, L)
        dcs_decays = (dlog_decays - dlog_decays.mT).sum(-1).view(Bsz, G, K, L)
        dCB = (dM.view(Bsz, G, K, L, L) * decays).sum(1).view(Bsz * K, L, L)
        dc.baddbmm_(dCB, bk)
        db.baddbmm_(dCB.mT, ck)
        # the cumulative sums' gradients, all four at once: da = [dcs | dcs | d(to_end) | d(total)] @ triangles
        da = torch.cat((dcs_decays, dcs_read.permute(0, 3, 1, 2), dcs_to_end, dtotals), dim=-1) @ _triangles(L, K, device, dtype)[0]
        # a = dt A, xdt = x dt
        dtk_heads = dtk.permute(0, 3, 1, 2)
        ddt = torch.empty(Bsz, K * L, G, device=device, dtype=dtype)
        torch.addcmul((dxdt * xk.permute(0, 3, 1, 2, 4)).sum(-1), da, A.view(G, 1, 1),
                      out=ddt.view(Bsz, K, L, G).permute(0, 3, 1, 2))
        dA = (da * dtk_heads).sum((0, 2, 3))
        dx = torch.empty(Bsz, K * L, G, P, device=device, dtype=dtype)
        torch.mul(dxdt, dtk_heads.unsqueeze(-1), out=dx.view(Bsz, K, L, G, P).permute(0, 3, 1, 2, 4))
        dx.view(Bsz, K, L, G, P).addcmul_(dY, D.view(G, 1))
        grads = (dx[:, :T], ddt[:, :T], dA, db.view(Bsz, K * L, N)[:, :T], dc.view(Bsz, K * L, N)[:, :T], dD, dh0)
        return (*(g if g is None else g.to(d) for g, d in zip(grads, dtypes)), None)


def _row_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The dot products of the last-dimension rows of a and b (contiguous, same shape), as one batched product."""
    size = a.shape[-1]
    return torch.bmm(a.reshape(-1, 1, size), b.reshape(-1, size, 1)).view(a.shape[:-1])


def _padded(x: torch.Tensor, length: int) -> torch.Tensor:
    """x [B, T, ...] zero-padded to ``length`` positions."""
    pad = length - x.shape[1]
    return F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad)) if pad else x
