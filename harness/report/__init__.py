"""Leaderboards regenerated from the store alone, in ``reports/<experiment>/``.

- ``leaderboard.md``: a headline across tasks (``harness.report.summary``); per task the
  configurations ranked by their headline metric with intervals per context length, effective
  length, costs, training, cells, and paired tests (``harness.report.markdown``);
- ``leaderboard.csv``: every (run, cell, metric) row in long format, with the configuration;
- ``index.html``: the same with figures, one self-contained page (``harness.report.html``).

Modules: ``runs`` (records -> configuration rows), ``tables`` (the numbers), ``summary`` (the
cross-task headline: normalised scores, IQM, probability of improvement, performance profiles),
``display`` (formatted tables and explanations), ``markdown``, ``figures`` (plotly figures from
frames) and ``html``. Dependencies point one way: report -> store; figures import nothing of the report.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from harness.report.markdown import leaderboard_markdown
from harness.report.runs import outcomes_frame, runs_frame
from harness.report.tables import DEFAULT_THRESHOLD, Leaderboard
from harness.store.records import write_atomic

__all__ = ["DEFAULT_THRESHOLD", "Leaderboard", "build_leaderboard", "generated_line", "leaderboard_markdown",
           "write_report"]


def generated_line(runs: int) -> str:
    return f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from {runs} stored run(s)."


def build_leaderboard(results_dir: Path, experiment: str, threshold: float = DEFAULT_THRESHOLD,
                      compare: tuple[tuple[str, str], ...] = ()) -> Leaderboard:
    """The experiment's tables; ``compare``: pairs of configurations to test beside each row against its
    task's best (a ValueError names a pair that no task has both sides of)."""
    runs = runs_frame(results_dir, experiment)
    board = Leaderboard(runs, outcomes_frame(results_dir, experiment, runs), threshold, compare)
    for a, b in compare:
        if not any(board.resolve(task, a) and board.resolve(task, b) for task in board.tasks):
            raise ValueError(f"--compare {a} {b}: no task of {experiment!r} has both (name a row, its label, or a "
                             "mechanism with one row)")
    return board


def write_report(results_dir: Path, reports_dir: Path, experiment: str, threshold: float = DEFAULT_THRESHOLD,
                 compare: tuple[tuple[str, str], ...] = ()) -> Path:
    """Regenerate ``<reports_dir>/<experiment>/`` (markdown, CSV, HTML) from the store."""
    from harness.report.html import leaderboard_html

    board = build_leaderboard(results_dir, experiment, threshold, compare)
    generated = generated_line(len(board.runs))
    directory = Path(reports_dir) / experiment
    write_atomic(directory / "leaderboard.md", leaderboard_markdown(board, experiment, generated))
    write_atomic(directory / "leaderboard.csv", board.cells.drop(columns="primary", errors="ignore").to_csv(index=False))
    write_atomic(directory / "index.html", leaderboard_html(board, experiment, generated))
    return directory / "leaderboard.md"
