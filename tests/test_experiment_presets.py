"""The experiment presets say what they run: Zoology's Figure 2 (``zoology_mqar``) and the GPU reference."""

from __future__ import annotations

import numpy as np

import harness
from conftest import REPO, compose_config, sweep_jobs
from harness.report import build_leaderboard
from harness.engine.plan import plan


def option(job: list[str], key: str) -> str:
    return next(override.split("=", 1)[1] for override in job if override.startswith(f"{key}="))


def test_zoology_mqar_is_figure_2_each_length_trained_and_tested_at_itself():
    jobs = sweep_jobs("zoology_mqar")
    assert len(jobs) == 3 * 3 * 5
    assert {(option(job, "train.context_len"), option(job, "model.d_model")) for job in jobs} == {
        (length, width) for length in ("64", "128", "256") for width in ("32", "64", "128")}
    for job in jobs[:: len(jobs) // 9]:
        steps = plan(compose_config(job))
        config, length = steps.cfg, int(option(job, "train.context_len"))
        assert (config.train.min_context_len, list(config.eval.grid.context_len)) == (length, [length])
        assert (config.model.n_heads, config.model.mlp_ratio, config.model.n_layers) == (1, 0, 2)
        # Zoology: np.logspace(-4, -2, 4), each configuration at its best rate
        assert [run.config.train.lr for run in steps.tuning_runs] == [float(f"{lr:.3g}") for lr in np.logspace(-4, -2, 4)]
        options = {key: value for key, value in dict(config.task).items() if key not in ("name", "grid")}
        task = harness.build_task("mqar", **options)
        assert task.evaluation_cells({"context_len": [length]}) == [{"context_len": length, "num_kv_pairs": length // 16}]
        assert task.training_knobs(np.random.default_rng(0), length)["num_kv_pairs"] == length // 16
        assert not task.config.random_non_queries


def test_gpu_reference_runs_nine_mechanisms_on_two_tasks_beyond_their_training_length():
    jobs = sweep_jobs("gpu_reference")
    assert len(jobs) == 9 * 2 and len({option(job, "mechanism") for job in jobs}) == 9
    config = compose_config(jobs[0])
    assert config.precision == "bf16" and config.train.max_tokens == 8_000_000 and config.train.steps is None
    assert config.model.mlp_ratio == 0
    assert max(config.eval.grid.context_len) == 4 * config.train.context_len


def test_the_committed_zoology_store_backs_its_findings():
    """docs/findings/zoology-mqar.md: at 64 tokens every mechanism ran at widths 32 and 64, each at its tuned rate,
    and full attention reached 0.99 from width 64 on, as in Zoology's Figure 2."""
    board = build_leaderboard(REPO / "results", "zoology_mqar")
    sweep = board.width_sweep("mqar")
    lengths = board.by_length("mqar")
    at_64 = sweep.loc[lengths.loc[lengths["context_len"] == 64, "row"]]
    mechanisms = {"full_attention", "sliding_window", "lstm_gated", "mamba", "linear_attention"}
    assert {(m, d) for m in mechanisms for d in (32, 64)} <= set(zip(at_64["mechanism"], at_64["d_model"]))
    attention = sweep[(sweep["mechanism"] == "full_attention") & (sweep["d_model"] >= 64)]
    assert len(attention) and (attention["score"] >= 0.99).all()
    assert all("tuning" in record for record in board.task_runs("mqar")["record"])
