"""Plotly figures of a report, each built from plain frames (this module imports nothing of the report).

Conventions every figure keeps: one colour per mechanism, fixed by its name (the same in every
task, experiment and rerun), configurations of one mechanism told apart by dash and marker; x
ticks at the tested lengths (log2 spacing when they span 4x or more); bounded metrics on a fixed
[0, 1] axis with chance as its own labelled line; failures drawn as crosses at the axis floor,
never dropped; error bars wherever a value has an interval or a spread; no text on the plot area
(the legend names every trace, so no label is clipped or covers another). Titles are the page's
headings, not the figure's, so plotly's toolbar covers nothing.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

#: fixed colours of the built-in mechanisms; others get one from their name's hash
MECHANISM_COLORS = {
    "full_attention": "#1f77b4", "sliding_window": "#ff7f0e", "lstm_gated": "#2ca02c",
    "transformer_xl": "#d62728", "compressive": "#9467bd", "rmt": "#8c564b", "infini_attention": "#e377c2",
    "linear_attention": "#7f7f7f", "mamba": "#bcbd22",
}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "triangle-down", "star")
FAILURE_SYMBOL = "x-thin-open"
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
          "legend": {"font": {"size": 11}}, "width": 520, "height": 380}


#: extra room above a heatmap, so plotly's toolbar covers none of its top row
HEATMAP_TOP_MARGIN = 45


def bytes_label(value: float) -> str:
    """``512 B``, ``64 KiB``, ``1 MiB``: the units of the report's tables."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def bytes_axis(values) -> dict:
    """A log axis of byte counts ticked at powers of 2 (at most 8 ticks) labelled in B/KiB/MiB, as the tables."""
    values = [float(v) for v in values if pd.notna(v) and v > 0]
    if not values:
        return {"type": "log"}
    low, high = int(np.floor(np.log2(min(values)))), int(np.ceil(np.log2(max(values))))
    step = max(1, int(np.ceil((high - low + 1) / 8)))
    ticks = [2.0 ** power for power in range(low, high + 1, step)]
    return {"type": "log", "tickvals": ticks, "ticktext": [bytes_label(t) for t in ticks]}


def tick_text(value) -> str:
    """A knob value as a tick: a whole float reads as an integer (``2``, not ``2.0``)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def mechanism_color(mechanism: str) -> str:
    if mechanism in MECHANISM_COLORS:
        return MECHANISM_COLORS[mechanism]
    digest = int(hashlib.sha256(mechanism.encode()).hexdigest(), 16)
    return qualitative.Dark24[digest % len(qualitative.Dark24)]


def row_styles(rows: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per row (columns row, mechanism): its colour, dash and marker, stable for a given set of rows."""
    styles = {}
    for mechanism, group in rows.drop_duplicates("row").groupby("mechanism"):
        for index, row in enumerate(sorted(group["row"])):
            styles[row] = {"color": mechanism_color(mechanism), "dash": DASHES[index % len(DASHES)],
                           "symbol": SYMBOLS[index % len(SYMBOLS)]}
    return styles


def length_axis(lengths: list[int]) -> dict:
    """An x axis with ticks at the tested lengths; log spacing when they span 4x or more."""
    lengths = sorted(set(int(length) for length in lengths))
    axis = {"tickvals": lengths, "ticktext": [str(length) for length in lengths], "title": "context length (tokens)"}
    if lengths and lengths[-1] >= 4 * lengths[0]:
        axis.update(type="log", range=[np.log10(lengths[0]) - 0.1, np.log10(lengths[-1]) + 0.1])
    elif lengths:
        pad = max(1, (lengths[-1] - lengths[0]) * 0.05)
        axis["range"] = [lengths[0] - pad, lengths[-1] + pad]
    return axis


def metric_axis(metric: str, bounded: bool) -> dict:
    return {"title": metric, **({"range": [-0.03, 1.03], "tickvals": [0, 0.25, 0.5, 0.75, 1]} if bounded else {})}


def _figure() -> go.Figure:
    figure = go.Figure()
    figure.update_layout(**LAYOUT)
    return figure


def _chance(figure: go.Figure, x: list[float], chance: float) -> None:
    figure.add_trace(go.Scatter(x=[min(x), max(x)], y=[chance, chance], mode="lines", name=f"chance ({chance:.3g})",
                                line={"color": "#555", "dash": "dot", "width": 1.5}, hoverinfo="name"))


def by_length_figure(lengths: pd.DataFrame, metric: str, chance: float, bounded: bool,
                     styles: dict[str, dict[str, str]]) -> go.Figure:
    """The metric against context length: a line per row with interval bars, failures as crosses at 0.

    ``lengths`` has columns row, context_len, status, value, ci_low, ci_high.
    """
    figure = _figure()
    for rank, (row, group) in enumerate(lengths.sort_values("context_len", kind="stable").groupby("row", sort=False)):
        style = styles[row]
        fits = group[group["status"] == "ok"]
        figure.add_trace(go.Scatter(
            x=fits["context_len"], y=fits["value"], mode="lines+markers", name=row, legendgroup=row, legendrank=rank,
            line={"color": style["color"], "dash": style["dash"]}, marker={"symbol": style["symbol"], "size": 7},
            error_y={"type": "data", "symmetric": False, "array": (fits["ci_high"] - fits["value"]).fillna(0),
                     "arrayminus": (fits["value"] - fits["ci_low"]).fillna(0), "thickness": 1, "width": 3}))
        failed = group[group["status"] != "ok"]
        if not failed.empty:
            statuses = "/".join(sorted(set(failed["status"].str.upper())))
            figure.add_trace(go.Scatter(
                x=failed["context_len"], y=[0.0] * len(failed), mode="markers", name=f"{row}: {statuses}",
                legendgroup=row, legendrank=rank,
                marker={"symbol": FAILURE_SYMBOL, "size": 12, "color": style["color"], "line": {"width": 2}},
                text=failed["status"].str.upper(), hovertemplate="%{x}: %{text}<extra>" + row + "</extra>"))
    _chance(figure, list(lengths["context_len"]), chance)
    figure.update_layout(xaxis=length_axis(list(lengths["context_len"])), yaxis=metric_axis(metric, bounded))
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


def cost_figure(points: pd.DataFrame, cost_title: str, metric: str, bounded: bool, log: bool,
                styles: dict[str, dict[str, str]], frontier: bool = True) -> go.Figure:
    """The metric against a cost, one marker per row with error bars both ways, the Pareto frontier as steps
    (unless ``frontier`` is False: costs too noisy to rank). A log cost is a byte count, ticked in B/KiB/MiB.

    ``points`` is indexed by row with columns cost, cost_low, cost_high, score, score_low, score_high
    and failed (a failure scores 0 and is drawn as a cross).
    """
    figure = _figure()
    points = points.dropna(subset=["cost"])
    frontier = pareto_frontier(points[~points["failed"]]) if frontier else points.iloc[:0]
    if len(frontier):
        x = [*frontier["cost"], points["cost"].max()]
        y = [*frontier["score"], frontier["score"].iloc[-1]]
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name="Pareto frontier",
                                    line={"color": "#999", "dash": "dash"}, hoverinfo="skip"))
    for row, point in points.iterrows():
        style = styles[row]
        figure.add_trace(go.Scatter(
            x=[point["cost"]], y=[point["score"]], mode="markers", name=row,
            marker={"size": 10, "color": style["color"], "symbol": FAILURE_SYMBOL if point["failed"] else style["symbol"],
                    "line": {"width": 2} if point["failed"] else {}},
            error_x={"type": "data", "symmetric": False, "array": [_gap(point["cost_high"], point["cost"])],
                     "arrayminus": [_gap(point["cost"], point["cost_low"])], "thickness": 1},
            error_y={"type": "data", "symmetric": False, "array": [_gap(point["score_high"], point["score"])],
                     "arrayminus": [_gap(point["score"], point["score_low"])], "thickness": 1}))
    figure.update_layout(xaxis={"title": cost_title, **bytes_axis(points["cost"])} if log else {"title": cost_title},
                         yaxis=metric_axis(metric, bounded))
    return figure


def _gap(high, low) -> float:
    return 0.0 if pd.isna(high) or pd.isna(low) else max(0.0, float(high) - float(low))


def heatmap_figure(values: pd.DataFrame, failures: pd.DataFrame, knob: str, metric: str, bounded: bool) -> go.Figure:
    """One row's metric by (knob, length); failed cells show their status."""
    text = values.round(2).astype(object).where(failures.isna(), failures)
    figure = go.Figure(go.Heatmap(
        z=values.to_numpy(dtype=float), x=[tick_text(c) for c in values.columns], y=[tick_text(v) for v in values.index],
        text=text.astype(str).to_numpy(), texttemplate="%{text}", colorscale="Viridis",
        colorbar={"title": {"text": metric, "side": "right"}}, **({"zmin": 0, "zmax": 1} if bounded else {})))
    figure.update_layout(**{**LAYOUT, "width": 420, "height": 300 + HEATMAP_TOP_MARGIN,
                            "margin": {**LAYOUT["margin"], "t": LAYOUT["margin"]["t"] + HEATMAP_TOP_MARGIN}},
                         xaxis={"title": "context length", "type": "category"},
                         yaxis={"title": knob, "type": "category"})
    return figure


def training_figure(training: pd.DataFrame, styles: dict[str, dict[str, str]]) -> go.Figure:
    """Training loss against step, a line per run, the legend grouped by configuration (a group per row,
    in the order of ``training``, its seeds in order under it); ``training`` has row, seed, curve."""
    figure = _figure()
    order = {row: index for index, row in enumerate(dict.fromkeys(training["row"]))}
    runs = training.assign(order=training["row"].map(order)).sort_values(["order", "seed"], kind="stable")
    for rank, run in enumerate(runs.itertuples()):
        if not run.curve:
            continue
        style = styles[run.row]
        figure.add_trace(go.Scatter(
            x=[point["step"] for point in run.curve], y=[point["loss"] for point in run.curve], mode="lines",
            name=f"seed {run.seed}", legendgroup=run.row, legendgrouptitle={"text": run.row}, legendrank=rank,
            line={"color": style["color"], "dash": style["dash"], "width": 1.5}))
    figure.update_layout(xaxis={"title": "training step"}, yaxis={"title": "training loss", "type": "log"},
                         legend={**LAYOUT["legend"], "groupclick": "togglegroup"})
    return figure


def mechanism_lines_figure(points: pd.DataFrame, x_axis: dict, metric: str, bounded: bool,
                           chance: float | None = None) -> go.Figure:
    """Score against ``x``, one line per mechanism through its configurations, with interval bars where
    there are any (columns mechanism, x, score, and optionally score_low, score_high, text for the hover)."""
    figure = _figure()
    for mechanism, group in points.sort_values("x").groupby("mechanism"):
        low, high = (group[c] if c in group.columns else group["score"] for c in ("score_low", "score_high"))
        figure.add_trace(go.Scatter(
            x=group["x"], y=group["score"], mode="lines+markers", name=mechanism, line={"color": mechanism_color(mechanism)},
            error_y={"type": "data", "symmetric": False, "array": (high - group["score"]).fillna(0),
                     "arrayminus": (group["score"] - low).fillna(0), "thickness": 1, "width": 3},
            text=group["text"] if "text" in group.columns else None,
            hovertemplate=("%{text}: " if "text" in group.columns else "") + "%{x}, %{y:.3f}<extra>" + mechanism + "</extra>"))
    if chance is not None:
        _chance(figure, list(points["x"]), chance)
    figure.update_layout(xaxis=x_axis, yaxis=metric_axis(metric, bounded))
    return figure


def budget_figure(sweep: pd.DataFrame, metric: str, bounded: bool) -> go.Figure:
    """Score against measured state bytes, one line per mechanism across its budgets (columns
    mechanism, budget, state_bytes, score)."""
    points = sweep.assign(x=sweep["state_bytes"], text=[f"budget {int(b)} B" for b in sweep["budget"]])
    return mechanism_lines_figure(points, {"title": "measured state bytes per sequence", **bytes_axis(sweep["state_bytes"])},
                                  f"{metric} (mean over lengths)", bounded)


def profile_figure(profiles: pd.DataFrame, mechanisms: dict[str, str]) -> go.Figure:
    """Performance profiles (Agarwal et al. 2021): per configuration (columns of ``profiles``), the share of
    its runs scoring above each normalised score (the index), as a step line; ``mechanisms`` names each
    configuration's mechanism for its colour."""
    figure = _figure()
    styles = row_styles(pd.DataFrame({"row": list(profiles.columns),
                                      "mechanism": [mechanisms[c] for c in profiles.columns]}))
    for rank, configuration in enumerate(profiles.columns):
        style = styles[configuration]
        figure.add_trace(go.Scatter(x=profiles.index, y=profiles[configuration], mode="lines", line_shape="hv",
                                    name=configuration, legendrank=rank,
                                    line={"color": style["color"], "dash": style["dash"]}))
    figure.update_layout(xaxis={"title": "normalised score tau (0 chance, 1 perfect)", "range": [0, 1]},
                         yaxis={"title": "share of runs with score > tau", "range": [-0.03, 1.03]})
    return figure
