"""Coverage and type-I error of the report's statistics, before and after issue #25 (a script, not a test).

    PYTHONPATH=. python benchmarks/calibration.py [--replicates 2000]

Simulates memarena's design (``harness.report.calibration``: 0/1 outcomes, seeds crossed with 288 examples,
seed and example effects on the logit scale) and prints, per condition, the coverage of the 95% row
interval and of the 95% difference interval (under a true difference of 0.3 logits) and the type-I
error of the difference test at alpha 0.05:

- before: the two-level percentile bootstrap (seeds, then examples within seed; the row interval
  widened to the pooled examples' Wilson interval) and the paired t-test over seed means with the
  seed variance floored at the within-seed sampling variance (``harness/report/stats.py`` before #25),
  reimplemented here vectorised: for 0/1 outcomes a bootstrap resample of a seed's examples has a
  binomial (differences: multinomial) mean, drawn directly;
- after: the crossed random-effects model of ``harness.report.stats`` (``harness.report.calibration.calibration``).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from harness.report.calibration import Design, calibration, simulate

RESAMPLES = 1000


def _two_level(means: np.ndarray, draw, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """2.5% and 97.5% percentiles of two-level bootstrap means; ``means`` (replicates, seeds) of each seed,
    ``draw(chosen)`` a resampled mean of the examples of each chosen seed."""
    replicates, seeds = means.shape
    chosen = rng.integers(0, seeds, (replicates, RESAMPLES, seeds))
    resampled = draw(chosen).mean(axis=-1)
    return np.percentile(resampled, 2.5, axis=1), np.percentile(resampled, 97.5, axis=1)


def before(design: Design, rng: np.random.Generator) -> dict[str, float]:
    replicates, seeds, examples = design.a.shape
    rows = np.arange(replicates)[:, None, None]
    # row interval: binomial resamples of each drawn seed's examples, widened to the pooled Wilson interval
    rates = design.a.mean(axis=2)
    low, high = _two_level(rates, lambda chosen: rng.binomial(examples, rates[rows, chosen]) / examples, rng)
    pooled = design.a.sum(axis=(1, 2))
    wilson = [stats.binomtest(int(k), seeds * examples).proportion_ci(0.95, method="wilson") for k in pooled]
    low = np.minimum(low, [w.low for w in wilson])
    high = np.maximum(high, [w.high for w in wilson])
    row_coverage = np.mean((low <= design.truth) & (design.truth <= high))
    # difference interval: multinomial resamples of each drawn seed's (-1, 0, +1) differences
    shift = design.c - design.a
    shares = np.stack([(shift == v).mean(axis=2) for v in (-1, 0, 1)], axis=-1)  # replicate, seed, value
    diff_low, diff_high = _two_level(shift.mean(axis=2), lambda chosen: (
        rng.multinomial(examples, shares[rows, chosen]) @ np.array([-1.0, 0.0, 1.0])) / examples, rng)
    truth = design.shifted_truth - design.truth
    difference_coverage = np.mean((diff_low <= truth) & (truth <= diff_high))
    # seed t-test with the seed variance floored at the mean within-seed sampling variance
    null = design.a - design.b
    seed_means = null.mean(axis=2)
    sampling = (null.var(axis=2, ddof=1) / examples).mean(axis=1)
    variance = np.maximum(seed_means.var(axis=1, ddof=1), sampling)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = seed_means.mean(axis=1) / np.sqrt(variance / seeds)
    p = np.where(variance > 0, 2 * stats.t.sf(np.abs(t), seeds - 1), 1.0)
    return {"row coverage": float(row_coverage), "difference coverage": float(difference_coverage),
            "type-I error": float(np.mean(p < 0.05))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--before-replicates", type=int, default=1000, help="the bootstrap is slower")
    args = parser.parse_args()
    print("seed and example effects on the logit scale (example sd 1.5); 288 examples; alpha 0.05")
    print("| p | seed sd | seeds | row coverage before | after | difference coverage before | after "
          "| type-I before | after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in (0.3, 0.9, 0.99):
        for seed_sd in (0.0, 0.05, 0.15):
            for seeds in (2, 3, 5):
                rng = np.random.default_rng([int(p * 100), int(seed_sd * 100), seeds])
                after = calibration(simulate(p, seed_sd, seeds, replicates=args.replicates, rng=rng))
                old = before(simulate(p, seed_sd, seeds, replicates=args.before_replicates, rng=rng), rng)
                print(f"| {p} | {seed_sd} | {seeds} | " + " | ".join(
                    f"{old[key]:.1%} | {after[key]:.1%}" for key in ("row coverage", "difference coverage",
                                                                    "type-I error")) + " |")


if __name__ == "__main__":
    main()
