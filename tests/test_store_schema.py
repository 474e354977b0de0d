"""A store that cannot be fooled: records checked against their schema, stable run_ids, no pooled duplicates."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import REPO, compose_config, run_cli
from harness.store import records as store
from harness.engine.plan import prepare

REFERENCE = REPO / "results" / "reference_256"


def a_reference_record() -> dict:
    path = next(REFERENCE.glob(f"*/{store.RESULT_FILE}"))
    return json.loads(path.read_text())


def without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


def changed(record: dict, path: tuple, value) -> dict:
    record = copy.deepcopy(record)
    target = record
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return record


RECORD = a_reference_record()
WRONG_SHAPES = {
    "only a status": {"schema_version": 1, "status": "ok"},
    "no run_id": without(RECORD, "run_id"),
    "no cells": without(RECORD, "cells"),
    "no mechanism": without(RECORD, "mechanism"),
    "no knobs": changed(RECORD, ("cells", 0, "knobs"), None),
    "cells not a list": changed(RECORD, ("cells",), {"a": 1}),
    "seed a string": changed(RECORD, ("seed",), "0"),
    "unknown run status": changed(RECORD, ("status",), "great"),
    "unknown cell status": changed(RECORD, ("cells", 0, "status"), "great"),
    "value a string": changed(RECORD, ("cells", 0, "value"), "high"),
    "ok without training": changed(RECORD, ("training",), None),
    "unknown stop reason": changed(RECORD, ("training", "stop_reason"), "tired"),
    "early stopping without its best step": changed(RECORD, ("training", "early_stopping"), {"metric": "exact_match"}),
    "other schema version": changed(RECORD, ("schema_version",), 2),
    "a list": [RECORD],
}


def store_as(tmp_path, record, run_id: str = "0123456789abcdef"):
    run_dir = tmp_path / "results" / "exp" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / store.RESULT_FILE).write_text(json.dumps(record))
    (run_dir / store.CONFIG_FILE).write_text("seed: 0\n")
    return run_dir


@pytest.mark.parametrize("name", WRONG_SHAPES)
def test_a_record_of_the_wrong_shape_is_skipped_and_redone_naming_the_file(tmp_path, name):
    run_dir = store_as(tmp_path, WRONG_SHAPES[name])
    with pytest.warns(UserWarning, match=f"{run_dir / store.RESULT_FILE}: not a memarena result"):
        assert store.completed_status(run_dir) is None, "counted as already done"
    with pytest.warns(UserWarning, match="skipped"):
        assert store.load_experiment(tmp_path / "results", "exp") == []


def test_a_record_under_another_runs_directory_is_not_that_run(tmp_path):
    run_dir = store_as(tmp_path, RECORD, run_id="fedcba9876543210")
    with pytest.warns(UserWarning, match="stored under another run's directory"):
        assert store.completed_status(run_dir) is None


def test_the_committed_records_match_the_schema():
    paths = list(REFERENCE.glob(f"*/{store.RESULT_FILE}"))
    assert paths, f"no committed records in {REFERENCE}"
    for path in paths:
        store.read_result(path.parent)


def test_the_report_survives_wrong_shapes(tmp_path):
    for number, record in enumerate(WRONG_SHAPES.values()):
        store_as(tmp_path, record, run_id=f"{number:016x}")
    result = run_cli("--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "reports"),
                     script="memarena-report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("not a memarena result") == len(WRONG_SHAPES)


def test_duplicates_of_one_configuration_and_seed_are_not_pooled(tmp_path):
    older = changed(RECORD, ("provenance", "time"), "2026-01-01T00:00:00+00:00")
    newer = changed(RECORD, ("provenance", "time"), "2026-02-01T00:00:00+00:00")
    config = (REFERENCE / RECORD["run_id"] / store.CONFIG_FILE).read_text()
    # the same training stored twice (an older run_id, another evaluation grid), and another seed
    for run_id, record, text in [("0000000000000001", older, config),
                                 ("0000000000000002", newer, config.replace("examples_per_cell: 64", "examples_per_cell: 8")),
                                 ("0000000000000003", changed(newer, ("seed",), 1), config.replace("\nseed: 0", "\nseed: 1"))]:
        store_as(tmp_path, {**record, "run_id": run_id}, run_id).joinpath(store.CONFIG_FILE).write_text(text)
    with pytest.warns(UserWarning, match=r"0000000000000001: the same configuration and seed as .*0000000000000002"):
        records = store.load_experiment(tmp_path / "results", "exp")
    assert [record["run_id"] for record in records] == ["0000000000000002", "0000000000000003"]


def test_the_run_id_of_a_fixed_config_is_pinned(tmp_path):
    # The run_id names a run's directory in every store: a run is skipped as done only if it hashes
    # the same. Changing this value means every stored result stops matching its config and is
    # retrained; change it only with a change to what a run computes, and say so in the commit.
    plan = prepare(compose_config(["mechanism=sliding_window", "task=mqar", "seed=3", "train.steps=50",
                                   f"results_dir={tmp_path}", "cache_dir=null", "progress=false"]))
    assert plan.run_id == "28308a50044f07b5"  # answers generated by default (eval.scoring=generate)
    # frequent_words gained tokens_to_generate (RULER's fwe sets 50); at 0 it computes what it computed before
    words = ["mechanism=sliding_window", "task=frequent_words", f"results_dir={tmp_path}", "cache_dir=null"]
    assert prepare(compose_config(words)).run_id == "fd55feeb87e26be9"  # as computed at 10c21f1, before the key


def test_a_pretrained_record_needs_no_training_but_names_its_model_and_policy():
    from harness.store.schema import record_problem

    record = {"schema_version": 1, "run_id": "x", "family": "pretrained", "mechanism": "pretrained/full",
              "model": "m", "policy": "full", "task": "niah", "seed": 0, "parameters": 1,
              "primary_metric": "string_match_all", "provenance": {}, "status": "ok", "error": None,
              "training": None, "cells": []}
    assert record_problem(record) is None
    assert "model" in record_problem({key: value for key, value in record.items() if key != "model"})
    assert "training" in record_problem({**record, "family": "trained"})  # a trained model has its summary
    assert "family" in record_problem({**record, "family": "other", "training": {"tokens_per_s": 1.0}})
