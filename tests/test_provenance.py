"""Settings that change a run's numbers are recorded, and a skip says when they differ from this machine's;
the data a run reads besides its options (a background corpus) is named in its record and report."""

from __future__ import annotations

import hashlib
import json

import torch

from conftest import compose_config, tiny_overrides
from harness.report import build_leaderboard
from harness.report.markdown import leaderboard_markdown
from harness.engine.run import run
from harness.store.records import RESULT_FILE
from tasks.sample_corpus import SAMPLE_CORPUS, SAMPLE_NAME


def test_numerics_are_recorded_and_a_skip_names_a_different_thread_count(tmp_path, capsys):
    config = compose_config(tiny_overrides(tmp_path) + ["eval.grid.context_len=[48]", "task.grid.depth=[0.5]"])
    record = run(config)
    stored = json.loads((tmp_path / "results" / "quick" / record["run_id"] / RESULT_FILE).read_text())
    assert stored["provenance"]["numerics"] == {"threads": torch.get_num_threads(), "deterministic_algorithms": False,
                                                "device": "cpu", "precision": "fp32",
                                                "mechanism": {"backend": "torch"}}  # who computed the mechanism
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


def test_a_run_on_a_text_haystack_names_its_corpus_in_the_record_and_the_report(tmp_path):
    """The essay presets read the shipped sample when no corpus_path is given: the record and the report say so."""
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("task.grid")]
    record = run(compose_config([*overrides, "task=ruler/niah_single_2", "eval.grid.context_len=[64]",
                                 "train.context_len=64", "train.min_context_len=64"]))
    assert record["status"] == "ok", record["error"]
    stored = json.loads((tmp_path / "results" / "quick" / record["run_id"] / RESULT_FILE).read_text())
    data = stored["provenance"]["data"]
    assert data["corpus"] == SAMPLE_NAME and data["corpus_words"] == len(SAMPLE_CORPUS.read_text().split())
    assert data["corpus_sha256"] == hashlib.sha256(SAMPLE_CORPUS.read_bytes()).hexdigest()
    text = leaderboard_markdown(build_leaderboard(tmp_path / "results", "quick"), "quick", "now")
    assert f"Background text of 1 run(s): {SAMPLE_NAME}, {data['corpus_words']} words" in text


def test_the_back_end_of_a_mechanism_with_peer_kernels_is_recorded(tmp_path):
    record = run(compose_config(tiny_overrides(tmp_path, mechanism="linear_attention")
                                + ["eval.grid.context_len=[48]", "task.grid.depth=[0.5]"]))
    assert record["status"] == "ok", record["error"]
    assert record["provenance"]["numerics"]["mechanism"]["backend"] == "torch"  # no CUDA here: the PyTorch path
    assert record["provenance"]["numerics"]["mechanism"]["recurrence"].startswith("fp32")
