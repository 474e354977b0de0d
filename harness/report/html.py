"""The HTML leaderboard: one self-contained page, plotly's JavaScript included once.

The same tables and explanations as the markdown (``harness.report.display``), with figures
(``harness.report.figures``) under headings of their own. Figure ids are numbered, not random,
so the page is the same every time it is regenerated from the same store (but for its timestamp).
Figures are serialised with the standard library's ``json``, never orjson: plotly's default engine
("auto") takes orjson whenever it happens to be importable, and the two write floats differently
(``5.2e-05`` against ``0.0000523``), so the page would depend on what else is installed.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from harness.report import display, figures, summary
from harness.report.markdown import unfinished_table
from harness.report.tables import Leaderboard

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; line-height: 1.4; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
td:nth-child(-n+2), th:nth-child(-n+2) { text-align: left; }
th { background: #f4f4f4; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figure h4 { margin: 0.5em 0 0; font-size: 0.95em; }
p.note { font-size: 0.9em; max-width: 60em; }
"""
PLOTLY_CONFIG = {"displaylogo": False, "responsive": False}
#: plotly's JSON engine for every figure of a page (see the module docstring)
JSON_ENGINE = "json"


@contextlib.contextmanager
def json_engine(engine: str = JSON_ENGINE) -> Iterator[None]:
    """Serialise plotly figures with ``engine`` inside the block (plotly.io.to_html takes no engine argument)."""
    previous = pio.json.config.default_engine
    pio.json.config.default_engine = engine
    try:
        yield
    finally:
        pio.json.config.default_engine = previous


class Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def text(self, markup: str) -> None:
        self.parts.append(markup)

    def notes(self, texts: list[str]) -> None:
        self.parts += [f"<p class='note'>{html.escape(text)}</p>" for text in texts]

    def figure(self, title: str, figure: go.Figure) -> None:
        self.figures += 1
        with json_engine():
            markup = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{self.figures}",
                                    config=PLOTLY_CONFIG)
        self.parts.append(f"<div class='figure'><h4>{html.escape(title)}</h4>{markup}</div>")

    def table(self, frame: pd.DataFrame) -> None:
        self.parts.append(frame.rename_axis(columns=None).to_html(index=False, na_rep="", border=0, escape=True))


def leaderboard_html(board: Leaderboard, experiment: str, generated: str) -> str:
    page = Page()
    page.text(f"<h1>Leaderboard: {html.escape(experiment)}</h1><p>{html.escape(generated)}</p>")
    page.notes(display.how_to_read(board))
    page.notes(display.ceiling_notes(board))
    if board.tasks:
        page.text("<h2>Headline</h2>")
        page.notes(display.headline_notes(board))
        page.table(display.headline_table(board))
        frame = summary.normalised_scores(board, display.headline_names(board))
        if not frame.empty:
            page.figure("performance profiles: share of task x seed runs above each normalised score",
                        figures.profile_figure(summary.performance_profiles(frame), _mechanisms(board)))
    for task in board.tasks:
        _task(page, board, task)
    unfinished = board.runs[board.runs["status"] != "ok"]
    if not unfinished.empty:
        page.text("<h2>Runs without results</h2>")
        page.table(unfinished_table(unfinished))
    page.text("<h2>Provenance</h2>")
    page.table(provenance(board))
    page.notes([display.methods_text()])
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>memarena: {html.escape(experiment)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(page.parts) + "</body></html>")


def _mechanisms(board: Leaderboard) -> dict[str, str]:
    """Per cross-task configuration name: its mechanism (for its colour)."""
    names = display.headline_names(board)
    return {name: mechanism for task in board.tasks for row, name in names[task].items()
            for mechanism in board.task_runs(task).loc[board.task_runs(task)["row"] == row, "mechanism"].iloc[:1]}


def provenance(board: Leaderboard) -> pd.DataFrame:
    rows = []
    for run in board.runs.itertuples():
        source = run.record.get("provenance") or {}
        rows.append({"run": run.run_id, "configuration": run.row, "task": run.task, "seed": run.seed,
                     "status": run.status, "commit": (source.get("git_commit") or "")[:10],
                     "dirty": source.get("git_dirty"), "device": source.get("device"), "torch": source.get("torch"),
                     "python": source.get("python"), "time": source.get("time")})
    return pd.DataFrame(rows)


def _bounded(board: Leaderboard, task: str) -> bool:
    values = board.primary(task)["value"].dropna()
    return board.higher_is_better(task) and bool(((values >= 0) & (values <= 1)).all())


def _task(page: Page, board: Leaderboard, task: str) -> None:
    metric = board.metric(task)
    lengths = board.by_length(task)
    page.text(f"<h2>{html.escape(task)}</h2>")
    if not board.has_cells(task):
        page.notes([display.NO_CELLS])
        return
    page.notes(display.task_notes(board, task))
    page.table(display.accuracy_table(board, task))
    if lengths.empty:
        return
    order = {row: rank for rank, row in enumerate(board.ranking(task).index)}
    lengths = lengths.sort_values("row", key=lambda rows: rows.map(order), kind="stable")  # legends in rank order
    styles = figures.row_styles(lengths)
    bounded = _bounded(board, task)
    chance = float(board.chance(task).median())
    page.text("<div class='figures'>")
    page.figure(f"{metric} against context length ({display.CONFIDENCE:.0%} intervals)",
                figures.by_length_figure(lengths, metric, chance, bounded, styles))
    longest = max(board.lengths(task))
    points = _points_at(board, task, longest)
    costs = _costs_at(board, task, longest)
    if "state_bytes" in costs.columns:
        page.figure(f"{metric} @{longest} against state bytes per sequence",
                    figures.cost_figure(points.assign(cost=costs["state_bytes"], cost_low=costs["state_bytes"],
                                                      cost_high=costs["state_bytes"]),
                                        "state bytes per sequence (log)", metric, bounded, True, styles))
    if "decode_latency_p50_s" in costs.columns:
        high = costs["decode_latency_p95_s"] * 1e3 if "decode_latency_p95_s" in costs.columns else None
        page.figure(f"{metric} @{longest} against decode latency (median, bar to p95; machine-dependent"
                    + ("; too noisy to rank, no frontier)" if board.timing_warning(task) else ")"),
                    figures.cost_figure(points.assign(cost=costs["decode_latency_p50_s"] * 1e3,
                                                      cost_low=costs["decode_latency_p50_s"] * 1e3,
                                                      cost_high=high if high is not None else costs["decode_latency_p50_s"] * 1e3),
                                        "decode ms per answer token", metric, bounded, False, styles,
                                        frontier=board.timing_warning(task) is None))
    sweep = board.budget_sweep(task)
    if sweep is not None and sweep["budget"].notna().any() and "state_bytes" in sweep.columns:
        page.figure(f"{metric} against measured state bytes, one line per mechanism across budgets",
                    figures.budget_figure(sweep.dropna(subset=["budget"]), metric, bounded))
    widths = board.width_sweep(task)
    for panel, points in ([] if widths is None else widths.groupby("panel", sort=True)):
        where = f" ({panel})" if panel else ""
        page.figure(f"{metric} against model width{where}, one line per mechanism ({display.CONFIDENCE:.0%} intervals)",
                    figures.mechanism_lines_figure(points.assign(x=points["d_model"], text=points["label"]),
                                                   {"title": "d_model", "type": "log", "tickvals": sorted(points["d_model"].unique())},
                                                   metric, bounded, chance))
        if "state_bytes" in points.columns and points["state_bytes"].notna().any():
            page.figure(f"{metric} against state bytes per sequence{where}, one line per mechanism across widths",
                        figures.mechanism_lines_figure(points.assign(x=points["state_bytes"], text=points["label"]),
                                                       {"title": "state bytes per sequence", **figures.bytes_axis(points["state_bytes"])},
                                                       metric, bounded, chance))
    training = board.training(task).sort_values("row", key=lambda rows: rows.map(order), kind="stable")
    if training["curve"].map(bool).any():
        page.figure("training loss", figures.training_figure(training, styles))
    for knob in board.knobs(task):
        table = board.primary(task)
        for row in board.ranking(task).index:
            cells = table[table["row"] == row]
            if cells.empty:
                continue
            values = cells.pivot_table(index=knob, columns="context_len", values="value", aggfunc="mean", dropna=False)
            failures = (cells.assign(status=cells["status"].where(cells["status"] != "ok").str.upper())
                        .pivot_table(index=knob, columns="context_len", values="status", aggfunc="first")
                        .reindex_like(values))
            page.figure(f"{row}: {metric} by {knob} and length",
                        figures.heatmap_figure(values, failures, knob, metric, bounded))
    page.text("</div>")
    budget = display.budget_table(board, task)
    if budget is not None:
        page.text("<h3>Score against the state budget</h3>")
        page.table(budget)
    page.text(f"<h3>{html.escape(task)}: costs and training</h3>")
    page.notes(display.cost_notes(board, task))
    page.table(display.cost_table(board, task))
    note = display.training_note(board, task)
    if note:
        page.notes([note])
    tuning = display.tuning_table(board, task)
    if tuning is not None:
        page.text(f"<h3>{html.escape(task)}: learning-rate tuning</h3>")
        page.notes([display.tuning_note(board, task)])
        page.table(tuning)
    detail = display.detail_table(board, task)
    if detail is not None:
        page.text(f"<h3>{html.escape(task)}: by cell</h3>")
        page.table(detail)
    tests = display.tests_table(board, task)
    if not tests.empty:
        page.text(f"<h3>{html.escape(task)}: head to head</h3>")
        page.notes(display.test_notes(board, task))
        page.table(tests)


def _costs_at(board: Leaderboard, task: str, length: int) -> pd.DataFrame:
    """The costs of the rows measured at ``length`` (``Leaderboard.costs`` measures each row at its own longest
    length): a row whose cell failed there, or that ends shorter, has no cost to draw against its score there."""
    costs = board.costs(task)
    return costs[costs["cost_length"] == length] if "cost_length" in costs.columns else costs


def _points_at(board: Leaderboard, task: str, length: int) -> pd.DataFrame:
    """Per row evaluated at ``length``: the metric there with its interval; a failure scores the worst value."""
    lengths = board.by_length(task)
    at = lengths[lengths["context_len"] == length].set_index("row")
    failed = at["status"] != "ok"
    worst = board.worst(task)
    at = at.reindex(columns=[*at.columns, *({"value", "ci_low", "ci_high"} - set(at.columns))])
    points = pd.DataFrame({"score": at["value"].where(~failed, worst), "score_low": at["ci_low"].where(~failed),
                           "score_high": at["ci_high"].where(~failed), "failed": failed})
    return points.reindex([row for row in board.ranking(task).index if row in points.index])  # rows evaluated there
