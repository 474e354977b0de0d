"""Leaderboards from hand-made records: ranking, OOM shown and never averaged away, failed runs listed."""

from __future__ import annotations

from harness.report import leaderboard_markdown


def cell(length, depth, value, status="ok", metric="exact_match"):
    figures = {"state_bytes": 100, "peak_memory_bytes": 1000, "decode_latency_p50_s": 0.002,
               "prefill_tokens_per_s": 5000.0, "ci_low": 0.0, "ci_high": 1.0, "n": 10}
    return {"knobs": {"context_len": length, "depth": depth}, "metric": metric, "higher_is_better": True,
            "status": status, "value": None if status == "oom" else value, "chance": 0.001,
            **(figures if status == "ok" else {})}


def record(mechanism, seed, cells, status="ok", error=None):
    return {"run_id": f"{mechanism}{seed}", "mechanism": mechanism, "task": "passkey", "seed": seed,
            "parameters": 1234, "primary_metric": "exact_match", "status": status, "error": error,
            "training": {"tokens_per_s": 100.0} if status == "ok" else None, "cells": cells}


def test_leaderboard_ranks_shows_oom_and_lists_failures():
    records = [
        record("strong", 0, [cell(64, 0.0, 1.0), cell(64, 1.0, 1.0), cell(128, 0.0, 1.0), cell(128, 1.0, 0.5)]),
        record("strong", 1, [cell(64, 0.0, 1.0), cell(64, 1.0, 1.0), cell(128, 0.0, 0.5), cell(128, 1.0, 1.0)]),
        record("weak", 0, [cell(64, 0.0, 0.5), cell(64, 1.0, 0.0), cell(128, 0.0, None, "oom"), cell(128, 1.0, 0.0)]),
        record("broken", 0, [], status="failed", error="RuntimeError: boom\nTraceback ..."),
    ]
    text = leaderboard_markdown(records, "demo")
    lines = text.splitlines()
    strong = next(line for line in lines if line.startswith("| strong"))
    weak = next(line for line in lines if line.startswith("| weak"))
    assert lines.index(strong) < lines.index(weak)
    assert [c.strip() for c in strong.split("|")[2:5]] == ["1", "0.75", "2"]  # @64, @128, seeds
    assert [c.strip() for c in weak.split("|")[2:4]] == ["0.25", "OOM"]
    detail = next(line for line in lines if line.startswith("| ('weak', 0.0)"))
    assert [c.strip() for c in detail.split("|")[2:4]] == ["0.5", "OOM"]
    assert "## Runs without results" in text and "RuntimeError: boom" in text and "Traceback" not in text
    assert "from 4 stored run(s)" in text
