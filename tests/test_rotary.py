"""Rotary positions: the rotation by definition, relative scores, and the cached tables."""

from __future__ import annotations

import math

import torch

from harness.rotary import Rotary


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


def test_cached_tables_grow_and_follow_the_dtype():
    grown = Rotary(8)
    grown(torch.randn(1, 1, 4, 8), 0)  # tabulates 4 positions
    x = torch.randn(2, 1, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(grown(x, 300), Rotary(8)(x, 300))
    assert grown(x.float(), 2).dtype == torch.float32
