"""Relative-position attention: the definition, and the fused CPU backward against autograd."""

from __future__ import annotations

import pytest
import torch

from harness.layers.relative_attention import FusedRelativeAttention, attention_with_autograd, relative_attention

SHAPES = [(1, 1), (1, 6), (5, 5), (4, 9)]  # (queries T, keys K)


def inputs(T, K, dtype=torch.float64, B=2, H=3, E=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(B, H, T, E), (B, H, T, E), (B, H, K, E), (B, H, K, E), (H, K, E)]
    return [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype).requires_grad_() for shape in shapes]


def by_definition(content, position, keys, values, distances):
    """Query i (key position M + i) and key j <= M + i: (c_i . k_j + p_i . r_{M+i-j}) / sqrt(E)."""
    B, H, T, E = content.shape
    K = keys.shape[2]
    M = K - T
    scores = torch.full((B, H, T, K), float("-inf"), dtype=content.dtype)
    for i in range(T):
        for j in range(M + i + 1):
            distance = M + i - j
            r = distances[:, K - 1 - distance]  # H, E: rows run from distance K-1 down to 0
            scores[:, :, i, j] = ((content[:, :, i] * keys[:, :, j]).sum(-1) + (position[:, :, i] * r).sum(-1)) / E**0.5
    return scores.softmax(-1) @ values


@pytest.mark.parametrize("T, K", SHAPES)
def test_both_paths_follow_the_definition(T, K):
    tensors = inputs(T, K)
    expected = by_definition(*tensors)
    torch.testing.assert_close(relative_attention(*tensors), expected)  # fused (gradients wanted)
    with torch.no_grad():
        torch.testing.assert_close(relative_attention(*tensors), expected)  # torch's SDPA


@pytest.mark.parametrize("T, K", SHAPES)
def test_fused_gradients_equal_autograd(T, K):
    tensors = inputs(T, K)
    out_grad = torch.randn(tensors[0].shape, dtype=torch.float64)
    fused = FusedRelativeAttention.apply(*tensors)
    reference = attention_with_autograd(*tensors)
    torch.testing.assert_close(fused, reference)
    for got, expected in zip(torch.autograd.grad(fused, tensors, out_grad), torch.autograd.grad(reference, tensors, out_grad)):
        torch.testing.assert_close(got, expected)


def test_fused_gradients_pass_gradcheck():
    assert torch.autograd.gradcheck(FusedRelativeAttention.apply, inputs(3, 5, B=1, H=2, E=2))


def test_bf16_autocast_stays_close_to_fp32():
    tensors = inputs(8, 12, dtype=torch.float32)
    expected = relative_attention(*tensors)
    expected_grads = torch.autograd.grad(expected.sum(), tensors)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = relative_attention(*tensors)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=0.05, rtol=0.05)
    for got_grad, expected_grad in zip(torch.autograd.grad(got.float().sum(), tensors), expected_grads):
        assert got_grad.dtype == torch.float32
        torch.testing.assert_close(got_grad, expected_grad, atol=0.1, rtol=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_equals_the_cpu_path():
    """On CUDA the bias's gradient comes from torch's SDPA kernels and autograd, not the fused CPU backward."""
    tensors = inputs(16, 24, dtype=torch.float32)
    on_gpu = [t.detach().cuda().requires_grad_() for t in tensors]
    expected = relative_attention(*tensors)
    got = relative_attention(*on_gpu)
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)
    out_grad = torch.randn(expected.shape)
    for got_grad, expected_grad in zip(torch.autograd.grad(got, on_gpu, out_grad.cuda()),
                                       torch.autograd.grad(expected, tensors, out_grad)):
        torch.testing.assert_close(got_grad.cpu(), expected_grad, atol=1e-4, rtol=1e-4)
