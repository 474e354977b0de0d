"""Statistics: intervals, paired tests and the multiple-comparison correction, against known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.stats import holm, mean_interval, paired_test, seeds_interval


def test_wilson_interval_for_binary_values():
    mean, low, high = mean_interval(np.array([1.0] * 8 + [0.0] * 2))
    assert mean == 0.8
    # Wilson score interval for 8/10 at 95%, from its formula
    z = stats.norm.ppf(0.975)
    centre = (0.8 + z**2 / 20) / (1 + z**2 / 10)
    half = z / (1 + z**2 / 10) * np.sqrt(0.8 * 0.2 / 10 + z**2 / 400)
    assert (low, high) == pytest.approx((centre - half, centre + half))


def test_wilson_interval_is_not_degenerate_at_the_extremes():
    _, low, high = mean_interval(np.ones(20))
    assert high == 1.0 and 0.8 < low < 1.0


def test_t_interval_for_continuous_values():
    values = np.array([0.2, 0.4, 0.6, 0.8])
    mean, low, high = mean_interval(values)
    expected = stats.t.interval(0.95, 3, loc=0.5, scale=stats.sem(values))
    assert mean == pytest.approx(0.5) and (low, high) == pytest.approx(expected)


def test_seed_bootstrap_brackets_the_mean_and_is_reproducible():
    seeds = np.array([0.6, 0.7, 0.9])
    mean, low, high = seeds_interval(seeds)
    assert low <= mean <= high and mean == pytest.approx(np.mean(seeds))
    assert seeds_interval(seeds) == (mean, low, high)
    assert seeds_interval(np.array([0.5])) == (0.5, 0.5, 0.5)


def test_exact_mcnemar_on_discordant_pairs():
    a = np.array([1] * 10 + [1] * 8 + [0] * 2 + [0] * 5)
    b = np.array([1] * 10 + [0] * 8 + [1] * 2 + [0] * 5)
    assert paired_test(a, b) == pytest.approx(stats.binomtest(8, 10, 0.5).pvalue)
    assert paired_test(a, a) == 1.0


def test_wilcoxon_for_continuous_pairs():
    a = np.array([0.5, 0.6, 0.7, 0.9, 0.8, 0.75])
    b = np.array([0.4, 0.5, 0.72, 0.6, 0.5, 0.7])
    assert paired_test(a, b) == pytest.approx(stats.wilcoxon(a, b).pvalue)


def test_holm_adjustment():
    # sorted p: 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
