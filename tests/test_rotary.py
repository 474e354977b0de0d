"""Rotary positions: the rotation by definition, relative scores, dtypes."""

from __future__ import annotations

import math

import torch

from harness.layers.rotary import Rotary


def test_rotation_follows_the_definition():
    E, start = 8, 3
    x = torch.randn(2, 3, 5, E, dtype=torch.float64)
    got = Rotary(E)(x, start)
    for t in range(5):
        for f in range(E // 2):
            angle = (start + t) * 10_000.0 ** (-2 * f / E)
            a, b = x[..., t, f], x[..., t, f + E // 2]
            torch.testing.assert_close(got[..., t, f], a * math.cos(angle) - b * math.sin(angle))
            torch.testing.assert_close(got[..., t, f + E // 2], b * math.cos(angle) + a * math.sin(angle))


def test_scores_depend_only_on_the_distance():
    rotary = Rotary(8)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    near = (rotary(q, 7) * rotary(k, 4)).sum()
    far = (rotary(q, 1003) * rotary(k, 1000)).sum()
    torch.testing.assert_close(near, far, rtol=1e-5, atol=1e-5)  # angles are computed in float32
    assert not torch.isclose(near, (rotary(q, 8) * rotary(k, 4)).sum(), rtol=1e-3)


def test_output_keeps_the_input_dtype():
    rotary = Rotary(8)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        assert rotary(torch.randn(2, 1, 6, 8, dtype=dtype), 300).dtype == dtype
