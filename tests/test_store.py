"""The results store: atomic writes, skip-if-done, and corrupt records."""

from __future__ import annotations

import json
import os

import pytest

from harness.store import records as store


def result(run_id: str, status: str = "ok", **fields) -> dict:
    """A record of the shape the store accepts (harness/store/schema.py)."""
    return {"run_id": run_id, "experiment": "exp", "mechanism": "m", "task": "passkey", "seed": 0, "parameters": 10,
            "primary_metric": "exact_match", "provenance": {"time": "2026-01-01T00:00:00+00:00"}, "status": status,
            "error": None if status == "ok" else "boom", "training": {"tokens_per_s": 1.0} if status == "ok" else None,
            "cells": [], **fields}


def test_run_id_is_stable_and_order_independent():
    assert store.run_id({"a": 1, "b": {"c": 2}}) == store.run_id({"b": {"c": 2}, "a": 1})
    assert store.run_id({"a": 1}) != store.run_id({"a": 2})


def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    store.write_atomic(path, "first")
    store.write_atomic(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["file.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any other file, not 0600


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    store.write_atomic(path, "old")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.write_atomic(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_write_atomic_syncs_the_whole_file_to_disk_before_renaming_it(tmp_path, monkeypatch):
    """Without fsync a crash after the rename can leave an empty file under the final name."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.fstat(descriptor).st_size))
        real_fsync(descriptor)

    def replace(source, destination):
        events.append(("replace", os.path.basename(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.write_atomic(tmp_path / "file.txt", "twelve bytes")
    assert events == [("fsync", 12), ("replace", "file.txt")]


def test_a_run_is_complete_only_once_its_result_is_written(tmp_path):
    run_dir = tmp_path / "exp" / "abc"
    assert store.completed_status(run_dir) is None
    store.write_atomic(run_dir / store.CONFIG_FILE, "x: 1")  # a run killed after its first file
    assert store.completed_status(run_dir) is None
    store.write_run(run_dir, "x: 1", result("abc"), "metric,value\n")
    assert store.completed_status(run_dir) == "ok"
    assert json.loads((run_dir / store.RESULT_FILE).read_text())["schema_version"] == store.SCHEMA_VERSION


@pytest.mark.parametrize("failing", [store.CONFIG_FILE, store.OUTCOMES_FILE])
def test_a_run_whose_other_files_fail_to_write_leaves_no_result(tmp_path, monkeypatch, failing):
    """result.json is the completion marker: written after every other file of the run, never before."""
    write_atomic = store.write_atomic

    def failing_write(path, text):
        if path.name == failing:
            raise OSError("disk full")
        write_atomic(path, text)

    monkeypatch.setattr(store, "write_atomic", failing_write)
    run_dir = tmp_path / "exp" / "abc"
    with pytest.raises(OSError, match="disk full"):
        store.write_run(run_dir, "x: 1", {"status": "ok", "cells": []}, "metric,value\n")
    assert not (run_dir / store.RESULT_FILE).exists() and store.completed_status(run_dir) is None


def test_failed_runs_are_retried(tmp_path):
    store.write_run(tmp_path / "r", "x: 1", result("r", "failed"), None)
    assert store.completed_status(tmp_path / "r") is None


@pytest.mark.parametrize("content", ["{not json", json.dumps({"status": "ok"}), json.dumps([1, 2]), "\xff"])
def test_corrupt_or_foreign_records_are_redone_with_a_warning(tmp_path, content):
    run_dir = tmp_path / "exp" / "bad"
    run_dir.mkdir(parents=True)
    (run_dir / store.RESULT_FILE).write_text(content)
    with pytest.warns(UserWarning, match="bad"):
        assert store.completed_status(run_dir) is None


def test_loading_an_experiment_skips_corrupt_and_unfinished_runs_with_a_warning(tmp_path):
    store.write_run(tmp_path / "exp" / "good", "x: 1", result("good"), None)
    (tmp_path / "exp" / "corrupt").mkdir()
    (tmp_path / "exp" / "corrupt" / store.RESULT_FILE).write_text("{")
    (tmp_path / "exp" / "unfinished").mkdir()
    with pytest.warns(UserWarning) as caught:
        records = store.load_experiment(tmp_path, "exp")
    assert [record["status"] for record in records] == ["ok"]
    messages = " ".join(str(warning.message) for warning in caught)
    assert "corrupt" in messages and "unfinished" in messages
    assert store.load_experiment(tmp_path, "missing") == []
