"""Statistics: the crossed model against direct formulas and known values, Holm's levels, power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.report.stats import (MIN_SEEDS, crossed, crossed_interval, detectable_difference, difference, holm_levels, mean_interval,
                           paired_difference, seeds_needed)


def test_crossed_anova_matches_the_mean_squares_of_its_definition():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, (4, 50)) + rng.normal(0, 0.5, (4, 1)) + rng.normal(0, 0.8, (1, 50))
    fit = crossed(y)
    grand, rows, cols = y.mean(), y.mean(1), y.mean(0)
    ms_seed = 50 * ((rows - grand) ** 2).sum() / 3
    ms_example = 4 * ((cols - grand) ** 2).sum() / 49
    ms_resid = ((y - rows[:, None] - cols[None, :] + grand) ** 2).sum() / (3 * 49)
    assert (fit.seed_ms, fit.example_ms, fit.residual_ms) == pytest.approx((ms_seed, ms_example, ms_resid))
    assert fit.variance == pytest.approx((ms_seed + ms_example - ms_resid) / 200)
    satterthwaite = (ms_seed + ms_example - ms_resid) ** 2 / (
        ms_seed ** 2 / 3 + ms_example ** 2 / 49 + ms_resid ** 2 / (3 * 49))
    assert fit.df == pytest.approx(3 + (satterthwaite - 3) / 2)


def test_one_seed_is_the_t_interval_over_examples():
    values = np.random.default_rng(1).normal(0.5, 0.2, 40)
    mean, low, high = crossed_interval(values[None, :], bounded=False)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 39, loc=values.mean(), scale=stats.sem(values)))


def test_seeds_that_disagree_widen_the_interval_to_their_t_interval():
    # seed means far apart, examples identical across seeds: the seed t interval over 3 seed means
    y = np.array([[0.2] * 20, [0.5] * 20, [0.8] * 20]) + np.linspace(-0.01, 0.01, 20)
    _, low, high = crossed_interval(y, bounded=False)
    t_low, t_high = stats.t.interval(0.95, 2, loc=y.mean(), scale=stats.sem(y.mean(1)))
    assert (low, high) == pytest.approx((t_low, t_high), rel=1e-3)


@pytest.mark.parametrize("ones", [0, 1, 95, 287, 288])
def test_a_bounded_interval_stays_in_range_and_holds_its_point(ones):
    y = np.zeros((3, 96))
    y.flat[:ones] = 1
    mean, low, high = crossed_interval(y, bounded=True)
    assert 0 <= low <= mean <= high <= 1 and high > low


def test_all_ones_gets_the_wilson_interval_of_every_outcome():
    _, low, high = crossed_interval(np.ones((3, 96)), bounded=True)
    wilson = stats.binomtest(288, 288).proportion_ci(0.95, method="wilson")
    assert (low, high) == pytest.approx((wilson.low, wilson.high))


def test_the_interval_excludes_zero_exactly_when_the_test_rejects():
    rng = np.random.default_rng(2)
    for shift in np.linspace(0, 0.3, 30):
        d = rng.normal(shift, 1, (3, 60)) + rng.normal(0, 0.2, (3, 1))
        for level in (0.05, 0.01, 0.05 / 8):
            result = difference(d, level)
            assert (result.p < level) == (result.low > 0 or result.high < 0)


def test_paired_difference_is_vectorised_like_one_difference():
    d = np.random.default_rng(3).normal(0.1, 1, (5, 3, 40))
    means, lows, highs, ps = paired_difference(d)
    for i in range(5):
        one = difference(d[i])
        assert (means[i], lows[i], highs[i], ps[i]) == pytest.approx((one.value, one.low, one.high, one.p))


def test_no_difference_at_all_is_p_one():
    result = difference(np.zeros((3, 10)))
    assert result.p == 1.0 and result.low == result.high == 0.0


def test_holm_levels_agree_with_holm_and_decide_each_comparison():
    p = [0.04, 0.001, 0.02, 0.0126]
    adjusted, levels = holm_levels(p)
    # sorted: 0.001 (x4), 0.0126 (x3 = 0.0378), 0.02 (x2 = 0.04), 0.04 (x1)
    assert adjusted == pytest.approx([0.04, 0.004, 0.04, 0.0378])
    assert levels == pytest.approx([0.05, 0.0125, 0.025, 0.05 / 3])
    assert [pi < level for pi, level in zip(p, levels)] == [a < 0.05 for a in adjusted]
    # a step that fails decides every later comparison at its own level
    adjusted, levels = holm_levels([0.02, 0.018, 0.03])
    assert levels == pytest.approx([0.05 / 3] * 3) and not any(a < 0.05 for a in adjusted)


def test_power_detectable_difference_and_seeds_needed():
    rng = np.random.default_rng(4)
    d = rng.normal(0, 1, (3, 100)) + rng.normal(0, 0.3, (3, 1))
    fit = crossed(d)
    mde = detectable_difference(fit, 0.05)
    se, df = np.sqrt(fit.variance), fit.df
    assert mde == pytest.approx((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se)
    assert detectable_difference(fit, 0.05, seeds=10) < mde
    needed = seeds_needed(fit, mde / 2, 0.05)
    assert needed is not None and needed > 3
    assert detectable_difference(fit, 0.05, seeds=needed) <= mde / 2 < detectable_difference(fit, 0.05, seeds=needed - 1)
    assert seeds_needed(fit, mde * 2, 0.05) == MIN_SEEDS
    assert seeds_needed(fit, 1e-4, 0.05) is None  # the examples' own noise: no number of seeds gets there
    assert seeds_needed(crossed(np.zeros((3, 10))), 0.05, 0.05) is None  # nothing varies: nothing to extrapolate
    assert seeds_needed(crossed(d[:1]), 0.1, 0.05) is None  # one seed: the seed variance is unknown


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 2 examples"):
        crossed(np.ones((3, 1)))


def test_one_seeds_values_get_the_one_row_interval():
    values = np.array([1.0] * 8 + [0.0] * 2)
    assert mean_interval(values) == pytest.approx(tuple(float(x) for x in crossed_interval(values[None], True)))
    assert mean_interval(np.array([3.0, 5.0]))[1] < 3.0  # unbounded: a t interval
    assert mean_interval(np.array([0.4])) == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="no values"):
        mean_interval(np.array([]))
