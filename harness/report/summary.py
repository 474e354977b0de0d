"""The cross-task summary of a report, after rliable (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"): scores normalised between chance and the task's ceiling, their mean and
interquartile mean (IQM) over tasks x seeds, the probability of improvement between configurations,
and performance profiles.

No interval goes with the mean or the IQM: rliable's stratified bootstrap over seeds within tasks
covers about 80% at a nominal 95% with 3 seeds on 2 tasks (simulation, normal scores), and nothing
here is calibrated for few seeds; the per-task scores beside them carry the calibrated intervals of
``harness.report.stats``. A configuration is matched across tasks by its name without a per-task
tuned learning rate (``names``); only configurations run on every task are summarised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from harness.report.tables import Leaderboard
#: the thresholds of a performance profile (normalised score)
THRESHOLDS = np.linspace(0.0, 1.0, 101)


def normalised_scores(board: Leaderboard, names: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Per (configuration, task, seed): (score - chance) / (ceiling - chance), the ceiling being the metric's
    best value (1 for a metric higher-is-better in [0, 1], 0 for an error rate); failures score the worst."""
    frames = []
    for task in board.tasks:
        scores = board.seed_scores(task)
        if scores.empty or not board.has_cells(task):
            continue
        chance = float(board.chance(task).median())
        ceiling = 1.0 if board.higher_is_better(task) else 0.0
        frames.append(pd.DataFrame({"configuration": scores["row"].map(lambda row: names[task][row]), "task": task,
                                    "seed": scores["seed"], "score": (scores["score"] - chance) / (ceiling - chance)}))
    if not frames:
        return pd.DataFrame(columns=["configuration", "task", "seed", "score"])
    frame = pd.concat(frames, ignore_index=True)
    tasks = frame["task"].nunique()
    everywhere = frame.groupby("configuration")["task"].nunique() == tasks
    return frame[frame["configuration"].map(everywhere)].reset_index(drop=True)


def aggregates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: mean and IQM of its normalised scores over tasks x seeds, best first (by IQM)."""
    rows = {configuration: {"mean": group["score"].mean(), "iqm": float(stats.trim_mean(group["score"], 0.25)),
                            "runs": len(group)}
            for configuration, group in frame.groupby("configuration")}
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.sort_values(["iqm", "mean"], ascending=False, kind="stable") if not table.empty else table


def probability_of_improvement(frame: pd.DataFrame, x: str, y: str) -> float:
    """P(X > Y): per task the probability that a seed of X outscores a seed of Y (ties half), averaged over tasks."""
    per_task = []
    for (_, xs), (_, ys) in zip(frame[frame["configuration"] == x].groupby("task"),
                                frame[frame["configuration"] == y].groupby("task")):
        a, b = xs["score"].to_numpy()[:, None], ys["score"].to_numpy()[None, :]
        per_task.append(float(np.mean((a > b) + 0.5 * (a == b))))
    return float(np.mean(per_task))


def performance_profiles(frame: pd.DataFrame) -> pd.DataFrame:
    """Per threshold (index) and configuration (columns): the share of its task x seed runs scoring above it."""
    return pd.DataFrame({configuration: [(group["score"].to_numpy() > tau).mean() for tau in THRESHOLDS]
                         for configuration, group in frame.groupby("configuration")}, index=THRESHOLDS)
