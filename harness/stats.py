"""Confidence intervals for a cell's metric over its examples (scipy.stats)."""

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
