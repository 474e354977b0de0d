"""Causal attention with Transformer-XL's relative-position term, fused on CPU.

Dimension letters: B batch, H heads, T queries, K keys (the queries are the last T of them,
so M = K - T keys come before the first query), E head dimension.

    score(i, j) = (c_i . k_j + p_i . r_{M+i-j}) / sqrt(E)   for j <= M + i, else masked

with c the content queries (q + u), p the position queries (q + v) and r_d the projected
embedding of distance d. The position term for every (query, distance) pair is one matrix
product; with the distances in descending order (row c of ``distances`` is distance K-1-c),
moving it from distance columns to key columns is a slice of its rows padded by one column (the
reference implementation's rel-shift), and the adjoint of that slice is a pad.

The bias needs a gradient, which makes torch's SDPA fall back to its unfused math path on CPU
(scores, softmax and their copies materialised several times over). ``relative_attention``
therefore runs CPU training through ``FusedRelativeAttention``: the forward is the fused
flash kernel with the bias as its mask; the backward recomputes the probabilities once from the
saved log-sum-exp and derives every gradient, including the bias's, from one score-sized
gradient. Elsewhere (inference, CUDA, compiled graphs) torch's own kernels and autograd do it:
CUDA's memory-efficient kernel takes a bias with a gradient.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from harness.layers.masks import causal_mask

_cpu_flash_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_FUSED_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def relative_attention(content_queries: torch.Tensor, position_queries: torch.Tensor, keys: torch.Tensor,
                       values: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Attention [B, H, T, E] of queries [B, H, T, E] over keys and values [B, H, K, E];
    ``distances`` [H, K, E] holds the projected embeddings of distances K-1 down to 0."""
    dtype = torch.get_autocast_dtype(keys.device.type) if torch.is_autocast_enabled(keys.device.type) else keys.dtype
    inputs = tuple(t.to(dtype) for t in (content_queries, position_queries, keys, values, distances))
    if (torch.is_grad_enabled() and any(t.requires_grad for t in inputs) and content_queries.device.type == "cpu"
            and dtype in _FUSED_DTYPES and not torch.compiler.is_compiling()):
        return FusedRelativeAttention.apply(*inputs)
    return attention_with_autograd(*inputs)


def attention_with_autograd(content_queries, position_queries, keys, values, distances) -> torch.Tensor:
    """The same function, with torch's SDPA and autograd (the reference for the fused path)."""
    scale = content_queries.shape[-1] ** -0.5
    bias = relative_bias(position_queries, distances * scale)
    return F.scaled_dot_product_attention(content_queries, keys, values, attn_mask=bias, scale=scale)


def relative_bias(position_queries: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """p_i . r_{M+i-j} for every query i and key j, -inf where j > M + i: B, H, T, K."""
    T, K = position_queries.shape[-2], distances.shape[-2]
    by_distance = position_queries @ distances.transpose(-1, -2)  # B, H, T, K: column c is distance K-1-c
    return torch.where(causal_mask(T, K, position_queries.device), distances_to_keys(by_distance), float("-inf"))


def distances_to_keys(by_distance: torch.Tensor) -> torch.Tensor:
    """[..., T, K] by distance column (K-1 down to 0) -> by key; beyond the causal edge, other values.

    Query i's key j is distance column T-1-i+j: with one column of padding per row, flat offset
    i (K+1) + T-1-i+j = T-1 + i K + j, so the shift is a slice of the padded rows."""
    T, K = by_distance.shape[-2:]
    return F.pad(by_distance, (0, 1)).flatten(-2)[..., T - 1 : T - 1 + T * K].unflatten(-1, (T, K))


def keys_to_distances(by_key: torch.Tensor) -> torch.Tensor:
    """The adjoint of ``distances_to_keys``: [..., T, K] by key -> by distance column, zero where
    query i has no key (distances beyond M + i). ``by_key`` must be zero beyond the causal edge."""
    T, K = by_key.shape[-2:]
    return F.pad(by_key.flatten(-2), (T - 1, 1)).unflatten(-1, (T, K + 1))[..., :K]


class FusedRelativeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, content_queries, position_queries, keys, values, distances):
        scale = content_queries.shape[-1] ** -0.5
        scaled_distances = distances * scale
        bias = relative_bias(position_queries, scaled_distances)
        out, log_sum_exp = _cpu_flash_attention(content_queries, keys, values, 0.0, False, attn_mask=bias, scale=scale)
        ctx.save_for_backward(content_queries, position_queries, keys, values, scaled_distances, bias, out, log_sum_exp)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, out_grad):
        content_queries, position_queries, keys, values, scaled_distances, bias, out, log_sum_exp = ctx.saved_tensors
        scale = ctx.scale
        B, H, T, E = content_queries.shape
        K = keys.shape[-2]

        def batched(t):  # B, H, rows, columns -> B H, rows, columns
            return t.reshape(B * H, *t.shape[-2:])

        # Probabilities P, recomputed once: exp(scale c k^T + bias - logsumexp).
        probabilities = torch.baddbmm(batched(bias), batched(content_queries), batched(keys).transpose(1, 2), alpha=scale)
        probabilities = probabilities.sub_(batched(log_sum_exp.unsqueeze(-1)).to(probabilities.dtype)).exp_()
        out_grad = batched(out_grad.contiguous())
        values_grad = probabilities.transpose(1, 2) @ out_grad
        # Score gradient dS = P (dP - rowsum(dO * O)), dP = dO V^T; zero at masked keys (P = 0).
        row_term = (out_grad * batched(out)).sum(-1, keepdim=True)
        score_grad = torch.bmm(out_grad, batched(values).transpose(1, 2)).sub_(row_term).mul_(probabilities)
        del probabilities
        content_grad = (score_grad @ batched(keys)).mul_(scale)
        keys_grad = (score_grad.transpose(1, 2) @ batched(content_queries)).mul_(scale)
        by_distance_grad = keys_to_distances(score_grad.view(B, H, T, K))  # the bias's gradient, by distance
        position_grad = by_distance_grad @ scaled_distances
        distances_grad = (by_distance_grad.transpose(-1, -2) @ position_queries).sum(0).mul_(scale)
        return (content_grad.view(B, H, T, E), position_grad, keys_grad.view(B, H, K, E),
                values_grad.view(B, H, K, E), distances_grad)
