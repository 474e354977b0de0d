"""The contracts every task keeps (DESIGN.md), checked for every registered task.

A new task gets these tests without being named here: it is built with its default options and
tested on the first cell of its default grid at a short context length.
"""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.task import IGNORE, Task

CONTEXT_LEN = 128


@pytest.fixture(params=harness.tasks())
def task(request) -> Task:
    return harness.build_task(request.param)


def first_cell(task: Task, context_len: int = CONTEXT_LEN) -> dict:
    grid = task.evaluation_grid({"context_len": [context_len]})
    return {knob: values[0] for knob, values in grid.items()}


def test_default_cell_is_valid_and_examples_have_its_shape(task):
    cell = first_cell(task)
    task.validate_cell(cell)
    for example in task.test_examples(seed=0, knobs=cell, count=8):
        assert len(example.tokens) == len(example.labels) == CONTEXT_LEN
        assert example.tokens.dtype == example.labels.dtype == np.int64
        assert 0 <= example.tokens.min() and example.tokens.max() < task.vocab_size
        answers = example.labels[example.answer_positions]
        assert len(answers) > 0 and 0 <= answers.min() and answers.max() < task.vocab_size
        assert example.knobs == cell
        targets = example.training_targets
        assert len(targets) == CONTEXT_LEN and set(example.answer_positions) <= set(np.flatnonzero(targets != IGNORE))


def test_examples_are_deterministic_in_seed_and_cell(task):
    cell = first_cell(task)
    first = task.test_examples(seed=0, knobs=cell, count=6)
    again = harness.build_task(task.name).test_examples(seed=0, knobs=cell, count=6)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.labels, b.labels)
    other_seed = task.test_examples(seed=1, knobs=cell, count=6)
    assert any(not np.array_equal(a.tokens, b.tokens) for a, b in zip(first, other_seed))
    train = task.training_examples(seed=0, step=5, count=4, context_len=CONTEXT_LEN)
    train_again = task.training_examples(seed=0, step=5, count=4, context_len=CONTEXT_LEN)
    for a, b in zip(train, train_again):
        np.testing.assert_array_equal(a.tokens, b.tokens)


def test_training_and_test_examples_do_not_overlap(task):
    cell = first_cell(task)
    test = {example.tokens.tobytes() for example in task.test_examples(seed=0, knobs=cell, count=50)}
    train = {example.tokens.tobytes()
             for step in range(25) for example in task.training_examples(seed=0, step=step, count=4,
                                                                         context_len=CONTEXT_LEN)}
    assert len(test) == 50 and not test & train


def test_oracle_scores_one_on_every_metric(task):
    cell = first_cell(task)
    for example in task.test_examples(seed=2, knobs=cell, count=30):
        scores = task.score(example, task.oracle(example))
        assert set(scores) == set(task.metrics)
        assert scores == {metric: 1.0 for metric in task.metrics}


def test_a_random_guesser_is_not_above_chance(task):
    """Guessing any token of the vocabulary is no better than the documented chance level."""
    cell = first_cell(task)
    rng = np.random.default_rng(0)
    examples = task.test_examples(seed=3, knobs=cell, count=100)
    chance = task.chance(**cell)
    assert set(chance) == set(task.metrics)
    for metric in task.metrics:
        assert 0.0 <= chance[metric] < 1.0
        scores = [task.score(e, rng.integers(0, task.vocab_size, len(e.tokens)))[metric] for e in examples]
        assert np.mean(scores) <= chance[metric] + 3 * np.std(scores) / np.sqrt(len(scores)) + 1e-9


def test_wrong_answers_score_zero(task):
    """Predicting a token that is never an answer scores nothing (an all-wrong guesser)."""
    cell = first_cell(task)
    for example in task.test_examples(seed=4, knobs=cell, count=10):
        answers = set(example.labels[example.answer_positions].tolist())
        wrong = next(token for token in range(task.vocab_size) if token not in answers)
        scores = task.score(example, np.full(len(example.tokens), wrong))
        assert all(value == 0.0 for value in scores.values()), scores


def test_cells_too_short_and_unknown_knobs_are_rejected(task):
    cell = first_cell(task)
    with pytest.raises(ValueError, match="shorter than"):
        task.validate_cell({**cell, "context_len": 2})
    with pytest.raises(ValueError, match="no grid knob"):
        task.validate_cell({**cell, "colour": 1})
