"""Grids that bracket: a log-spaced rate grid, extended past an end whose rate beats its neighbour beyond noise."""

from __future__ import annotations

import math

import pytest

import harness.engine.run
from conftest import compose_config, tiny_overrides
from harness.engine.checks import ConfigError
from harness.engine.plan import plan
from harness.engine.train import TrainSummary

#: validation examples of the tiny run: 2 lengths x 2 depths x 4 examples
EXAMPLES = 16


@pytest.fixture
def fake_training(monkeypatch):
    """Training that trains nothing, and an evaluation whose validation examples a rate gets right are set by
    ``correct`` (rate exponent -> how many, the first ones): what the rule decides on is the only thing that varies.
    Returns the list of rates trained, and ``correct`` to fill."""
    trained, correct = [], {}
    real_evaluate = harness.engine.run.evaluate

    def train(model, task, config, *args, **kwargs):
        trained.append(config.lr)
        return TrainSummary(3, 1.0, 288, 1.0, 288.0, 48, 48, [], planned_steps=3)

    def evaluate(model, task, config, *args, **kwargs):
        cells, outcomes = real_evaluate(model, task, config, *args, **kwargs)
        if config.split == "validation":
            right = correct[round(-math.log10(trained[-1]))]
            order = {key: index for index, key in enumerate(dict.fromkeys(
                (row["context_len"], row["depth"], row["example"]) for row in outcomes))}
            for row in outcomes:
                row["value"] = float(order[row["context_len"], row["depth"], row["example"]] < right)
            for cell in cells:
                values = [row["value"] for row in outcomes if row["metric"] == cell["metric"]
                          and (row["context_len"], row["depth"]) == (cell["knobs"]["context_len"], cell["knobs"]["depth"])]
                cell["value"] = sum(values) / len(values)
        return cells, outcomes

    monkeypatch.setattr(harness.engine.run, "train", train)
    monkeypatch.setattr(harness.engine.run, "evaluate", evaluate)
    return trained, correct


def run_with(tmp_path, *extra, seed=1):
    """The tiny run tuned on the grid {1e-3, 1e-2}."""
    return harness.engine.run.run(compose_config([*tiny_overrides(tmp_path), "tune.lr_grid=[0.001,0.01]",
                                                  f"seed={seed}", *extra]))


def test_an_end_rate_beyond_noise_adds_one_rate_past_it_and_a_rerun_skips_every_tuning_run(tmp_path, fake_training):
    trained, correct = fake_training
    correct.update({2: 0, 3: EXAMPLES, 4: 0})  # 1e-3 beats 1e-2 on every example; 1e-4 does worse again
    record = run_with(tmp_path, "tune.max_extensions=2")
    tuning = record["tuning"]
    assert trained == [0.001, 0.01, 0.0001, 0.001]  # the grid, one extension, then the run at the chosen rate
    assert tuning["planned_grid"] == [0.001, 0.01] and tuning["lr_grid"] == [0.0001, 0.001, 0.01]
    [extension] = tuning["extensions"]
    assert extension["lr"] == 0.0001 and extension["beyond"]["edge"] == "low"
    assert extension["beyond"]["mean"] == 1.0 and extension["beyond"]["n"] == EXAMPLES
    assert tuning["chosen_lr"] == 0.001 and tuning["edge"] is None  # bracketed now
    assert "standard error" in tuning["noise_rule"]
    stored = len(list((tmp_path / "results" / "quick").glob("*/result.json")))
    other_seed = run_with(tmp_path, "tune.max_extensions=2", seed=2)
    assert trained[4:] == [0.001]  # the three tuning runs are stored: only the new seed's run trains
    assert other_seed["tuning"]["extensions"] == tuning["extensions"]
    assert len(list((tmp_path / "results" / "quick").glob("*/result.json"))) == stored + 1


def test_an_end_rate_within_noise_of_its_neighbour_adds_nothing(tmp_path, fake_training):
    trained, correct = fake_training
    correct.update({2: 8, 3: 9})  # one example more: a mean difference of 1/16 with a standard error of 1/16
    tuning = run_with(tmp_path, "tune.max_extensions=2")["tuning"]
    assert trained == [0.001, 0.01, 0.001] and tuning["extensions"] == []
    assert tuning["chosen_lr"] == 0.001 and tuning["edge"]["edge"] == "low"
    assert tuning["edge"]["mean"] == pytest.approx(1 / 16) and tuning["edge"]["standard_error"] == pytest.approx(1 / 16)
    assert not tuning["edge"]["beyond_noise"]


def test_extensions_stop_at_the_bound(tmp_path, fake_training):
    trained, correct = fake_training
    correct.update({2: 4, 3: 8, 4: 12, 5: 16, 6: 16})  # each lower rate better by 4 examples: 2.2 standard errors
    tuning = run_with(tmp_path, "tune.max_extensions=2")["tuning"]
    assert [step["lr"] for step in tuning["extensions"]] == [0.0001, 1e-05]
    assert 1e-06 not in trained and tuning["chosen_lr"] == 1e-05
    assert tuning["edge"]["lr"] == 1e-05 and tuning["edge"]["beyond_noise"]  # still at an end: the record says so
    assert run_with(tmp_path / "unextended")["tuning"]["extensions"] == []  # max_extensions=0: the grid as given


def test_a_log_spaced_range_lists_its_rates_and_makes_the_runs_of_that_list(tmp_path):
    ranged = plan(compose_config([*tiny_overrides(tmp_path), "tune.lr_range={low:1e-4,high:1e-2,points:5}"]))
    assert [run.config.train.lr for run in ranged.tuning_runs] == [0.0001, 0.000316, 0.001, 0.00316, 0.01]
    listed = plan(compose_config([*tiny_overrides(tmp_path), "tune.lr_grid=[0.0001,0.000316,0.001,0.00316,0.01]"]))
    assert ranged.run.run_id == listed.run.run_id
    assert [run.run_id for run in ranged.tuning_runs] == [run.run_id for run in listed.tuning_runs]
    with pytest.raises(ConfigError, match="give the grid one way"):
        plan(compose_config([*tiny_overrides(tmp_path), "tune.lr_range={low:1e-4,high:1e-2}", "tune.lr_grid=[0.1]"]))
    with pytest.raises(ConfigError, match="needs low < high"):
        plan(compose_config([*tiny_overrides(tmp_path), "tune.lr_range={low:1e-2,high:1e-4}"]))
    with pytest.raises(ConfigError, match="give at least 2 rates"):
        plan(compose_config([*tiny_overrides(tmp_path), "tune.lr_grid=[0.001]", "tune.max_extensions=1"]))
