"""Simulated seed x example designs, to check that ``harness.report.stats`` holds its stated levels.

A configuration's 0/1 outcome on example j with training seed i is Bernoulli(expit(logit(p) +
a_i + b_j)): a seed effect a_i ~ N(0, seed_sd) and an example effect b_j ~ N(0, example_sd), both
on the logit scale, every seed tested on the same examples (crossed). Two configurations share the
example effects (the same test examples are hard for both) and have independent seed effects.
The estimand is the configuration's expected score over seeds and examples,
E[expit(logit(p) + a + b)], computed by Gauss-Hermite quadrature.

With example_sd = 1.5 the per-example outcomes of two seeds correlate 0.1-0.3 (0.16-0.51 in the
first reference experiment, whose example effects also differ by mechanism).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from harness.report.stats import crossed_interval, paired_difference

EXAMPLE_SD = 1.5
#: the true difference of the alternative, on the logit scale
SHIFT = 0.3
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def expected_score(p: float, seed_sd: float, example_sd: float = EXAMPLE_SD, shift: float = 0.0) -> float:
    """E[expit(logit(p) + shift + a + b)] over a ~ N(0, seed_sd), b ~ N(0, example_sd)."""
    logits = special.logit(p) + shift + seed_sd * _NODES[:, None] + example_sd * _NODES[None, :]
    return float((special.expit(logits) * _WEIGHTS[:, None] * _WEIGHTS[None, :]).sum())


@dataclass(frozen=True)
class Design:
    """Outcomes (replicates, seeds, examples) of three configurations on the same examples: ``a`` and
    ``b`` equal in distribution (the null), ``c`` shifted by ``SHIFT`` logits (an alternative)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    truth: float
    shifted_truth: float


def simulate(p: float, seed_sd: float, seeds: int, examples: int = 288, replicates: int = 2000,
             rng: np.random.Generator | None = None, example_sd: float = EXAMPLE_SD) -> Design:
    rng = rng if rng is not None else np.random.default_rng(0)
    example_effect = rng.normal(0.0, example_sd, (replicates, 1, examples))

    def outcomes(shift: float) -> np.ndarray:
        seed_effect = rng.normal(0.0, seed_sd, (replicates, seeds, 1))
        chance = special.expit(special.logit(p) + shift + seed_effect + example_effect)
        return (rng.random((replicates, seeds, examples)) < chance).astype(float)

    return Design(outcomes(0.0), outcomes(0.0), outcomes(SHIFT), expected_score(p, seed_sd, example_sd),
                  expected_score(p, seed_sd, example_sd, SHIFT))


def calibration(design: Design, alpha: float = 0.05) -> dict[str, float]:
    """Coverage of the row interval and of the difference interval (under the alternative), and the
    type-I error of the difference test (under the null), of ``harness.report.stats``."""
    _, low, high = crossed_interval(design.a, bounded=True, confidence=1 - alpha)
    _, diff_low, diff_high, _ = paired_difference(design.c - design.a, alpha)
    truth = design.shifted_truth - design.truth
    return {"row coverage": float(np.mean((low <= design.truth) & (design.truth <= high))),
            "difference coverage": float(np.mean((diff_low <= truth) & (truth <= diff_high))),
            "type-I error": float(np.mean(paired_difference(design.a - design.b, alpha)[3] < alpha))}
