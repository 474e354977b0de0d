"""Leaderboards regenerated from the store alone, in ``reports/<experiment>/``.

- ``leaderboard.md``: per task, mechanisms ranked by their mean headline metric, with the metric
  and its 95% interval per context length, the effective context length, costs, and the paired
  significance tests between every two mechanisms;
- ``leaderboard.csv``: every (run, cell, metric) row in long format;
- ``index.html``: the same with plots, one self-contained page (see ``harness.figures``).

Intervals per context length pool the examples of all its cells (Wilson for 0/1 metrics) with one
seed, and bootstrap the per-seed means with several. A cell out of memory is shown as OOM, and a
length with an OOM cell is never averaged from the cells that fit.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.stats import holm, mean_interval, paired_test, seeds_interval
from harness.store import OUTCOMES_FILE, load_experiment, write_atomic

#: cell figures a report reads; a record without some of them shows them as missing
CELL_COLUMNS = ["status", "value", "chance", "higher_is_better", "state_bytes", "peak_memory_bytes",
                "decode_latency_p50_s", "prefill_tokens_per_s"]
#: RULER's effective context length: the longest length up to which the metric stays at or above this
DEFAULT_THRESHOLD = 0.85
SIGNIFICANCE = 0.05


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


def outcomes_frame(results_dir: Path, experiment: str, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-example outcomes of the complete runs; an unreadable file is skipped with a warning."""
    frames = []
    for record in records:
        if record["status"] != "ok":
            continue
        path = Path(results_dir) / experiment / record["run_id"] / OUTCOMES_FILE
        try:
            frame = pd.read_csv(path)
            if not {"example", "metric", "value"} <= set(frame.columns):
                raise ValueError("missing columns")
        except (OSError, ValueError, pd.errors.ParserError) as error:
            warnings.warn(f"{path}: unreadable outcomes ({error}); left out of the paired tests", stacklevel=2)
            continue
        frames.append(frame.assign(mechanism=record["mechanism"], task=record["task"], seed=record["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class Leaderboard:
    """The tables of one experiment's report, computed once and rendered as markdown, CSV and HTML.

    The per-task tables are cached: treat what they return as read-only.
    """

    def __init__(self, records: list[dict[str, Any]], outcomes: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD):
        self.records = records
        self.threshold = threshold
        self.cells = cells_frame(records)
        self.outcomes = outcomes
        self.knobs = sorted({knob for r in records if r["status"] == "ok" for c in r["cells"] for knob in c["knobs"]})
        self.tasks = sorted(self.cells["task"].unique()) if not self.cells.empty else []

    def primary(self, task: str) -> pd.DataFrame:
        """The cells of the task's headline metric."""
        return self.cells[(self.cells["task"] == task) & self.cells["primary"]]

    @functools.cache
    def by_length(self, task: str) -> pd.DataFrame:
        """Per (mechanism, context_len): mean, interval, and whether any cell ran out of memory."""
        table = self.primary(task)
        rows = []
        for (mechanism, length), group in table.groupby(["mechanism", "context_len"]):
            row = {"mechanism": mechanism, "context_len": length, "oom": bool((group["status"] == "oom").any())}
            if not row["oom"]:
                row.update(zip(("value", "ci_low", "ci_high"), self._interval(task, mechanism, length, group)))
            rows.append(row)
        return pd.DataFrame(rows)

    def _interval(self, task: str, mechanism: str, length: int, group: pd.DataFrame) -> tuple[float, float, float]:
        seed_means = group.groupby("seed")["value"].mean()
        if len(seed_means) > 1:
            return seeds_interval(seed_means.to_numpy())
        metric = group["metric"].iloc[0]
        examples = self.outcomes
        if not examples.empty:
            examples = examples[(examples["task"] == task) & (examples["mechanism"] == mechanism)
                                & (examples["context_len"] == length) & (examples["metric"] == metric)]
        if examples.empty:
            return float(group["value"].mean()), float(group["ci_low"].min()), float(group["ci_high"].max())
        return mean_interval(examples["value"].to_numpy())

    def effective_length(self, lengths: pd.DataFrame) -> pd.Series:
        """Per mechanism: the longest context length up to which the metric stays >= the threshold."""
        effective = {}
        for mechanism, group in lengths.sort_values("context_len").groupby("mechanism"):
            passing = (~group["oom"]) & (group["value"].fillna(-np.inf) >= self.threshold)
            failed = np.flatnonzero(~passing.to_numpy())
            kept = group["context_len"].to_numpy()[: failed[0] if len(failed) else len(group)]
            effective[mechanism] = int(kept[-1]) if len(kept) else 0
        return pd.Series(effective, name="effective length")

    @functools.cache
    def summary(self, task: str) -> pd.DataFrame:
        table = self.primary(task)
        lengths = self.by_length(task)
        metric = table["metric"].iloc[0]
        scores = lengths.pivot(index="mechanism", columns="context_len", values="value")
        cells = lengths.assign(text=[_interval_text(row) for row in lengths.itertuples()])
        shown = cells.pivot(index="mechanism", columns="context_len", values="text")
        shown.columns = [f"{metric} @{length}" for length in shown.columns]
        longest_len = table["context_len"].max()
        longest = table[table["context_len"] == longest_len].groupby("mechanism")
        everything = table.groupby("mechanism")
        costs = pd.DataFrame({
            "effective length": self.effective_length(lengths),
            "seeds": everything["seed"].nunique(),
            "parameters": everything["parameters"].first(),
            f"state bytes @{longest_len}": longest["state_bytes"].max(),
            f"peak memory bytes @{longest_len}": longest["peak_memory_bytes"].max(),
            f"decode ms/token @{longest_len}": (longest["decode_latency_p50_s"].median() * 1e3).round(3),
            "prefill tokens/s": everything["prefill_tokens_per_s"].mean().round(0),
            "train tokens/s": everything["train_tokens_per_s"].mean().round(0),
        })
        higher_is_better = bool(table["higher_is_better"].iloc[0])
        ranking = scores.mean(axis=1).sort_values(ascending=not higher_is_better).index
        return shown.join(costs).loc[ranking]

    @functools.cache
    def detail(self, task: str) -> pd.DataFrame | None:
        """Mean per cell over seeds, knobs other than context_len as rows (None if there are none)."""
        table = self.primary(task)
        other = [knob for knob in self.knobs if knob != "context_len" and table[knob].notna().any()]
        if not other:
            return None
        values, out_of_memory = cell_pivot(table, ["mechanism", *other])
        return values.round(3).astype(object).where(~out_of_memory, "OOM")

    @functools.cache
    def head_to_head(self, task: str) -> pd.DataFrame:
        """Paired tests on the same examples between every two mechanisms, Holm-corrected."""
        table = self.primary(task)
        if self.outcomes.empty or table.empty:
            return pd.DataFrame()
        metric = table["metric"].iloc[0]
        examples = self.outcomes[(self.outcomes["task"] == task) & (self.outcomes["metric"] == metric)]
        keys = ["seed", *[knob for knob in self.knobs if knob in examples.columns], "example"]
        rows = []
        for a, b in itertools.combinations(sorted(examples["mechanism"].unique()), 2):
            paired = examples[examples["mechanism"] == a].merge(examples[examples["mechanism"] == b], on=keys,
                                                                 suffixes=("_a", "_b"))
            if paired.empty:
                continue
            rows.append({"mechanism A": a, "mechanism B": b, "pairs": len(paired),
                         f"{metric} A": round(paired["value_a"].mean(), 3), f"{metric} B": round(paired["value_b"].mean(), 3),
                         "p": paired_test(paired["value_a"], paired["value_b"])})
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        frame.insert(5, "test", "exact McNemar" if examples["value"].isin([0.0, 1.0]).all() else "Wilcoxon")
        frame["p (Holm)"] = holm(frame["p"].tolist())
        frame["significant"] = np.where(frame["p (Holm)"] < SIGNIFICANCE, "yes", "no")
        frame[["p", "p (Holm)"]] = frame[["p", "p (Holm)"]].map(lambda p: float(f"{p:.3g}"))
        return frame

    def provenance(self) -> pd.DataFrame:
        rows = [{"run": r["run_id"], "mechanism": r["mechanism"], "task": r["task"], "seed": r["seed"],
                 "status": r["status"], "commit": (r["provenance"].get("git_commit") or "")[:10],
                 "dirty": r["provenance"].get("git_dirty"), "device": r["provenance"].get("device"),
                 "torch": r["provenance"].get("torch"), "python": r["provenance"].get("python"),
                 "time": r["provenance"].get("time")}
                for r in self.records]
        return pd.DataFrame(rows)

    def unfinished(self) -> pd.DataFrame:
        return pd.DataFrame([{"run": r["run_id"], "mechanism": r["mechanism"], "task": r["task"], "seed": r["seed"],
                              "status": r["status"], "error": (r.get("error") or "").splitlines()[0]}
                             for r in self.records if r["status"] != "ok"])


def cell_pivot(table: pd.DataFrame, index) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean value per (index, context_len) over seeds, and where any of those cells ran out of memory."""
    values = table.pivot_table(index=index, columns="context_len", values="value", aggfunc="mean", dropna=False)
    out_of_memory = (table.assign(oom=table["status"] == "oom")
                     .pivot_table(index=index, columns="context_len", values="oom", aggfunc="any", dropna=False)
                     .reindex_like(values).fillna(False).astype(bool))
    return values, out_of_memory


def _chance_text(chance: pd.Series) -> str:
    low, high = chance.min(), chance.max()
    return f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g} by cell"


def _interval_text(row) -> str:
    if row.oom:
        return "OOM"
    return f"{row.value:.3f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def leaderboard_markdown(board: Leaderboard, experiment: str) -> str:
    lines = [f"# Leaderboard: {experiment}", "", generated_line(len(board.records)), ""]
    for task in board.tasks:
        table = board.primary(task)
        metric = table["metric"].iloc[0]
        lines += [f"## {task}", "",
                  f"{metric} per context length, mean and 95% interval over the other grid knobs and seeds "
                  f"(chance {_chance_text(table['chance'])}; OOM: out of memory). Effective length: the longest context "
                  f"up to which {metric} stays >= {board.threshold}. Costs are per sequence, measured on one "
                  "example; decode latency is the median per answer token.", "",
                  board.summary(task).to_markdown(), ""]
        detail = board.detail(task)
        if detail is not None:
            detail = detail.rename(columns=lambda length: f"@{length}")
            lines += [f"{metric} by cell (mean over seeds):", "", detail.to_markdown(), ""]
        tests = board.head_to_head(task)
        if not tests.empty:
            lines += [f"Head to head on the same examples (p-values Holm-corrected over {len(tests)} pairs; "
                      f"significant at {SIGNIFICANCE}):", "",
                      tests.to_markdown(index=False), ""]
    unfinished = board.unfinished()
    if not unfinished.empty:
        lines += ["## Runs without results", "", unfinished.to_markdown(index=False), ""]
    return "\n".join(lines)


def generated_line(runs: int) -> str:
    return f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from {runs} stored run(s)."


def write_report(results_dir: Path, reports_dir: Path, experiment: str, threshold: float = DEFAULT_THRESHOLD) -> Path:
    """Regenerate ``<reports_dir>/<experiment>/`` (markdown, CSV, HTML) from the store."""
    from harness.figures import leaderboard_html

    records = load_experiment(results_dir, experiment)
    board = Leaderboard(records, outcomes_frame(results_dir, experiment, records), threshold)
    directory = Path(reports_dir) / experiment
    write_atomic(directory / "leaderboard.md", leaderboard_markdown(board, experiment))
    write_atomic(directory / "leaderboard.csv", board.cells.drop(columns="primary", errors="ignore").to_csv(index=False))
    write_atomic(directory / "index.html", leaderboard_html(board, experiment))
    return directory / "leaderboard.md"
