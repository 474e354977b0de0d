"""Hand-checked examples, chance levels and task-specific behaviour of the synthetic tasks.

The contracts shared by every task (determinism, disjoint splits, oracle, chance bound) are in
test_task_properties.py; each example here was checked by hand against its task's definition.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import harness


def example(name, knobs, seed=0, **options):
    task = harness.build_task(name, **options)
    return task, task.generate(np.random.default_rng(seed), **knobs)


def answer_text(task, example):
    return task.vocab.decode(example.labels[example.answer_positions])


def test_niah_hand_checked_example_with_a_distractor():
    task, e = example("niah", {"context_len": 80}, num_keys=2)
    assert task.vocab.decode(e.tokens) == (
        "one of the special magic numbers for bazu is : 2 2 3 . "
        "the grass is green . the sky is blue . the sun is yellow . here we go . there and back again . "
        "one of the special magic numbers for vidu is : 8 0 0 . the grass is green . the sky is blue . the sun is "
        "what are all the special magic numbers for vidu ? answer : 8 0 0")
    assert e.answer_positions.tolist() == [76, 77, 78] and answer_text(task, e) == "8 0 0"
    assert e.knobs == {"context_len": 80} and task.cell_knobs == {"context_len": int}


def test_niah_lists_each_asked_keys_values_in_context_order_and_scores_in_any_order():
    task = harness.build_task("niah", num_keys=3, num_queries=2, values_per_key=2, value_digits=2)
    for e in task.test_examples(seed=0, knobs={"context_len": 240}, count=10):
        text = task.vocab.decode(e.tokens)
        asked = text.split("magic numbers for ")[-1].split(" ?")[0].split(" , ")
        found = re.findall(r"numbers for (\w+) is : (\d \d) \.", text)
        assert answer_text(task, e) == " ".join(value for key in asked for k, value in found if k == key)
        predictions, positions = task.oracle(e), e.answer_positions
        predictions[positions] = predictions[positions].reshape(-1, 2)[::-1].ravel()  # values in reverse order
        assert task.score(e, predictions)["string_match_all"] == 1.0  # RULER: 100
        predictions[positions[:2]] = task.vocab.ids["-"]  # one value lost
        assert task.score(e, predictions) == {"string_match_all": 0.75, "exact_match": 0.0}
    assert task.chance(context_len=240) == pytest.approx(
        {"string_match_all": 1 - (1 - 1 / 90) ** 7, "exact_match": 90.0**-4})


@pytest.mark.parametrize("depth", [0.0, 1.0])
def test_niah_depth_places_the_asked_needles_together(depth):
    task, e = example("niah", {"context_len": 80, "depth": depth}, seed=3, placement="depth")
    text = task.vocab.decode(e.tokens)
    if depth == 0.0:
        assert text.startswith("one of the special magic numbers for mafi is : 2 1 2 . the grass")
    else:
        assert text.split(" what are")[0].endswith(" the grass is one of the special magic numbers for mafi is : 2 1 2 .")
    assert task.cell_knobs == {"context_len": int, "depth": float} and e.knobs == {"context_len": 80, "depth": depth}
    with pytest.raises(ValueError, match="placement"):
        harness.build_task("niah", placement="middle")
    with pytest.raises(ValueError, match="needles"):
        harness.build_task("niah", placement="depth", haystack="needles")


@pytest.mark.parametrize("haystack", ["words", "text", "needles"])
def test_niah_haystack_kinds(haystack, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("It was a bright cold day in April and the clocks were striking thirteen.\n" * 3)
    task = harness.build_task("niah", haystack=haystack, corpus_path=str(corpus))
    e = task.generate(np.random.default_rng(0), context_len=64)
    words = task.vocab.decode(e.tokens).split()
    assert ("clocks" in words) == (haystack == "text")
    assert (words.count("magic") > 2) == (haystack == "needles")  # distractor needles, after a few filler words
    assert task.score(e, task.oracle(e))["exact_match"] == 1.0
    assert "rabbit" in harness.build_task("niah", haystack="text").vocab.ids  # the shipped sample by default
    with pytest.raises(ValueError, match="corpus_path"):
        harness.build_task("niah", haystack="text", corpus_path=str(tmp_path / "missing.txt"))
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
    task, e = example("variable_tracking", {"context_len": 80}, num_chains=2, num_hops=1, haystack="repeat")
    assert task.vocab.decode(e.tokens) == (
        "var tani = 1 1 . var mafi = 2 5 . the grass is green . the sky is blue . the sun is yellow . "
        "here we go . there and back again . var rome = var mafi . var nuve = var tani . the grass is "
        "green . the sky is blue . the sun is yellow . here we go . there and back "
        "which variables hold 1 1 ? answer : tani nuve")
    assert answer_text(task, e) == "tani nuve"
    reversed_names = task.oracle(e)
    reversed_names[e.answer_positions] = reversed_names[e.answer_positions[::-1]]
    assert task.score(e, reversed_names) == {"string_match_all": 1.0, "exact_match": 0.0}
    assert task.chance(context_len=80) == pytest.approx({"string_match_all": 1 - (63 / 64) ** 2,
                                                         "exact_match": (1 / 64) ** 2})


def test_variable_tracking_chains_keep_their_order():
    task = harness.build_task("variable_tracking", num_chains=3, num_hops=4, haystack="repeat")
    for e in task.test_examples(seed=1, knobs={"context_len": 300}, count=20):
        text = task.vocab.decode(e.tokens)
        names = answer_text(task, e).split()
        assert len(names) == 5
        for source, name in zip(names, names[1:]):
            assert text.index(f"var {source} =") < text.index(f"var {name} = var {source} .")


def test_frequent_words_hand_checked_example():
    task, e = example("frequent_words", {"context_len": 48}, num_words=8, top_k=2)
    assert task.vocab.decode(e.tokens) == (
        "... ... goru ... ... ... goru goru ... ... goru ... ... ... ... ... ... ... ... ... goru ... "
        "... ... lamo ... ... ... ... ... ... ... ... kupe ... lamo "
        "what are the 2 most frequent words ? answer : goru lamo")
    swapped = task.oracle(e)
    swapped[e.answer_positions] = swapped[e.answer_positions[::-1]]
    assert task.score(e, swapped) == {"string_match_all": 1.0, "exact_match": 0.0}
    assert task.chance(context_len=48) == pytest.approx({"string_match_all": 2 / 8, "exact_match": 1 / 56})


def test_frequent_words_ranks_move_between_examples():
    task = harness.build_task("frequent_words")
    top = {answer_text(task, e).split()[0] for e in task.test_examples(seed=0, knobs={"context_len": 100}, count=40)}
    assert len(top) > 10


def test_common_words_hand_checked_example():
    task, e = example("common_words", {"context_len": 32}, num_words=16)
    assert task.vocab.decode(e.tokens) == (
        "nilu lata vovo nilu lata nilu nilu lamo mopa rosi lata kole lata nilu nilu lata dibi fano goru lata "
        "what are the 2 most common words ? answer : nilu lata")
    swapped = task.oracle(e)
    swapped[e.answer_positions] = swapped[e.answer_positions[::-1]]
    assert task.score(e, swapped) == {"string_match_all": 1.0, "exact_match": 0.0}
    assert task.chance(context_len=32) == pytest.approx({"string_match_all": 2 / 16, "exact_match": 1 / 240})


def test_common_words_switch_to_rulers_long_frequencies_and_pad_the_leftover():
    task = harness.build_task("common_words", num_words=4900, num_cw=10)
    assert (task.frequencies(4095), task.frequencies(4096)) == ((6, 1), (30, 3))
    assert task.list_words(4096) == 10 + (4096 - 10 - 10 - 300) // 3
    e = task.generate(np.random.default_rng(0), context_len=4096)
    assert (e.tokens[:2] == task.pad).all() and e.tokens[2] != task.pad  # (4076 - 300) % 3 = 2 tokens left over
    with pytest.raises(ValueError, match="num_words"):
        harness.build_task("common_words").validate_cell({"context_len": 1047})
    with pytest.raises(ValueError, match="freq_ucw < freq_cw"):
        harness.build_task("common_words", freq_ucw=30)


def test_frequent_words_rejects_lengths_beyond_its_pool():
    task = harness.build_task("frequent_words", num_words=10, tokens_per_vocab_word=50)
    task.validate_cell({"context_len": 550})
    with pytest.raises(ValueError, match="num_words"):
        task.validate_cell({"context_len": 600})
    with pytest.raises(ValueError, match="zipf_alpha"):
        harness.build_task("frequent_words", zipf_alpha=1.0)
