"""The contracts every task keeps (DESIGN.md), checked for every registered task.

A new task gets these tests without being named here: it is built with its default options and
tested on the first cell of its default grid at a short context length, or on every cell of that
grid where each cell exercises different code (the oracle, the chance level).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

import harness
from harness.taskkit.task import IGNORE, Example, Task

CONTEXT_LEN = 128
#: tasks whose labels are not the tokens that follow them in the sequence, and why
LABELS_NOT_IN_SEQUENCE = {"mqar": "a query is followed by noise, as in Zoology; its oracle pins the alignment"}
#: tasks whose chance level is a guess within the kind of answer the question asks for: babi_qa's
#: qa 5 asks for a person ("who ...") or an object ("what ..."), so guesses are copied within a kind
QUESTION_KIND = {"babi_qa": lambda task, example: next(
    word for word in reversed(task.vocab.decode(example.tokens).split()) if word in ("where", "what", "who"))}
#: standard errors between a measured guesser and the chance level before a test fails
Z = 4.0


@pytest.fixture(params=harness.tasks())
def task(request) -> Task:
    return harness.build_task(request.param)


def first_cell(task: Task, context_len: int = CONTEXT_LEN) -> dict:
    return task.evaluation_cells({"context_len": [context_len]})[0]


def default_cells(task: Task, context_len: int = CONTEXT_LEN) -> list[dict]:
    """Every cell of the task's default grid, at ``context_len``."""
    return task.evaluation_cells({"context_len": [context_len]})


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
        generated = example.generated_positions()  # the answer can be written by the model (raises if not)
        assert generated == 0 or generated == CONTEXT_LEN - example.answer_positions[0] - 1


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


def test_oracle_scores_one_on_every_metric_in_every_cell(task):
    """Every cell, as cells differ in what the oracle must answer (babi_qa's five kinds of question)."""
    for cell in default_cells(task):
        for example in task.test_examples(seed=2, knobs=cell, count=30):
            scores = task.score(example, task.oracle(example))
            assert set(scores) == set(task.metrics)
            assert scores == {metric: 1.0 for metric in task.metrics}, cell


def test_labels_and_training_targets_are_the_next_token(task):
    """Position t is trained and scored on the token at t + 1: a shift by one would train on the wrong token."""
    if task.name in LABELS_NOT_IN_SEQUENCE:
        pytest.skip(LABELS_NOT_IN_SEQUENCE[task.name])
    examples = [*task.test_examples(seed=5, knobs=first_cell(task), count=10),
                *task.training_examples(seed=5, step=0, count=10, context_len=CONTEXT_LEN)]
    for example in examples:
        for expected in (example.labels, example.training_targets):
            positions = np.flatnonzero(expected != IGNORE)
            assert len(positions) and positions.max() < len(example.tokens) - 1
            np.testing.assert_array_equal(expected[positions], example.tokens[positions + 1])


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


def context_free_guesses(task: Task, examples: list[Example], rng: np.random.Generator) -> list[np.ndarray]:
    """Predictions of a guesser that ignores the context: each example gets another example's answer.

    The answer tokens of another example of the same cell (and kind of question) go, in order, to
    this example's answer positions (and on past the last one if that answer is longer)."""
    kind = QUESTION_KIND.get(task.name, lambda task, example: None)
    groups = defaultdict(list)
    for index, example in enumerate(examples):
        groups[kind(task, example)].append(index)
    guesses = [np.empty(0)] * len(examples)
    for members in groups.values():
        assert len(members) > 1, "a kind of question with one example cannot be guessed from another"
        order = rng.permutation(members)
        for this, other in zip(order, np.roll(order, 1)):
            mine, theirs = examples[this].answer_positions, examples[other].answer_positions
            positions = np.concatenate((mine, mine[-1] + 1 + np.arange(max(0, len(theirs) - len(mine)))))
            guess = np.full(len(examples[this].tokens), IGNORE, dtype=np.int64)
            guess[positions[: len(theirs)]] = examples[other].labels[theirs]
            guesses[this] = guess
    return guesses


def test_chance_level_is_what_a_context_free_guesser_scores_in_every_cell(task):
    """The documented chance level is measured, in both directions: not merely an upper bound.

    The tolerance is Z standard errors of the mean of ``count`` scores in [0, 1], whose variance
    is at most m (1 - m) for a mean m (taken at the larger of the chance level and the measurement)."""
    rng = np.random.default_rng(0)
    count = 100
    for cell in default_cells(task):
        examples = task.test_examples(seed=6, knobs=cell, count=count)
        guesses = context_free_guesses(task, examples, rng)
        chance = task.chance(**cell)
        for metric in task.metrics:
            measured = float(np.mean([task.score(e, guess)[metric] for e, guess in zip(examples, guesses)]))
            spread = max(chance[metric] * (1 - chance[metric]), measured * (1 - measured))
            tolerance = Z * np.sqrt(spread / count)
            assert abs(measured - chance[metric]) <= tolerance, (
                f"{task.name} {cell} {metric}: a context-free guesser scores {measured:.4f}, "
                f"chance is {chance[metric]:.4f} (tolerance {tolerance:.4f})")


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
