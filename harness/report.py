"""Leaderboards regenerated from the store alone: ``reports/<experiment>/leaderboard.md``."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.store import load_experiment, write_atomic


#: cell figures a report reads; a record without some of them shows them as missing
CELL_COLUMNS = ["status", "value", "chance", "higher_is_better", "state_bytes", "peak_memory_bytes",
                "decode_latency_p50_s", "prefill_tokens_per_s"]


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
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=[*frame.columns, *(c for c in CELL_COLUMNS if c not in frame.columns)])


def leaderboard_markdown(records: list[dict[str, Any]], experiment: str) -> str:
    lines = [f"# Leaderboard: {experiment}", "",
             f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} "
             f"from {len(records)} stored run(s).", ""]
    frame = cells_frame(records)
    knobs = sorted({knob for record in records if record["status"] == "ok" for cell in record["cells"]
                    for knob in cell["knobs"]})
    for task, table in (frame.groupby("task") if not frame.empty else []):
        lines += _task_section(task, table[table["primary"]], knobs)
    failed = [record for record in records if record["status"] != "ok"]
    if failed:
        lines += ["## Runs without results", "",
                  pd.DataFrame([{"run": r["run_id"], "mechanism": r["mechanism"], "task": r["task"], "seed": r["seed"],
                                 "status": r["status"], "error": (r.get("error") or "").splitlines()[0]}
                                for r in failed]).to_markdown(index=False), ""]
    return "\n".join(lines)


def _task_section(task: str, table: pd.DataFrame, knobs: list[str]) -> list[str]:
    metric = table["metric"].iloc[0]
    other_knobs = [knob for knob in knobs if knob != "context_len" and table[knob].notna().any()]
    by_length = _values_or_oom(table, "mechanism", "context_len")
    longest_len = table["context_len"].max()
    by_length.columns = [f"{metric} @{length}" for length in by_length.columns]
    longest = table[table["context_len"] == longest_len].groupby("mechanism")
    everything = table.groupby("mechanism")
    costs = pd.DataFrame({
        "seeds": everything["seed"].nunique(),
        "parameters": everything["parameters"].first(),
        f"state bytes @{longest_len}": longest["state_bytes"].max(),
        f"peak memory bytes @{longest_len}": longest["peak_memory_bytes"].max(),
        f"decode ms/token @{longest_len}": (longest["decode_latency_p50_s"].median() * 1e3).round(3),
        "prefill tokens/s": everything["prefill_tokens_per_s"].mean().round(0),
        "train tokens/s": everything["train_tokens_per_s"].mean().round(0),
    })
    ranking = everything["value"].mean().sort_values(ascending=not table["higher_is_better"].iloc[0]).index
    summary = by_length.join(costs).loc[ranking]
    lines = [f"## {task}", "",
             f"{metric} per context length (mean over {', '.join(other_knobs) or 'examples'} and seeds; "
             f"chance {table['chance'].iloc[0]:.3g}; OOM: out of memory). Costs are per sequence, "
             "measured on one example; decode latency is the median per answer token.", "",
             summary.to_markdown(), ""]
    if other_knobs:
        detail = _values_or_oom(table, ["mechanism", *other_knobs], "context_len")
        detail.columns = [f"@{length}" for length in detail.columns]
        lines += [f"{metric} by cell:", "", detail.to_markdown(), ""]
    return lines


def _values_or_oom(table: pd.DataFrame, index, columns) -> pd.DataFrame:
    """Mean value per (index, column), or "OOM" where any run ran out of memory: never averaged away."""
    values = table.pivot_table(index=index, columns=columns, values="value", aggfunc="mean", dropna=False).round(3)
    out_of_memory = (table.assign(oom=table["status"] == "oom")
                     .pivot_table(index=index, columns=columns, values="oom", aggfunc="any", dropna=False)
                     .reindex_like(values).fillna(False).astype(bool))
    return values.astype(object).where(~out_of_memory, "OOM")


def write_report(results_dir: Path, reports_dir: Path, experiment: str) -> Path:
    """Regenerate ``<reports_dir>/<experiment>/leaderboard.md`` from the store."""
    records = load_experiment(results_dir, experiment)
    path = Path(reports_dir) / experiment / "leaderboard.md"
    write_atomic(path, leaderboard_markdown(records, experiment))
    return path
