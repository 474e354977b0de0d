"""Hand-checked examples, chance levels and task-specific behaviour of the synthetic tasks.

The contracts shared by every task (determinism, disjoint splits, oracle, chance bound) are in
test_task_properties.py; each example here was checked by hand against its task's definition.
"""

from __future__ import annotations

import numpy as np
import pytest

import harness


def example(name, knobs, seed=0, **options):
    task = harness.build_task(name, **options)
    return task, task.generate(np.random.default_rng(seed), **knobs)


def answer_text(task, example):
    return task.vocab.decode(example.labels[example.answer_positions])


def test_niah_hand_checked_example_with_a_distractor():
    task, e = example("niah", {"context_len": 48, "depth": 0.5}, num_keys=2, value_digits=2)
    assert task.vocab.decode(e.tokens) == (
        "the grass is the special value for vidu is 0 0 . green . the sky is blue "
        "the special value for nudu is 2 3 . . the sun is yellow . here we go "
        "what are the special values for nudu ? answer : 2 3")
    assert e.answer_positions.tolist() == [45, 46] and answer_text(task, e) == "2 3"


def test_niah_lists_each_asked_keys_values_in_context_order():
    task, e = example("niah", {"context_len": 60, "depth": 1.0}, num_keys=2, num_queries=2, values_per_key=2,
                      value_digits=1)
    text = task.vocab.decode(e.tokens)
    assert text.endswith("the special value for nudu is 3 . the special value for vidu is 0 . "
                         "the special value for nudu is 2 . the special value for vidu is 0 . "
                         "what are the special values for nudu vidu ? answer : 3 2 0 0")
    predictions = task.oracle(e)
    predictions[e.answer_positions[1]] = task.vocab.ids["7"]  # nudu's second value wrong
    assert task.score(e, predictions) == {"exact_match": 0.0, "part_match": 0.75}
    assert task.chance(context_len=60, depth=1.0) == pytest.approx({"exact_match": 1e-4, "part_match": 0.1})


@pytest.mark.parametrize("depth", [0.0, 1.0])
def test_niah_depth_places_the_asked_needle(depth):
    task, e = example("niah", {"context_len": 80, "depth": depth}, seed=3, num_keys=1)
    text = task.vocab.decode(e.tokens)
    if depth == 0.0:
        assert text.startswith("the special value for")
    else:
        assert text.split(" what are")[0].endswith(" blue the special value for mafi is 0 1 2 .")


@pytest.mark.parametrize("haystack", ["words", "text"])
def test_niah_haystack_kinds(haystack, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("It was a bright cold day in April and the clocks were striking thirteen.\n" * 3)
    task = harness.build_task("niah", haystack=haystack, corpus_path=str(corpus))
    e = task.generate(np.random.default_rng(0), context_len=64, depth=0.5)
    words = set(task.vocab.decode(e.tokens).split())
    assert ("clocks" in words) == (haystack == "text") and "grass" not in words
    with pytest.raises(ValueError, match="corpus_path"):
        harness.build_task("niah", haystack="text")
    with pytest.raises(ValueError, match="haystack"):
        harness.build_task("niah", haystack="ocean")


def test_mqar_hand_checked_example():
    task, e = example("mqar", {"context_len": 12, "num_kv_pairs": 2}, vocab_size=16, max_kv_pairs=4)
    assert task.vocab.decode(e.tokens) == "k5 v2 k7 v1 v2 v6 v0 v1 k7 v3 k5 v0"
    assert e.answer_positions.tolist() == [8, 10] and answer_text(task, e) == "v1 v2"
    assert task.chance(context_len=12, num_kv_pairs=2) == pytest.approx({"accuracy": 1 / 8, "exact_match": 1 / 64})


def test_mqar_queries_every_key_once_with_short_gaps_favoured():
    task = harness.build_task("mqar")
    gaps = []
    for e in task.test_examples(seed=0, knobs={"context_len": 256, "num_kv_pairs": 8}, count=200):
        keys = e.tokens[0:16:2]
        queried = e.tokens[e.answer_positions]
        assert sorted(queried.tolist()) == sorted(keys.tolist())
        assert all(p % 2 == 0 and p >= 16 for p in e.answer_positions)
        gaps += ((e.answer_positions - 16) // 2).tolist()
    counts = np.bincount(gaps, minlength=120)
    assert counts[:30].sum() > counts[30:60].sum() > counts[60:90].sum()


def test_mqar_cells_need_room_for_the_queries():
    task = harness.build_task("mqar")
    with pytest.raises(ValueError, match="shorter than 64"):
        task.validate_cell({"context_len": 63, "num_kv_pairs": 16})
    with pytest.raises(ValueError, match="num_kv_pairs"):
        task.validate_cell({"context_len": 512, "num_kv_pairs": 33})


def test_variable_tracking_hand_checked_example():
    task, e = example("variable_tracking", {"context_len": 56}, num_chains=2, num_hops=1, value_digits=2)
    assert task.vocab.decode(e.tokens) == (
        "the grass is green . the sky is blue . the sun is yellow . var tani = 0 1 . var mafi = 1 7 . "
        "here we go var nuve = tani . . there and back again . var rome = mafi . "
        "which variables hold 0 1 ? answer : tani nuve")
    assert answer_text(task, e) == "tani nuve"
    assert task.chance(context_len=56) == pytest.approx({"exact_match": (1 / 64) ** 2, "part_match": 1 / 64})


def test_variable_tracking_chains_keep_their_order():
    task = harness.build_task("variable_tracking", num_chains=3, num_hops=4)
    for e in task.test_examples(seed=1, knobs={"context_len": 200}, count=20):
        text = task.vocab.decode(e.tokens)
        names = answer_text(task, e).split()
        assert len(names) == 5
        for source, name in zip(names, names[1:]):
            assert text.index(f"var {source} =") < text.index(f"var {name} = {source} .")


def test_frequent_words_hand_checked_example():
    task, e = example("frequent_words", {"context_len": 30}, num_words=8, top_k=2)
    assert task.vocab.decode(e.tokens) == (
        "fano kupe lamo fano lamo nilu fano lamo vovo lamo fano lamo vovo lamo lamo lamo lamo lamo "
        "what are the 2 most frequent words ? answer : lamo fano")
    swapped = task.oracle(e)
    swapped[e.answer_positions] = swapped[e.answer_positions[::-1]]
    assert task.score(e, swapped) == {"set_recall": 1.0, "exact_match": 0.0}
    assert task.chance(context_len=30) == pytest.approx({"set_recall": 2 / 8, "exact_match": 1 / 56})


def test_frequent_words_ranks_move_between_examples():
    task = harness.build_task("frequent_words")
    top = {answer_text(task, e).split()[0] for e in task.test_examples(seed=0, knobs={"context_len": 100}, count=40)}
    assert len(top) > 10
