"""The passkey task: determinism, disjoint splits, the oracle, chance, and a hand-checked example."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.taskkit.task import IGNORE


@pytest.fixture
def task():
    return harness.build_task("passkey", n_digits=3)


def test_hand_checked_example(task):
    example = task.generate(np.random.default_rng(0), context_len=48, depth=0.5)
    assert task.vocab.decode(example.tokens) == (
        "the grass is green . the sky is "
        "the pass key is 8 6 5 . remember it . 8 6 5 is the pass key . "
        "blue . the sun is yellow . here "
        "what is the pass key ? the pass key is 8 6 5"
    )
    assert list(example.answer_positions) == [44, 45, 46]
    assert task.vocab.decode(example.labels[[44, 45, 46]]) == "8 6 5"
    assert example.knobs == {"context_len": 48, "depth": 0.5}


@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("context_len", [40, 100, 257])
def test_length_depth_and_labels(task, context_len, depth):
    example = task.generate(np.random.default_rng(1), context_len=context_len, depth=depth)
    assert len(example.tokens) == len(example.labels) == context_len
    positions = example.answer_positions
    assert list(positions) == list(range(context_len - 4, context_len - 1))
    np.testing.assert_array_equal(example.labels[positions], example.tokens[positions + 1])
    text = task.vocab.decode(example.tokens)
    filler_before = text.index("the pass key is")
    if depth == 0.0:
        assert filler_before == 0
    if depth == 1.0:
        assert text.index(". what is the pass key") > text.index("is the pass key .")
        assert text.split(" is the pass key . ")[1].startswith("what is")


def test_test_examples_are_deterministic_and_cells_differ(task):
    first = task.test_examples(seed=0, knobs={"context_len": 64, "depth": 0.5}, count=5)
    again = task.test_examples(seed=0, knobs={"context_len": 64, "depth": 0.5}, count=5)
    other_seed = task.test_examples(seed=1, knobs={"context_len": 64, "depth": 0.5}, count=5)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.tokens, b.tokens)
    assert any(not np.array_equal(a.tokens, b.tokens) for a, b in zip(first, other_seed))


def test_training_and_test_keys_come_from_disjoint_streams():
    task = harness.build_task("passkey", n_digits=8)  # 10^8 keys: a shared key would mean a shared seed
    knobs = {"context_len": 64, "depth": 0.5}
    test_keys = {tuple(e.labels[e.answer_positions]) for e in task.test_examples(seed=0, knobs=knobs, count=200)}
    train_keys = {tuple(e.labels[e.answer_positions])
                  for step in range(20) for e in task.training_examples(seed=0, step=step, count=10, context_len=64)}
    assert len(test_keys) == 200 and len(train_keys) == 200
    assert not test_keys & train_keys


def test_training_examples_draw_depths(task):
    depths = [e.knobs["depth"] for e in task.training_examples(seed=0, step=0, count=50, context_len=64)]
    assert min(depths) < 0.2 and max(depths) > 0.8


def test_oracle_scores_one(task):
    for example in task.test_examples(seed=3, knobs={"context_len": 90, "depth": 0.7}, count=20):
        assert task.score(example, task.oracle(example)) == {"exact_match": 1.0, "digit_accuracy": 1.0}


def test_scores_partial_and_wrong_answers(task):
    example = task.generate(np.random.default_rng(0), context_len=48, depth=0.5)  # key 8 6 5
    predictions = task.oracle(example)
    predictions[45] = task.vocab.ids["0"]
    assert task.score(example, predictions) == {"exact_match": 0.0, "digit_accuracy": pytest.approx(2 / 3)}


def test_chance_level_matches_random_guessing(task):
    rng = np.random.default_rng(0)
    examples = task.test_examples(seed=0, knobs={"context_len": 48, "depth": 0.2}, count=400)
    digit_ids = np.array([task.vocab.ids[str(d)] for d in range(10)])
    scores = [task.score(e, np.where(e.labels != IGNORE, rng.choice(digit_ids, len(e.labels)), IGNORE))["digit_accuracy"]
              for e in examples]
    assert task.chance(context_len=48, depth=0.2) == {"exact_match": pytest.approx(1e-3), "digit_accuracy": 0.1}
    assert abs(np.mean(scores) - 0.1) < 0.03


@pytest.mark.parametrize("knobs, message", [
    ({"context_len": 20, "depth": 0.5}, "shorter than"),
    ({"context_len": 64, "depth": 1.5}, "depth"),
    ({"context_len": 64}, "needs grid knob"),
    ({"context_len": 64, "depth": 0.5, "colour": 1}, "no grid knob"),
    ({"context_len": 64.5, "depth": 0.5}, "must be int"),
])
def test_invalid_cells_are_rejected(task, knobs, message):
    with pytest.raises(ValueError, match=message):
        task.validate_cell(knobs)


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="n_digits"):
        harness.build_task("passkey", n_digits=0)
    with pytest.raises(TypeError, match="n_digit"):
        harness.build_task("passkey", n_digit=3)
