"""Leaderboards from synthetic stores: each defect a report once had, and the behaviour that replaced it.

Every store here is written with ``write_run`` (config.yaml, outcomes.csv, result.json), as the
harness writes a run, and read back by ``build_leaderboard``, as ``memarena-report`` does.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.report import build_leaderboard, write_report
from harness.report import display, html
from harness.report.markdown import leaderboard_markdown
from harness.store.records import OUTCOMES_FILE, write_run

LENGTHS = (64, 128)


def config(mechanism: str, seed: int, budget=None, **options) -> dict:
    return {"name": "demo", "mechanism": {"name": mechanism, **options}, "task": {"name": "passkey", "n_digits": 3},
            "model": {"d_model": 64}, "train": {"steps": 100, "lr": 0.003}, "eval": {"grid": {"context_len": list(LENGTHS)}},
            "seed": seed, "state_budget_bytes": budget, "results_dir": "results", "progress": False}


def store_run(results, run_id, cfg, right, status="ok", metric="exact_match", higher_is_better=True,
              examples=32, curve=None, oom=(), values=None):
    """One run whose cell at each length of its grid gets ``right[length]`` examples right (or ``values[length]``)."""
    cells, outcomes = [], []
    for length in cfg["eval"]["grid"]["context_len"]:
        knobs = {"context_len": length, "depth": 0.5}
        if status != "ok":
            break
        if length in oom:
            cells.append({"knobs": knobs, "metric": metric, "higher_is_better": higher_is_better, "status": "oom",
                          "error": "out of memory", "n": 0, "value": None, "chance": 0.001})
            continue
        scores = values[length] if values else [float(i < right[length]) for i in range(examples)]
        outcomes += [{**knobs, "example": i, "metric": metric, "value": v} for i, v in enumerate(scores)]
        cells.append({"knobs": knobs, "metric": metric, "higher_is_better": higher_is_better, "status": "ok",
                      "n": len(scores), "value": float(np.mean(scores)), "ci_low": 0.0, "ci_high": 1.0,
                      "chance": 0.001, "state_bytes": 1024 * (1 + cfg["seed"]), "peak_memory_bytes": 389248,
                      "decode_latency_p50_s": 0.001, "decode_latency_p95_s": 0.002, "prefill_tokens_per_s": 29299.0,
                      "prefill_tokens_per_s_min": 25000.0, "prefill_tokens_per_s_max": 30000.0})
    record = {"run_id": run_id, "experiment": "demo", "mechanism": cfg["mechanism"]["name"], "task": "passkey",
              "seed": cfg["seed"], "parameters": 103680, "primary_metric": metric, "status": status,
              "error": None if status == "ok" else "RuntimeError: boom\nTraceback ...",
              "training": {"steps": 100, "final_loss": 0.5, "tokens_per_s": 29299.0, "curve": curve or []}
              if status == "ok" else None,
              "cells": cells, "provenance": {"git_commit": "abc", "time": f"2026-01-01T00:00:{len(run_id):02d}"}}
    write_run(results / "demo" / run_id, yaml.safe_dump(cfg), record,
              pd.DataFrame(outcomes).to_csv(index=False) if outcomes else None)


def board(tmp_path, threshold=0.85):
    return build_leaderboard(tmp_path / "results", "demo", threshold)


def test_a_budget_sweep_gives_one_row_per_configuration_and_pairs_only_within_a_budget(tmp_path):
    results = tmp_path / "results"
    # at 4 KiB sliding_window wins on 4 examples; at 64 KiB transformer_xl on 4: pooled, a spurious difference
    for budget, window, mem_len, sw, txl in ((4096, 5, 8, 20, 16), (65536, 100, 120, 30, 30)):
        store_run(results, f"sw{budget}", config("sliding_window", 0, budget, window=window), {64: sw, 128: sw})
        store_run(results, f"txl{budget}", config("transformer_xl", 0, budget, mem_len=mem_len), {64: txl, 128: txl})
    leaderboard = board(tmp_path)
    accuracy = display.accuracy_table(leaderboard, "passkey")
    assert sorted(accuracy["configuration"]) == ["sliding_window window=100", "sliding_window window=5",
                                                 "transformer_xl mem_len=120", "transformer_xl mem_len=8"]
    assert sorted(accuracy["budget"]) == ["4 KiB", "4 KiB", "64 KiB", "64 KiB"]
    tests = leaderboard.tests("passkey")
    assert len(tests) == 2 and (tests["pairs"] == 64).all()  # one pair per budget, never across budgets
    assert set(tests["A"].str.extract(r"budget=(\d+)")[0]) == set(tests["B"].str.extract(r"budget=(\d+)")[0])
    budget = display.budget_table(leaderboard, "passkey")
    assert list(budget.columns) == ["mechanism", "budget 4 KiB", "budget 64 KiB"]


def test_two_seeds_print_no_interval_and_say_why(tmp_path):
    results = tmp_path / "results"
    for seed in (0, 1):
        store_run(results, f"fa{seed}", config("full_attention", seed), {64: 32, 128: 31})
    leaderboard = board(tmp_path)
    [entry] = leaderboard.by_length("passkey").query("context_len == 64").to_dict("records")
    assert entry["seeds"] == 2 and entry["method"] == "too few seeds" and np.isnan(entry["ci_low"])
    assert display.accuracy_table(leaderboard, "passkey")["exact_match @64"].iloc[0] == "1.000 (no interval: 2 seeds)"
    assert "2 seeds: no interval" in " ".join(display.task_notes(leaderboard, "passkey"))


def test_three_seeds_that_agree_keep_the_evaluation_noise_in_their_interval(tmp_path):
    results = tmp_path / "results"
    for seed in (0, 1, 2):
        store_run(results, f"fa{seed}", config("full_attention", seed), {64: 32, 128: 32})
    [entry] = board(tmp_path).by_length("passkey").query("context_len == 64").to_dict("records")
    assert entry["seeds"] == 3 and entry["method"] == "logit t"
    assert entry["value"] == 1.0 and entry["ci_high"] == 1.0 and 0.9 < entry["ci_low"] < 0.99  # Wilson of 96, not [1, 1]


def test_several_seeds_interval_covers_training_variance(tmp_path):
    results = tmp_path / "results"
    for seed, right in enumerate((8, 16, 30)):  # seeds disagree far more than 32 examples can explain
        store_run(results, f"lstm{seed}", config("lstm_gated", seed), {64: right, 128: right})
    leaderboard = board(tmp_path)
    [entry] = leaderboard.by_length("passkey").query("context_len == 64").to_dict("records")
    assert entry["value"] == pytest.approx(54 / 96)  # the mean of the seed means, not the median (0.5)
    pooled_wilson_width = 0.19  # Wilson of 54/96 is about [0.46, 0.66]
    assert entry["ci_high"] - entry["ci_low"] > 1.5 * pooled_wilson_width
    assert entry["ci_low"] < 16 / 32 < entry["ci_high"]
    assert display.accuracy_table(leaderboard, "passkey")["seed means"].iloc[0] == "0.25..0.94"


def test_paired_tests_with_seeds_take_the_seed_as_the_unit(tmp_path):
    results = tmp_path / "results"
    # A beats B by 12 examples with seed 0, B beats A by 10 with seed 1: pooled McNemar would call it
    for seed, (a, b) in enumerate(((28, 16), (14, 24), (20, 20))):
        store_run(results, f"a{seed}", config("sliding_window", seed, window=8), {64: a, 128: a})
        store_run(results, f"b{seed}", config("transformer_xl", seed, mem_len=8), {64: b, 128: b})
    [test] = board(tmp_path).tests("passkey").to_dict("records")
    assert test["test"] == "difference t-test" and test["seeds"] == 3 and test["pairs"] == 192
    assert test["p"] > 0.5 and test["significant"] == "no"
    assert test["diff_low"] < 0 < test["diff_high"]


def test_one_seed_tests_compare_checkpoints_with_an_effect_size(tmp_path):
    results = tmp_path / "results"
    store_run(results, "a", config("sliding_window", 0), {64: 32, 128: 30})
    store_run(results, "b", config("transformer_xl", 0), {64: 20, 128: 10})
    leaderboard = board(tmp_path)
    [test] = leaderboard.tests("passkey").to_dict("records")
    assert test["test"] == "checkpoint t-test" and test["difference"] == pytest.approx(32 / 64)
    assert 0.35 < test["diff_low"] < 0.5 < test["diff_high"] < 0.65
    assert test["significant"] == "checkpoints differ"  # never a plain "yes" about the mechanism
    notes = " ".join(display.test_notes(leaderboard, "passkey"))
    assert "compares two trained checkpoints" in notes and "never marked significant" in notes


def test_out_of_memory_ranks_as_failure_and_its_pairs_are_counted(tmp_path):
    results = tmp_path / "results"
    store_run(results, "fa", config("full_attention", 0), {64: 32}, oom=(128,))
    store_run(results, "sw", config("sliding_window", 0), {64: 24, 128: 20})
    leaderboard = board(tmp_path)
    ranking = leaderboard.ranking("passkey")
    assert list(ranking.index) == ["sliding_window", "full_attention"]  # 0.69 beats (1.0 + OOM as 0) / 2
    accuracy = display.accuracy_table(leaderboard, "passkey").set_index("configuration")
    assert accuracy.loc["full_attention", "exact_match @128"] == "OOM"
    assert accuracy.loc["full_attention", "effective length"] == "64"
    [test] = leaderboard.tests("passkey").to_dict("records")
    assert test["pairs"] == 32 and test["dropped"] == 32
    assert "32 example pair(s) dropped" in " ".join(display.test_notes(leaderboard, "passkey"))


def test_failed_runs_are_ranked_last_and_listed(tmp_path):
    results = tmp_path / "results"
    store_run(results, "weak", config("lstm_gated", 0), {64: 1, 128: 0})
    store_run(results, "broken", config("rmt", 0), {}, status="diverged")
    leaderboard = board(tmp_path)
    assert list(leaderboard.ranking("passkey").index) == ["lstm_gated", "rmt"]
    text = leaderboard_markdown(leaderboard, "demo", "Generated now.")
    assert "| 2      | rmt" in text and "DIVERGED" in text and "## Runs without results" in text
    assert "RuntimeError: boom" in text and "Traceback" not in text


def test_effective_length_is_strictly_above_the_threshold_and_censored(tmp_path):
    results = tmp_path / "results"
    store_run(results, "all", config("full_attention", 0), {64: 32, 128: 32})
    store_run(results, "none", config("lstm_gated", 0), {64: 10, 128: 32})  # passing after failing counts not
    store_run(results, "edge", config("sliding_window", 0), {64: 32, 128: 16})
    effective = board(tmp_path, threshold=0.5).effective_length("passkey")
    assert effective["full_attention"] == ">= 128" and effective["lstm_gated"] == "< 64"
    assert effective["sliding_window"] == "64"  # 16/32 = 0.5 is not above 0.5


def test_ranking_follows_higher_is_better(tmp_path):
    results = tmp_path / "results"
    store_run(results, "a", config("full_attention", 0), {}, metric="error_rate", higher_is_better=False,
              values={64: [0.1] * 4, 128: [0.2] * 4})
    store_run(results, "b", config("lstm_gated", 0), {}, metric="error_rate", higher_is_better=False,
              values={64: [0.6] * 4, 128: [0.9] * 4})
    assert list(board(tmp_path).ranking("passkey").index) == ["full_attention", "lstm_gated"]


def test_bounded_continuous_metric_interval_stays_inside_its_range(tmp_path):
    results = tmp_path / "results"
    f1 = [0.0] * 30 + [0.3, 0.4]  # a t interval would go below 0: "0.021 [-0.02, 0.06]"
    store_run(results, "a", config("full_attention", 0), {}, metric="f1", values={64: f1, 128: f1})
    [entry] = board(tmp_path).by_length("passkey").query("context_len == 64").to_dict("records")
    assert entry["method"] == "logit t" and entry["ci_low"] >= 0 and entry["ci_high"] > entry["value"]


def test_ties_share_a_marked_rank_and_tables_are_formatted(tmp_path):
    results = tmp_path / "results"
    for mechanism in ("full_attention", "compressive"):
        store_run(results, mechanism, config(mechanism, 0), {64: 32, 128: 32})
    store_run(results, "lstm", config("lstm_gated", 0), {64: 2, 128: 0})
    leaderboard = board(tmp_path)
    assert list(leaderboard.ranking("passkey")["rank"]) == ["1=", "1=", "3"]
    costs = display.cost_table(leaderboard, "passkey")
    assert costs["peak memory @128"].iloc[0] == "380 KiB" and costs["prefill tokens/s"].iloc[0] == "29.3k (25k..30k)"
    assert costs["decode ms/token @128"].iloc[0] == "1 (p95 2)"
    detail = display.detail_table(leaderboard, "passkey")
    assert list(detail.columns) == ["configuration", "depth", "@64", "@128"]  # no tuples as labels
    text = leaderboard_markdown(leaderboard, "demo", "Generated now.")
    assert max(len(line) for line in text.splitlines() if line.startswith("|")) < 260


def test_training_that_was_still_falling_is_flagged(tmp_path):
    results = tmp_path / "results"
    falling = [{"step": s, "loss": 3.0 - s / 100, "lr": 0.003} for s in (50, 100, 150, 200)]
    flat = [{"step": s, "loss": 0.1, "lr": 0.003} for s in (50, 100, 150, 200)]
    store_run(results, "a", config("full_attention", 0), {64: 32, 128: 32}, curve=flat)
    store_run(results, "b", config("lstm_gated", 0), {64: 2, 128: 0}, curve=falling)
    leaderboard = board(tmp_path)
    costs = display.cost_table(leaderboard, "passkey").set_index("configuration")
    assert costs.loc["lstm_gated", "training"].startswith("loss still falling")
    assert costs.loc["full_attention", "training"] == ""
    assert "lstm_gated seed 0" in display.training_note(leaderboard, "passkey")


def test_duplicate_records_of_one_configuration_and_seed_are_not_pooled(tmp_path):
    results = tmp_path / "results"
    store_run(results, "old", config("full_attention", 0), {64: 10, 128: 10})
    store_run(results, "newer", config("full_attention", 0), {64: 30, 128: 30})
    with pytest.warns(UserWarning, match="the same configuration and seed"):
        leaderboard = board(tmp_path)
    [entry] = leaderboard.by_length("passkey").query("context_len == 64").to_dict("records")
    assert entry["seeds"] == 1 and entry["n"] == 32 and entry["value"] == pytest.approx(30 / 32)


def test_write_report_files_html_explains_and_unreadable_outcomes_are_named(tmp_path):
    results = tmp_path / "results"
    store_run(results, "fa", config("full_attention", 0), {64: 32, 128: 30})
    store_run(results, "sw", config("sliding_window", 0), {64: 20, 128: 8})
    (results / "demo" / "sw" / OUTCOMES_FILE).write_text("\x00garbage")
    with pytest.warns(UserWarning, match="sw"):
        write_report(results, tmp_path / "reports", "demo")
    directory = tmp_path / "reports" / "demo"
    csv = pd.read_csv(directory / "leaderboard.csv")
    assert {"row", "mechanism", "context_len", "depth", "metric", "value", "status"} <= set(csv.columns)
    page = (directory / "index.html").read_text()
    markdown = (directory / "leaderboard.md").read_text()
    for sentence in ("How to read this report", "Effective length (RULER)", "evaluation noise only",
                     "Times depend on the machine"):
        assert sentence in page and sentence in markdown
    assert "<th>mechanism</th>" not in page and "<th></th>" not in page  # no empty index header row
    assert page.count("plotly.js v") == 1 and "Provenance" in page


def test_lengths_beyond_training_are_marked(tmp_path):
    results = tmp_path / "results"
    store_run(results, "fa", config("full_attention", 0), {64: 32, 128: 30})
    record_path = results / "demo" / "fa" / "result.json"
    record = json.loads(record_path.read_text())
    record["training"]["context_len"] = 96  # trained up to 96 tokens: 128 is extrapolation
    record_path.write_text(json.dumps(record))
    leaderboard = board(tmp_path)
    accuracy = display.accuracy_table(leaderboard, "passkey")
    assert accuracy["exact_match @128"].iloc[0].endswith("]*") and not accuracy["exact_match @64"].iloc[0].endswith("*")
    assert "length extrapolation" in " ".join(display.task_notes(leaderboard, "passkey"))


def test_an_experiment_of_failed_runs_only_still_reports(tmp_path):
    results = tmp_path / "results"
    store_run(results, "broken", config("rmt", 0), {}, status="failed")
    write_report(results, tmp_path / "reports", "demo")
    text = (tmp_path / "reports" / "demo" / "leaderboard.md").read_text()
    assert "## Runs without results" in text and "RuntimeError: boom" in text


def test_headline_names_a_tuned_rate_in_its_cell_unless_two_rows_would_merge(tmp_path):
    """A rate chosen per (configuration, task) moves from the row name to the cell; two rows of one task
    that differ only in their chosen rate (seeds that retried a failed tuning run) keep their names."""
    results = tmp_path / "results"
    tuning = {"lr_grid": [0.001, 0.003], "seed": 0, "trials": []}
    for run_id, mechanism, lr, seed in [("a0", "sliding_window", 0.003, 0), ("a1", "sliding_window", 0.003, 1),
                                         ("b0", "lstm_gated", 0.001, 0), ("b1", "lstm_gated", 0.003, 1)]:
        cfg = {**config(mechanism, seed), "train": {"steps": 100, "lr": lr}, "tune": {"lr_grid": [0.001, 0.003]}}
        store_run(results, run_id, cfg, {64: 30, 128: 20})
        path = results / "demo" / run_id / "result.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "tuning": {**tuning, "chosen_lr": lr}}))
    headline = display.headline_table(board(tmp_path))
    assert sorted(headline["configuration"]) == ["lstm_gated lr=0.001", "lstm_gated lr=0.003", "sliding_window"]
    cells = headline.set_index("configuration")["passkey: exact_match, mean over lengths"]
    assert cells["sliding_window"].endswith(" at lr=0.003")
    assert not cells["lstm_gated lr=0.001"].endswith("at lr=0.001")


def test_a_rate_chosen_at_an_end_of_its_grid_is_flagged_only_when_it_beat_its_neighbour():
    def tuning(chosen, scores):
        return {"lr_grid": [0.01, 0.001, 0.003], "seed": 0, "chosen_lr": chosen,
                "trials": [{"lr": lr, "validation_score": score} for lr, score in scores.items()]}

    assert display.chosen_rate_text(tuning(0.001, {0.001: 0.3, 0.003: 0.2, 0.01: 0.1})).endswith("(the grid's lowest)")
    assert display.chosen_rate_text(tuning(0.01, {0.001: 0.1, 0.003: 0.2, 0.01: 0.3})) == "0.01 (the grid's highest)"
    assert display.chosen_rate_text(tuning(0.003, {0.001: 0.1, 0.003: 0.3, 0.01: 0.2})) == "0.003"
    assert display.chosen_rate_text({**tuning(0.001, {0.001: 0.3, 0.003: 0.2}), "lr_grid": [0.001, 0.001, 0.003]}
                                    ).endswith("(the grid's lowest)")  # a rate given twice is one rate
    # every rate equal (chosen on the training loss): no trend to extrapolate
    assert display.chosen_rate_text(tuning(0.01, {0.001: 1.0, 0.003: 1.0, 0.01: 1.0})) == "0.01"


def test_a_tasks_whole_number_knob_reads_whole_beside_another_tasks_runs(tmp_path):
    results = tmp_path / "results"
    store_run(results, "a", config("full_attention", 0), {64: 30, 128: 20})
    store_run(results, "b", {**config("full_attention", 0), "task": {"name": "mqar"}}, {64: 30, 128: 20})
    run_dir = results / "demo" / "b"
    record = json.loads((run_dir / "result.json").read_text())
    knobs = {"num_kv_pairs": 2, "haystack": "essay", "ratio": 1.0}  # an integer, a text, a whole float
    for cell in record["cells"]:
        cell["knobs"] = {"context_len": cell["knobs"]["context_len"], **knobs}
    (run_dir / "result.json").write_text(json.dumps({**record, "task": "mqar"}))
    outcomes = pd.read_csv(run_dir / OUTCOMES_FILE).drop(columns="depth").assign(**knobs)
    (run_dir / OUTCOMES_FILE).write_text(outcomes.to_csv(index=False))
    leaderboard = board(tmp_path)
    shown = display.detail_table(leaderboard, "mqar")
    assert [str(shown[knob].iloc[0]) for knob in knobs] == ["2", "essay", "1.0"]
    assert [str(v) for v in display.detail_table(leaderboard, "passkey")["depth"]] == ["0.5"]


def test_a_config_stored_before_a_key_existed_is_the_same_row_as_one_stored_at_its_neutral_value(tmp_path):
    """Old records lack keys added later at their neutral value (mechanism.backend, train.patience, ...): the
    run_id ignores those keys, and so does the report, or one configuration would split into two rows."""
    results = tmp_path / "results"
    store_run(results, "old", config("mamba", 0), {64: 30, 128: 30})
    store_run(results, "new", {**config("mamba", 1, backend="auto"), "tune": {"max_extensions": 0}},
              {64: 31, 128: 31})
    runs = board(tmp_path).task_runs("passkey")
    assert set(runs["row"]) == {"mamba"} and sorted(runs["seed"]) == [0, 1]


def test_a_row_evaluated_at_its_own_length_only_has_no_entry_at_the_others(tmp_path):
    """Zoology's sweep: each training length is evaluated at itself; the other lengths are not failures."""
    results = tmp_path / "results"
    for length, right in ((64, 30), (128, 20)):
        cfg = config("full_attention", 0)
        cfg["train"]["context_len"], cfg["eval"]["grid"]["context_len"] = length, [length]
        cfg["train"]["min_context_len"] = length  # follows context_len: not a setting of its own
        store_run(results, f"fa{length}", cfg, {length: right})
    leaderboard = board(tmp_path)
    lengths = leaderboard.by_length("passkey")
    assert sorted(zip(lengths["row"], lengths["context_len"], lengths["status"])) == [
        ("full_attention (context_len=128)", 128, "ok"), ("full_attention (context_len=64)", 64, "ok")]
    assert leaderboard.scores("passkey").to_dict() == {"full_attention (context_len=64)": 30 / 32,
                                                      "full_attention (context_len=128)": 20 / 32}
    assert sorted(leaderboard.seed_scores("passkey")["score"]) == [20 / 32, 30 / 32]
    # each row's costs at its own longest length, not blank at the task's longest
    costs = leaderboard.costs("passkey")
    assert costs["cost_length"].to_dict() == {"full_attention (context_len=64)": 64, "full_attention (context_len=128)": 128}
    assert costs["state_bytes"].notna().all()
    table = display.cost_table(leaderboard, "passkey")
    assert list(table["longest"]) == ["64", "128"] and table["state @its longest"].str.len().gt(0).all()
    # a figure at 128 tokens draws only the costs measured there
    assert list(html._costs_at(leaderboard, "passkey", 128).index) == ["full_attention (context_len=128)"]


def test_a_width_sweep_draws_accuracy_against_width_and_state_bytes_per_training_length(tmp_path):
    results = tmp_path / "results"
    for length in (64, 128):
        for mechanism, d_model, right in (("full_attention", 32, 31), ("full_attention", 64, 32),
                                          ("lstm_gated", 32, 4), ("lstm_gated", 64, 12)):
            cfg = config(mechanism, 0)
            cfg["model"]["d_model"], cfg["train"]["context_len"], cfg["eval"]["grid"]["context_len"] = d_model, length, [length]
            store_run(results, f"{mechanism}{d_model}at{length}", cfg, {length: right})
    leaderboard = board(tmp_path)
    sweep = leaderboard.width_sweep("passkey")
    assert sorted(sweep["panel"].unique()) == ["context_len=128", "context_len=64"]
    lstm = sweep[(sweep["mechanism"] == "lstm_gated") & (sweep["panel"] == "context_len=64")].sort_values("d_model")
    assert list(lstm["d_model"]) == [32, 64] and list(lstm["score"]) == [4 / 32, 12 / 32]
    assert (lstm["score_low"] < lstm["score"]).all() and (lstm["score"] < lstm["score_high"]).all()
    assert list(lstm["state_bytes"]) == [1024, 1024]
    write_report(results, tmp_path / "reports", "demo")
    page = (tmp_path / "reports" / "demo" / "index.html").read_text()
    for length in (64, 128):
        assert f"against model width (context_len={length})" in page
        assert f"against state bytes per sequence (context_len={length})" in page
