"""Report statistics from synthetic stores (issue #25): intervals that agree with their tests, one Holm
family per task, power, honest seed counts, rounding, the cross-task headline and --compare."""

from __future__ import annotations

import json

import pytest

from harness.cli import report_main
from harness.report import build_leaderboard, display, summary
from test_report import board, config, store_run


def three_seed_store(results, rights):
    """Configurations (mechanism -> per-seed examples right of 32, at both lengths), 3 seeds each."""
    for mechanism, per_seed in rights.items():
        for seed, right in enumerate(per_seed):
            store_run(results, f"{mechanism}{seed}", config(mechanism, seed), {64: right, 128: right})


def test_each_configuration_meets_the_best_and_intervals_agree_with_holm(tmp_path):
    three_seed_store(tmp_path / "results", {"full_attention": (31, 30, 32), "mamba": (30, 31, 29),
                                            "lstm_gated": (20, 22, 18), "rmt": (5, 30, 12)})
    leaderboard = board(tmp_path)
    tests = leaderboard.tests("passkey")
    assert list(tests["A"]) == ["full_attention"] * 3 and set(tests["B"]) == {"mamba", "lstm_gated", "rmt"}
    for entry in tests.to_dict("records"):
        assert (entry["diff_low"] > 0 or entry["diff_high"] < 0) == (entry["significant"] == "yes")
        assert (entry["p (Holm)"] < 0.05) == (entry["significant"] == "yes")
    lstm = tests.set_index("B").loc["lstm_gated"]
    assert lstm["significant"] == "yes" and lstm["level"] < 0.05  # a clear gap over 3 seeds is found
    assert tests.set_index("B").loc["mamba", "significant"] == "no"
    assert (tests["detectable"] > 0).all()
    shown = display.tests_table(leaderboard, "passkey")
    assert {"detectable (80%)", "seeds for 0.05", "level"} <= set(shown.columns)


def test_compare_adds_a_pair_and_an_unknown_pair_is_refused(tmp_path, capsys):
    three_seed_store(tmp_path / "results", {"full_attention": (31, 30, 32), "mamba": (30, 31, 29),
                                            "rmt": (20, 22, 18)})
    leaderboard = build_leaderboard(tmp_path / "results", "demo", compare=(("mamba", "rmt"),))
    tests = leaderboard.tests("passkey")
    assert len(tests) == 3 and tests.iloc[-1][["A", "B", "why"]].tolist() == ["mamba", "rmt", "asked for"]
    with pytest.raises(ValueError, match="no task"):
        build_leaderboard(tmp_path / "results", "demo", compare=(("mamba", "nothing"),))
    with pytest.raises(SystemExit):
        report_main(["demo", "--results-dir", str(tmp_path / "results"), "--reports-dir", str(tmp_path / "r"),
                     "--compare", "mamba", "nothing"])
    assert "no task" in capsys.readouterr().err


def test_rounding_keeps_the_point_inside_its_printed_interval():
    assert display.interval_text(0.999, 0.9951, 1.0) == "0.999 [0.99, 1.00]"
    assert display.interval_text(0.5, 0.4449, 0.5551) == "0.500 [0.44, 0.56]"
    assert display.interval_text(0.02, -0.011, 0.051, signed=True) == "+0.020 [-0.02, +0.06]"
    assert display.bounds_text(0.95, 0.97) == "[0.95, 0.97]"  # exact hundredths stay put


def test_mixed_seed_counts_are_named_per_row_and_unshared_seeds_are_not_called_failures(tmp_path):
    results = tmp_path / "results"
    three_seed_store(results, {"full_attention": (31, 30, 32)})
    store_run(results, "mamba0", config("mamba", 0), {64: 20, 128: 20})
    leaderboard = board(tmp_path)
    text = display.seeds_text(leaderboard, "passkey")
    assert "1 seed: the interval covers evaluation noise only" in text and "not training variance (mamba)" in text
    assert "3 seeds: the interval covers training variance and evaluation noise (full_attention)" in text
    notes = " ".join(display.test_notes(leaderboard, "passkey"))
    assert "dropped" not in notes and "pair only the seeds both sides have" in notes
    [test] = leaderboard.tests("passkey").to_dict("records")
    assert test["seeds"] == 1 and test["significant"] in ("checkpoints differ", "no")


def test_effective_length_is_not_measured_when_every_tested_length_was_trained(tmp_path):
    results = tmp_path / "results"
    for run_id, mechanism, trained in (("a", "full_attention", 128), ("b", "mamba", 96)):
        store_run(results, run_id, config(mechanism, 0), {64: 32, 128: 30})
        path = results / "demo" / run_id / "result.json"
        record = json.loads(path.read_text())
        record["training"]["context_len"] = trained
        path.write_text(json.dumps(record))
    effective = board(tmp_path).effective_length("passkey")
    assert effective["full_attention"] == "not measured" and effective["mamba"] == ">= 128"


def test_headline_is_ordered_by_the_cross_task_iqm_and_shows_each_tasks_ranking_score(tmp_path):
    three_seed_store(tmp_path / "results", {"full_attention": (31, 30, 32), "mamba": (10, 12, 11),
                                            "rmt": (20, 22, 18)})
    leaderboard = board(tmp_path)
    headline = display.headline_table(leaderboard)
    assert list(headline["configuration"]) == ["full_attention", "rmt", "mamba"]
    cells = headline.set_index("configuration")["passkey: exact_match, mean over lengths"]
    scores = leaderboard.scores("passkey")
    for row, cell in cells.items():
        assert cell.startswith(f"{scores[row]:.3f} [") and cell.endswith(f"(#{leaderboard.ranking('passkey').loc[row, 'rank']})")
    frame = summary.normalised_scores(leaderboard, display.headline_names(leaderboard))
    chance = 0.001
    assert frame.query("configuration == 'mamba' and seed == 0")["score"].iloc[0] == pytest.approx(
        (10 / 32 - chance) / (1 - chance))
    assert summary.probability_of_improvement(frame, "full_attention", "mamba") == 1.0
    assert summary.probability_of_improvement(frame, "mamba", "mamba") == 0.5
    aggregate = summary.aggregates(frame)
    assert aggregate["iqm"].is_monotonic_decreasing and aggregate.index[0] == "full_attention"
    assert not {"iqm_low", "mean_low"} & set(aggregate.columns)  # no uncalibrated interval beside a few seeds
    profiles = summary.performance_profiles(frame)
    assert profiles.loc[0.0, "full_attention"] == 1.0 and profiles["mamba"].is_monotonic_decreasing
    assert "interquartile mean" in " ".join(display.headline_notes(leaderboard))


def test_the_threshold_help_says_strictly_above(capsys):
    with pytest.raises(SystemExit):
        report_main(["--help"])
    assert "strictly above" in capsys.readouterr().out


def test_the_edge_of_grid_flag_ignores_a_lead_within_noise():
    tuning = {"lr_grid": [0.001, 0.003], "seed": 0, "chosen_lr": 0.001,
              "trials": [{"lr": 0.001, "validation_score": 0.995}, {"lr": 0.003, "validation_score": 0.990}]}
    assert display.chosen_rate_text(tuning, examples=288) == "0.001"  # 0.005 on 288 examples is noise
    assert display.chosen_rate_text(tuning) == "0.001 (the grid's lowest)"  # no example count: any lead
    clear = {**tuning, "trials": [{"lr": 0.001, "validation_score": 0.6}, {"lr": 0.003, "validation_score": 0.4}]}
    assert display.chosen_rate_text(clear, examples=288) == "0.001 (the grid's lowest)"


def test_rows_at_chance_are_flagged_as_not_learned(tmp_path):
    three_seed_store(tmp_path / "results", {"full_attention": (31, 30, 32), "mamba": (0, 0, 0)})
    leaderboard = board(tmp_path)
    assert leaderboard.at_chance("passkey") == ["mamba"]
    costs = display.cost_table(leaderboard, "passkey").set_index("configuration")
    assert costs.loc["mamba", "training"].startswith("did not learn") and costs.loc["full_attention", "training"] == ""
    assert "did not learn the task" in display.training_note(leaderboard, "passkey")


def test_timings_from_parallel_runs_or_noisy_seeds_are_flagged_and_get_no_frontier(tmp_path):
    results = tmp_path / "results"
    three_seed_store(results, {"full_attention": (31, 30, 32), "mamba": (20, 21, 22)})
    assert board(tmp_path).timing_warning("passkey") is None
    path = results / "demo" / "mamba1" / "result.json"
    record = json.loads(path.read_text())
    for cell in record["cells"]:
        cell["decode_latency_p50_s"] = 0.00224  # 2.24x the other seeds'
    path.write_text(json.dumps(record))
    leaderboard = board(tmp_path)
    assert "(mamba) varies 2.24x" in leaderboard.timing_warning("passkey")
    assert display.cost_notes(leaderboard, "passkey")[0].startswith("Timings are rough here")
    record["provenance"]["argv"] = ["memarena", "hydra/launcher=local_parallel"]
    path.write_text(json.dumps(record))
    assert "1 of its 6 runs were launched in parallel" in board(tmp_path).timing_warning("passkey")


def test_a_difference_interval_stays_within_what_two_bounded_metrics_can_differ_by(tmp_path):
    # seeds that disagree wildly: the t interval of the difference would reach beyond +-1
    three_seed_store(tmp_path / "results", {"full_attention": (32, 32, 32), "rmt": (0, 32, 6)})
    leaderboard = board(tmp_path)
    [test] = leaderboard.tests("passkey").to_dict("records")
    assert -1 <= test["diff_low"] < 0 < test["diff_high"] <= 1 and test["significant"] == "no"
    [shown] = display.tests_table(leaderboard, "passkey").to_dict("records")
    assert shown["detectable (80%)"] == "> 1"


def test_identical_outcomes_state_no_power_figures(tmp_path):
    three_seed_store(tmp_path / "results", {"full_attention": (32, 32, 32), "mamba": (32, 32, 32)})
    [shown] = display.tests_table(board(tmp_path), "passkey").to_dict("records")
    assert shown["detectable (80%)"] == "" and shown["seeds for 0.05"] == "" and shown["significant"] == "no"


def test_timings_measured_under_load_are_flagged_from_the_record(tmp_path):
    results = tmp_path / "results"
    three_seed_store(results, {"full_attention": (31, 30, 32), "mamba": (20, 21, 22)})
    path = results / "demo" / "mamba2" / "result.json"
    record = json.loads(path.read_text())
    record["measurement"] = {"load": {"cpus": 2, "threads": 1, "data_workers": 1, "loadavg_1min_before": 2.6,
                                      "loadavg_1min_after": 1.9}}
    path.write_text(json.dumps(record))
    assert board(tmp_path).timing_warning("passkey") is None  # its own thread and data worker: no one else's
    record["measurement"]["load"]["loadavg_1min_after"] = 3.4
    path.write_text(json.dumps(record))
    assert "1 of its 6 runs were measured while the machine's load average exceeded its cores" in (
        board(tmp_path).timing_warning("passkey"))


def test_a_run_records_the_machine_load_around_its_timings(tmp_path):
    from conftest import compose_config, tiny_overrides
    from harness.engine.run import run

    record = run(compose_config(tiny_overrides(tmp_path)))
    load = record["measurement"]["load"]
    assert load["cpus"] >= 1 and load["threads"] >= 1 and load["data_workers"] == 1
    assert load["loadavg_1min_before"] >= 0 and load["loadavg_1min_after"] >= 0
