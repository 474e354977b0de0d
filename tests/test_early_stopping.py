"""Training that ends by protocol: a token budget honoured exactly, early stopping on a validation plateau."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import harness
from conftest import compose_config, tiny_overrides
from harness.config import CheckpointConfig, EvalConfig, TrainConfig
from harness.engine.checkpoint import Checkpoints
from harness.engine.checks import ConfigError
from harness.engine.early_stopping import Plateau
from harness.engine.plan import prepare
from harness.engine.run import run
from harness.engine.train import train
from harness.engine.training_stream import step_lengths
from harness.engine.validation import ValidationCheck
from harness.report import build_leaderboard, display
from harness.store.weights import WEIGHTS_FILE

CPU = torch.device("cpu")


def tiny_model(task):
    torch.manual_seed(0)
    return harness.build_model("sliding_window", vocab_size=task.vocab_size, d_model=16, n_layers=1, n_heads=2, window=8)


def test_the_token_budget_ends_training_before_the_step_that_would_pass_it():
    config = TrainConfig(steps=None, max_tokens=5000, batch_size=4, context_len=64, min_context_len=32)
    lengths = step_lengths(3, config)
    unbounded = step_lengths(3, TrainConfig(steps=len(lengths) + 50, batch_size=4, context_len=64, min_context_len=32))
    assert np.array_equal(lengths, unbounded[: len(lengths)])  # a budget changes how many steps, not their lengths
    used = int((lengths * 4).sum())
    assert used <= 5000 < used + 4 * unbounded[len(lengths)]
    task = harness.build_task("passkey")
    summary = train(tiny_model(task), task, config, 16, 3, CPU, progress=False, data_workers=0)
    assert summary.tokens == used and summary.steps == summary.planned_steps == len(lengths)
    assert summary.stop_reason == "budget" and summary.curve[-1]["step"] == len(lengths)
    # train.steps ends it first when fewer steps fit in train.steps than in the budget
    capped = TrainConfig(steps=3, max_tokens=5000, batch_size=4, context_len=64, min_context_len=32)
    assert train(tiny_model(task), task, capped, 16, 3, CPU, progress=False, data_workers=0).stop_reason == "steps"


def test_the_plateau_rule_counts_checks_without_an_improvement_beyond_min_delta():
    plateau = Plateau(patience=2, min_delta=0.1)
    improved = [plateau.update(step, score) for step, score in [(1, 0.2), (2, 0.25), (3, 0.4), (4, 0.45)]]
    assert improved == [True, False, True, False] and not plateau.reached
    assert not plateau.update(5, 0.5) and plateau.reached  # 0.5 is not above 0.4 + 0.1
    assert (plateau.best_step, plateau.best_score) == (3, 0.4)


def test_with_loss_min_fall_a_falling_training_loss_restarts_the_patience_and_the_best_score_keeps_its_weights():
    """An all-or-nothing score sits at 0 while the loss falls: no plateau until the loss levels off too."""
    plateau = Plateau(patience=2, min_delta=0.01, loss_min_fall=0.05)
    improved = [plateau.update(step, 0.0, loss) for step, loss in enumerate([2.3, 2.2, 2.1, 2.0, 1.9], start=1)]
    assert improved == [True, False, False, False, False] and not plateau.reached
    # a fall of 0.01 is not 5% of the 0.4 fallen so far (0.02)
    assert not plateau.update(6, 0.0, 1.89) and not plateau.reached
    assert not plateau.update(7, 0.0, 1.885) and plateau.reached
    assert (plateau.best_step, plateau.best_score, plateau.lowest_loss) == (1, 0.0, 1.885)
    assert [check["loss"] for check in plateau.curve] == [2.3, 2.2, 2.1, 2.0, 1.9, 1.89, 1.885]
    scores_alone = Plateau(patience=2, min_delta=0.01)
    assert [scores_alone.update(step, 0.0) for step in (1, 2, 3)] == [True, False, False] and scores_alone.reached
    assert "loss" not in scores_alone.curve[0]
    with pytest.raises(ValueError, match="needs its training loss"):
        Plateau(patience=2, min_delta=0.0, loss_min_fall=0.01).update(1, 0.0)


def test_a_run_whose_validation_score_plateaus_stops_early_and_keeps_its_best_weights(tmp_path):
    """A tiny model cannot raise its validation exact match by 0.5 in a few steps: the first check stays the best,
    two more checks without an improvement stop training, and the weights of the first check are evaluated."""
    overrides = [*tiny_overrides(tmp_path), "train.steps=40", "seed=1"]
    record = run(compose_config([*overrides, "train.eval_every=2", "train.patience=2", "train.min_delta=0.5",
                                 "train.eval_examples=3"]))
    training = record["training"]
    assert training["stop_reason"] == "plateau" and training["steps"] == 6 and training["planned_steps"] == 40
    assert [check["step"] for check in training["validation_curve"]] == [2, 4, 6]
    stopping = training["early_stopping"]
    assert stopping["best_step"] == 2 and stopping["split"] == "stopping" and stopping["seed"] == 1
    assert stopping["examples_per_cell"] == 3 and {cell["context_len"] for cell in stopping["cells"]} == {48}
    assert training["tokens"] == 6 * 2 * 48 and training["curve"][-1]["step"] == 6
    # the learning rate of the first steps is the warm-up's, whatever the schedule's length: a run of 2 steps
    # trains the model of step 2, and its weights are those the early-stopped run kept and evaluated
    two_steps = run(compose_config([*overrides, "train.steps=2"]))
    experiment = tmp_path / "results" / "quick"
    kept = torch.load(experiment / record["run_id"] / WEIGHTS_FILE, weights_only=True)
    trained = torch.load(experiment / two_steps["run_id"] / WEIGHTS_FILE, weights_only=True)
    assert kept.keys() == trained.keys() and all(torch.equal(kept[key], trained[key]) for key in kept)
    assert [cell["value"] for cell in record["cells"]] == [cell["value"] for cell in two_steps["cells"]]
    stored = json.loads((experiment / record["run_id"] / "result.json").read_text())
    assert stored["training"]["stop_reason"] == "plateau"
    stopped = display.cost_table(build_leaderboard(tmp_path / "results", "quick"), "passkey")["stopped"].tolist()
    assert sorted(stopped) == ["", "plateau at step 6 (weights of step 2)"]  # the report says why, per row


def test_a_run_whose_training_loss_still_falls_is_not_stopped_by_a_plateau_of_its_score(tmp_path):
    """A run that a plateau of its score stops at step 6 goes on with train.loss_min_fall while its loss falls,
    and stops once the loss levels off too; the record names the rule and each check's loss, and the key at null
    leaves the run_id alone."""
    overrides = [*tiny_overrides(tmp_path), "train.steps=40", "seed=1", "train.eval_every=2", "train.patience=2",
                 "train.min_delta=0.5", "train.eval_examples=3", "train.warmup_steps=1", "train.lr=0.01"]
    assert run(compose_config(overrides))["training"]["steps"] == 6
    record = run(compose_config([*overrides, "train.loss_min_fall=0.01"]))
    training = record["training"]
    assert training["stop_reason"] == "plateau" and 6 < training["steps"] < 40
    assert training["early_stopping"]["loss_min_fall"] == 0.01
    losses = [check["loss"] for check in training["validation_curve"]]
    assert losses[1] < losses[0]  # the fall that kept it going past the score's plateau
    lowest = min(losses[:-2])  # and the last two checks, without a fall of 1% of the fall so far, stopped it
    assert min(losses[-2:]) >= lowest - 0.01 * (losses[0] - lowest)
    assert training["early_stopping"]["best_step"] == 2  # the weights are still the best score's
    assert prepare(compose_config([*overrides, "train.loss_min_fall=null"])).run_id == \
        prepare(compose_config(overrides)).run_id != record["run_id"]


def test_early_stopping_reads_validation_examples_never_test_ones(tmp_path):
    task = harness.build_task("passkey")
    config = TrainConfig(context_len=64, eval_every=1, eval_examples=8, eval_seed=0)
    check = ValidationCheck.build(task, config, EvalConfig(grid={"context_len": [64, 128]}), 16, CPU)
    assert check.cells == [{"context_len": 64, "depth": depth} for depth in task.config.grid["depth"]]
    test = {example.tokens.tobytes() for knobs in check.cells for example in task.test_examples(0, knobs, 8)}
    assert not test & {example.tokens.tobytes() for cell in check.examples for example in cell}
    tuned = [*tiny_overrides(tmp_path), "tune.lr_grid=[0.001,0.01]", "train.eval_every=1"]
    with pytest.raises(ConfigError, match="train.eval_seed=0 is eval.seed"):
        run(compose_config([*tuned, "train.eval_seed=0"]))
    with pytest.raises(ConfigError, match="context_len <= train.context_len=48"):
        run(compose_config([*tiny_overrides(tmp_path), "train.eval_every=1", "eval.grid.context_len=[64]"]))
    with pytest.raises(ConfigError, match="train.patience: set for early stopping, which is off"):
        run(compose_config([*tiny_overrides(tmp_path), "train.patience=3"]))
    with pytest.raises(ConfigError, match="train.loss_min_fall: set for early stopping, which is off"):
        run(compose_config([*tiny_overrides(tmp_path), "train.loss_min_fall=0.01"]))
    with pytest.raises(ConfigError, match=r"train.loss_min_fall=1.5: must be a finite number in \[0, 1\)"):
        run(compose_config([*tiny_overrides(tmp_path), "train.eval_every=1", "train.loss_min_fall=1.5"]))
    with pytest.raises(ConfigError, match="train.max_tokens=10: must be at least one step"):
        run(compose_config([*tiny_overrides(tmp_path), "train.max_tokens=10"]))
    with pytest.raises(ConfigError, match="set train.max_tokens too"):
        run(compose_config([*tiny_overrides(tmp_path), "train.steps=null"]))


class Killed(Exception):
    pass


def test_a_run_killed_mid_training_resumes_its_early_stopping(tmp_path):
    """Killed after its first check, a run resumes with that check as its best and stops where, and with the
    weights that, an uninterrupted run does."""
    task = harness.build_task("passkey")
    config = TrainConfig(steps=40, batch_size=2, context_len=48, min_context_len=48, eval_every=2, patience=2,
                         min_delta=0.5, eval_examples=2)
    check = ValidationCheck.build(task, config, EvalConfig(grid={"context_len": [48]}), 16, CPU)

    def trained(checkpoints, validation):
        model = tiny_model(task)
        return model, train(model, task, config, 16, 0, CPU, progress=False, data_workers=0, checkpoints=checkpoints,
                            validation=validation)

    class KilledAtSecondCheck:
        calls = 0

        def score(self, model):
            self.calls += 1
            if self.calls == 2:
                raise Killed
            return check.score(model)

        def description(self):
            return check.description()

    checkpoints = Checkpoints(tmp_path, CheckpointConfig(every_steps=1, every_minutes=None))
    with pytest.raises(Killed):
        trained(checkpoints, KilledAtSecondCheck())
    assert torch.load(checkpoints.path, weights_only=True)["plateau"]["best_step"] == 2
    resumed_model, resumed = trained(Checkpoints(tmp_path, CheckpointConfig(every_steps=1, every_minutes=None)), check)
    model, through = trained(None, check)
    assert resumed.resumed_at_steps == [3] and through.resumed_at_steps == []
    assert resumed.stop_reason == through.stop_reason == "plateau" and resumed.steps == through.steps == 6
    assert resumed.validation_curve == through.validation_curve and resumed.early_stopping == through.early_stopping
    assert resumed.curve == through.curve
    assert all(torch.equal(a, b) for a, b in zip(resumed_model.state_dict().values(), model.state_dict().values()))
