"""Learning-rate tuning by protocol: validation examples choose the rate, the test set only scores the choice."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

import harness.engine.run
from conftest import compose_config, tiny_overrides
from harness.report import build_leaderboard
from harness.report import display
from harness.engine.checks import ConfigError
from harness.engine.run import run
from harness.engine.tuning import TuningFailed, choose, validation_score


def cell(value, status="ok"):
    return {"metric": "exact_match", "higher_is_better": True, "status": status, "value": value}


def test_validation_score_counts_oom_as_failure_and_skips_failed_runs():
    record = {"status": "ok", "primary_metric": "exact_match",
              "cells": [cell(1.0), cell(None, "oom"), {**cell(0.2), "metric": "digit_accuracy"}]}
    assert validation_score(record) == 0.5
    assert validation_score({"status": "diverged", "cells": []}) is None


def test_choice_takes_the_best_validation_score_then_the_lower_loss():
    trials = [{"lr": 1e-3, "validation_score": 0.5, "final_loss": 0.1, "status": "ok"},
              {"lr": 3e-3, "validation_score": 0.9, "final_loss": 0.4, "status": "ok"},
              {"lr": 1e-2, "validation_score": 0.9, "final_loss": 0.2, "status": "ok"},
              {"lr": 3e-2, "validation_score": None, "final_loss": float("inf"), "status": "diverged"}]
    assert choose(trials)["lr"] == 1e-2
    with pytest.raises(TuningFailed, match="lr=0.03: diverged"):
        choose(trials[3:])


def test_selection_uses_validation_examples_only(tmp_path, monkeypatch):
    """A task whose validation and test disagree: the rate best on validation wins, though another is best on test."""
    trained_at, evaluated = {}, []
    real_train, real_evaluate = harness.engine.run.train, harness.engine.run.evaluate

    def train(model, task, config, *args, **kwargs):
        trained_at["lr"] = config.lr
        return real_train(model, task, config, *args, **kwargs)

    def evaluate(model, task, config, *args, **kwargs):
        evaluated.append((config.split, trained_at["lr"]))
        cells, outcomes = real_evaluate(model, task, config, *args, **kwargs)
        # validation prefers the larger rate, the test set the smaller one
        best = {"validation": 0.01, "test": 0.001}[config.split]
        for entry in cells:
            entry["value"] = 1.0 if trained_at["lr"] == best else 0.0
        return cells, outcomes

    monkeypatch.setattr(harness.engine.run, "train", train)
    monkeypatch.setattr(harness.engine.run, "evaluate", evaluate)
    record = run(compose_config([*tiny_overrides(tmp_path), "tune.lr_grid=[0.001,0.01]", "seed=2", "cache_dir=null"]))
    assert record["status"] == "ok" and record["tuning"]["chosen_lr"] == 0.01
    assert [trial["validation_score"] for trial in record["tuning"]["trials"]] == [0.0, 1.0]
    # the test set is scored once, by the final run, after both rates were scored on validation
    assert evaluated == [("validation", 0.001), ("validation", 0.01), ("test", 0.01)]
    experiment = tmp_path / "results" / "quick"
    configs = {path.parent.name: yaml.safe_load(path.read_text()) for path in experiment.glob("*/config.yaml")}
    tuning_runs = {run_id for run_id, config in configs.items() if config["eval"]["split"] == "validation"}
    assert tuning_runs == {trial["run_id"] for trial in record["tuning"]["trials"]}
    assert all(configs[run_id]["seed"] == 0 for run_id in tuning_runs)  # tune.seed, not the run's seed
    final = configs[record["run_id"]]
    assert final["train"]["lr"] == 0.01 and final["eval"]["split"] == "test" and final["seed"] == 2
    stored = json.loads((experiment / record["run_id"] / "result.json").read_text())
    assert stored["tuning"]["chosen_lr"] == 0.01


def test_tuning_runs_are_shared_by_seeds_and_the_report_names_the_choice(tmp_path):
    overrides = [*tiny_overrides(tmp_path), "tune.lr_grid=[0.001,0.01]"]
    first = run(compose_config([*overrides, "seed=0"]))
    second = run(compose_config([*overrides, "seed=1"]))
    assert [t["run_id"] for t in first["tuning"]["trials"]] == [t["run_id"] for t in second["tuning"]["trials"]]
    assert len(list((tmp_path / "results" / "quick").glob("*/result.json"))) == 4  # 2 tuning runs + 2 seeds
    board = build_leaderboard(tmp_path / "results", "quick")
    assert len(board.runs) == 2  # tuning runs are not rows
    [row] = board.ranking("passkey").index
    assert row == f"sliding_window lr={first['tuning']['chosen_lr']}"
    table = display.tuning_table(board, "passkey")
    assert list(table.columns) == ["configuration", "lr=0.001", "lr=0.01", "chosen lr", "tuning seed"]
    headline = display.headline_table(board)  # the rate is chosen per task: named in the cell, not the row
    assert headline["configuration"].tolist() == ["sliding_window"]
    assert headline["passkey: exact_match, mean over lengths"].iloc[0].endswith(f" at lr={first['tuning']['chosen_lr']}")


def test_the_run_at_the_tuning_seed_evaluates_the_winning_tuning_runs_model(tmp_path, monkeypatch):
    """Seed tune.seed at the chosen rate is the winning tuning run's training: its weights are evaluated, not
    retrained, and retraining them (when they cannot be read) gives the same model and the same test cells."""
    overrides = [*tiny_overrides(tmp_path), "tune.lr_grid=[0.001,0.01]", "seed=0"]
    trainings = []
    real_train = harness.engine.run.train
    monkeypatch.setattr(harness.engine.run, "train", lambda *args, **kwargs: trainings.append(1) or real_train(*args, **kwargs))
    reused = run(compose_config(overrides))
    assert len(trainings) == 2  # the two tuning runs; the seed-0 run trained nothing
    winner = next(t["run_id"] for t in reused["tuning"]["trials"] if t["lr"] == reused["tuning"]["chosen_lr"])
    assert reused["tuning"]["weights_from"] == winner
    experiment = tmp_path / "results" / "quick"
    assert reused["training"] == json.loads((experiment / winner / "result.json").read_text())["training"]
    assert (experiment / reused["run_id"] / "model.pt").is_file()  # its own copy, for mode=eval

    assert reused["tuning"]["weights_provenance"] == json.loads(
        (experiment / winner / "result.json").read_text())["provenance"]
    torch.save({"other": torch.zeros(2)}, experiment / winner / "model.pt")  # weights of another model
    shutil.rmtree(experiment / reused["run_id"])
    retrained = run(compose_config(overrides))
    assert len(trainings) == 3 and "weights_from" not in retrained["tuning"]
    assert retrained["training"]["final_loss"] == pytest.approx(reused["training"]["final_loss"], rel=1e-6)
    assert [c["value"] for c in retrained["cells"]] == pytest.approx([c["value"] for c in reused["cells"]])
    other_seed = run(compose_config([*overrides[:-1], "seed=1"]))
    assert len(trainings) == 4 and "weights_from" not in other_seed["tuning"]


def test_tuning_needs_a_validation_split_and_sane_rates(tmp_path):
    with pytest.raises(ConfigError, match="tune.lr_grid"):
        run(compose_config([*tiny_overrides(tmp_path), "tune.lr_grid=[0.001,-1]"]))
    with pytest.raises(ConfigError, match="validation split"):
        run(compose_config([*tiny_overrides(tmp_path, task="qa"), "tune.lr_grid=[0.001]"]))
    with pytest.raises(ConfigError, match="eval.split"):
        run(compose_config([*tiny_overrides(tmp_path), "eval.split=train"]))
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("result.json"))
