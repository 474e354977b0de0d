"""Statistics: intervals, paired tests and the multiple-comparison correction, against known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.report.stats import difference_interval, holm, mean_interval, paired_seed_test, paired_test, seeds_interval


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


def test_bootstrap_interval_for_continuous_values_stays_in_their_range():
    values = np.array([0.0] * 30 + [0.3, 0.4])  # a t interval would reach below 0
    mean, low, high = mean_interval(values)
    assert mean == pytest.approx(0.7 / 32) and 0.0 <= low < mean < high
    rng = np.random.default_rng(3)
    values = rng.normal(0.5, 0.1, 400)
    _, low, high = mean_interval(values)  # large n: close to the t interval
    t_low, t_high = stats.t.interval(0.95, 399, loc=values.mean(), scale=stats.sem(values))
    assert high - low == pytest.approx(t_high - t_low, rel=0.1)


def test_seed_interval_has_the_coverage_it_claims_and_is_reproducible():
    # 20 seeds whose true means differ (training variance) and 200 noisy examples each: the two-level
    # bootstrap must be as wide as the t interval over seed means, which covers both levels; a 50% or
    # an examples-only interval would be far narrower
    rng = np.random.default_rng(1)
    per_seed = [rng.normal(mean, 1.0, 200) for mean in rng.normal(0.0, 0.3, 20)]
    seed_means = np.array([values.mean() for values in per_seed])
    mean, low, high = seeds_interval(per_seed)
    t_low, t_high = stats.t.interval(0.95, 19, loc=seed_means.mean(), scale=stats.sem(seed_means))
    assert mean == pytest.approx(seed_means.mean()) and high - low == pytest.approx(t_high - t_low, rel=0.15)
    assert seeds_interval(per_seed) == (mean, low, high)
    assert seeds_interval([np.array([1.0, 0.0])]) == mean_interval(np.array([1.0, 0.0]))


def test_seed_interval_of_binary_values_never_collapses_at_the_extremes():
    _, low, high = seeds_interval([np.ones(32), np.ones(32)])
    assert high == 1.0 and (low, high) == pytest.approx(mean_interval(np.ones(64))[1:])


def test_seed_test_uses_seeds_as_replicates():
    agree = [np.full(50, 0.2) + 0.01 * np.sin(np.arange(50)), np.full(50, 0.25), np.full(50, 0.22)]
    assert paired_seed_test(agree) < 0.01
    disagree = [np.full(50, 0.3), np.full(50, -0.25), np.full(50, 0.05)]
    # pooled over 150 examples the mean difference 0.033 would look real; over 3 seeds it is not
    assert paired_seed_test(disagree) > 0.5
    differences = [disagree[0], disagree[1]]
    t = stats.ttest_1samp([0.3, -0.25], 0.0)
    assert paired_seed_test(differences) == pytest.approx(t.pvalue)
    assert paired_seed_test([np.zeros(10), np.zeros(10)]) == 1.0
    # seeds that agree exactly keep the within-seed sampling variance: no p = 0
    exact = [np.array([1.0, 0.0] * 10), np.array([1.0, 0.0] * 10)]
    assert 0.0 < paired_seed_test(exact) < 1.0


def test_difference_interval_brackets_the_paired_difference():
    rng = np.random.default_rng(0)
    differences = rng.choice([-1.0, 0.0, 1.0], size=200, p=[0.1, 0.6, 0.3])
    mean, low, high = difference_interval([differences])
    assert mean == pytest.approx(differences.mean()) and low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * differences.std() / np.sqrt(200), rel=0.15)


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
