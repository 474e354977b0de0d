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

from harness.report import summary
from harness.report.tables import CEILING_LEVEL, DIFFERENCE_OF_INTEREST, SIGNIFICANCE, STILL_FALLING, Leaderboard
from harness.report.stats import CONFIDENCE, METHODS, MIN_SEEDS


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


def bounds_text(low: float, high: float, signed: bool = False) -> str:
    """``[0.90, 0.98]``: 2 decimals rounded outwards (low down, high up), so a point printed with 3 decimals
    inside the interval stays inside the printed one (0.999 [0.99, 1.00], never [1.00, 1.00])."""
    sign = "+" if signed else ""
    low, high = math.floor(round(low * 100, 9)) / 100, math.ceil(round(high * 100, 9)) / 100
    return f"[{low:{sign}.2f}, {high:{sign}.2f}]"


def interval_text(value: float, low: float, high: float, signed: bool = False) -> str:
    return f"{value:{'+' if signed else ''}.3f} {bounds_text(low, high, signed)}"


def cell_text(entry) -> str:
    """A (row, length) entry: ``0.958 [0.90, 0.98]``, or its failure with the seeds it struck; a
    length beyond training is marked ``*``; with 2 seeds no interval (none holds its coverage)."""
    mark = BEYOND_TRAINING if entry.get("beyond_training") else ""
    if entry["status"] != "ok":
        seeds = f" ({entry['failing_seeds']} of {entry['seeds']} seeds)" if entry["seeds"] > 1 else ""
        return f"{entry['status'].upper()}{seeds}{mark}"
    if entry.get("method") == "too few seeds":
        return f"{value_text(entry['value'])} (no interval: {entry['seeds']} seeds){mark}"
    if pd.isna(entry["ci_low"]):
        return value_text(entry["value"]) + mark
    return interval_text(entry["value"], entry["ci_low"], entry["ci_high"]) + mark


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
    """Per configuration: parameters and costs at its longest length, training speed and final loss."""
    costs = board.costs(task)
    lengths = costs.get("cost_length", pd.Series(dtype=float)).dropna().unique()
    at = f"@{int(lengths[0])}" if len(lengths) == 1 else "@its longest"
    ranking = board.ranking(task)
    training = board.training(task)
    final_loss = training.groupby("row")["final_loss"].mean()
    late = training.groupby("row")["late_drop"].max()
    table = pd.DataFrame(index=ranking.index)
    table["configuration"] = board.row_settings(task)["label"]
    table["parameters"] = costs["parameters"].map(lambda n: f"{n / 1e3:.1f}k" if pd.notna(n) else "")
    if len(lengths) > 1:
        table["longest"] = costs["cost_length"].map(lambda length: f"{length:.0f}" if pd.notna(length) else "")
    table[f"state {at}"] = costs.get("state_bytes", pd.Series(dtype=float)).map(bytes_text)
    table[f"peak memory {at}"] = costs.get("peak_memory_bytes", pd.Series(dtype=float)).map(bytes_text)
    table[f"decode ms/token {at}"] = [_latency_text(costs, row) for row in table.index]
    table["prefill tokens/s"] = [_prefill_text(costs, row) for row in table.index]
    table["train tokens/s"] = costs["train_tokens_per_s"].map(rate_text)
    table["final loss"] = [f"{final_loss[row]:.3f}" if row in final_loss.index and pd.notna(final_loss[row]) else ""
                           for row in table.index]
    at_chance = board.at_chance(task)
    table["training"] = ["; ".join(flag for flag in (f"did not learn: {board.metric(task)} not above chance"
                                                     if row in at_chance else "", _training_flag(late.get(row))) if flag)
                         for row in table.index]
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
                             "chosen lr": chosen_rate_text(tuning, _examples_scored(run.record)),
                             "tuning seed": tuning["seed"]}
    return pd.DataFrame(list(rows.values())).fillna("") if rows else None


def _examples_scored(record: dict[str, Any]) -> int | None:
    """The examples a run scored on its headline metric (its validation runs score as many)."""
    counts = [cell.get("n") or 0 for cell in record.get("cells", []) if cell["metric"] == record.get("primary_metric")]
    return sum(counts) or None


def chosen_rate_text(tuning: dict[str, Any], examples: int | None = None) -> str:
    """The chosen rate, flagged when it is an end of the grid and scored better on validation than the
    rate next to it (or that rate's tuning run failed): the best rate may lie outside the grid.

    With ``examples`` (validation examples per rate), "better" means by more than noise: more than 1.96
    standard errors of the difference of two proportions on that many examples (Newcombe 1998's
    Wald form), so 0.995 against 0.990 on 288 examples is no trend."""
    chosen, rates = tuning["chosen_lr"], sorted(set(tuning["lr_grid"]))
    text = f"{chosen:g}"
    if len(rates) < 2 or chosen not in (rates[0], rates[-1]):
        return text
    scores = {trial["lr"]: trial["validation_score"] for trial in tuning["trials"]}
    neighbour = rates[1] if chosen == rates[0] else rates[-2]
    if scores.get(chosen) is None or not math.isfinite(scores[chosen]) or (
            scores.get(neighbour) is not None and round(scores[chosen], 12) <= round(scores[neighbour], 12)):
        return text  # chosen on the training loss among equal scores, or by default: no evidence of a trend
    if examples and scores.get(neighbour) is not None and _within_noise(scores[chosen], scores[neighbour], examples):
        return text
    return f"{text} (the grid's {'lowest' if chosen == rates[0] else 'highest'})"


def _within_noise(a: float, b: float, examples: int) -> bool:
    if not (0 <= a <= 1 and 0 <= b <= 1):
        return False
    standard_error = math.sqrt((a * (1 - a) + b * (1 - b)) / examples)
    return abs(a - b) <= 1.96 * max(standard_error, 1 / examples)


def tuning_note(board: Leaderboard, task: str) -> str:
    return (f"Learning rates chosen on validation examples (drawn with a seed the test set never uses), one tuning "
            f"run per rate with the tuning seed; the highest mean validation {board.metric(task)} wins, ties to the "
            "lower final training loss. The rows above are then trained at the chosen rate with each seed and "
            "evaluated on the test set. A chosen rate marked as the grid's lowest or highest scored better than the "
            "rate next to it by more than noise (1.96 standard errors of a difference of two proportions on the "
            "validation examples), or that rate's run failed: the grid may not bracket the best rate, and a wider one "
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
        "A": tests["A"].map(labels), "B": tests["B"].map(labels), "comparison": tests["why"],
        **({"setting": tests["A"].map(board.task_runs(task).drop_duplicates("row").set_index("row")["setting"])}
           if board.settings(task) else {}),
        "seeds": tests["seeds"], "pairs": tests["pairs"],
        f"{metric} A": tests[f"{metric} A"].map(value_text), f"{metric} B": tests[f"{metric} B"].map(value_text),
        "A - B [interval]": [_difference_text(entry) for entry in tests.to_dict("records")],
        "level": [f"{1 - level:.2%}" if pd.notna(level) else "" for level in tests["level"]],
        "p": tests["p"].map(lambda p: p_text(p) if pd.notna(p) else ""),
        "p (Holm)": tests["p (Holm)"].map(lambda p: p_text(p) if pd.notna(p) else ""),
        "significant": tests["significant"],
        "detectable (80%)": tests["detectable"].map(_detectable_text),
        f"seeds for {DIFFERENCE_OF_INTEREST:g}": [_seeds_needed_text(entry) for entry in tests.to_dict("records")],
    })
    return table.reset_index(drop=True)


def _difference_text(entry: dict) -> str:
    if pd.isna(entry["diff_low"]):
        return f"{entry['difference']:+.3f} (no interval)"
    return interval_text(entry["difference"], entry["diff_low"], entry["diff_high"], signed=True)


def _detectable_text(detectable: float) -> str:
    """The smallest detectable difference; beyond 1 (more than a metric in [0, 1] can differ by) as '> 1'."""
    if pd.isna(detectable):
        return ""
    return "> 1" if detectable > 1 else f"{detectable:.3f}"


def _seeds_needed_text(entry: dict) -> str:
    """How many seeds a difference of DIFFERENCE_OF_INTEREST needs at 80% power, on these examples."""
    if entry["seeds"] < MIN_SEEDS or pd.isna(entry["detectable"]):
        return ""
    needed = entry["seeds needed"]
    return "more examples" if needed is None or pd.isna(needed) else str(int(needed))


def headline_names(board: Leaderboard) -> dict[str, dict[str, str]]:
    """Per task and row: the configuration's name across tasks (without a per-task tuned rate)."""
    return {task: {row: name for row, (name, _) in _without_tuned_rate(board, task).items()} for task in board.tasks}


def headline_table(board: Leaderboard) -> pd.DataFrame:
    """Configurations x tasks, ordered by the interquartile mean of their normalised scores over tasks x seeds.

    Per task: the score the task ranks by (the headline metric averaged over the tested lengths) with its
    interval and rank in the task, and the effective length. A learning rate chosen by tuning is chosen
    per task: a configuration tuned on several tasks is one row here, its rate named in each task's cell."""
    columns = {}
    names = headline_names(board)
    frame = summary.normalised_scores(board, names)
    aggregate = summary.aggregates(frame)
    if not aggregate.empty:
        top = aggregate.index[0]
        columns["normalised IQM"] = aggregate["iqm"].map(value_text)
        columns["normalised mean"] = aggregate["mean"].map(value_text)
        columns[f"P({top} > row)"] = pd.Series({c: "" if c == top else
                                                f"{summary.probability_of_improvement(frame, top, c):.2f}"
                                                for c in aggregate.index})
    for task in board.tasks:
        if board.by_length(task).empty:
            continue
        untuned = _without_tuned_rate(board, task)
        intervals = board.score_intervals(task)
        ranks = board.ranking(task)["rank"]
        columns[f"{task}: {board.metric(task)}, mean over lengths"] = pd.Series(
            {untuned[row][0]: f"{_score_text(entry)} (#{ranks[row]}){untuned[row][1]}"
             for row, entry in intervals.iterrows()})
        columns[f"{task}: effective length"] = board.effective_length(task).rename(lambda row: untuned[row][0])
    order = [*aggregate.index, *sorted({name for task in names.values() for name in task.values()} - set(aggregate.index))]
    table = pd.DataFrame(columns).reindex(order)
    table.index.name = "configuration"
    return table.fillna("not run").reset_index()


def _score_text(entry) -> str:
    if entry["method"] == "too few seeds":
        return f"{value_text(entry['value'])} (no interval)"
    if pd.isna(entry["ci_low"]):
        return value_text(entry["value"])
    return interval_text(entry["value"], entry["ci_low"], entry["ci_high"])


def headline_notes(board: Leaderboard) -> list[str]:
    frame = summary.normalised_scores(board, headline_names(board))
    if frame.empty:
        return []
    return [f"Rows are ordered by the interquartile mean (IQM) of their normalised scores over {frame['task'].nunique()} "
            "task(s) x seeds: a seed's score on a task is its headline metric averaged over the tested lengths "
            "(failures as the worst value), normalised as (score - chance) / (best possible - chance): 0 is chance, 1 "
            "perfect. The IQM and the mean have no interval: a bootstrap over a few seeds per task covers about 80% "
            "at a nominal 95% (3 seeds, 2 tasks), so they describe, and the per-task scores carry the calibrated "
            "intervals. P(top > row): the probability that a seed of the top "
            "configuration outscores a seed of the row on a task, averaged over tasks (0.5: no difference). Only "
            "configurations run on every task are summarised. Per task: the score the task ranks by, with its "
            f"{CONFIDENCE:.0%} interval and the row's rank in the task (#k)."]


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
        f"Intervals are {CONFIDENCE:.0%} intervals from one model of the design: every seed is tested on the same "
        "examples, so seeds and examples are crossed random effects. With 1 seed they cover evaluation noise only "
        "(which test examples were drawn), not training variance: another training seed can move a score by more "
        f"than its interval. With {MIN_SEEDS} or more seeds they cover both; with 2 seeds no interval is printed. "
        "Paired tests compare rows of the same setting on the same test examples, each configuration against the "
        f"best of its task; p-values are Holm-corrected within each task (significant at {SIGNIFICANCE}).",
    ]


def ceiling_notes(board: Leaderboard) -> list[str]:
    """Per task, whether the ceiling learned it within its training lengths, and what the ranking then measures."""
    notes = []
    for task in board.tasks:
        ceiling = board.ceiling(task)
        name = ceiling["mechanism"] or "the ceiling"
        if ceiling["row"] is None:
            notes.append(f"Ceiling, {task}: {name} was not run on this task, so nothing shows that the task can be "
                         "learned at this budget: read the ranking as how far each mechanism learned, not as what its "
                         "memory can hold.")
        elif ceiling["at"] is None:
            notes.append(f"Ceiling, {task}: {ceiling['row']} was tested at no length within its training lengths, so "
                         "nothing shows it learned the task: read the ranking as how far each mechanism learned.")
        elif ceiling["reached"] is None:
            notes.append(f"Ceiling, {task}: {ceiling['row']} is the ceiling; its metric is lower-is-better, which no "
                         "fixed level judges.")
        elif ceiling["reached"]:
            who = (f"{name} (its best row in each of its {ceiling['settings']} settings)" if ceiling["settings"] > 1
                   else ceiling["row"])
            lowest = f"{ceiling['row']}: " if ceiling["settings"] > 1 else ""
            notes.append(f"Ceiling, {task}: {who} reached {CEILING_LEVEL} at every trained length (lowest "
                         f"{lowest}{ceiling['lowest']:.3f} at {ceiling['at']} tokens): the task is learned at this "
                         "budget, so a mechanism below it falls short in memory or in learning.")
        else:
            lowest = ("failed" if ceiling["lowest"] is None else f"{ceiling['lowest']:.3f}")
            if ceiling["settings"] > 1:
                missed = ceiling["settings"] - ceiling["settings_reached"]
                notes.append(f"Ceiling, {task}: {name} did NOT reach {CEILING_LEVEL} at every trained length in "
                             f"{missed} of its {ceiling['settings']} settings (lowest {ceiling['row']}: {lowest} at "
                             f"{ceiling['at']} tokens): in those settings the ranking measures how far each mechanism "
                             "learned the task at this budget, not what its memory can hold.")
            else:
                notes.append(f"Ceiling, {task}: {ceiling['row']} did NOT reach {CEILING_LEVEL} at every trained length "
                             f"({lowest} at {ceiling['at']} tokens): the ranking measures how far each mechanism learned "
                             "the task at this budget, not what its memory can hold.")
    return notes


def seeds_text(board: Leaderboard, task: str) -> str:
    """What the intervals of a task cover, row by row when seed counts differ."""
    lengths = board.by_length(task)
    counts = lengths.drop_duplicates("row").set_index("row")["seeds"] if not lengths.empty else pd.Series(dtype=int)
    words = {1: "1 seed: the interval covers evaluation noise only (which test examples were drawn), not training "
                "variance",
             2: f"2 seeds: no interval (with fewer than {MIN_SEEDS} seeds no method held its coverage in simulation)"}
    groups = counts.groupby(counts).groups
    parts = []
    for count, rows in sorted(groups.items()):
        text = words.get(count, f"{count} seeds: the interval covers training variance and evaluation noise")
        parts.append(text if len(groups) == 1 else f"{text} ({', '.join(rows)})")
    return "; ".join(parts)


def task_notes(board: Leaderboard, task: str) -> list[str]:
    """What the task's tables show and how their numbers were made."""
    metric = board.metric(task)
    lengths = board.by_length(task)
    seeds = sorted(lengths["seeds"].unique()) if not lengths.empty else []
    methods = sorted(set(lengths.get("method", pd.Series(dtype=str)).dropna()) - {"none", "too few seeds"})
    interval = ("; ".join([*(f"{name}: {METHODS[name]}" for name in methods), f"variance: {METHODS['crossed']}"])
                if methods else "none (no per-example outcomes stored, or too few seeds)")
    seed_words = seeds_text(board, task)
    notes = [
        f"{metric} per context length, pooled over the other grid knobs, with its {CONFIDENCE:.0%} interval "
        f"({interval}). {seed_words}. Chance: {_chance_text(board.chance(task))}.",
        f"Effective length (RULER): the longest tested length up to which {metric} stays strictly above "
        f"{board.threshold} at every tested length; '>= L' means the longest tested length passes (the true "
        "value may be longer), '< L' that the shortest fails; 'not measured': all tested lengths were trained on, "
        "so the grid says nothing about length beyond training.",
    ]
    if seeds and max(seeds) > 1:
        notes.append("Seed means: the lowest and highest mean of a single seed, a spread, not an interval.")
    if not lengths.empty and lengths["beyond_training"].any():
        notes.append(f"{BEYOND_TRAINING} a length beyond the longest the configuration was trained on "
                     "(length extrapolation).")
    notes += corpus_notes(board, task) + pretrained_notes(board, task)
    return notes


def _pretrained_records(board: Leaderboard, task: str) -> list[dict]:
    return [record for record in board.task_runs(task)["record"] if record.get("family") == "pretrained"]


def pretrained_notes(board: Leaderboard, task: str) -> list[str]:
    """What a section of pretrained language models (harness/pretrained) measures, and its prompts' lengths."""
    records = _pretrained_records(board, task)
    if not records:
        return []
    lengths = [cell[key] for record in records for cell in record["cells"]
               for key in ("prompt_tokens_min", "prompt_tokens_max") if key in cell]
    models = sorted({record["model"] for record in records})
    return [f"Pretrained language models ({', '.join(models)}; model=hf), not trained here: each example is "
            "prompted in its benchmark's template and read in segments through a memory policy on the model's KV "
            "cache, and the answer is generated greedily. These rows are ranked and paired among themselves only, "
            "never with models trained here. state = the KV cache's bytes (the most between forward passes, summed "
            "from its tensors). context_len counts the model's tokens: each prompt, template included, is at most "
            "that long, its haystack grown to fill it; the prompts were "
            f"{min(lengths, default=0)}..{max(lengths, default=0)} tokens of the model's tokenizer."]


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
    warning = board.timing_warning(task)
    timing = ([f"Timings are rough here: {warning}. Do not rank configurations by decode or prefill speed from this "
               "report (the figures draw no Pareto frontier over latency); measure them with one run per machine."]
              if warning else [])
    if _pretrained_records(board, task):
        return timing + [
            "Costs per sequence at the longest length each row was tested at (median over its cells): state = the "
            "KV cache's bytes, the most between forward passes, summed from its tensors; peak memory = tensor memory "
            "allocated while reading and answering the cell's first prompt (weights excluded); decode = time per generated token after the "
            "first, median and 95th percentile; prefill = tokens/s reading the prompt, median (range) over the cell's "
            "examples. Times depend on the machine and its load: compare them between rows of one report. Nothing "
            "here is trained: parameters are the pretrained model's, and train tokens/s, final loss and training "
            "stay blank."]
    return timing + [
        "Costs per sequence at the longest length each row was tested at (median over its cells and seeds): state = "
        "bytes of the mechanism's state after reading the example; peak memory = tensor memory allocated while "
        "reading it (weights excluded); decode = time per answer token after the prefill, median and 95th percentile; "
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
    notes = ["Head to head on the same test examples, within each setting: each configuration against the best of "
             "its setting (comparison 'vs best'), and pairs asked for with memarena-report --compare ('asked for'). "
             "A - B: the mean paired difference with its interval at the level Holm's procedure tested it at "
             f"('level'; the {len(tests[tests['p'].notna()])} tests of this task are one family, significant at "
             f"{SIGNIFICANCE}), so an interval excludes 0 exactly when the comparison is significant. Test: "
             f"{METHODS['difference t-test']}; {METHODS['crossed']}.",
             "Detectable (80%): the smallest difference this test would detect with 80% power, with these seeds and "
             f"examples. Seeds for {DIFFERENCE_OF_INTEREST:g}: the seeds a true difference of {DIFFERENCE_OF_INTEREST:g} "
             "would need for 80% power on these examples, from the same variance components ('more examples': seeds "
             "alone cannot get there). Both are blank where the paired differences do not vary at all (no variance "
             "to extrapolate from)."]
    if (tests["seeds"] == 1).any():
        notes.append("A comparison with 1 seed compares two trained checkpoints, not two mechanisms: it says nothing "
                     "of what another training seed would give, so it is never marked significant; 'checkpoints "
                     "differ' says only that these two checkpoints score differently on examples like these.")
    if ((tests["seeds"] > 1) & (tests["seeds"] < MIN_SEEDS)).any():
        notes.append(f"A comparison over fewer than {MIN_SEEDS} shared seeds has no interval and no test: none held "
                     "its level in simulation.")
    dropped = int(tests["dropped"].sum())
    if dropped:
        notes.append(f"{dropped} example pair(s) dropped because one side has no outcome there (OOM, diverged or "
                     "failed); the ranking above counts those as failures.")
    unshared = tests[tests["unshared seeds"] > 0]
    if not unshared.empty:
        notes.append(f"{len(unshared)} comparison(s) pair only the seeds both sides have (the seed counts differ).")
    return notes


def training_note(board: Leaderboard, task: str) -> str | None:
    flagged = board.training(task)
    flagged = flagged[flagged["late_drop"].fillna(0) > STILL_FALLING]
    at_chance = board.at_chance(task)
    notes = []
    if at_chance:
        notes.append(f"{len(at_chance)} configuration(s) did not learn the task ({board.metric(task)} over the lengths "
                     f"not above chance, {_chance_text(board.chance(task))}; with an interval, its bound reaches "
                     "chance): " + ", ".join(at_chance) + ". Their comparisons say nothing about their mechanism.")
    if not flagged.empty:
        notes.append(f"{len(flagged)} run(s) may be under-trained (loss still falling at the end): "
                     + ", ".join(f"{row} seed {seed}" for row, seed in zip(flagged["row"], flagged["seed"])) + ".")
    return " ".join(notes) or None


def methods_text() -> str:
    return "Statistical methods: " + "; ".join(f"{value}" for value in METHODS.values()) + "."

