"""The report's tables as a reader sees them, and the text that explains them, shared by markdown and HTML.

Numbers carry units (KiB/MiB, k tokens/s, ms), p-values three significant digits, failures
their name (OOM, DIVERGED, FAILED), ranks their ties (``2=``).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from harness.report.tables import SIGNIFICANCE, STILL_FALLING, Leaderboard
from harness.report.stats import CONFIDENCE, METHODS


def bytes_text(value) -> str:
    if value is None or pd.isna(value):
        return ""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{int(value)} B"


def rate_text(value) -> str:
    """Tokens per second: ``29.3k``."""
    if value is None or pd.isna(value):
        return ""
    return f"{value / 1e3:.3g}k" if value >= 1e3 else f"{value:.3g}"


def p_text(value: float) -> str:
    return "< 1e-300" if value == 0 else f"{value:.3g}"


def value_text(value: float) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.3f}"


NO_CELLS = "No run of this task stored results: see the runs without results below."
#: marks a length longer than the row was trained on
BEYOND_TRAINING = "*"


def cell_text(entry) -> str:
    """A (row, length) entry: ``0.958 [0.90, 0.98]``, or its failure with the seeds it struck; a
    length beyond training is marked ``*``."""
    mark = BEYOND_TRAINING if entry.get("beyond_training") else ""
    if entry["status"] != "ok":
        seeds = f" ({entry['failing_seeds']} of {entry['seeds']} seeds)" if entry["seeds"] > 1 else ""
        return f"{entry['status'].upper()}{seeds}{mark}"
    if pd.isna(entry["ci_low"]):
        return value_text(entry["value"]) + mark
    return f"{entry['value']:.3f} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]{mark}"


def accuracy_table(board: Leaderboard, task: str) -> pd.DataFrame:
    """Rank, configuration, settings, the metric at each length, effective length, seeds and their spread."""
    metric = board.metric(task)
    ranking = board.ranking(task)
    lengths = board.by_length(task)
    shown = lengths.assign(text=[cell_text(entry) for _, entry in lengths.iterrows()]).pivot(
        index="row", columns="context_len", values="text")
    shown.columns = [f"{metric} @{length}" for length in shown.columns]
    settings = _formatted(board.row_settings(task))
    table = pd.DataFrame({"rank": ranking["rank"]}).join(settings.rename(columns={"label": "configuration"}))
    table = table.join(shown).join(board.effective_length(task))
    seeds = lengths.groupby("row")["seeds"].max()
    table["seeds"] = seeds
    spread = lengths[lengths["status"] == "ok"].groupby("row").agg(low=("seed_min", "min"), high=("seed_max", "max"))
    if seeds.max() > 1:
        table["seed means"] = [f"{spread.loc[row, 'low']:.2f}..{spread.loc[row, 'high']:.2f}"
                               if row in spread.index and seeds[row] > 1 else "" for row in table.index]
    return table.reset_index(drop=True)


def _formatted(settings: pd.DataFrame) -> pd.DataFrame:
    """Setting columns as a reader reads them: a state budget in KiB/MiB."""
    return settings.assign(**({"budget": settings["budget"].map(bytes_text)} if "budget" in settings.columns else {}))


def cost_table(board: Leaderboard, task: str) -> pd.DataFrame:
    """Per configuration: parameters and costs at the longest length, training speed and final loss."""
    costs = board.costs(task)
    longest = max(board.lengths(task), default=None)
    ranking = board.ranking(task)
    training = board.training(task)
    final_loss = training.groupby("row")["final_loss"].mean()
    late = training.groupby("row")["late_drop"].max()
    table = pd.DataFrame(index=ranking.index)
    table["configuration"] = board.row_settings(task)["label"]
    table["parameters"] = costs["parameters"].map(lambda n: f"{n / 1e3:.1f}k" if pd.notna(n) else "")
    table[f"state @{longest}"] = costs.get("state_bytes", pd.Series(dtype=float)).map(bytes_text)
    table[f"peak memory @{longest}"] = costs.get("peak_memory_bytes", pd.Series(dtype=float)).map(bytes_text)
    table[f"decode ms/token @{longest}"] = [_latency_text(costs, row) for row in table.index]
    table["prefill tokens/s"] = [_prefill_text(costs, row) for row in table.index]
    table["train tokens/s"] = costs["train_tokens_per_s"].map(rate_text)
    table["final loss"] = [f"{final_loss[row]:.3f}" if row in final_loss.index and pd.notna(final_loss[row]) else ""
                           for row in table.index]
    table["training"] = [_training_flag(late.get(row)) for row in table.index]
    if training["stop"].astype(bool).any():  # a token budget or early stopping ended some training
        stops = training.groupby("row")["stop"].agg(lambda stop: "; ".join(text for text in stop if text))
        table["stopped"] = [stops.get(row, "") for row in table.index]
    return table.reindex(ranking.index).reset_index(drop=True).fillna("")


def _latency_text(costs: pd.DataFrame, row: str) -> str:
    if "decode_latency_p50_s" not in costs.columns or pd.isna(costs.loc[row, "decode_latency_p50_s"]):
        return ""
    text = f"{costs.loc[row, 'decode_latency_p50_s'] * 1e3:.3g}"
    p95 = costs.loc[row].get("decode_latency_p95_s")
    return f"{text} (p95 {p95 * 1e3:.3g})" if p95 is not None and pd.notna(p95) else text


def _prefill_text(costs: pd.DataFrame, row: str) -> str:
    if "prefill_tokens_per_s" not in costs.columns:
        return ""
    text = rate_text(costs.loc[row, "prefill_tokens_per_s"])
    low, high = (costs.loc[row].get(f"prefill_tokens_per_s_{end}") for end in ("min", "max"))
    if low is not None and pd.notna(low) and pd.notna(high):
        text += f" ({rate_text(low)}..{rate_text(high)})"
    return text


def _training_flag(drop) -> str:
    if drop is None or pd.isna(drop):
        return ""
    return (f"loss still falling ({drop:.0%} of its decrease in the last fifth): may be under-trained"
            if drop > STILL_FALLING else "")


def tuning_table(board: Leaderboard, task: str) -> pd.DataFrame | None:
    """Per tuned configuration: the validation score of each learning rate of its grid, and the chosen rate."""
    rows = {}
    for run in board.task_runs(task).itertuples():
        tuning = run.record.get("tuning")
        if tuning and run.row not in rows:
            rows[run.row] = {"configuration": run.row,
                             **{f"lr={trial['lr']:g}": value_text(trial["validation_score"])
                                if trial["validation_score"] is not None else str(trial["status"]).upper()
                                for trial in tuning["trials"]},
                             "chosen lr": chosen_rate_text(tuning), "tuning seed": tuning["seed"]}
    return pd.DataFrame(list(rows.values())).fillna("") if rows else None


def chosen_rate_text(tuning: dict[str, Any]) -> str:
    """The chosen rate, flagged when it is an end of the grid and scored better on validation than the
    rate next to it (or that rate's tuning run failed): the best rate may lie outside the grid."""
    chosen, rates = tuning["chosen_lr"], sorted(set(tuning["lr_grid"]))
    text = f"{chosen:g}"
    if len(rates) < 2 or chosen not in (rates[0], rates[-1]):
        return text
    scores = {trial["lr"]: trial["validation_score"] for trial in tuning["trials"]}
    neighbour = rates[1] if chosen == rates[0] else rates[-2]
    if scores.get(chosen) is None or not math.isfinite(scores[chosen]) or (
            scores.get(neighbour) is not None and round(scores[chosen], 12) <= round(scores[neighbour], 12)):
        return text  # chosen on the training loss among equal scores, or by default: no evidence of a trend
    return f"{text} (the grid's {'lowest' if chosen == rates[0] else 'highest'})"


def tuning_note(board: Leaderboard, task: str) -> str:
    return (f"Learning rates chosen on validation examples (drawn with a seed the test set never uses), one tuning "
            f"run per rate with the tuning seed; the highest mean validation {board.metric(task)} wins, ties to the "
            "lower final training loss. The rows above are then trained at the chosen rate with each seed and "
            "evaluated on the test set. A chosen rate marked as the grid's lowest or highest scored better than the "
            "rate next to it (or that rate's run failed): the grid may not bracket the best rate, and a wider one "
            "may find a better rate.")


def detail_table(board: Leaderboard, task: str) -> pd.DataFrame | None:
    detail = board.detail(task)
    if detail is None:
        return None
    labels = board.row_settings(task)["label"]
    settings = board.settings(task)
    detail = detail.copy()
    detail.insert(0, "configuration", detail["row"].map(labels))
    for position, column in enumerate(settings, start=1):
        detail.insert(position, column, detail["row"].map(_formatted(board.row_settings(task))[column]))
    detail = detail.drop(columns="row").rename(columns=lambda c: f"@{c}" if isinstance(c, (int, np.integer)) else c)
    return detail.reset_index(drop=True)


def tests_table(board: Leaderboard, task: str) -> pd.DataFrame:
    tests = board.tests(task)
    if tests.empty:
        return tests
    metric = board.metric(task)
    labels = board.row_settings(task)["label"]
    table = pd.DataFrame({
        "A": tests["A"].map(labels), "B": tests["B"].map(labels),
        **({"setting": tests["A"].map(board.task_runs(task).drop_duplicates("row").set_index("row")["setting"])}
           if board.settings(task) else {}),
        "seeds": tests["seeds"], "pairs": tests["pairs"], "dropped": tests["dropped"],
        f"{metric} A": tests[f"{metric} A"].map(value_text), f"{metric} B": tests[f"{metric} B"].map(value_text),
        "A - B [95%]": [f"{d:+.3f} [{low:+.2f}, {high:+.2f}]"
                        for d, low, high in zip(tests["difference"], tests["diff_low"], tests["diff_high"])],
        "test": tests["test"], "p": tests["p"].map(p_text), "p (Holm)": tests["p (Holm)"].map(p_text),
        "significant": tests["significant"],
    })
    return table.reset_index(drop=True)


def headline_table(board: Leaderboard) -> pd.DataFrame:
    """Configurations x each task's headline metric at its longest length and its effective length.

    A learning rate chosen by tuning is chosen per task: a configuration tuned on several tasks is one
    row here, its rate named in each task's cell, rather than one row per rate with gaps."""
    columns, order = {}, []
    for task in board.tasks:
        lengths = board.by_length(task)
        if lengths.empty:
            continue
        untuned = _without_tuned_rate(board, task)
        longest = int(lengths["context_len"].max())
        at_longest = lengths[lengths["context_len"] == longest].set_index("row")
        columns[f"{task}: {board.metric(task)} @{longest}"] = pd.Series(
            {untuned[row][0]: cell_text(entry) + untuned[row][1] for row, entry in at_longest.iterrows()})
        columns[f"{task}: effective length"] = board.effective_length(task).rename(lambda row: untuned[row][0])
        order += [untuned[row][0] for row in board.ranking(task).index]
    table = pd.DataFrame(columns).reindex(list(dict.fromkeys(order)))
    table.index.name = "configuration"
    return table.fillna("not run").reset_index()


def _without_tuned_rate(board: Leaderboard, task: str) -> dict[str, tuple[str, str]]:
    """Each row of ``task``: (its name without the tuned learning rate, ' at lr=X'), or (its name, '')
    when it was not tuned or another row of the task would get the same name."""
    stripped = {}
    for run in board.task_runs(task).itertuples():
        tuning = run.record.get("tuning")
        rate = f"lr={tuning['chosen_lr']}" if tuning else None
        if rate in run.row.split(" "):
            stripped[run.row] = (" ".join(part for part in run.row.split(" ") if part != rate), f" at {rate}")
    rows = list(dict.fromkeys(board.task_runs(task)["row"]))
    names = Counter([stripped.get(row, (row, ""))[0] for row in rows])
    return {row: stripped[row] if row in stripped and names[stripped[row][0]] == 1 else (row, "") for row in rows}


def budget_table(board: Leaderboard, task: str) -> pd.DataFrame | None:
    sweep = board.budget_sweep(task)
    if sweep is None:
        return None
    sweep = sweep.dropna(subset=["budget"])
    table = sweep.pivot_table(index="mechanism", columns="budget", values="score", aggfunc="max")
    table.columns = [f"budget {bytes_text(budget)}" for budget in table.columns]
    return table.map(lambda score: "not stored" if pd.isna(score) else f"{score:.3f}").reset_index()


def _chance_text(chance: pd.Series) -> str:
    low, high = chance.min(), chance.max()
    return f"{low:.3g}" if low == high else f"{low:.3g} to {high:.3g} by cell"


def how_to_read(board: Leaderboard) -> list[str]:
    return [
        "How to read this report. A row is a configuration: a mechanism with the options that vary in this "
        "experiment (its settings, such as a state budget, are columns). Rows are ranked by the headline metric "
        "averaged over the tested context lengths, with out-of-memory (OOM), diverged and failed runs counted as "
        "the metric's worst value; equal scores (to 3 decimals) share a rank, marked '='.",
        f"Intervals are {CONFIDENCE:.0%} intervals. With 1 seed they cover evaluation noise only (which test examples "
        "were drawn), not training variance: another training seed can move a score by more than its interval. "
        "With several seeds they cover both. Paired tests compare rows of the same setting on the same test "
        f"examples; p-values are Holm-corrected over every test in this report (significant at {SIGNIFICANCE}).",
    ]


def task_notes(board: Leaderboard, task: str) -> list[str]:
    """What the task's tables show and how their numbers were made."""
    metric = board.metric(task)
    lengths = board.by_length(task)
    seeds = sorted(lengths["seeds"].unique()) if not lengths.empty else []
    methods = sorted(set(lengths.get("method", pd.Series(dtype=str)).dropna()) - {"none"})
    interval = "; ".join(f"{name}: {METHODS[name]}" for name in methods) or "none (no per-example outcomes stored)"
    seed_words = ("1 seed per configuration: intervals and tests cover evaluation noise only, training variance is "
                  "not measured" if seeds == [1] else
                  f"{'/'.join(map(str, seeds))} seeds per configuration: intervals include training variance")
    notes = [
        f"{metric} per context length, pooled over the other grid knobs, with its {CONFIDENCE:.0%} interval "
        f"({interval}). {seed_words}. Chance: {_chance_text(board.chance(task))}.",
        f"Effective length (RULER): the longest tested length up to which {metric} stays strictly above "
        f"{board.threshold} at every tested length; '>= L' means the longest tested length passes (the true "
        "value may be longer), '< L' that the shortest fails.",
    ]
    if seeds and max(seeds) > 1:
        notes.append("Seed means: the lowest and highest mean of a single seed, a spread, not an interval.")
    if not lengths.empty and lengths["beyond_training"].any():
        notes.append(f"{BEYOND_TRAINING} a length beyond the longest the configuration was trained on "
                     "(length extrapolation).")
    notes += corpus_notes(board, task)
    return notes


def corpus_notes(board: Leaderboard, task: str) -> list[str]:
    """The background corpora the task's runs name in their records (``provenance.data``)."""
    corpora = Counter()
    for record in board.task_runs(task)["record"]:
        data = (record.get("provenance") or {}).get("data") or {}
        if "corpus" in data:
            corpora[(data["corpus"], data["corpus_words"])] += 1
    return [f"Background text of {count} run(s): {corpus}, {words} words; a longer background repeats it."
            for (corpus, words), count in sorted(corpora.items())]


def cost_notes(board: Leaderboard, task: str) -> list[str]:
    return [
        "Costs per sequence at the longest length (median over its cells and seeds): state = bytes of the "
        "mechanism's state after reading the example; peak memory = tensor memory allocated while reading it "
        "(weights excluded); decode = time per answer token after the prefill, median and 95th percentile; "
        "prefill = tokens/s reading the context, median (range) over repeated passes. Times depend on the machine "
        "and its load (this report's runs name their device in the provenance): compare them between rows of one "
        "report, not with other machines, and distrust small differences at short lengths, where fixed overheads "
        "dominate.",
        f"Final loss: mean training loss over the last tenth of the steps. A run that made more than "
        f"{STILL_FALLING:.1%} of its loss decrease in its last fifth of training is flagged as possibly under-trained.",
    ]


def test_notes(board: Leaderboard, task: str) -> list[str]:
    tests = board.tests(task)
    if tests.empty:
        return []
    used = sorted(set(tests["test"]))
    dropped = int(tests["dropped"].sum())
    notes = ["Head to head on the same test examples, within each setting. A - B: the mean paired difference with "
             f"its {CONFIDENCE:.0%} bootstrap interval (over examples with 1 seed, over seeds then examples with more). "
             + " ".join(f"{name}: {METHODS[name]}." for name in used)]
    if "mcnemar" in used or "wilcoxon" in used:
        notes.append("A test on 1 seed compares two trained checkpoints, not two mechanisms: it says nothing of "
                     "what another training seed would give.")
    if dropped:
        notes.append(f"{dropped} example pair(s) dropped because one side has no outcome there (OOM, diverged or "
                     "failed); the ranking above counts those as failures.")
    return notes


def training_note(board: Leaderboard, task: str) -> str | None:
    flagged = board.training(task)
    flagged = flagged[flagged["late_drop"].fillna(0) > STILL_FALLING]
    if flagged.empty:
        return None
    return (f"{len(flagged)} run(s) may be under-trained (loss still falling at the end): "
            + ", ".join(f"{row} seed {seed}" for row, seed in zip(flagged["row"], flagged["seed"])) + ".")


def methods_text() -> str:
    return "Statistical methods: " + "; ".join(f"{value}" for value in METHODS.values()) + "."

