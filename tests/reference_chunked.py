"""The chunked recurrences and layer forwards of linear_attention and mamba as they were at 10c21f1.

They loop over chunks in Python (thousands of kernel launches per training step); the vectorised
forms in baselines/ replaced them (issue #24) and must compute the same numbers. Kept verbatim
as the oracle of tests/test_chunked_equivalence.py; not used by the package.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _chunks(*tensors: torch.Tensor, chunk: int) -> list[tuple[torch.Tensor, ...]]:
    """Split tensors [B, H, T, ...] along T into pieces of at most ``chunk`` positions."""
    return list(zip(*(t.split(chunk, dim=2) for t in tensors)))


def additive_chunked(q, k, v, S, z, chunk):
    """Additive linear attention over q, k, v [B, H, T, E] from memory S [B, H, E, E] and normaliser z [B, H, E]."""
    outputs = []
    for qc, kc, vc in _chunks(q, k, v, chunk=chunk):
        L = qc.shape[2]
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        scores = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0)  # B, H, L, L
        numerator = scores @ vc + qc @ S  # B, H, L, E
        denominator = scores.sum(-1) + (qc * z.unsqueeze(2)).sum(-1)  # B, H, L
        outputs.append(numerator / denominator.unsqueeze(-1))
        S = S + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(2)
    return torch.cat(outputs, dim=2), {"S": S, "z": z}


def delta_chunked(q, k, v, beta, S, chunk):
    """Delta-rule linear attention over q, k, v [B, H, T, E] with rates beta [B, H, T] from memory S [B, H, E, E]."""
    outputs = []
    for qc, kc, vc, bc in _chunks(q, k, v, beta, chunk=chunk):
        L = qc.shape[2]
        strictly_lower = torch.ones(L, L, dtype=torch.bool, device=q.device).tril(-1)
        system = torch.eye(L, dtype=q.dtype, device=q.device) + bc.unsqueeze(-1) * (kc @ kc.transpose(-1, -2)).masked_fill(~strictly_lower, 0)
        U = torch.linalg.solve_triangular(system, bc.unsqueeze(-1) * (vc - kc @ S), upper=False, unitriangular=True)
        within = (qc @ kc.transpose(-1, -2)).masked_fill(~torch.ones(L, L, dtype=torch.bool, device=q.device).tril(), 0)
        outputs.append(qc @ S + within @ U)  # B, H, L, E
        S = S + kc.transpose(-1, -2) @ U
    return torch.cat(outputs, dim=2), {"S": S}


def linear_attention_forward(layer, x, state):
    """LinearAttention.forward at 10c21f1, for a layer of today's class."""
    B, T, D = x.shape
    qkv = layer.qkv(x)
    carried = {}
    if layer.conv is not None:
        qkv, carried["conv"] = layer.conv(qkv, state["conv"])
        qkv = F.silu(qkv)
    q, k, v = qkv.view(B, T, 3, layer.n_heads, layer.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
    if layer.config.rule == "additive":
        y, new_state = additive_chunked(F.elu(q) + 1, F.elu(k) + 1, v, state["S"], state["z"], layer.config.chunk)
    else:
        beta = torch.sigmoid(layer.beta(x)).transpose(1, 2)  # B, H, T
        with torch.autocast(x.device.type, enabled=False):
            dtype = state["S"].dtype
            q, k = F.normalize(q.to(dtype), dim=-1), F.normalize(k.to(dtype), dim=-1)
            if layer.config.rule == "delta":
                q = q * layer.head_dim**-0.5
            y, new_state = delta_chunked(q, k, v.to(dtype), beta.to(dtype), state["S"], layer.config.chunk)
            if layer.config.rule == "delta":
                y = layer.norm(y)
        y = y.to(qkv.dtype)
    return layer.out(y.transpose(1, 2).reshape(B, T, D)), {**new_state, **carried}


def ssd_chunked(u, log_decay, b, c, h, chunk):
    """h_t = exp(log_decay_t) h_{t-1} + u_t b_t^T, y_t = h_t c_t, in chunks.

    u [B, T, G, P] (inputs times dt), log_decay [B, T, G] (dt A, negative), b and c [B, T, N],
    h [B, G, P, N] the state before the first position. Returns y [B, T, G, P] and the last h.
    """
    outputs = []
    for uc, ac, bc, cc in zip(u.split(chunk, 1), log_decay.split(chunk, 1), b.split(chunk, 1), c.split(chunk, 1)):
        L = uc.shape[1]
        cumulative = ac.cumsum(dim=1).transpose(1, 2)  # B, G, L
        gaps = cumulative.unsqueeze(-1) - cumulative.unsqueeze(-2)  # B, G, L(t), L(s): decay from s to t
        causal = torch.ones(L, L, dtype=torch.bool, device=u.device).tril()
        decay = torch.exp(gaps.masked_fill(~causal, -torch.inf))  # B, G, L, L
        weights = decay * (cc @ bc.transpose(1, 2)).unsqueeze(1)  # B, G, L, L
        within = torch.einsum("bgts,bsgp->btgp", weights, uc)
        carried = torch.einsum("btn,bgpn,bgt->btgp", cc, h, torch.exp(cumulative))
        outputs.append(within + carried)
        to_end = torch.exp(cumulative[:, :, -1:] - cumulative)  # B, G, L
        h = h * torch.exp(cumulative[:, :, -1]).view(*h.shape[:2], 1, 1) + torch.einsum("bgs,bsgp,bsn->bgpn", to_end, uc, bc)
    return torch.cat(outputs, dim=1), h


def mamba_forward(layer, x, state):
    """Mamba.forward at 10c21f1, for a layer of today's class."""
    Bsz, T, D = x.shape
    config, G, P, N = layer.config, layer.ssm_heads, layer.config.ssm_head_dim, layer.config.d_state
    z, xbc, dt = layer.in_proj(x).split([layer.inner, layer.channels, G], dim=-1)
    xbc, conv = layer.conv(xbc, state["conv"])
    xbc = F.silu(xbc)  # B, T, C
    u, b, c = xbc.split([layer.inner, N, N], dim=-1)
    dt = F.softplus(dt + layer.dt_bias)  # B, T, G
    u = u.view(Bsz, T, G, P)
    y, h = ssd_chunked(u * dt.unsqueeze(-1), dt * -torch.exp(layer.A_log), b, c, state["h"], config.chunk)
    y = (y + u * layer.D.view(1, 1, G, 1)).reshape(Bsz, T, layer.inner) * F.silu(z)
    if layer.norm is not None:
        y = layer.norm(y)
    return layer.out_proj(y), {"h": h, "conv": conv}
