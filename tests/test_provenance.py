"""Settings that change a run's numbers are recorded, and a skip says when they differ from this machine's."""

from __future__ import annotations

import json

import torch

from conftest import compose_config, tiny_overrides
from harness.engine.run import run
from harness.store.records import RESULT_FILE


def test_numerics_are_recorded_and_a_skip_names_a_different_thread_count(tmp_path, capsys):
    config = compose_config(tiny_overrides(tmp_path) + ["eval.grid.context_len=[48]", "task.grid.depth=[0.5]"])
    record = run(config)
    stored = json.loads((tmp_path / "results" / "quick" / record["run_id"] / RESULT_FILE).read_text())
    assert stored["provenance"]["numerics"] == {"threads": torch.get_num_threads(), "deterministic_algorithms": False,
                                                "device": "cpu", "precision": "fp32"}
    capsys.readouterr()
    assert run(config)["skipped"]
    assert capsys.readouterr().out.strip().endswith("already done (ok); skipped, force=true reruns it")
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert run(config)["skipped"]
    finally:
        torch.set_num_threads(threads)
    line = capsys.readouterr().out.strip()
    assert line.endswith(f"it was computed with threads={threads} (here {threads + 1}), so its numbers may differ slightly")
    assert "\n" not in line
