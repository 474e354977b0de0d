"""Exit codes of a single `memarena` run, as a subprocess: 0 ok, 2 a rejected config, 1 a failed run.

Sweeps have their own summary and exit code (test_sweeps.py). A single run is asked for with
``hydra.mode=RUN``, which also overrides an experiment preset that sweeps. The failing run comes
from a task plug-in (entry point group ``memarena.tasks``, installed in a temporary directory)
whose examples cannot be generated: the config is valid, training starts and fails.
"""

from __future__ import annotations

import json

from conftest import run_cli, tiny_overrides
from harness.store.records import RESULT_FILE, completed_status

SINGLE_RUN = "hydra.mode=RUN"

BROKEN_TASK = '''
from dataclasses import dataclass

from harness.registry import register_task
from tasks.passkey import Passkey, PasskeyConfig


@dataclass
class BrokenPasskeyConfig(PasskeyConfig):
    name: str = "broken_passkey"


@register_task("broken_passkey")
class BrokenPasskey(Passkey):
    """Passkey whose examples cannot be generated: fails once training asks for its first batch."""

    Config = BrokenPasskeyConfig

    def generate(self, rng, **knobs):
        raise RuntimeError("injected failure: no examples")
'''


def stored_records(tmp_path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((tmp_path / "results").rglob(RESULT_FILE))]


def files_under(directory) -> list:
    return [path for path in directory.rglob("*") if path.is_file()] if directory.exists() else []


def test_a_successful_run_exits_0_with_its_record_stored(tmp_path):
    result = run_cli(*tiny_overrides(tmp_path), SINGLE_RUN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(sliding_window on passkey seed=0): ok" in result.stdout
    [record] = stored_records(tmp_path)
    assert record["status"] == "ok" and record["mechanism"] == "sliding_window"


def test_a_rejected_config_exits_2_and_writes_nothing(tmp_path):
    result = run_cli(*tiny_overrides(tmp_path), "train.steps=0", SINGLE_RUN, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "memarena: error: train.steps" in result.stderr
    assert "Traceback" not in result.stderr
    for directory in ("results", "reports", "cache"):
        assert files_under(tmp_path / directory) == [], directory


def test_a_failed_run_exits_1_with_a_failed_record_that_is_retried(tmp_path):
    site, metadata = tmp_path / "site", tmp_path / "site" / "broken_task-0.1.dist-info"
    metadata.mkdir(parents=True)
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-task\nVersion: 0.1\n")
    (metadata / "entry_points.txt").write_text("[memarena.tasks]\nbroken_passkey = broken_task\n")
    (site / "broken_task.py").write_text(BROKEN_TASK)
    result = run_cli(*tiny_overrides(tmp_path), "task=broken_passkey", SINGLE_RUN, cwd=tmp_path, pythonpath=(site,))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(sliding_window on broken_passkey seed=0): failed" in result.stdout
    [record] = stored_records(tmp_path)
    assert record["status"] == "failed" and record["task"] == "broken_passkey" and record["cells"] == []
    assert "injected failure: no examples" in record["error"] and "Traceback" in record["error"]
    [run_dir] = [path.parent for path in (tmp_path / "results").rglob(RESULT_FILE)]
    assert completed_status(run_dir) is None  # a failed run is redone by the next invocation
