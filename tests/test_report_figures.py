"""Report figures built from plain frames (issue #25): integer knob ticks, room for the toolbar, byte
axes in KiB like the tables, a stable legend order, the training legend grouped by configuration."""

from __future__ import annotations

import pandas as pd

from harness.report import figures


def test_heatmap_ticks_whole_knobs_as_integers_and_leaves_room_for_the_toolbar():
    values = pd.DataFrame([[0.5, 0.6], [0.7, 0.8]], index=pd.Index([2.0, 4.0], name="num_kv_pairs"), columns=[32, 64])
    figure = figures.heatmap_figure(values, values.map(lambda _: None), "num_kv_pairs", "accuracy", True)
    assert list(figure.data[0].y) == ["2", "4"] and list(figure.data[0].x) == ["32", "64"]
    assert figure.layout.margin.t >= figures.LAYOUT["margin"]["t"] + figures.HEATMAP_TOP_MARGIN
    assert figures.tick_text(0.5) == "0.5" and figures.tick_text("essay") == "essay"


def test_state_axes_read_in_bytes_units():
    axis = figures.bytes_axis([560, 12800, 65536])
    assert axis["type"] == "log" and "64 KiB" in axis["ticktext"] and "512 B" in axis["ticktext"]
    assert all("k" not in text for text in axis["ticktext"])  # no SI "10k"
    assert len(axis["tickvals"]) <= 9


def test_by_length_legend_follows_the_given_row_order_whatever_the_sort():
    rows = ["b_row", "a_row", "c_row"]
    lengths = pd.DataFrame([{"row": row, "context_len": length, "status": "ok", "value": 0.5, "ci_low": 0.4,
                             "ci_high": 0.6, "mechanism": "mamba"} for row in rows for length in (64, 32)])
    styles = figures.row_styles(lengths)
    for _ in range(3):
        figure = figures.by_length_figure(lengths, "accuracy", 0.1, True, styles)
        named = [trace for trace in figure.data if trace.name in rows]
        assert [trace.name for trace in named] == rows and [trace.legendrank for trace in named] == [0, 1, 2]


def test_training_legend_is_grouped_by_configuration_in_the_given_order():
    curve = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    training = pd.DataFrame([{"row": row, "seed": seed, "curve": curve, "mechanism": "rmt"}
                             for seed in (1, 0) for row in ("z_best", "a_worst")])
    figure = figures.training_figure(training, figures.row_styles(training))
    assert [(trace.legendgroup, trace.name) for trace in figure.data] == [
        ("z_best", "seed 0"), ("z_best", "seed 1"), ("a_worst", "seed 0"), ("a_worst", "seed 1")]
    assert figure.data[0].legendgrouptitle.text == "z_best"
