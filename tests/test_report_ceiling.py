"""The report states whether the experiment's ceiling learned each task (issue #26 item 3)."""

from __future__ import annotations

import json

import pytest

from conftest import compose_config, tiny_overrides
from harness.engine.checks import ConfigError
from harness.engine.plan import prepare
from harness.report import display
from test_report import board, config, store_run


def ceiling_note(tmp_path) -> str:
    [note] = display.ceiling_notes(board(tmp_path))
    return note


def test_a_ceiling_that_learned_the_task_is_named_with_its_lowest_trained_score(tmp_path):
    store_run(tmp_path / "results", "fa", config("full_attention", 0), {64: 32, 128: 31})
    store_run(tmp_path / "results", "sw", config("sliding_window", 0), {64: 10, 128: 3})
    note = ceiling_note(tmp_path)
    assert note.startswith("Ceiling, passkey: full_attention reached 0.95 at every trained length")
    assert "(lowest 0.969 at 128 tokens)" in note


def test_a_ceiling_below_the_level_says_the_ranking_measures_learning(tmp_path):
    store_run(tmp_path / "results", "fa", config("full_attention", 0), {64: 32, 128: 24})
    store_run(tmp_path / "results", "sw", config("sliding_window", 0), {64: 10, 128: 3})
    note = ceiling_note(tmp_path)
    assert "did NOT reach 0.95" in note and "(0.750 at 128 tokens)" in note
    assert "measures how far each mechanism learned" in note


@pytest.mark.parametrize("narrow, says", [(32, "full_attention (its best row in each of its 2 settings) reached 0.95"),
                                           (24, "full_attention did NOT reach 0.95 at every trained length in 1 of its "
                                                "2 settings (lowest full_attention (d_model=32): 0.750 at 128 tokens)")])
def test_the_ceiling_is_judged_in_every_setting_not_only_its_best_one(tmp_path, narrow, says):
    for d_model, right in ((32, {64: 32, 128: narrow}), (64, {64: 32, 128: 32})):
        for mechanism in ("full_attention", "sliding_window"):
            cfg = config(mechanism, 0)
            cfg["model"]["d_model"] = d_model
            store_run(tmp_path / "results", f"{mechanism}{d_model}", cfg, right if mechanism == "full_attention" else {64: 3, 128: 3})
    assert says in ceiling_note(tmp_path)


def test_lengths_beyond_training_do_not_count_against_the_ceiling(tmp_path):
    store_run(tmp_path / "results", "fa", config("full_attention", 0), {64: 32, 128: 2})
    path = tmp_path / "results" / "demo" / "fa" / "result.json"
    record = json.loads(path.read_text())
    record["training"]["context_len"] = 64  # 128 tokens lie beyond training: a length test, not a learning test
    path.write_text(json.dumps(record))
    assert "reached 0.95 at every trained length (lowest 1.000 at 64 tokens)" in ceiling_note(tmp_path)


def test_an_experiment_without_its_ceiling_says_so_and_another_ceiling_can_be_named(tmp_path):
    store_run(tmp_path / "results", "sw", config("sliding_window", 0), {64: 32, 128: 32})
    assert "full_attention was not run on this task" in ceiling_note(tmp_path)
    store_run(tmp_path / "results", "sw", {**config("sliding_window", 0), "ceiling": "sliding_window"},
              {64: 32, 128: 32})
    assert ceiling_note(tmp_path).startswith("Ceiling, passkey: sliding_window reached 0.95")


def test_an_unknown_ceiling_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"ceiling='full_atention': not a mechanism; known mechanisms: \["):
        prepare(compose_config([*tiny_overrides(tmp_path), "ceiling=full_atention"]))


def test_a_pretrained_models_ceiling_is_its_full_cache(tmp_path):
    for run_id, policy, right in (("full", "full", 32), ("window", "sliding_window", 5)):
        store_run(tmp_path / "results", run_id, config("full_attention", 0), {64: right, 128: right})
        path = tmp_path / "results" / "demo" / run_id / "result.json"
        record = json.loads(path.read_text())
        record.update(family="pretrained", mechanism=f"pretrained/{policy}", model="tiny", policy=policy, training=None)
        path.write_text(json.dumps(record))
    assert ceiling_note(tmp_path).startswith("Ceiling, passkey (pretrained models): pretrained/full reached 0.95")
