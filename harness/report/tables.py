"""The tables of one experiment's report, computed from the store alone (see ``harness.report``).

A row is a configuration (``harness.report.runs``). Per task and row, per context length:
the headline metric pooled over the other grid knobs, with an interval that says what it covers
(``harness.report.stats``); OOM, diverged and failed cells are failures: they show as such and count as
the metric's worst value in the ranking and the effective length. Paired tests compare rows of
the same setting on the same test examples, with the difference, its interval, and Holm's
correction over every test of the report.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import pandas as pd

from harness.report.stats import (difference_interval, holm, interval_method, is_binary, paired_seed_test, paired_test,
                           seeds_interval)

#: RULER's effective context length: the longest length up to which the metric stays above this
DEFAULT_THRESHOLD = 0.85
SIGNIFICANCE = 0.05
#: a run that made more than this share of its loss decrease in its last fifth of steps may be under-trained
#: (measured: 0.1-1.7% for runs that had levelled off, 2.7-8.7% for runs stopped early or still improving)
STILL_FALLING = 0.025
#: statuses that are failures, worst first
FAILURES = ("failed", "diverged", "oom")
BY_LENGTH_COLUMNS = ["row", "context_len", "seeds", "mechanism", "beyond_training", "status", "failing_seeds",
                     "value", "ci_low", "ci_high", "method", "seed_min", "seed_max", "n"]


def cells_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, cell, metric) of the complete runs, with the knobs as columns."""
    rows = []
    for run in runs[runs["status"] == "ok"].itertuples():
        record = run.record
        for cell in record["cells"]:
            rows.append({"task": run.task, "row": run.row, "mechanism": run.mechanism, "seed": run.seed,
                         "run_id": run.run_id, "primary": cell["metric"] == record["primary_metric"],
                         **cell["knobs"], **{key: value for key, value in cell.items() if key != "knobs"}})
    return pd.DataFrame(rows)


class Leaderboard:
    """The tables of one experiment's report, computed once; treat what the methods return as read-only."""

    def __init__(self, runs: pd.DataFrame, outcomes: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD):
        self.runs = runs
        self.outcomes = outcomes
        self.threshold = threshold
        self.cells = cells_frame(runs)
        self.tasks = sorted(runs["task"].unique())

    # ---- what a task measures
    def task_runs(self, task: str) -> pd.DataFrame:
        return self.runs[self.runs["task"] == task]

    def has_cells(self, task: str) -> bool:
        """Whether any run of the task stored cells (an experiment of failed runs only has none)."""
        return not self.primary(task).empty

    def primary(self, task: str) -> pd.DataFrame:
        """The cells of the task's headline metric."""
        if self.cells.empty:
            return self.cells
        return self.cells[(self.cells["task"] == task) & self.cells["primary"]]

    def metric(self, task: str) -> str | None:
        records = self.task_runs(task)["record"]
        return next((r["primary_metric"] for r in records if r.get("primary_metric")), None)

    def higher_is_better(self, task: str) -> bool:
        table = self.primary(task)
        return bool(table["higher_is_better"].iloc[0]) if not table.empty else True

    def lengths(self, task: str) -> list[int]:
        table = self.primary(task)
        return sorted(int(length) for length in table["context_len"].unique()) if not table.empty else []

    def chance(self, task: str) -> pd.Series:
        return self.primary(task)["chance"]

    def settings(self, task: str) -> list[str]:
        """The setting columns of a task (keys that vary outside the mechanism options)."""
        fixed = {"task", "row", "label", "setting", "mechanism", "seed", "run_id", "status", "record"}
        runs = self.task_runs(task)
        return [column for column in runs.columns if column not in fixed and runs[column].notna().any()]

    def knobs(self, task: str) -> list[str]:
        """The grid knobs other than context_len that the task's cells carry."""
        table = self.primary(task)
        return sorted(knob for knob in self._stored_knobs(task).keys() - {"context_len"}
                      if knob in table.columns and table[knob].notna().any())

    @functools.cache
    def _stored_knobs(self, task: str) -> dict[str, list[Any]]:
        """Every value of each grid knob in the task's records, as stored (an int stays an int)."""
        values: dict[str, list[Any]] = {}
        for record in self.task_runs(task)["record"]:
            for cell in record.get("cells", []):
                for knob, value in cell["knobs"].items():
                    values.setdefault(knob, []).append(value)
        return values

    # ---- per row and length
    @functools.cache
    def by_length(self, task: str) -> pd.DataFrame:
        """Per (row, context_len): status, mean, interval and its method, seeds, per-seed spread.

        A length is ``ok`` when every seed of the row has every cell there; otherwise its status is
        the worst failure among them (a whole failed or diverged run fails every length).
        """
        table = self.primary(task)
        metric = self.metric(task)
        rows = []
        for run_row, runs in self.task_runs(task).groupby("row", sort=False):
            for length in self.lengths(task):
                cells = table[(table["row"] == run_row) & (table["context_len"] == length)] if not table.empty else table
                statuses = [*runs.loc[runs["status"] != "ok", "status"], *cells.loc[cells["status"] != "ok", "status"]]
                trained = [(r.get("training") or {}).get("context_len") for r in runs["record"]]
                entry = {"row": run_row, "context_len": length, "seeds": len(runs),
                         "mechanism": runs["mechanism"].iloc[0],
                         "beyond_training": any(t is not None and length > t for t in trained)}
                if statuses or cells.empty:
                    failure = min(statuses, key=FAILURES.index) if statuses else "failed"
                    failing = len({*runs.loc[runs["status"] != "ok", "seed"],
                                   *cells.loc[cells["status"] != "ok", "seed"]})
                    rows.append({**entry, "status": failure, "failing_seeds": failing})
                    continue
                rows.append({**entry, "status": "ok", "failing_seeds": 0,
                             **self._interval(task, run_row, length, metric, cells)})
        return pd.DataFrame(rows, columns=BY_LENGTH_COLUMNS)

    def _interval(self, task: str, row: str, length: int, metric: str, cells: pd.DataFrame) -> dict[str, Any]:
        examples = self._examples(task, metric)
        examples = examples[(examples["row"] == row) & (examples["context_len"] == length)] if not examples.empty else examples
        seed_means = cells.groupby("seed")["value"].mean()
        spread = (float(seed_means.min()), float(seed_means.max()))
        if examples.empty:  # no per-example outcomes: the mean alone, no interval
            return {"value": float(seed_means.mean()), "ci_low": np.nan, "ci_high": np.nan, "method": "none",
                    "seed_min": spread[0], "seed_max": spread[1], "n": int(cells["n"].sum())}
        per_seed = [group["value"].to_numpy() for _, group in examples.groupby("seed")]
        value, low, high = seeds_interval(per_seed)
        return {"value": value, "ci_low": low, "ci_high": high,
                "method": interval_method(examples["value"].to_numpy(), len(per_seed)),
                "seed_min": spread[0], "seed_max": spread[1], "n": len(examples)}

    @functools.cache
    def _examples(self, task: str, metric: str) -> pd.DataFrame:
        if self.outcomes.empty:
            return self.outcomes
        return self.outcomes[(self.outcomes["task"] == task) & (self.outcomes["metric"] == metric)]

    def worst(self, task: str) -> float:
        """The value a failure counts as in the ranking: the metric's worst."""
        return 0.0 if self.higher_is_better(task) else np.inf

    @functools.cache
    def scores(self, task: str) -> pd.Series:
        """Per row: the mean over lengths of the headline metric, failures counted as the worst value."""
        lengths = self.by_length(task)
        values = lengths["value"].where(lengths["status"] == "ok", self.worst(task))
        return values.groupby(lengths["row"], sort=False).mean()

    @functools.cache
    def ranking(self, task: str) -> pd.DataFrame:
        """Rows best first, with a rank (ties share it, marked ``=``) and the score they are ranked by."""
        scores = self.scores(task)
        ordered = scores.sort_values(ascending=not self.higher_is_better(task), kind="stable")
        rounded = ordered.round(3)
        ranks = rounded.rank(method="min", ascending=not self.higher_is_better(task)).astype(int)
        tied = rounded.duplicated(keep=False)
        return pd.DataFrame({"rank": [f"{rank}=" if tie else str(rank) for rank, tie in zip(ranks, tied)],
                             "score": ordered})

    @functools.cache
    def effective_length(self, task: str) -> pd.Series:
        """Per row, RULER's effective length as text: the longest length up to which every tested length
        scores strictly above the threshold (failures fail), censored as ``>= L`` and ``< L``."""
        effective = {}
        for row, group in self.by_length(task).sort_values("context_len").groupby("row", sort=False):
            passing = ((group["status"] == "ok") & (group["value"] > self.threshold)).to_numpy()
            lengths = group["context_len"].to_numpy()
            first_failure = int(np.argmin(passing)) if not passing.all() else len(passing)
            if first_failure == len(passing):
                effective[row] = f">= {lengths[-1]}"
            elif first_failure == 0:
                effective[row] = f"< {lengths[0]}"
            else:
                effective[row] = str(lengths[first_failure - 1])
        return pd.Series(effective, name="effective length")

    def row_settings(self, task: str) -> pd.DataFrame:
        """Per row: its label and setting columns."""
        columns = ["label", *self.settings(task)]
        return self.task_runs(task).drop_duplicates("row").set_index("row")[columns]

    # ---- costs and training
    def costs(self, task: str) -> pd.DataFrame:
        """Per row: parameters, and costs at the longest length (medians over seeds and cells)."""
        table = self.primary(task)
        runs = self.task_runs(task)
        frame = pd.DataFrame(index=pd.Index(runs["row"].unique(), name="row"))
        frame["parameters"] = runs.groupby("row")["record"].agg(lambda rs: rs.iloc[0].get("parameters"))
        if not table.empty:
            longest = table[(table["context_len"] == table["context_len"].max()) & (table["status"] == "ok")]
            grouped = longest.groupby("row")
            for column in ("state_bytes", "peak_memory_bytes", "decode_latency_p50_s", "decode_latency_p95_s",
                           "prefill_tokens_per_s", "prefill_tokens_per_s_min", "prefill_tokens_per_s_max"):
                if column in longest.columns:
                    frame[column] = grouped[column].median()
        training = self.training(task)
        frame["train_tokens_per_s"] = training.groupby("row")["tokens_per_s"].median()
        return frame

    @functools.cache
    def training(self, task: str) -> pd.DataFrame:
        """Per run that trained: final loss, tokens/s, its loss curve if stored, and whether it was still falling."""
        rows = []
        for run in self.task_runs(task).itertuples():
            training = run.record.get("training") or {}
            if not training:
                continue
            curve = training.get("curve") or []
            rows.append({"row": run.row, "seed": run.seed, "mechanism": run.mechanism,
                         "final_loss": training.get("final_loss"), "tokens_per_s": training.get("tokens_per_s"),
                         "steps": training.get("steps"), "curve": curve, "late_drop": late_drop(curve),
                         "stop": _stop_text(training)})
        return pd.DataFrame(rows, columns=["row", "seed", "mechanism", "final_loss", "tokens_per_s", "steps",
                                           "curve", "late_drop", "stop"])

    # ---- other knobs
    def detail(self, task: str) -> pd.DataFrame | None:
        """Per (row, other knob values) and length: the mean over seeds, failures by name (None if no knob)."""
        knobs = self.knobs(task)
        table = self.primary(task)
        if not knobs or table.empty:
            return None
        # knobs stored as integers read as integers (their column is float where another task's runs lack them)
        stored = self._stored_knobs(task)
        table = table.astype({knob: "int64" for knob in knobs if table[knob].notna().all()
                              and all(isinstance(v, int) and not isinstance(v, bool) for v in stored[knob])})
        values = table.pivot_table(index=["row", *knobs], columns="context_len", values="value", aggfunc="mean",
                                   dropna=False)
        failed = (table.assign(status=table["status"].where(table["status"] != "ok"))
                  .pivot_table(index=["row", *knobs], columns="context_len", values="status", aggfunc="first")
                  .reindex_like(values))
        shown = values.map(lambda v: "" if pd.isna(v) else f"{v:.3f}").where(failed.isna(),
                                                                             failed.map(lambda s: str(s).upper()))
        order = {row: i for i, row in enumerate(self.ranking(task).index)}
        return shown.reset_index().sort_values("row", key=lambda rows: rows.map(order), kind="stable")

    # ---- head to head
    @functools.cache
    def head_to_head(self) -> pd.DataFrame:
        """Every paired test of the report (all tasks and settings), Holm-corrected together."""
        frames = [self._task_tests(task) for task in self.tasks]
        frame = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
            else pd.DataFrame()
        if frame.empty:
            return frame
        frame["p (Holm)"] = holm(frame["p"].tolist())
        frame["significant"] = np.where(frame["p (Holm)"] < SIGNIFICANCE, "yes", "no")
        return frame

    def tests(self, task: str) -> pd.DataFrame:
        frame = self.head_to_head()
        return frame[frame["task"] == task] if not frame.empty else frame

    def _task_tests(self, task: str) -> pd.DataFrame:
        metric = self.metric(task)
        examples = self._examples(task, metric) if metric else pd.DataFrame()
        if examples.empty:
            return pd.DataFrame()
        keys = ["seed", *[k for k in ["context_len", *self.knobs(task)] if k in examples.columns], "example"]
        rank = {row: i for i, row in enumerate(self.ranking(task).index)}
        runs = self.task_runs(task).drop_duplicates("row").set_index("row")
        rows = []
        for _, group in runs.groupby("setting", sort=False):
            ordered = sorted(group.index, key=rank.get)
            for a, b in itertools.combinations(ordered, 2):
                rows.append(self._pair(task, metric, examples, keys, a, b))
        return pd.DataFrame([row for row in rows if row is not None])

    def _pair(self, task, metric, examples, keys, a, b) -> dict[str, Any] | None:
        one, other = examples[examples["row"] == a], examples[examples["row"] == b]
        paired = one.merge(other, on=keys, suffixes=("_a", "_b"))
        union = pd.concat([one[keys], other[keys]]).drop_duplicates()
        if paired.empty:
            return None
        seeds = sorted(paired["seed"].unique())
        differences = [(g["value_a"] - g["value_b"]).to_numpy() for _, g in paired.groupby("seed")]
        if len(seeds) == 1:
            p = paired_test(paired["value_a"], paired["value_b"])
            binary = is_binary(paired["value_a"]) and is_binary(paired["value_b"])
            test = "mcnemar" if binary else "wilcoxon"
        else:
            p, test = paired_seed_test(differences), "seed t-test"
        difference, low, high = difference_interval(differences)
        return {"task": task, "A": a, "B": b, "seeds": len(seeds), "pairs": len(paired),
                "dropped": len(union) - len(paired), f"{metric} A": paired["value_a"].mean(),
                f"{metric} B": paired["value_b"].mean(), "difference": difference, "diff_low": low, "diff_high": high,
                "test": test, "p": p}

    # ---- budgets
    def budget_sweep(self, task: str) -> pd.DataFrame | None:
        """When the experiment sweeps state budgets: per row, its budget, measured state bytes and score."""
        settings = self.row_settings(task)
        if "budget" not in settings.columns:
            return None
        costs = self.costs(task)
        frame = settings.join(costs[["state_bytes"]] if "state_bytes" in costs.columns else pd.DataFrame(index=costs.index))
        frame["mechanism"] = self.task_runs(task).drop_duplicates("row").set_index("row")["mechanism"]
        frame["score"] = self.scores(task)
        return frame


def late_drop(curve: list[dict[str, Any]]) -> float | None:
    """The share of the training loss's whole decrease (first to last point of the curve) made in the
    last fifth of the steps: near 0 for a run that had levelled off (None without a curve).

    A share of the decrease, not a relative change of the loss: a loss of 0.004 that was 0.013
    has levelled off although it fell by 70%."""
    if len(curve) < 3:
        return None
    steps = np.array([point["step"] for point in curve], dtype=float)
    losses = np.array([point["loss"] for point in curve], dtype=float)
    decrease = losses[0] - losses[-1]
    if decrease <= 0:
        return 0.0
    return float((np.interp(0.8 * steps[-1], steps, losses) - losses[-1]) / decrease)


def _stop_text(training: dict[str, Any]) -> str:
    """What ended a run's training when it was not its last step (harness/engine/train.py): "" otherwise."""
    reason = training.get("stop_reason", "steps")
    if reason == "steps" and not training.get("early_stopping"):
        return ""
    best = (training.get("early_stopping") or {}).get("best_step")
    return f"{reason} at step {training['steps']}" + (f" (weights of step {best})" if best is not None else "")
