"""Train once, evaluate many: mode=eval adds cells to a stored run's record from its kept weights, no training."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

import harness.engine.run
from conftest import compose_config, run_cli, tiny_overrides
from harness.engine.evaluate_stored import evaluate_stored
from harness.engine.checks import ConfigError
from harness.engine.run import run
from harness.store.records import OUTCOMES_FILE, RESULT_FILE
from harness.store.weights import WEIGHTS_FILE

LONGER = "eval.grid.context_len=[48,64,96]"


def no_training(*args, **kwargs):
    raise AssertionError("mode=eval trained")


def test_eval_mode_adds_the_missing_cells_of_a_longer_grid_without_training(tmp_path, monkeypatch):
    overrides = tiny_overrides(tmp_path)
    trained = run(compose_config(overrides))
    [run_dir] = (tmp_path / "results" / "quick").iterdir()
    assert (run_dir / WEIGHTS_FILE).is_file()
    assert (trained["training"]["context_len"], trained["training"]["min_context_len"]) == (48, 48)

    monkeypatch.setattr(harness.engine.run, "train", no_training)
    outcome = evaluate_stored(compose_config([*overrides, LONGER, "mode=eval"]))
    assert outcome == {"run_id": run_dir.name, "status": "ok", "skipped": False}
    assert [path.name for path in (tmp_path / "results" / "quick").iterdir()] == [run_dir.name]
    record = json.loads((run_dir / RESULT_FILE).read_text())
    assert record["training"] == trained["training"] and record["cells"][: len(trained["cells"])] == trained["cells"]
    added = record["cells"][len(trained["cells"]) :]
    assert sorted({(cell["knobs"]["context_len"], cell["knobs"]["depth"]) for cell in added}) == [(96, 0.0), (96, 1.0)]
    assert len(added) == 2 * 2 and all(cell["evaluation"] == 0 and cell["status"] == "ok" for cell in added)
    [evaluation] = record["evaluations"]
    assert evaluation["cells"] == [{"context_len": 96, "depth": 0.0}, {"context_len": 96, "depth": 1.0}]
    assert evaluation["time"] >= record["provenance"]["time"] and "git_commit" in evaluation
    outcomes = pd.read_csv(run_dir / OUTCOMES_FILE)
    assert len(outcomes) == 3 * 2 * 4 * 2 and (outcomes.context_len == 96).sum() == 2 * 4 * 2

    # the stored weights are the trained model's: a run trained with the longer grid scores the same
    monkeypatch.undo()
    fresh = run(compose_config([*tiny_overrides(tmp_path / "fresh"), LONGER]))
    value = {(json.dumps(cell["knobs"]), cell["metric"]): cell["value"] for cell in fresh["cells"]}
    assert all(cell["value"] == value[json.dumps(cell["knobs"]), cell["metric"]] for cell in added)

    again = run_cli(*overrides, LONGER, "mode=eval", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert json.loads((run_dir / RESULT_FILE).read_text()) == record


def test_eval_mode_refuses_before_any_work_without_a_stored_model_or_its_weights(tmp_path):
    overrides = [*tiny_overrides(tmp_path), "mode=eval"]
    with pytest.raises(ConfigError, match="no stored run of this trained model"):
        evaluate_stored(compose_config(overrides))
    run(compose_config([*tiny_overrides(tmp_path), "keep_weights=false"]))
    with pytest.raises(ConfigError, match="examples_per_cell=8 but .* eval.examples_per_cell=4"):
        evaluate_stored(compose_config([*overrides, "eval.examples_per_cell=8"]))
    with pytest.raises(ConfigError, match="scoring=teacher_forced but .* eval.scoring=generate"):
        evaluate_stored(compose_config([*overrides, "eval.scoring=teacher_forced"]))
    with pytest.raises(ConfigError, match="no stored weights"):
        evaluate_stored(compose_config([*overrides, LONGER]))


def test_outcomes_left_by_an_interrupted_evaluation_are_replaced_not_duplicated(tmp_path):
    from harness.engine.evaluate_stored import _merged_outcomes

    stored = pd.DataFrame({"context_len": [48, 48, 96], "depth": [0.0, 1.0, 0.0], "example": [0, 0, 0],
                           "metric": ["exact_match"] * 3, "value": [1.0, 0.0, 0.5]})
    stored.to_csv(tmp_path / OUTCOMES_FILE, index=False)  # the 96 row: outcomes written, record not
    new = [{"context_len": 96, "depth": 0, "example": 0, "metric": "exact_match", "value": 1.0}]
    merged = pd.read_csv(io.StringIO(_merged_outcomes(tmp_path, [{"context_len": 96, "depth": 0}], new)))
    assert merged.values.tolist() == [[48, 0.0, 0, "exact_match", 1.0], [48, 1.0, 0, "exact_match", 0.0],
                                      [96, 0.0, 0, "exact_match", 1.0]]


def test_an_early_stopped_model_is_known_by_the_cells_that_stopped_it():
    """mode=eval finds a run by the weights it trained: with early stopping they depend on the stopping cells
    (the grid within the training lengths) and their scoring, not on lengths beyond training."""
    from harness.store.records import trained_model_id

    def semantic(lengths, eval_every=None, scoring="generate"):
        return {"mechanism": {"name": "sliding_window"}, "train": {"context_len": 64, "eval_every": eval_every},
                "eval": {"grid": {"context_len": lengths}, "scoring": scoring, "batch_size": 4}, "task": {"name": "passkey"}}

    assert trained_model_id(semantic([48, 64])) == trained_model_id(semantic([32, 256]))  # no early stopping
    assert trained_model_id(semantic([48, 64], 10)) == trained_model_id(semantic([48, 64, 128, 256], 10))
    assert trained_model_id(semantic([48, 64], 10)) != trained_model_id(semantic([32, 64], 10))
    assert trained_model_id(semantic([48, 64], 10)) != trained_model_id(semantic([48, 64], 10, "teacher_forced"))
    assert trained_model_id(semantic([48, 64], 10)) != trained_model_id(semantic([48, 64]))
