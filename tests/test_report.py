"""Leaderboards from hand-made records: ranking, intervals, OOM, effective length, tests, files."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.figures import pareto_frontier
from harness.report import Leaderboard, leaderboard_markdown, write_report
from harness.store import OUTCOMES_FILE, write_run


def cell(length, depth, value, status="ok", metric="exact_match"):
    figures = {"state_bytes": 100, "peak_memory_bytes": 1000, "decode_latency_p50_s": 0.002,
               "prefill_tokens_per_s": 5000.0, "ci_low": 0.0, "ci_high": 1.0, "n": 4}
    return {"knobs": {"context_len": length, "depth": depth}, "metric": metric, "higher_is_better": True,
            "status": status, "value": None if status == "oom" else value, "chance": 0.001,
            **(figures if status == "ok" else {})}


def record(mechanism, seed, cells, status="ok", error=None):
    return {"run_id": f"{mechanism}{seed}", "mechanism": mechanism, "task": "passkey", "seed": seed,
            "parameters": 1234, "primary_metric": "exact_match", "status": status, "error": error,
            "training": {"tokens_per_s": 100.0} if status == "ok" else None, "cells": cells,
            "provenance": {"git_commit": "abc", "git_dirty": False, "device": "cpu", "torch": "2", "time": "t"}}


def outcomes(mechanism, seed, per_cell):
    """4 examples per cell; per_cell maps (length, depth) to the number right."""
    rows = [{"context_len": length, "depth": depth, "example": i, "metric": "exact_match",
             "value": float(i < right), "mechanism": mechanism, "task": "passkey", "seed": seed}
            for (length, depth), right in per_cell.items() for i in range(4)]
    return pd.DataFrame(rows)


RECORDS = [
    record("strong", 0, [cell(64, 0.0, 1.0), cell(64, 1.0, 1.0), cell(128, 0.0, 1.0), cell(128, 1.0, 0.5)]),
    record("weak", 0, [cell(64, 0.0, 0.5), cell(64, 1.0, 0.0), cell(128, 0.0, None, "oom"), cell(128, 1.0, 0.0)]),
    record("broken", 0, [], status="failed", error="RuntimeError: boom\nTraceback ..."),
]
OUTCOMES = pd.concat([outcomes("strong", 0, {(64, 0.0): 4, (64, 1.0): 4, (128, 0.0): 4, (128, 1.0): 2}),
                      outcomes("weak", 0, {(64, 0.0): 2, (64, 1.0): 0, (128, 1.0): 0})])


def test_summary_ranks_pools_examples_and_shows_oom():
    board = Leaderboard(RECORDS, OUTCOMES, threshold=0.9)
    summary = board.summary("passkey")
    assert list(summary.index) == ["strong", "weak"]
    assert summary.loc["strong", "exact_match @64"].startswith("1.000 [0.68, 1.00]")  # Wilson 8/8
    assert summary.loc["strong", "exact_match @128"].startswith("0.750 [")
    assert summary.loc["weak", "exact_match @128"] == "OOM"
    assert summary.loc["strong", "effective length"] == 64 and summary.loc["weak", "effective length"] == 0
    assert summary.loc["strong", "seeds"] == 1


def test_detail_and_head_to_head():
    board = Leaderboard(RECORDS, OUTCOMES)
    detail = board.detail("passkey")
    assert detail.loc[("weak", 0.0), 128] == "OOM" and detail.loc[("weak", 0.0), 64] == 0.5
    [row] = board.head_to_head("passkey").to_dict("records")
    # 12 shared examples (the OOM cell has none): strong right and weak wrong on 2 + 4 + 2 = 8, never the reverse
    assert row["pairs"] == 12 and row["test"] == "exact McNemar"
    assert row["p"] == pytest.approx(float(f"{2 * 0.5**8:.3g}")) and row["significant"] == "yes"


def test_seeds_use_a_bootstrap_interval():
    records = [record("m", seed, [cell(64, 0.5, value)]) for seed, value in enumerate([0.5, 0.75, 1.0])]
    lengths = Leaderboard(records, pd.DataFrame()).by_length("passkey")
    [row] = lengths.to_dict("records")
    assert row["value"] == pytest.approx(0.75) and 0.5 <= row["ci_low"] < 0.75 < row["ci_high"] <= 1.0


def test_markdown_lists_everything():
    text = leaderboard_markdown(Leaderboard(RECORDS, OUTCOMES), "demo")
    assert "## passkey" in text and "Head to head" in text and "OOM" in text
    assert "## Runs without results" in text and "RuntimeError: boom" in text and "Traceback" not in text
    assert "from 3 stored run(s)" in text


def test_pareto_frontier():
    points = pd.DataFrame({"cost": [1, 2, 3, 4], "score": [0.2, 0.1, 0.9, 0.8]}, index=list("abcd"))
    assert list(pareto_frontier(points).index) == ["a", "c"]


def test_write_report_files_and_unreadable_outcomes(tmp_path):
    results = tmp_path / "results"
    for r in RECORDS:
        rows = OUTCOMES[OUTCOMES["mechanism"] == r["mechanism"]].drop(columns=["mechanism", "task", "seed"])
        write_run(results / "demo" / r["run_id"], "x: 1", {k: v for k, v in r.items()}, rows.to_csv(index=False))
    (results / "demo" / "weak0" / OUTCOMES_FILE).write_text("\x00garbage")
    with pytest.warns(UserWarning, match="weak0"):
        write_report(results, tmp_path / "reports", "demo")
    directory = tmp_path / "reports" / "demo"
    csv = pd.read_csv(directory / "leaderboard.csv")
    assert {"mechanism", "context_len", "depth", "metric", "value", "status"} <= set(csv.columns)
    assert len(csv) == 8
    page = (directory / "index.html").read_text()
    assert page.count("Plotly.newPlot") >= 4 and page.count("plotly.js v") == 1
    assert "figure-1" in page and "Provenance" in page
