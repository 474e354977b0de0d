"""Calibration of ``harness.report.stats`` by seeded simulation of memarena's crossed seed x example design.

For p in {0.3, 0.9, 0.99}, a seed effect of sd 0, 0.05, 0.15 on the logit scale, 3 and 5 seeds, and
288 examples shared by every seed (with an example effect): the row interval and the difference
interval cover 93-97%, and the difference test rejects a true null 3-6% of the time at alpha 0.05.
2000 replicates per condition: a coverage of 95% is measured to +-1 point (2 standard errors).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.report.calibration import calibration, expected_score, simulate


@pytest.mark.parametrize("p", [0.3, 0.9, 0.99])
@pytest.mark.parametrize("seed_sd", [0.0, 0.05, 0.15])
@pytest.mark.parametrize("seeds", [3, 5])
def test_intervals_cover_and_the_test_holds_its_level(p, seed_sd, seeds):
    rng = np.random.default_rng([int(p * 100), int(seed_sd * 100), seeds])
    result = calibration(simulate(p, seed_sd, seeds, rng=rng))
    assert 0.93 <= result["row coverage"] <= 0.97, result
    assert 0.93 <= result["difference coverage"] <= 0.97, result
    assert 0.03 <= result["type-I error"] <= 0.06, result


def test_the_estimand_is_the_expected_score_over_seeds_and_examples():
    assert expected_score(0.3, 0.0, example_sd=0.0) == pytest.approx(0.3)
    rng = np.random.default_rng(0)
    logits = np.log(0.9 / 0.1) + rng.normal(0, 0.15, 400_000) + rng.normal(0, 1.5, 400_000)
    assert expected_score(0.9, 0.15) == pytest.approx(np.mean(1 / (1 + np.exp(-logits))), abs=2e-3)
