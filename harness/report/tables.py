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
from typing import Any

import numpy as np
import pandas as pd

from harness.report.stats import (MIN_SEEDS, Difference, at_level, crossed_interval, detectable_difference, difference,
                           holm_levels, is_bounded, seeds_needed)

#: RULER's effective context length: the longest length up to which the metric stays above this
DEFAULT_THRESHOLD = 0.85
SIGNIFICANCE = 0.05
NOT_MEASURED = "not measured"
#: the score the ceiling (the mechanism with perfect memory) must reach at every trained length for a
#: ranking to speak about memory rather than about how far each mechanism learned the task
CEILING_LEVEL = 0.95
#: the difference whose seed requirement the head-to-head tables state
DIFFERENCE_OF_INTEREST = 0.05
#: a run that made more than this share of its loss decrease in its last fifth of steps may be under-trained
#: (measured: 0.1-1.7% for runs that had levelled off, 2.7-8.7% for runs stopped early or still improving)
STILL_FALLING = 0.025
#: a configuration whose decode latency varies more than this across its seeds has timings too noisy to rank
TIMING_SPREAD = 1.5
#: launchers that run several runs at once on one machine (their timings share the cores)
PARALLEL_LAUNCHERS = ("hydra/launcher=local_parallel", "hydra/launcher=joblib")
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

    def __init__(self, runs: pd.DataFrame, outcomes: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
                 compare: tuple[tuple[str, str], ...] = ()):
        """``compare``: pairs of rows (a row's full name, label, or mechanism) to test in every task that has
        both, beside each row against its task's best."""
        self.runs = runs
        self.compare = tuple(compare)
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

    def row_lengths(self, task: str, planned_lengths) -> list[int]:
        """The task's lengths that a row's runs were to be evaluated at (``planned_lengths``: each run's, a column
        of ``task_runs``): a row of an experiment that sweeps the training length with the evaluation
        (``zoology_mqar``) has no entry, not a failure, at the others."""
        planned = {length for lengths in planned_lengths for length in lengths}
        return [length for length in self.lengths(task) if not planned or length in planned]

    def chance(self, task: str) -> pd.Series:
        return self.primary(task)["chance"]

    def settings(self, task: str) -> list[str]:
        """The setting columns of a task (keys that vary outside the mechanism options)."""
        fixed = {"task", "row", "label", "setting", "mechanism", "seed", "run_id", "status", "record", "ceiling", "planned_lengths"}
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
            for length in self.row_lengths(task, runs["planned_lengths"]):
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
        spread = {"seed_min": float(seed_means.min()), "seed_max": float(seed_means.max())}
        if examples.empty:  # no per-example outcomes: the mean alone, no interval
            return {"value": float(seed_means.mean()), "ci_low": np.nan, "ci_high": np.nan, "method": "none",
                    **spread, "n": int(cells["n"].sum())}
        return {**self._matrix_interval(task, examples), **spread}

    def _matrix_interval(self, task: str, examples: pd.DataFrame) -> dict[str, Any]:
        """Mean and interval of a row's outcomes (the seed x example matrix of ``examples``)."""
        matrix = self._matrix(task, examples)
        seeds = matrix.shape[0]
        if seeds < MIN_SEEDS and seeds > 1 or matrix.shape[1] < 2:
            return {"value": float(matrix.mean()), "ci_low": np.nan, "ci_high": np.nan,
                    "method": "too few seeds" if matrix.shape[1] >= 2 else "none", "n": matrix.size}
        bounded = is_bounded(matrix)
        value, low, high = crossed_interval(matrix, bounded)
        return {"value": float(value), "ci_low": float(low), "ci_high": float(high),
                "method": "logit t" if bounded else "t", "n": matrix.size}

    def _matrix(self, task: str, examples: pd.DataFrame) -> np.ndarray:
        """Outcomes as a seed x example matrix, keeping the examples every seed has."""
        keys = self._example_keys(task, examples)
        return examples.pivot_table(index="seed", columns=keys, values="value", aggfunc="first").dropna(axis=1).to_numpy()

    def _example_keys(self, task: str, examples: pd.DataFrame) -> list[str]:
        """The columns that name one test example: its grid knobs and its index."""
        return [k for k in ["context_len", *self.knobs(task)] if k in examples.columns] + ["example"]

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
    def score_intervals(self, task: str) -> pd.DataFrame:
        """Per row: its score (the mean over lengths) with an interval from the crossed model of all its
        outcomes (every length's examples), when every length is ok; ``method`` says which."""
        metric = self.metric(task)
        examples = self._examples(task, metric) if metric else pd.DataFrame()
        lengths = self.by_length(task)
        rows = {}
        for row, score in self.scores(task).items():
            ok = (lengths.loc[lengths["row"] == row, "status"] == "ok").all()
            mine = examples[examples["row"] == row] if not examples.empty else examples
            if not ok or mine.empty:
                rows[row] = {"value": score, "ci_low": np.nan, "ci_high": np.nan, "method": "failures" if not ok else "none"}
                continue
            rows[row] = {**self._matrix_interval(task, mine), "value": score}
        return pd.DataFrame.from_dict(rows, orient="index")

    @functools.cache
    def seed_scores(self, task: str) -> pd.DataFrame:
        """Per (row, seed): the mean over the row's lengths of that seed's metric, failures as the worst value."""
        table = self.primary(task)
        rows = []
        for run in self.task_runs(task).itertuples():
            cells = table[table["run_id"] == run.run_id] if not table.empty else table
            per_length = []
            for length in self.row_lengths(task, [run.planned_lengths]):
                here = cells[cells["context_len"] == length] if not cells.empty else cells
                failed = run.status != "ok" or here.empty or (here["status"] != "ok").any()
                per_length.append(self.worst(task) if failed else float(here["value"].mean()))
            rows.append({"row": run.row, "seed": run.seed, "score": float(np.mean(per_length)) if per_length else np.nan})
        return pd.DataFrame(rows, columns=["row", "seed", "score"])

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
        scores strictly above the threshold (failures fail), censored as ``>= L`` and ``< L``; ``not measured``
        when every tested length is one the row was trained on (then it says nothing about length)."""
        effective = {}
        for row, group in self.by_length(task).sort_values("context_len").groupby("row", sort=False):
            if not group["beyond_training"].any() and self._trained_lengths_known(task, row):
                effective[row] = NOT_MEASURED
                continue
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

    def _trained_lengths_known(self, task: str, row: str) -> bool:
        runs = self.task_runs(task)
        return all((r.get("training") or {}).get("context_len") is not None for r in runs.loc[runs["row"] == row, "record"])

    def row_settings(self, task: str) -> pd.DataFrame:
        """Per row: its label and setting columns."""
        columns = ["label", *self.settings(task)]
        return self.task_runs(task).drop_duplicates("row").set_index("row")[columns]

    # ---- costs and training
    def costs(self, task: str) -> pd.DataFrame:
        """Per row: parameters, and costs at the row's own longest length, ``cost_length`` (medians over seeds
        and cells): a row of an experiment that sweeps the training length with the evaluation (``zoology_mqar``)
        is measured at its own length, not left blank at the others'."""
        table = self.primary(task)
        runs = self.task_runs(task)
        frame = pd.DataFrame(index=pd.Index(runs["row"].unique(), name="row"))
        frame["parameters"] = runs.groupby("row")["record"].agg(lambda rs: rs.iloc[0].get("parameters"))
        ok = table[table["status"] == "ok"] if not table.empty else table
        if not ok.empty:
            longest = ok[ok["context_len"] == ok.groupby("row")["context_len"].transform("max")]
            grouped = longest.groupby("row")
            frame["cost_length"] = grouped["context_len"].max()
            for column in ("state_bytes", "peak_memory_bytes", "decode_latency_p50_s", "decode_latency_p95_s",
                           "prefill_tokens_per_s", "prefill_tokens_per_s_min", "prefill_tokens_per_s_max"):
                if column in longest.columns:
                    frame[column] = grouped[column].median()
        training = self.training(task)
        frame["train_tokens_per_s"] = training.groupby("row")["tokens_per_s"].median()
        return frame

    @functools.cache
    def at_chance(self, task: str) -> list[str]:
        """Rows that did not learn the task: their score (mean over lengths) is not above chance; with an
        interval, its bound on the good side reaches chance. (The training loss cannot say it: the loss a
        task's chance level corresponds to is not stored.)"""
        chance = float(self.chance(task).median()) if self.has_cells(task) else np.nan
        rows = []
        for row, entry in self.score_intervals(task).iterrows():
            good = entry["ci_low"] if self.higher_is_better(task) else entry["ci_high"]
            good = entry["value"] if pd.isna(good) else good
            if self.higher_is_better(task) and good <= chance or not self.higher_is_better(task) and good >= chance:
                rows.append(row)
        return rows

    @functools.cache
    def ceiling(self, task: str) -> dict[str, Any]:
        """Whether the task's ceiling learned it: its best row's lowest mean score over the trained lengths, in
        each setting (a model width, a training length...) of the experiment, reported for the worst setting.

        ``mechanism``: the experiment's ceiling (config ``ceiling``); ``row``: its best row on the task in the
        worst setting (None if it was not run); ``lowest`` and ``at``: that row's lowest score at a length within
        its training range (None if it has none there); ``reached``: whether that lowest score reaches
        CEILING_LEVEL (None for a lower-is-better metric); a failed length counts as not reached. ``settings``
        and ``settings_reached``: how many settings the ceiling ran in, and in how many it reached the level.
        """
        runs = self.task_runs(task)
        mechanism = runs["ceiling"].mode().iloc[0] if "ceiling" in runs and runs["ceiling"].notna().any() else None
        candidates = runs.loc[runs["mechanism"] == mechanism, ["row", "setting"]].drop_duplicates("row")
        if candidates.empty:
            return {"mechanism": mechanism, "row": None, "lowest": None, "at": None, "reached": False,
                    "settings": 0, "settings_reached": 0}
        scores = self.scores(task)
        sign = 1 if self.higher_is_better(task) else -1
        per_setting = [self._ceiling_row(task, max(rows["row"], key=lambda row: sign * scores.get(row, -sign * np.inf)))
                       for _, rows in candidates.groupby("setting", sort=False)]
        worst = min(per_setting, key=lambda entry: (entry["at"] is not None, entry["reached"] is not False,
                                                    sign * (entry["lowest"] if entry["lowest"] is not None else -sign * np.inf)))
        return {"mechanism": mechanism, **worst, "settings": len(per_setting),
                "settings_reached": sum(entry["reached"] is True for entry in per_setting)}

    def _ceiling_row(self, task: str, row: str) -> dict[str, Any]:
        lengths = self.by_length(task)
        trained = lengths[(lengths["row"] == row) & ~lengths["beyond_training"]]
        result = {"row": row, "lowest": None, "at": None, "reached": False}
        if trained.empty:
            return result
        values = trained["value"].where(trained["status"] == "ok")
        worst = values.isna().any()
        position = (values.fillna(-np.inf).idxmin() if self.higher_is_better(task) else values.fillna(np.inf).idxmax())
        result.update(lowest=None if worst else float(values[position]), at=int(trained.loc[position, "context_len"]))
        result["reached"] = (None if not self.higher_is_better(task)
                             else not worst and result["lowest"] >= CEILING_LEVEL)
        return result

    def timing_warning(self, task: str) -> str | None:
        """Why the task's latencies and throughputs cannot be ranked, if they cannot: runs launched in parallel
        on one machine (their provenance's command line), runs evaluated while the machine's load average
        exceeded its cores (their ``measurement.load``), or one configuration's decode latency varying by more
        than ``TIMING_SPREAD`` x across its seeds at the longest length."""
        runs = self.task_runs(task)
        parallel = sum(any(str(argument).startswith(PARALLEL_LAUNCHERS)
                           for argument in (r.get("provenance") or {}).get("argv") or []) for r in runs["record"])
        loaded = sum(_measured_under_load(r) for r in runs["record"])
        reasons = []
        if parallel:
            reasons.append(f"{parallel} of its {len(runs)} runs were launched in parallel on one machine, so their "
                           "timings shared its cores")
        if loaded:
            reasons.append(f"{loaded} of its {len(runs)} runs were measured while the machine's load average exceeded "
                           "its cores (measurement.load in the record)")
        table = self.primary(task)
        if not table.empty and "decode_latency_p50_s" in table.columns:
            longest = table[(table["context_len"] == table["context_len"].max()) & (table["status"] == "ok")]
            per_seed = longest.groupby(["row", "seed"])["decode_latency_p50_s"].median().groupby("row")
            spread = (per_seed.max() / per_seed.min()).replace([np.inf], np.nan).dropna()
            if not spread.empty and spread.max() > TIMING_SPREAD:
                reasons.append(f"the decode latency of one configuration ({spread.idxmax()}) varies "
                               f"{spread.max():.2f}x across its seeds")
        return "; ".join(reasons) or None

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
        """Per task, each configuration against the task's best of its setting (and the pairs asked for with
        ``compare``), Holm-corrected within the task; each interval at the level Holm decided it at."""
        frames = [frame for frame in (self._task_tests(task) for task in self.tasks) if not frame.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def tests(self, task: str) -> pd.DataFrame:
        frame = self.head_to_head()
        return frame[frame["task"] == task] if not frame.empty else frame

    def resolve(self, task: str, name: str) -> str | None:
        """The task's row called ``name`` (its full name, its label, or its mechanism when that is one row)."""
        runs = self.task_runs(task).drop_duplicates("row")
        for column in ("row", "label", "mechanism"):
            found = runs.loc[runs[column] == name, "row"]
            if len(found) == 1:
                return found.iloc[0]
        return None

    def _pairs(self, task: str) -> list[tuple[str, str, str]]:
        """(A, B, why): the best row of each setting against every other row of it, then the asked-for pairs."""
        rank = {row: i for i, row in enumerate(self.ranking(task).index)}
        runs = self.task_runs(task).drop_duplicates("row").set_index("row")
        pairs = []
        for _, group in runs.groupby("setting", sort=False):
            best, *others = sorted(group.index, key=rank.get)
            pairs += [(best, other, "vs best") for other in others]
        for a, b in self.compare:
            a, b = self.resolve(task, a), self.resolve(task, b)
            if a and b and a != b and (a, b, "vs best") not in pairs and (b, a, "vs best") not in pairs:
                pairs.append((a, b, "asked for"))
        return pairs

    def _task_tests(self, task: str) -> pd.DataFrame:
        metric = self.metric(task)
        examples = self._examples(task, metric) if metric else pd.DataFrame()
        if examples.empty:
            return pd.DataFrame()
        rows = [row for row in (self._pair(task, metric, examples, *pair) for pair in self._pairs(task)) if row]
        if not rows:
            return pd.DataFrame()
        frame = pd.DataFrame(rows)
        tested = frame["p"].notna()
        adjusted, levels = holm_levels(frame.loc[tested, "p"].tolist(), SIGNIFICANCE)
        frame.loc[tested, "p (Holm)"] = adjusted
        frame.loc[tested, "level"] = levels
        significant, bounds, detectable, needed = [], [], [], []
        for entry in frame.itertuples():
            result: Difference | None = entry.result
            if result is None:
                significant.append("too few seeds")
                bounds.append((np.nan, np.nan))
                detectable.append(np.nan)
                needed.append(None)
                continue
            result = at_level(result, entry.level)
            rejected = result.p < entry.level
            significant.append(("yes" if rejected else "no") if entry.seeds >= MIN_SEEDS
                               else ("checkpoints differ" if rejected else "no"))
            # a difference of two metrics in [0, 1] lies in [-1, 1] (clipping keeps the interval's side of 0)
            bounds.append((max(result.low, -1.0), min(result.high, 1.0)) if entry.bounded else (result.low, result.high))
            varies = result.se > 0
            detectable.append(detectable_difference(result.fit, entry.level) if varies else np.nan)
            needed.append(seeds_needed(result.fit, DIFFERENCE_OF_INTEREST, entry.level))
        frame["diff_low"], frame["diff_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
        frame["significant"], frame["detectable"], frame["seeds needed"] = significant, detectable, needed
        return frame.drop(columns=["result", "bounded"])

    def _pair(self, task, metric, examples, a, b, why) -> dict[str, Any] | None:
        """The paired difference A - B over the seeds both have and the examples both have in every such seed."""
        keys = self._example_keys(task, examples)
        one, other = examples[examples["row"] == a], examples[examples["row"] == b]
        seeds = sorted(set(one["seed"]) & set(other["seed"]))
        unshared = len(set(one["seed"]) ^ set(other["seed"]))
        if not seeds:
            return None
        wide = [part[part["seed"].isin(seeds)].pivot_table(index="seed", columns=keys, values="value", aggfunc="first")
                for part in (one, other)]
        union = wide[0].columns.union(wide[1].columns)
        common = wide[0].columns.intersection(wide[1].columns)
        complete = common[(wide[0][common].notna().all() & wide[1][common].notna().all()).to_numpy()]
        if complete.empty:
            return None
        values_a, values_b = (part.loc[seeds, complete].to_numpy() for part in wide)
        matrix = values_a - values_b
        testable = matrix.shape[1] >= 2 and not 1 < len(seeds) < MIN_SEEDS
        result = difference(matrix, SIGNIFICANCE) if testable else None
        return {"task": task, "A": a, "B": b, "why": why, "seeds": len(seeds), "unshared seeds": unshared,
                "pairs": matrix.size, "dropped": len(seeds) * (len(union) - len(complete)),
                f"{metric} A": values_a.mean(), f"{metric} B": values_b.mean(), "difference": matrix.mean(),
                "test": ("difference t-test" if len(seeds) >= MIN_SEEDS else "checkpoint t-test") if result else "none",
                "p": result.p if result else np.nan, "result": result,
                "bounded": is_bounded(values_a) and is_bounded(values_b)}

    # ---- model widths
    def width_sweep(self, task: str) -> pd.DataFrame | None:
        """When the experiment sweeps the model width (the setting ``d_model``, as Zoology's Figure 2): per row,
        its mechanism, width, the other settings (``panel``: one figure each), its score with interval, and its
        measured state bytes (median over its own cells, which a row of one training length has at that length)."""
        settings = self.row_settings(task)
        if "d_model" not in settings.columns:
            return None
        others = [column for column in settings.columns if column not in ("label", "d_model")]
        frame = pd.DataFrame({"mechanism": self.task_runs(task).drop_duplicates("row").set_index("row")["mechanism"],
                              "d_model": settings["d_model"], "label": settings["label"],
                              "panel": settings[others].apply(lambda row: ", ".join(f"{k}={v}" for k, v in row.items()),
                                                              axis=1) if others else ""})
        intervals = self.score_intervals(task)
        frame["score"], frame["score_low"], frame["score_high"] = (intervals[c] for c in ("value", "ci_low", "ci_high"))
        table = self.primary(task)
        if "state_bytes" in table.columns:
            frame["state_bytes"] = table[table["status"] == "ok"].groupby("row")["state_bytes"].median()
        return frame

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


def _measured_under_load(record: dict[str, Any]) -> bool:
    """Whether a run's timings were taken while more processes were runnable than the machine has cores, beyond
    the run's own data workers (their load lingers in the 1-minute average after training)."""
    load = (record.get("measurement") or {}).get("load")
    if not load:
        return False
    return max(load["loadavg_1min_before"], load["loadavg_1min_after"]) > load["cpus"] + load.get("data_workers", 0)


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
