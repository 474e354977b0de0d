"""The HTML leaderboard: one self-contained page with plotly's JavaScript included once.

Per task: the metric against context length (a line per mechanism, a band for its interval);
depth x length heatmaps per mechanism when the task has a depth knob; the metric against state
memory and against decode latency with the Pareto frontier; the leaderboard and head-to-head
tables. Then the provenance of every run. Figure ids are numbered, not random, so the page is the
same every time it is regenerated from the same store (but for its timestamp).
"""

from __future__ import annotations

import html
import itertools

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs

from harness.report import Leaderboard, cell_pivot, generated_line

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f4f4f4; }
.figures { display: flex; flex-wrap: wrap; }
"""


class Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def text(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, figure: go.Figure) -> None:
        self.figures += 1
        figure.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50})
        self.parts.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{self.figures}",
                                         default_width="540px", default_height="400px"))

    def table(self, frame: pd.DataFrame, index: bool = True) -> None:
        self.parts.append(frame.to_html(index=index, na_rep="", border=0))


def leaderboard_html(board: Leaderboard, experiment: str) -> str:
    page = Page()
    page.text(f"<h1>Leaderboard: {html.escape(experiment)}</h1><p>{generated_line(len(board.records))}</p>")
    for task in board.tasks:
        _task(page, board, task)
    unfinished = board.unfinished()
    if not unfinished.empty:
        page.text("<h2>Runs without results</h2>")
        page.table(unfinished, index=False)
    page.text("<h2>Provenance</h2>")
    page.table(board.provenance(), index=False)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>memarena: {html.escape(experiment)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(page.parts) + "</body></html>")


def _colors(mechanisms) -> dict[str, str]:
    return dict(zip(sorted(mechanisms), itertools.cycle(qualitative.D3)))


def _task(page: Page, board: Leaderboard, task: str) -> None:
    table = board.primary(task)
    metric = table["metric"].iloc[0]
    lengths = board.by_length(task)
    colors = _colors(lengths["mechanism"].unique())
    page.text(f"<h2>{html.escape(task)}</h2><div class='figures'>")
    page.figure(_by_length(lengths, metric, colors, table["chance"].iloc[0]))
    summary = board.summary(task)
    longest_len = table["context_len"].max()
    means = lengths.groupby("mechanism")["value"].mean()
    state = table[table["context_len"] == longest_len].groupby("mechanism")["state_bytes"].max()
    latency = table[table["context_len"] == longest_len].groupby("mechanism")["decode_latency_p50_s"].median() * 1e3
    page.figure(_pareto(means, state, f"state bytes per sequence @{longest_len} (log)", metric, colors, log=True))
    page.figure(_pareto(means, latency, f"decode ms/token @{longest_len}", metric, colors, log=False))
    if "depth" in table.columns and table["depth"].notna().any():
        for mechanism in sorted(table["mechanism"].unique()):
            page.figure(_heatmap(table[table["mechanism"] == mechanism], mechanism, metric))
    page.text("</div><h3>Leaderboard</h3>")
    page.table(summary)
    tests = board.head_to_head(task)
    if not tests.empty:
        page.text("<h3>Head to head on the same examples (Holm-corrected)</h3>")
        page.table(tests, index=False)


def _by_length(lengths: pd.DataFrame, metric: str, colors: dict[str, str], chance: float) -> go.Figure:
    figure = go.Figure()
    for mechanism, group in lengths.sort_values("context_len").groupby("mechanism"):
        fits = group[~group["oom"]]
        color = colors[mechanism]
        figure.add_trace(go.Scatter(
            x=list(fits["context_len"]) + list(fits["context_len"])[::-1],
            y=list(fits["ci_high"]) + list(fits["ci_low"])[::-1], fill="toself", fillcolor=color, opacity=0.15,
            line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=mechanism))
        figure.add_trace(go.Scatter(x=fits["context_len"], y=fits["value"], mode="lines+markers", name=mechanism,
                                    line={"color": color}, legendgroup=mechanism))
        oom = group[group["oom"]]
        if not oom.empty:
            figure.add_trace(go.Scatter(x=oom["context_len"], y=[0] * len(oom), mode="markers", name=f"{mechanism} OOM",
                                        marker={"symbol": "x", "size": 12, "color": color}, legendgroup=mechanism))
    figure.add_hline(y=chance, line_dash="dot", annotation_text="chance")
    figure.update_layout(title=f"{metric} against context length", xaxis_title="context length (tokens)",
                         yaxis_title=metric, xaxis_type="log")
    return figure


def pareto_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """Points not dominated by one with lower or equal cost and a higher or equal score."""
    ordered = points.sort_values(["cost", "score"], ascending=[True, False])
    frontier, best = [], float("-inf")
    for row in ordered.itertuples():
        if row.score > best:
            frontier.append(row.Index)
            best = row.score
    return ordered.loc[frontier]


def _pareto(scores: pd.Series, costs: pd.Series, cost_title: str, metric: str, colors: dict[str, str],
            log: bool) -> go.Figure:
    points = pd.DataFrame({"score": scores, "cost": costs}).dropna()
    figure = go.Figure()
    frontier = pareto_frontier(points)
    figure.add_trace(go.Scatter(x=frontier["cost"], y=frontier["score"], mode="lines", name="Pareto frontier",
                                line={"color": "#888", "dash": "dash"}))
    for mechanism, row in points.iterrows():
        figure.add_trace(go.Scatter(x=[row["cost"]], y=[row["score"]], mode="markers+text", name=mechanism,
                                    text=[mechanism], textposition="top center",
                                    marker={"size": 11, "color": colors.get(mechanism)}))
    figure.update_layout(title=f"{metric} (mean over lengths) against cost", xaxis_title=cost_title,
                         yaxis_title=metric, xaxis_type="log" if log else "linear", showlegend=False)
    return figure


def _heatmap(table: pd.DataFrame, mechanism: str, metric: str) -> go.Figure:
    values, oom = cell_pivot(table, "depth")
    text = values.round(2).astype(object).where(~oom, "OOM").astype(str)
    figure = go.Figure(go.Heatmap(z=values.to_numpy(), x=[str(c) for c in values.columns],
                                  y=[str(d) for d in values.index], text=text.to_numpy(), texttemplate="%{text}",
                                  zmin=0, zmax=1, colorscale="Viridis", colorbar={"title": metric}))
    figure.update_layout(title=f"{mechanism}: {metric} by depth and length", xaxis_title="context length",
                         yaxis_title="needle depth")
    return figure
