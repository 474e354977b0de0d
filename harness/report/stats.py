"""Statistics for reports (scipy.stats): intervals over examples and seeds, paired tests, Holm.

Every method names itself in ``METHODS`` so that a report can say what its numbers are:

- one seed: the interval covers evaluation noise only (which test examples were drawn), never
  training variance. 0/1 metrics get a Wilson score interval (Wilson 1927), other metrics a
  percentile bootstrap of the mean over examples (Efron & Tibshirani 1993), which stays inside
  the range the metric can take.
- several seeds: a two-level percentile bootstrap (Davison & Hinkley 1997, sec. 3.8): resample
  seeds, then examples within each drawn seed, so the interval covers training variance and
  evaluation noise together (for 0/1 metrics never narrower than the pooled examples' Wilson).
- paired tests with one seed compare two trained checkpoints: exact McNemar for 0/1 metrics
  (McNemar 1947, as a binomial test on the discordant pairs), Wilcoxon signed-rank otherwise.
- paired tests with several seeds take the seed as the unit of replication: a paired t-test over
  the per-seed mean differences (seeds paired by seed number: same training data stream), each
  seed's difference averaging its paired examples (examples nested in seeds). The seed-level
  variance is floored at the within-seed sampling variance, so that seeds agreeing by chance do
  not give p = 0.
- Holm's step-down correction (Holm 1979) over every test of a report.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000

METHODS = {
    "wilson": "Wilson score interval over the examples",
    "bootstrap": f"percentile bootstrap of the mean over the examples ({RESAMPLES} resamples)",
    "two-level bootstrap": f"two-level percentile bootstrap, seeds then examples within seed ({RESAMPLES} "
                           "resamples; for 0/1 metrics widened to contain the pooled examples' Wilson interval)",
    "mcnemar": "exact McNemar test (binomial test on the discordant pairs)",
    "wilcoxon": "Wilcoxon signed-rank test on the paired differences",
    "seed t-test": "paired t-test over seeds on the per-seed mean differences (examples nested in seeds)",
    "holm": "Holm step-down correction over every test in the report",
}


def is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(np.asarray(values, dtype=float), (0.0, 1.0)).all())


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) over examples of one seed: Wilson for 0/1 values, else a bootstrap of the mean.

    Wilson stays inside [0, 1] and is sensible at 0% and 100% accuracy, where the normal
    approximation collapses to a zero-width interval. The percentile bootstrap stays inside the
    range of the values (an F1 interval never goes below 0).
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = float(values.mean())
    if is_binary(values):
        interval = stats.binomtest(int(values.sum()), n).proportion_ci(confidence, method="wilson")
        return mean, float(interval.low), float(interval.high)
    if n == 1 or values.std() == 0:
        return mean, mean, mean
    return (mean, *_percentile_interval(_resampled_means(values, np.random.default_rng(0)), confidence))


def interval_method(values: np.ndarray, seeds: int) -> str:
    """The key in METHODS of the interval ``seeds_interval`` or ``mean_interval`` gives for these values."""
    if seeds > 1:
        return "two-level bootstrap"
    return "wilson" if is_binary(values) else "bootstrap"


def seeds_interval(per_seed: list[np.ndarray], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) over seeds, each an array of per-example values: a two-level bootstrap.

    The mean is the mean of the seed means. With one seed this is ``mean_interval``. For 0/1 values
    the interval is widened to contain the Wilson interval of the pooled examples, which a
    bootstrap collapses to a point when every seed scores 0% or 100%.
    """
    per_seed = [np.asarray(values, dtype=float) for values in per_seed]
    if len(per_seed) == 1:
        return mean_interval(per_seed[0], confidence)
    mean = float(np.mean([values.mean() for values in per_seed]))
    low, high = _percentile_interval(_two_level_means(per_seed, np.random.default_rng(0)), confidence)
    pooled = np.concatenate(per_seed)
    if is_binary(pooled):  # resampling cannot see the noise of seeds that all score 0% or 100%
        _, wilson_low, wilson_high = mean_interval(pooled, confidence)
        low, high = min(low, wilson_low), max(high, wilson_high)
    return mean, low, high


def _resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of the examples."""
    return values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)


def _two_level_means(per_seed: list[np.ndarray], rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """Means of resamples that draw seeds with replacement, then examples within each drawn seed."""
    n_seeds = len(per_seed)
    chosen = rng.integers(0, n_seeds, (resamples, n_seeds))  # resample, slot -> seed
    # a fresh resample of a seed's examples for every (resample, slot) that drew it
    means = np.stack([_resampled_means(values, rng, resamples * n_seeds).reshape(resamples, n_seeds)
                      for values in per_seed])  # seed, resample, slot
    return means[chosen, np.arange(resamples)[:, None], np.arange(n_seeds)[None, :]].mean(axis=1)


def _percentile_interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value that two checkpoints differ on the same examples (one seed each).

    Exact McNemar (a binomial test on the discordant pairs) when both are 0/1, else the Wilcoxon
    signed-rank test on the paired differences.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if is_binary(a) and is_binary(b):
        only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    if not np.any(a - b):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)


def paired_seed_test(differences: list[np.ndarray]) -> float:
    """Two-sided p-value that the mean paired difference is 0, with seeds as the unit of replication.

    ``differences[s]`` holds seed s's per-example differences (A - B on the same examples). A
    paired t-test over the per-seed means, with the seed-level variance floored at the mean
    within-seed sampling variance of those means.
    """
    seed_means = np.array([np.mean(d) for d in differences], dtype=float)
    n_seeds = len(seed_means)
    if n_seeds < 2:
        raise ValueError("a test over seeds needs at least two seeds")
    if not np.any(np.concatenate(differences)):
        return 1.0
    sampling = np.mean([np.var(d, ddof=1) / len(d) if len(d) > 1 else 0.0 for d in differences])
    variance = max(float(np.var(seed_means, ddof=1)), float(sampling))
    if variance == 0:
        return 0.0 if seed_means.mean() else 1.0
    t = seed_means.mean() / np.sqrt(variance / n_seeds)
    return float(2 * stats.t.sf(abs(t), df=n_seeds - 1))


def difference_interval(differences: list[np.ndarray], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of a paired difference: bootstrap over examples (one seed) or seeds then examples."""
    differences = [np.asarray(d, dtype=float) for d in differences]
    mean = float(np.mean([d.mean() for d in differences]))
    if len(differences) == 1:
        if len(differences[0]) < 2 or not np.any(differences[0] - differences[0][0]):
            return mean, mean, mean
        return (mean, *_percentile_interval(_resampled_means(differences[0], np.random.default_rng(0)), confidence))
    return (mean, *_percentile_interval(_two_level_means(differences, np.random.default_rng(0)), confidence))


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
