"""Statistics for reports (scipy.stats): intervals over examples and seeds, paired tests, Holm."""

from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): a Wilson interval when every value is 0 or 1, else a Student t interval.

    Wilson stays inside [0, 1] and is sensible at 0% and 100% accuracy, where the normal
    approximation collapses to a zero-width interval.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = float(values.mean())
    if np.isin(values, (0.0, 1.0)).all():
        interval = stats.binomtest(int(values.sum()), n).proportion_ci(confidence, method="wilson")
        return mean, float(interval.low), float(interval.high)
    if n == 1 or values.std() == 0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def seeds_interval(seed_means: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) across seeds: a percentile bootstrap of the mean of per-seed values."""
    seed_means = np.asarray(seed_means, dtype=float)
    mean = float(seed_means.mean())
    if len(seed_means) < 2 or seed_means.std() == 0:
        return mean, mean, mean
    result = stats.bootstrap((seed_means,), np.mean, confidence_level=confidence, n_resamples=2000,
                             method="percentile", random_state=0)
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value that two mechanisms differ on the same examples.

    Exact McNemar (a binomial test on the discordant pairs) when both are 0/1, else the Wilcoxon
    signed-rank test on the paired differences.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    if not np.any(a - b):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control), in the input order."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
