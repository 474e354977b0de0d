"""Statistics for reports: one model of memarena's design for intervals, tests and power.

memarena trains a configuration with a few seeds and tests every seed on the SAME test examples:
the outcomes of one configuration form an S x N matrix (seed x example) in which seeds and
examples are *crossed* random effects. Every interval, test and power figure of a report comes
from the two-way random-effects ANOVA of such a matrix (Searle, Casella & McCulloch 1992, ch. 4;
the crossed design of benchmark variance: Bouthillier et al. 2021):

    Var(grand mean) = s2_seed/S + s2_example/N + s2_residual/(S N)
                    = (MS_seed + max(0, MS_example - MS_residual)) / (S N)

The seed part MS_seed/(S N) (the variance of a seed's mean, divided by S) is never negative; the
example part is floored at 0. The degrees of freedom are Satterthwaite's (1946) for that sum,
taken halfway towards the containment df S - 1: with 3 seeds the plain Satterthwaite df is noisy
and correlated with the variance it accompanies, which made 95% intervals cover 92.6-93.9% in the
calibration simulation, the containment df 99-100%; halfway covers 94-96.5%
(``benchmarks/calibration.py``, ``tests/test_stats_calibration.py``). With one seed the matrix is
one row: the variance of the mean over examples, N - 1 df.

- a row's interval: for a metric bounded in [0, 1], a t interval on the logit scale (delta method),
  mapped back, so it stays inside [0, 1] and contains its point; at 0% or 100% a Wilson score
  interval (Wilson 1927) over the S x N outcomes. Other metrics: a t interval.
- a difference A - B: the same model on the matrix of paired differences (seed i of A with seed i
  of B, examples matched), a t interval; its test is the t-test of the same statistic, so an
  interval at level 1 - a excludes 0 exactly when the test's p < a.
- with fewer than ``MIN_SEEDS`` seeds (but more than 1) no interval holds its coverage in the
  simulation (2 seeds: rows 91.7-94.7%, differences 92.8-96.9%, type-I error up to 6.2%): a report
  prints none.
- power: the smallest difference detectable at 80% power, (t_{1-a/2} + t_{0.8}) x SE (Bloom 1995),
  and the seeds a given difference would need, from the same variance components.
- Holm's step-down procedure (Holm 1979) within a family, each comparison's interval at the level
  the procedure decided it at (see ``holm_levels``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

CONFIDENCE = 0.95
POWER = 0.8
#: fewer seeds than this (but more than one) give no interval that covers training variance
MIN_SEEDS = 3

METHODS = {
    "crossed": "two-way crossed random-effects ANOVA of the seed x example outcomes (Searle, Casella & McCulloch "
               "1992): Var(mean) = (MS_seed + max(0, MS_example - MS_residual)) / (S N), with Satterthwaite's (1946) "
               "degrees of freedom taken halfway towards S - 1 (calibrated by simulation: benchmarks/calibration.py)",
    "logit t": "t interval on the logit scale (delta method) for metrics bounded in [0, 1], mapped back; Wilson's "
               "(1927) score interval over all outcomes when every outcome is 0 or every one is 1",
    "t": "t interval",
    "difference t-test": "t-test and t interval of the mean paired difference from the same crossed model (interval "
                         "excludes 0 exactly when the test rejects at the interval's level)",
    "holm": "Holm's (1979) step-down correction within each task's family of comparisons; each difference interval "
            "is at the level Holm's procedure decided that comparison at",
    "power": "smallest difference detectable at 80% power: (t quantile of the test level + t quantile of 0.8) x "
             "standard error (Bloom 1995); seeds needed from the same variance components",
    "iqm": "interquartile mean: the mean of the middle 50% of the task x seed scores (Agarwal et al. 2021)",
    "probability of improvement": "P(X > Y): per task, the Mann-Whitney probability that a seed of X outscores a seed "
                                  "of Y (ties count half), averaged over tasks (Agarwal et al. 2021)",
}


@dataclass(frozen=True)
class Crossed:
    """The ANOVA of outcome matrices (..., S, N): mean, Var(mean), its df, and the mean squares."""

    mean: np.ndarray
    variance: np.ndarray
    df: np.ndarray
    seeds: int
    examples: int
    seed_ms: np.ndarray
    example_ms: np.ndarray
    residual_ms: np.ndarray

    def variance_with(self, seeds: int) -> np.ndarray:
        """Var(mean) had there been ``seeds`` seeds (the same examples, the same variance components)."""
        return self.seed_ms / (self.examples * seeds) + self._example_part() / (self.seeds * self.examples)

    def df_with(self, seeds: int) -> np.ndarray:
        return _df(self.seed_ms / (self.examples * seeds), self._example_part() / (self.seeds * self.examples),
                   self.example_ms, self.residual_ms, seeds, self.examples, self.seeds)

    def _example_part(self) -> np.ndarray:
        return np.maximum(self.example_ms - self.residual_ms, 0.0) if self.seeds > 1 else self.example_ms


def crossed(matrix: np.ndarray) -> Crossed:
    """Two-way crossed random-effects ANOVA of ``matrix`` (..., seeds, examples), vectorised over leading axes."""
    y = np.asarray(matrix, dtype=float)
    if y.ndim < 2 or y.shape[-1] < 2:
        raise ValueError(f"need a (seeds, examples) matrix with at least 2 examples, got shape {y.shape}")
    n_seeds, n_examples = y.shape[-2:]
    mean = y.mean(axis=(-2, -1))
    seed_means, example_means = y.mean(axis=-1), y.mean(axis=-2)
    ss_seed = n_examples * ((seed_means - mean[..., None]) ** 2).sum(-1)
    ss_example = n_seeds * ((example_means - mean[..., None]) ** 2).sum(-1)
    ss_total = ((y - mean[..., None, None]) ** 2).sum((-2, -1))
    example_ms = ss_example / (n_examples - 1)
    if n_seeds == 1:
        zero = np.zeros_like(mean)
        variance = example_ms / n_examples
        return Crossed(mean, variance, np.full_like(mean, n_examples - 1.0), 1, n_examples, zero, example_ms, zero)
    seed_ms = ss_seed / (n_seeds - 1)
    residual_ms = np.maximum(ss_total - ss_seed - ss_example, 0.0) / ((n_seeds - 1) * (n_examples - 1))
    seed_part = seed_ms / (n_seeds * n_examples)
    example_part = np.maximum(example_ms - residual_ms, 0.0) / (n_seeds * n_examples)
    df = _df(seed_part, example_part, example_ms, residual_ms, n_seeds, n_examples, n_seeds)
    return Crossed(mean, seed_part + example_part, df, n_seeds, n_examples, seed_ms, example_ms, residual_ms)


def _df(seed_part, example_part, example_ms, residual_ms, seeds, examples, observed_seeds):
    """Satterthwaite's df of seed_part + example_part, halfway towards the containment df seeds - 1."""
    seed_part, example_part = np.asarray(seed_part, dtype=float), np.asarray(example_part, dtype=float)
    scale = observed_seeds * examples
    example_terms = np.where(example_part > 0, (example_ms / scale) ** 2 / (examples - 1)
                             + (residual_ms / scale) ** 2 / ((observed_seeds - 1) * (examples - 1)), 0.0)
    denominator = seed_part ** 2 / (seeds - 1) + example_terms
    with np.errstate(divide="ignore", invalid="ignore"):
        satterthwaite = (seed_part + example_part) ** 2 / denominator
    satterthwaite = np.where(denominator > 0, satterthwaite, np.inf)
    return (seeds - 1) + (satterthwaite - (seeds - 1)) / 2


def _quantile(level: float, df) -> np.ndarray:
    return stats.t.ppf(1 - level / 2, df)


def is_bounded(values: np.ndarray) -> bool:
    """Whether values lie in [0, 1] (accuracy, exact match, F1): their interval then stays inside it."""
    values = np.asarray(values, dtype=float)
    return bool(((values >= 0) & (values <= 1)).all())


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) over the examples of one seed: ``crossed_interval`` of a one-row matrix."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("no values to summarise")
    if len(values) == 1:
        return float(values[0]), float(values[0]), float(values[0])
    mean, low, high = crossed_interval(values[None, :], is_bounded(values), confidence)
    return float(mean), float(low), float(high)


def crossed_interval(matrix: np.ndarray, bounded: bool, confidence: float = CONFIDENCE
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) of outcome matrices (..., seeds, examples) from the crossed model.

    ``bounded``: the metric lies in [0, 1]: a logit-scale t interval (Wilson at 0% or 100%).
    """
    fit = crossed(matrix)
    q = _quantile(1 - confidence, fit.df)
    mean, se = fit.mean, np.sqrt(fit.variance)
    if not bounded:
        return mean, mean - q * se, mean + q * se
    with np.errstate(divide="ignore", invalid="ignore"):
        half = q * se / (mean * (1 - mean))
        low, high = special.expit(special.logit(mean) - half), special.expit(special.logit(mean) + half)
    edge = (mean <= 0) | (mean >= 1)
    n = fit.seeds * fit.examples
    z = np.where(np.isfinite(q), q, stats.norm.ppf(1 - (1 - confidence) / 2))
    centre = (mean + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    wilson = z / (1 + z ** 2 / n) * np.sqrt(np.clip(mean * (1 - mean), 0, None) / n + z ** 2 / (4 * n ** 2))
    low, high = np.where(edge, centre - wilson, low), np.where(edge, centre + wilson, high)
    return mean, np.clip(np.minimum(low, mean), 0, 1), np.clip(np.maximum(high, mean), 0, 1)


@dataclass(frozen=True)
class Difference:
    """A mean paired difference with its interval at ``level`` and the t-test of the same statistic."""

    value: float
    low: float
    high: float
    p: float
    se: float
    df: float
    level: float
    fit: Crossed


def paired_difference(matrix: np.ndarray, level: float = 1 - CONFIDENCE
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high, p) of matrices (..., seeds, examples) of paired differences A - B: the t interval
    at ``level`` and the two-sided t-test's p-value, both from the crossed model (vectorised)."""
    fit = crossed(matrix)
    se = np.sqrt(fit.variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * stats.t.sf(np.abs(fit.mean) / se, fit.df), np.where(fit.mean == 0, 1.0, 0.0))
    half = np.where(se > 0, _quantile(level, fit.df) * se, 0.0)
    return fit.mean, fit.mean - half, fit.mean + half, p


def difference(matrix: np.ndarray, level: float = 1 - CONFIDENCE) -> Difference:
    """The crossed model of one (seeds, examples) matrix of paired differences A - B: t-test and interval."""
    fit = crossed(matrix)
    value, low, high, p = (float(x) for x in paired_difference(matrix, level))
    return Difference(value, low, high, p, float(np.sqrt(fit.variance)), float(fit.df), level, fit)


def at_level(result: Difference, level: float) -> Difference:
    """The same difference with its interval at level ``level`` (excludes 0 exactly when p < level)."""
    half = float(_quantile(level, result.df)) * result.se if result.se > 0 else 0.0
    return Difference(result.value, result.value - half, result.value + half, result.p, result.se, result.df, level,
                      result.fit)


def detectable_difference(fit: Crossed, level: float, power: float = POWER, seeds: int | None = None) -> float:
    """The smallest |difference| a two-sided test at ``level`` detects with ``power`` (Bloom 1995)."""
    seeds = seeds or fit.seeds
    df = float(fit.df_with(seeds)) if fit.seeds > 1 else float(fit.df)
    variance = float(fit.variance_with(seeds)) if fit.seeds > 1 else float(fit.variance)
    return float((_quantile(level, df) + stats.t.ppf(power, df)) * np.sqrt(variance))


def seeds_needed(fit: Crossed, target: float, level: float, power: float = POWER) -> int | None:
    """The fewest seeds (at least ``MIN_SEEDS``) with which a difference of ``target`` is detected with
    ``power`` on the same examples; None when no number of seeds suffices (the examples' own noise is
    too large: more examples are needed) or the seed variance is unknown (one seed, or no variation)."""
    if fit.seeds < 2 or not float(fit.variance) > 0:
        return None
    most = 10 ** 6
    if detectable_difference(fit, level, power, most) > target:
        return None
    low, high = MIN_SEEDS, most  # detectable_difference falls as seeds grow: the first seeds that suffice
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if detectable_difference(fit, level, power, middle) <= target else (middle + 1, high)
    return low


def holm_levels(p_values: list[float], alpha: float = 1 - CONFIDENCE) -> tuple[list[float], list[float]]:
    """Holm-adjusted p-values and, per comparison, the level Holm's step-down procedure decided it at.

    The k-th smallest p-value is tested at alpha / (m - k + 1) while every smaller one was rejected;
    the comparisons after the first retained one are decided at that step's level. A comparison is
    rejected exactly when its p-value is below its level (and exactly when its adjusted p < alpha),
    so an interval at that level excludes 0 exactly when Holm rejects.
    """
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted, levels = np.empty(m), np.empty(m)
    running, stopped = 0.0, None
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
        step = alpha / (m - rank)
        if stopped is None and not p_values[index] < step:
            stopped = step
        levels[index] = step if stopped is None else stopped
    return adjusted.tolist(), levels.tolist()
