"""task=zoology/mqar is Zoology's MQAR distribution (zoology/data/multiquery_ar.py, original_mqar_configs.py)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

import harness
from conftest import compose_config


@pytest.fixture(scope="module")
def zoology():
    options = OmegaConf.to_container(compose_config(["task=zoology/mqar"]).task)
    assert options.pop("name") == "mqar" and options["preset"] == "zoology/mqar"
    return harness.build_task("mqar", **options)


def test_zoology_settings_and_pairs_tied_to_length(zoology):
    # Zoology: VOCAB_SIZE = 8_192, power_a 0.01, test sets (64, 16) (128, 32) ... (1024, 256)
    assert (zoology.vocab_size, zoology.config.power_a) == (8192, 0.01)
    assert zoology.evaluation_cells({"context_len": [64, 128, 1024]}) == [
        {"context_len": 64, "num_kv_pairs": 16}, {"context_len": 128, "num_kv_pairs": 32},
        {"context_len": 1024, "num_kv_pairs": 256}]
    with pytest.raises(ValueError, match="num_kv_pairs is tied to context_len"):
        zoology.evaluation_cells({"context_len": [64], "num_kv_pairs": [4]})


@pytest.mark.parametrize("context_len", [64, 256])
def test_generated_statistics_match_zoology(zoology, context_len):
    pairs = context_len // 4
    examples = zoology.test_examples(seed=0, knobs={"context_len": context_len, "num_kv_pairs": pairs}, count=50)
    leaked, gaps = [], []
    for example in examples:
        queries = example.answer_positions
        assert len(queries) == pairs and len(set(example.tokens[queries])) == pairs  # every key asked once
        gaps += [(q - 2 * pairs) // 2 for q in queries]
        leaked += [example.tokens[q] in example.tokens[2 * pairs : q] for q in queries]
    # with pairs = length / 4 Zoology fills every query slot: the gaps are a permutation of 0..pairs-1
    assert np.median(gaps) == (pairs - 1) / 2 and max(gaps) == pairs - 1
    # the key also appears as noise before its query in <= 2% of queries (64 tokens: ~28% or more)
    assert np.mean(leaked) < 0.02


def test_the_cpu_default_is_not_zoology():
    task = harness.build_task("mqar")
    assert task.config.preset is None and task.vocab_size == 64
    with pytest.raises(ValueError, match="kv_pairs_per_token must be in"):
        harness.build_task("mqar", kv_pairs_per_token=0.5)


def test_training_pairs_follow_the_pairs_per_token():
    # Zoology's Figure 2 asks L / 16 pairs (64 -> 4, 256 -> 16): training draws at most that many
    task = harness.build_task("mqar", vocab_size=8192, max_kv_pairs=256, kv_pairs_per_token=1 / 16)
    rng = np.random.default_rng(0)
    for context_len in (64, 256):
        drawn = {task.training_knobs(rng, context_len)["num_kv_pairs"] for _ in range(400)}
        assert drawn == set(range(1, context_len // 16 + 1))
    # training_pairs=most: always L / 16, as Zoology trains each length
    most = harness.build_task("mqar", vocab_size=8192, max_kv_pairs=256, kv_pairs_per_token=1 / 16, training_pairs="most")
    assert [most.training_knobs(rng, length)["num_kv_pairs"] for length in (64, 128, 256)] == [4, 8, 16]
    with pytest.raises(ValueError, match="training_pairs must be 'uniform' or 'most'"):
        harness.build_task("mqar", training_pairs="fixed")
    # at Zoology's test ratio, 1/4, the draw is the one without the tie (stored runs keep their meaning)
    tied, untied = (harness.build_task("mqar", vocab_size=8192, max_kv_pairs=256, kv_pairs_per_token=ratio)
                    for ratio in (0.25, None))
    for context_len in (48, 97, 128):
        assert ([tied.training_knobs(np.random.default_rng(seed), context_len) for seed in range(20)]
                == [untied.training_knobs(np.random.default_rng(seed), context_len) for seed in range(20)])


def test_without_random_non_queries_every_other_position_is_the_blank_as_in_zoologys_figure_2():
    from tasks.mqar import BLANK

    task = harness.build_task("mqar", vocab_size=16, max_kv_pairs=7, power_a=0.01, random_non_queries=False)
    for example in task.test_examples(seed=0, knobs={"context_len": 64, "num_kv_pairs": 7}, count=40):
        pairs, queries = example.tokens[:14], example.answer_positions
        assert BLANK not in pairs[::2] and len(queries) == 7  # the blank is never a key
        rest = np.delete(example.tokens, np.r_[0:14, queries])
        assert (rest == BLANK).all() and (example.tokens[queries] != BLANK).all()
    with pytest.raises(ValueError, match="the number of keys = 7"):
        harness.build_task("mqar", vocab_size=16, max_kv_pairs=8, random_non_queries=False)
