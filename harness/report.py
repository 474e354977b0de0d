"""Leaderboards regenerated from the store alone: ``reports/<experiment>/leaderboard.md``."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.store import load_experiment, write_atomic


def cells_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, cell, metric) of the complete runs, with the knobs as columns."""
    rows = []
    for record in records:
        if record["status"] != "ok":
            continue
        for cell in record["cells"]:
            rows.append({
                "mechanism": record["mechanism"], "task": record["task"], "seed": record["seed"],
                "run_id": record["run_id"], "parameters": record["parameters"],
                "primary": cell["metric"] == record["primary_metric"],
                "train_tokens_per_s": record["training"]["tokens_per_s"],
                **cell["knobs"], **{key: value for key, value in cell.items() if key != "knobs"},
            })
    return pd.DataFrame(rows)


def leaderboard_markdown(records: list[dict[str, Any]], experiment: str) -> str:
    lines = [f"# Leaderboard: {experiment}", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} "
             f"from {len(records)} stored run(s).", ""]
    frame = cells_frame(records)
    for task, table in (frame.groupby("task") if not frame.empty else []):
        lines += _task_section(task, table[table["primary"]])
    failed = [record for record in records if record["status"] != "ok"]
    if failed:
        lines += ["## Runs without results", "",
                  pd.DataFrame([{"run": r["run_id"], "mechanism": r["mechanism"], "task": r["task"], "seed": r["seed"],
                                 "status": r["status"], "error": (r.get("error") or "").splitlines()[0]}
                                for r in failed]).to_markdown(index=False), ""]
    return "\n".join(lines)


def _task_section(task: str, table: pd.DataFrame) -> list[str]:
    metric = table["metric"].iloc[0]
    other_knobs = [column for column in _knob_columns(table) if column != "context_len"]
    by_length = table.pivot_table(index="mechanism", columns="context_len", values="value", aggfunc="mean")
    by_length.columns = [f"{metric} @{length}" for length in by_length.columns]
    longest = table[table["context_len"] == table["context_len"].max()]
    costs = pd.DataFrame({
        "seeds": table.groupby("mechanism")["seed"].nunique(),
        "parameters": table.groupby("mechanism")["parameters"].first(),
        f"state bytes @{table['context_len'].max()}": longest.groupby("mechanism")["state_bytes"].max(),
        "eval tokens/s": table.groupby("mechanism")["tokens_per_s"].mean().round(0),
        "train tokens/s": table.groupby("mechanism")["train_tokens_per_s"].mean().round(0),
    })
    summary = by_length.round(3).join(costs).sort_values(by_length.columns[-1], ascending=False)
    chance = table["chance"].iloc[0]
    lines = [f"## {task}", "",
             f"{metric} per context length (mean over {', '.join(other_knobs) or 'examples'} and seeds; "
             f"chance {chance:.3g}); state bytes are per sequence.", "",
             summary.to_markdown(), ""]
    if other_knobs:
        detail = table.pivot_table(index=["mechanism", *other_knobs], columns="context_len", values="value",
                                   aggfunc="mean").round(3)
        detail.columns = [f"@{length}" for length in detail.columns]
        lines += [f"{metric} by cell:", "", detail.to_markdown(), ""]
    return lines


def _knob_columns(table: pd.DataFrame) -> list[str]:
    fixed = {"mechanism", "task", "seed", "run_id", "parameters", "primary", "train_tokens_per_s", "metric",
             "higher_is_better", "n", "value", "ci_low", "ci_high", "chance", "state_bytes", "tokens_per_s"}
    return [column for column in table.columns if column not in fixed]


def write_report(results_dir: Path, reports_dir: Path, experiment: str) -> Path:
    """Regenerate ``<reports_dir>/<experiment>/leaderboard.md`` from the store."""
    records = load_experiment(results_dir, experiment)
    path = Path(reports_dir) / experiment / "leaderboard.md"
    write_atomic(path, leaderboard_markdown(records, experiment))
    return path
