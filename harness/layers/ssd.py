"""Mamba-2's chunked state-space-dual scan (SSD) with its input and output steps, one autograd function.

Dimension letters: B batch, T new positions, G SSM heads, P head dimension, N state size,
C = G P + 2 N channels, K chunks, L chunk length.

What mamba_ssm's ``mamba_chunk_scan_combined(x, dt, A, B, C, chunk, D, z, dt_bias, dt_softplus=True)``
computes (one group), with SiLU on x, B, C (the activation of Mamba-2's convolution) taken in too:

    x_t, b_t, c_t = SiLU(xbc_t) split [G P, N, N]      dt_t = softplus(dt_t + dt_bias)   A = -exp(A_log)
    h_t = exp(dt_t A) h_{t-1} + dt_t x_t b_t^T           (per head: h [P, N], x_t [P], b_t, c_t [N])
    y_t = (h_t c_t + D x_t) SiLU(z_t)

In chunks of L positions (Dao & Gu 2024, their listing 1, with the carried state), with cs the
within-chunk cumulative sum of dt exp(A_log) (>= 0, 0 at the chunk start; the decay from s to t is
exp(cs_s - cs_t)): an (L + 1) x (L + 1) matrix of these decays, the chunk start included, gives the
within-chunk weights exp(cs_s - cs_t) (c_t . b_s), the decays from the start exp(-cs_t) (its first
column) and to the chunk's end exp(cs_s - cs_L) (its last row); each chunk's own writes
``sum_s exp(cs_s - cs_L) dt_s x_s b_s^T``; the states at the chunk starts from a (K + 1) x (K + 1)
matrix of decays between chunk ends applied to [h, writes]; their read-out ``exp(-cs_t) h c_t``.
Padded positions (T not a multiple of L) decay by nothing and write nothing.

Autograd through these steps costs about four kernels per forward one; the backward below needs
about two (each product's two gradients; the cumulative sums' gradients as products with
triangles of ones; the three per-head parameter gradients as one reduction).
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F


@torch.compiler.disable  # runs eagerly inside compiled models: its out= writes change layouts, which Inductor cannot replay
def ssd(xbc: torch.Tensor, dt: torch.Tensor, dt_bias: torch.Tensor, A_log: torch.Tensor, D: torch.Tensor,
        z: torch.Tensor, h: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated scan over xbc [B, T, C] (before SiLU), dt [B, T, G] (before bias and softplus), z [B, T, G P].

    dt_bias, A_log, D [G]; h [B, G, P, N] the state before the first position. Returns the gated
    outputs [B, T, G P] and the last state [B, G, P, N], computed in h's dtype (the gradients in
    their inputs' dtypes). ``chunk`` positions per chunk (no effect on the result).
    """
    Bsz, T, C = xbc.shape
    _, G, P, N = h.shape
    shapes_fit = (C == G * P + 2 * N and dt.shape == (Bsz, T, G) and z.shape == (Bsz, T, G * P)
                  and dt_bias.shape == A_log.shape == D.shape == (G,) and h.shape[0] == Bsz)
    if not shapes_fit:
        raise ValueError(f"ssd: shapes xbc {list(xbc.shape)}, dt {list(dt.shape)}, dt_bias {list(dt_bias.shape)}, "
                         f"A_log {list(A_log.shape)}, D {list(D.shape)}, z {list(z.shape)}, h {list(h.shape)} "
                         f"do not fit together")
    if chunk < 1:
        raise ValueError(f"ssd: chunk must be at least 1, got {chunk}")
    return SSD.apply(xbc, dt, dt_bias, A_log, D, z, h, chunk)


@functools.cache
def _triangles(L: int, K: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of the cumulative sums as products: [3L + 1, L] and [(K + 1)^2, K] matrices of 0, +-1.

    Rows of the first (t, columns j): t >= j (the within-chunk decays), -(t >= j) (the decays
    from the start, exp(-cs_t)), -(t < j) (the decays to the chunk's end), then ones (the chunk
    total). The second maps the log-gradient g of the decays between chunk ends, exp(e_c - e_r) at
    [r, c] with e the cumulative chunk totals, to the totals: total k gets sum over r, c of
    g[r, c] ((c > k) - (r > k)).
    """
    at_or_after = torch.ones(L, L, device=device, dtype=dtype).tril()
    before = torch.ones(L, L, device=device, dtype=dtype).triu(1)
    within = torch.cat((at_or_after, -at_or_after, -before, torch.ones(1, L, device=device, dtype=dtype)))
    ends, chunks = torch.arange(K + 1, device=device), torch.arange(K, device=device)
    after = (ends.view(-1, 1) > chunks).to(dtype)  # K + 1, K
    return within, (after.unsqueeze(0) - after.unsqueeze(1)).view((K + 1) ** 2, K)


class SSD(torch.autograd.Function):
    """See the module docstring; called through :func:`ssd`."""

    @staticmethod
    def forward(ctx, xbc_in, dt_in, dt_bias, A_log, D, z, h, chunk):
        Bsz, T, C = xbc_in.shape
        _, G, P, N = h.shape
        I = G * P
        L = min(chunk, T)
        K = -(-T // L)
        dtype, device = h.dtype, h.device
        padded = K * L != T
        dtypes = tuple(t.dtype for t in (xbc_in, dt_in, dt_bias, A_log, D, z, h))
        D, z = D.to(dtype), z.to(dtype)
        # x, b, c side by side and time-major (b, c then view as chunks without a copy); zeros past T
        xbc = (torch.zeros if padded else torch.empty)(Bsz, K * L, C, device=device, dtype=dtype)
        torch.ops.aten.silu.out(xbc_in.to(dtype), out=xbc[:, :T])
        xk, bk, ck = _chunks(xbc, K, L, G, P, N)
        # step sizes per head, heads first; -inf before softplus past T: dt = 0 there, and its gradient
        pre = torch.full((Bsz, G, K * L), -torch.inf, device=device, dtype=dtype) if padded else \
            torch.empty(Bsz, G, K * L, device=device, dtype=dtype)
        torch.add(dt_in.transpose(1, 2), dt_bias.view(G, 1), out=pre[..., :T])
        dt = F.softplus(pre).view(Bsz, G, K, L)
        rates = torch.exp(A_log.to(dtype))  # -A
        a = dt * rates.view(G, 1, 1)  # -log decay per step
        cs = F.pad(a.cumsum(-1), (1, 0))  # B, G, K, L + 1
        xdt = torch.empty(Bsz * G * K, L, P, device=device, dtype=dtype)  # (out= into views, whose layout stays)
        torch.mul(xk.permute(0, 3, 1, 2, 4), dt.unsqueeze(-1), out=xdt.view(Bsz, G, K, L, P))
        # decays[t, s] = exp(cs_s - cs_t) within each chunk, the start as position 0 (exp of the upper triangle
        # overflows harmlessly: zeroed); within the chunk: y = (decays * C B^T) xdt
        decays = (cs.unsqueeze(-2) - cs.unsqueeze(-1)).exp_().tril_()
        CB = torch.bmm(ck, bk.mT).view(Bsz, 1, K, L, L)
        M = decays[..., 1:, 1:] * CB
        y_within = torch.bmm(M.view(-1, L, L), xdt)
        # each chunk's writes to the state (heads side by side: one product per chunk)
        to_end, from_start = decays[..., L, 1:], decays[..., 1:, 0]  # B, G, K, L
        xdt_to_end = torch.empty(Bsz * K, L, I, device=device, dtype=dtype)
        torch.mul(xdt.view(Bsz, G, K, L, P).permute(0, 2, 3, 1, 4), to_end.permute(0, 2, 3, 1).unsqueeze(-1),
                  out=xdt_to_end.view(Bsz, K, L, G, P))
        writes = torch.bmm(xdt_to_end.mT, bk)  # B*K, G*P, N
        # the states at the chunk starts (and the last) from [h, writes]
        ends = F.pad(cs[..., -1], (1, 0)).cumsum_(-1)
        between = (ends.unsqueeze(-2) - ends.unsqueeze(-1)).exp_().tril_().view(Bsz * G, K + 1, K + 1)
        sources = torch.cat((h.to(dtype).unsqueeze(2), writes.view(Bsz, K, G, P, N).transpose(1, 2)), dim=2)
        states = torch.bmm(between, sources.view(Bsz * G, K + 1, P * N)).view(Bsz, G, K + 1, P, N)
        starts = torch.empty(Bsz, K, G, P, N, device=device, dtype=dtype)  # the heads side by side, for C h^T
        starts.copy_(states[:, :, :K].transpose(1, 2))
        read = torch.bmm(ck, starts.view(Bsz * K, I, N).mT).view(Bsz, K, L, G, P)
        y = torch.empty(Bsz, K * L, I, device=device, dtype=dtype)
        torch.addcmul(y_within.view(Bsz, G, K, L, P).permute(0, 2, 3, 1, 4), xk, D.view(G, 1), out=y.view(Bsz, K, L, G, P))
        y.view(Bsz, K, L, G, P).addcmul_(read, from_start.permute(0, 2, 3, 1).unsqueeze(-1))
        y = y[:, :T]
        gate = F.silu(z)
        ctx.save_for_backward(xbc_in, xbc, pre, dt, a, rates, D, z, gate, y, decays, M, xdt, xdt_to_end, between,
                              sources, starts, read)
        ctx.dims, ctx.dtypes = (Bsz, T, G, P, N, K, L), dtypes
        ctx.set_materialize_grads(False)  # a missing gradient (the last state unused) comes as None
        return y * gate, states[:, :, K]

    @staticmethod
    def backward(ctx, dout, dh):
        (xbc_in, xbc, pre, dt, a, rates, D, z, gate, y, decays, M, xdt, xdt_to_end, between, sources, starts,
         read) = ctx.saved_tensors
        (Bsz, T, G, P, N, K, L), dtypes = ctx.dims, ctx.dtypes
        I, dtype, device = G * P, xbc.dtype, xbc.device
        padded = K * L != T
        new = functools.partial(torch.zeros if padded else torch.empty, device=device, dtype=dtype)
        xk, bk, ck = _chunks(xbc, K, L, G, P, N)
        if dout is None:
            dout = torch.zeros(Bsz, T, I, device=device, dtype=dtype)
        dout = dout.to(dtype)
        # the gate, and dY heads first beside dxdt (both meet x in one product below)
        dz = torch.ops.aten.silu_backward(dout * y, z)
        dYx = new(2, Bsz, G, K * L, P)
        torch.mul(dout.view(Bsz, T, G, P).transpose(1, 2), gate.view(Bsz, T, G, P).transpose(1, 2), out=dYx[0, :, :, :T])
        dY_heads, dxdt = dYx.view(2, Bsz, G, K, L, P)
        dY = dY_heads.permute(0, 2, 3, 1, 4)  # B, K, L, G, P
        # the read-out of the chunk starts: read = C h^T, times exp(-cs) (rows of decays' first column)
        dread = torch.empty(Bsz * K, L, I, device=device, dtype=dtype)
        torch.mul(dY, decays[..., 1:, 0].permute(0, 2, 3, 1).unsqueeze(-1), out=dread.view(Bsz, K, L, G, P))
        dcs_read = _row_dots(dread.view(Bsz, K, L, G, P), read)  # B, K, L, G
        dxbc = torch.empty(Bsz, K * L, xbc.shape[-1], device=device, dtype=dtype)
        dx, db, dc = _chunks(dxbc, K, L, G, P, N)
        torch.bmm(dread, starts.view(Bsz * K, I, N), out=dc)
        dstarts = torch.bmm(dread.mT, ck).view(Bsz, K, G, P, N).transpose(1, 2)
        if dh is None:
            dstates = F.pad(dstarts, (0, 0, 0, 0, 0, 1))
        else:
            dstates = torch.cat((dstarts, dh.to(dtype).unsqueeze(2)), dim=2)
        dstates = dstates.reshape(Bsz * G, K + 1, P * N)
        # the states from [h, writes] through the decays between chunk ends
        dwrites = torch.bmm(between[..., 1:].mT, dstates)
        dh0 = torch.bmm(between[..., :1].mT, dstates).view(Bsz, G, P, N) if ctx.needs_input_grad[6] else None
        dlog_between = torch.bmm(dstates, sources.view(Bsz * G, K + 1, P * N).mT).mul_(between)
        dtotals = (dlog_between.view(Bsz * G, -1) @ _triangles(L, K, device, dtype)[1]).view(Bsz, G, K, 1)
        # the writes: xdt_to_end^T b per chunk, the heads side by side
        dwrites_chunks = torch.empty(Bsz, K, G, P, N, device=device, dtype=dtype)
        dwrites_chunks.copy_(dwrites.view(Bsz, G, K, P, N).transpose(1, 2))
        dwrites_chunks = dwrites_chunks.view(Bsz * K, I, N)
        dxdt_to_end = torch.bmm(bk, dwrites_chunks.mT)  # B*K, L, G*P
        torch.bmm(xdt_to_end, dwrites_chunks, out=db)
        to_end = decays[..., L, 1:]
        torch.mul(dxdt_to_end.view(Bsz, K, L, G, P).permute(0, 3, 1, 2, 4), to_end.unsqueeze(-1), out=dxdt)
        dcs_to_end = _row_dots(dxdt_to_end.view(Bsz, K, L, G, P), xdt_to_end)  # B, K, L, G
        # within each chunk: y = M xdt, M = decays * C B^T
        dM = torch.bmm(dY_heads.reshape(-1, L, P), xdt.mT)
        dxdt.view(-1, L, P).baddbmm_(M.view(-1, L, L).mT, dY_heads.reshape(-1, L, P))
        dlog_decays = dM * M.view(-1, L, L)
        dcs_decays = (dlog_decays.mT - dlog_decays).sum(-1).view(Bsz, G, K, L)
        dCB = (dM.view(Bsz, G, K, L, L) * decays[..., 1:, 1:]).sum(1).view(Bsz * K, L, L)
        dc.baddbmm_(dCB, bk)
        db.baddbmm_(dCB.mT, ck)
        # the cumulative sums' gradients, all four at once: da = [d(decays) | d(from start) | d(to end) | d(total)] @ triangles
        pieces = (dcs_decays, dcs_read.permute(0, 3, 1, 2), dcs_to_end.permute(0, 3, 1, 2), dtotals)
        da = torch.cat(pieces, dim=-1) @ _triangles(L, K, device, dtype)[0]
        # a = dt exp(A_log), xdt = x dt, y += D x: the sums over P, then the per-head sums of dD, d(dt_bias), dA_log
        sums = torch.empty(3, Bsz, G, K, L, device=device, dtype=dtype)
        torch.sum(dYx.view(2, Bsz, G, K, L, P) * xk.permute(0, 3, 1, 2, 4), -1, out=sums[:2])
        ddt = sums[1].addcmul_(da, rates.view(G, 1, 1))  # then through the softplus (beta 1, threshold 20), in place
        torch.ops.aten.softplus_backward.grad_input(ddt, pre.view(Bsz, G, K, L), 1, 20, grad_input=ddt)
        torch.mul(da, a, out=sums[2])
        dD, ddt_bias, dA_log = sums.sum((1, 3, 4))
        torch.mul(dxdt, dt.unsqueeze(-1), out=dx.permute(0, 3, 1, 2, 4))
        dx.addcmul_(dY, D.view(G, 1))
        dxbc_in = torch.empty_like(xbc_in, dtype=dtype)
        torch.ops.aten.silu_backward.grad_input(dxbc[:, :T], xbc_in.to(dtype), grad_input=dxbc_in)
        grads = (dxbc_in, ddt.view(Bsz, G, K * L)[..., :T].transpose(1, 2), ddt_bias, dA_log, dD, dz, dh0)
        return (*(g if g is None else g.to(d) for g, d in zip(grads, dtypes)), None)


def _chunks(xbc: torch.Tensor, K: int, L: int, G: int, P: int, N: int) -> tuple[torch.Tensor, ...]:
    """Views of time-major contiguous [B, K L, G P + 2 N] as x [B, K, L, G, P] and b, c [B K, L, N]."""
    I, Bsz = G * P, xbc.shape[0]
    return xbc[..., :I].view(Bsz, K, L, G, P), xbc[..., I:I + N].view(Bsz * K, L, N), xbc[..., I + N:].view(Bsz * K, L, N)


def _row_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The dot products of the last-dimension rows of a and b (contiguous, same shape), as one batched product."""
    size = a.shape[-1]
    return torch.bmm(a.reshape(-1, 1, size), b.reshape(-1, size, 1)).view(a.shape[:-1])
