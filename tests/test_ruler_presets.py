"""RULER's synthetic presets (``task=ruler/<name>``) against RULER's generators.

RULER's parameters are written down here from NVIDIA/RULER ``scripts/synthetic.yaml`` and
``scripts/data/synthetic/{niah,variable_tracking,freq_words_extraction,common_words_extraction}.py``
(NVIDIA/RULER at c3f5e3b); each test draws
examples of a preset and compares their statistics with what RULER's code does with those
parameters (where RULER draws at random, the same draws are simulated here with its rule).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.special import zeta

import harness
from conftest import compose_config
from harness.config import CONF_DIR
from harness.taskkit.haystack import made_up_words
from harness.engine.checks import ConfigError
from harness.engine.plan import prepare
from tasks.sample_corpus import SAMPLE_NAME

#: scripts/synthetic.yaml: (type_haystack, type_needle_k, type_needle_v, num_needle_k, num_needle_v, num_needle_q)
RULER_NIAH = {
    "niah_single_1": ("noise", "words", "numbers", 1, 1, 1),
    "niah_single_2": ("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("essay", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": ("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": ("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("essay", "words", "numbers", 4, 1, 4),
}
HAYSTACKS = {"noise": "repeat", "essay": "text", "needle": "needles"}  # RULER's name -> memarena's
RULER_DEPTHS = np.round(np.linspace(0, 100, num=40, endpoint=True)).astype(int)  # niah.py's DEPTHS
#: RULER's synthetic presets (qa_1 and qa_2 are the qa task's, tested in tests/test_text_tasks.py)
PRESETS = sorted(path.stem for path in (CONF_DIR / "task" / "ruler").glob("*.yaml") if not path.stem.startswith("qa_"))
LENGTH = 2048
COUNT = 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """A text of sentences of 5 to 20 words, standing in for RULER's essays."""
    rng = np.random.default_rng(0)
    words = made_up_words(200, skip=300)
    sentences = [" ".join(rng.choice(words, rng.integers(5, 21))) + "." for _ in range(2000)]
    path = tmp_path_factory.mktemp("corpus") / "essays.txt"
    path.write_text(" ".join(sentences))
    return str(path)


def overrides(preset: str, corpus: str) -> list[str]:
    text = "haystack: text" in (CONF_DIR / "task" / "ruler" / f"{preset}.yaml").read_text()
    return [f"task=ruler/{preset}", *([f"task.corpus_path={corpus}"] if text else [])]


def preset_task(preset: str, corpus: str):
    return harness.build_task(**OmegaConf.to_container(compose_config(overrides(preset, corpus)).task))


def test_the_presets_are_rulers_synthetic_ones():
    assert PRESETS == sorted([*RULER_NIAH, "vt", "fwe", "cwe"])


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_names_itself_and_its_cpu_variant_builds(preset, corpus, tmp_path):
    plan = prepare(compose_config([*overrides(preset, corpus), "experiment=ruler_cpu", f"results_dir={tmp_path}"]))
    assert plan.task.config.preset == f"ruler/{preset}"
    assert plan.task.evaluation_grid(plan.config.eval.grid) == {"context_len": [256, 512]}  # no depth knob


def test_an_essay_preset_reads_the_shipped_sample_unless_told_otherwise(tmp_path, corpus):
    plan = prepare(compose_config(["task=ruler/niah_single_2", "experiment=ruler_cpu", f"results_dir={tmp_path}"]))
    assert "rabbit" in plan.task.vocab.ids  # Alice's Adventures in Wonderland, tasks/sample_corpus.py
    assert plan.task.data_sources()["corpus"] == SAMPLE_NAME  # what the run's record names
    assert preset_task("niah_single_2", corpus).data_sources()["corpus"] == corpus
    with pytest.raises(ConfigError, match="corpus_path"):
        prepare(compose_config(["task=ruler/niah_single_2", "experiment=ruler_cpu", f"results_dir={tmp_path}",
                                f"task.corpus_path={tmp_path / 'missing.txt'}"]))


@pytest.mark.parametrize("preset", ["niah_single_2", "vt"])
def test_a_text_haystack_longer_than_its_corpus_warns_that_it_repeats(preset):
    task = harness.build_task(**OmegaConf.to_container(compose_config(
        [f"task=ruler/{preset}", "task.haystack=text"]).task))
    words = task.data_sources()["corpus_words"]
    fits = words + LENGTH - task.filler_len(LENGTH)  # a haystack of the whole corpus, once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task.validate_cell({"context_len": fits})
    with pytest.warns(UserWarning, match=f"up to {words + 1} words is longer than its corpus of {words} words, "
                                         "the shipped sample"):
        task.validate_cell({"context_len": fits + 1})


def needle_starts(task, example) -> np.ndarray:
    context = example.tokens[: len(example.tokens) - task.answer_len - task.question_len]
    windows = np.lib.stride_tricks.sliding_window_view(context, len(task.needle_prefix))
    return np.flatnonzero((windows == task.needle_prefix).all(axis=1))


def check_item(task, tokens: np.ndarray, kind: str) -> None:
    """A key or value as RULER writes it: two words (its adjective-noun), 7 digits, or a version-4 uuid."""
    text = task.vocab.decode(tokens).split()
    if kind == "words":
        assert len(text) == 2 and set(text) <= set(task.key_pool)
    elif kind == "numbers":
        assert len(text) == 7 and text[0] != "0" and all(c.isdigit() for c in text)
    else:
        uuid = "".join(text)
        assert [len(group) for group in uuid.split("-")] == [8, 4, 4, 4, 12]
        assert uuid[14] == "4" and uuid[19] in "89ab"


@pytest.mark.parametrize("preset", sorted(RULER_NIAH))
def test_niah_presets_match_rulers_generator(preset, corpus):
    haystack, key_type, value_type, keys, values, queries = RULER_NIAH[preset]
    task = preset_task(preset, corpus)
    config = task.config
    assert (config.haystack, config.key_type, config.value_type) == (HAYSTACKS[haystack], key_type, value_type)
    assert (config.num_keys, config.values_per_key, config.num_queries) == (keys, values, queries)
    rng = np.random.default_rng(0)
    spans, depths = [], []
    for example in task.test_examples(seed=0, knobs={"context_len": LENGTH}, count=COUNT):
        length = len(example.tokens)
        assert example.answer_positions.tolist() == list(range(length - task.answer_len - 1, length - 1))
        assert task.score(example, task.oracle(example)) == {"string_match_all": 1.0, "exact_match": 1.0}
        starts = needle_starts(task, example)
        key_at = len(task.needle_prefix)
        value_at = key_at + task.key_len + len(task.needle_middle)
        for start in starts:
            check_item(task, example.tokens[start + key_at :][: task.key_len], key_type)
            check_item(task, example.tokens[start + value_at :][: task.value_len], value_type)
        answer = example.labels[example.answer_positions].reshape(-1, task.value_len)
        assert len(answer) == queries * values
        if haystack == "needle":  # the asked needle among distractor needles, each a unit of the haystack
            filler = length - task.question_len - task.answer_len - task.needle_len
            assert len(starts) == filler // task.needle_len + 1
            real = [s for s in starts if (example.tokens[s + value_at :][: task.value_len] == answer[0]).all()]
            assert len(real) == 1
            index = (real[0] - filler % task.needle_len) // task.needle_len
            depths.append(index / (filler // task.needle_len))
            continue
        assert len(starts) == keys * values
        filler = length - task.question_len - task.answer_len - len(starts) * task.needle_len
        needle_depths = (starts - np.arange(len(starts)) * task.needle_len) / filler  # haystack before each needle
        depths += needle_depths.tolist()
        spans.append(np.ptp(needle_depths))
    if len(spans) and keys * values > 1:
        # RULER's essay placement: depths drawn without replacement from its 40 (random.sample(DEPTHS, n))
        ruler = np.mean([np.ptp(rng.choice(RULER_DEPTHS, keys * values, replace=False)) / 100 for _ in range(20000)])
        assert abs(np.mean(spans) - ruler) < 4 * np.std(spans) / np.sqrt(len(spans)) + 0.02, (np.mean(spans), ruler)
        assert np.mean(spans) > 0.5  # memarena before RULER's placement: 0.029
    # one needle: a uniform depth in [0, 1] (RULER: a uniform haystack unit, or one of its 40 depths)
    assert abs(np.mean(depths) - 0.5) < 4 * 0.29 / np.sqrt(len(depths))
    assert abs(np.std(depths) - 0.29) < 0.06


def test_vt_preset_matches_rulers_generator(corpus):
    task = preset_task("vt", corpus)
    paragraph = len(task.haystack.text)
    value_len, copy_len = task.statement_lengths()
    filler = LENGTH - value_len - 4 * copy_len - task.question_len - task.answer_len
    spans = []
    for example in task.test_examples(seed=0, knobs={"context_len": LENGTH}, count=COUNT):
        text = task.vocab.decode(example.tokens)
        value = text.split("which variables hold ")[1].split(" ?")[0].replace(" ", "")
        assert len(value) == 5 and 10000 <= int(value) <= 99998  # np.random.randint(10000, 99999)
        names = task.vocab.decode(example.labels[example.answer_positions]).split()
        assert len(names) == 25 and all(len(letter) == 1 and letter.isalpha() for letter in names)
        assert len({" ".join(names[i : i + 5]) for i in range(0, 25, 5)}) == 5  # five variables of 5 letters
        assert task.score(example, task.oracle(example)) == {"string_match_all": 1.0, "exact_match": 1.0}
        var = np.flatnonzero(example.tokens[:-7] == task.var)
        starts = var[example.tokens[var + 6] == task.equals]  # "var <5 letters> =": one chain, four hops
        assert len(starts) == 5
        # the haystack before each statement: whole paragraphs, a different number for each (random.sample)
        offsets = starts - np.array([0, value_len, *(value_len + copy_len * np.arange(1, 4))])
        assert (offsets % paragraph == 0).all() and len(set(offsets.tolist())) == 5
        spans.append(np.ptp(offsets) / filler)
    paragraphs = -(-filler // paragraph)
    rng = np.random.default_rng(0)
    ruler = np.mean([np.ptp(rng.choice(paragraphs, 5, replace=False)) / paragraphs for _ in range(20000)])
    assert abs(np.mean(spans) - ruler) < 4 * np.std(spans) / np.sqrt(len(spans)), (np.mean(spans), ruler)


@pytest.mark.parametrize("length", [256, 1024, 4096, 16384])
def test_fwe_preset_matches_rulers_generator(length, corpus):
    task = preset_task("fwe", corpus)
    question = len(task.question) + 3
    text_len = length - question
    # freq_words_extraction.py (NVIDIA/RULER c3f5e3b), sys_kwext, lines 113-114: max_seq_length -= tokens_to_generate
    # (50, scripts/data/synthetic/constants.py), then vocab_size = max_seq_length // 50; vocab[0] = '...' (line 81)
    vocab_size = (length - 50) // 50
    ranks = np.arange(1, vocab_size + 1)
    ruler_counts = (text_len * ranks**-2.0 / zeta(2.0)).astype(int)  # gen_text's sampled_cnt
    for example in task.test_examples(seed=0, knobs={"context_len": length}, count=5):
        text = example.tokens[:text_len]
        words, counts = np.unique(text[text != task.noise], return_counts=True)
        assert len(words) == (ruler_counts[1:] > 0).sum() <= vocab_size - 1
        assert sorted(counts.tolist(), reverse=True) == [c for c in ruler_counts[1:].tolist() if c > 0]
        assert (text == task.noise).sum() >= ruler_counts[0]  # rank 1, the noise, also takes the floors' remainders
        answer = example.labels[example.answer_positions]
        assert answer.tolist() == words[np.argsort(-counts, kind="stable")[:3]].tolist()  # ranks 2, 3, 4
        assert task.score(example, task.oracle(example)) == {"string_match_all": 1.0, "exact_match": 1.0}
    assert task.coded_words(length) == vocab_size - 1
    assert task.chance(context_len=length)["string_match_all"] == pytest.approx(3 / 4900)


def ruler_cwe_frequencies(max_seq_length: int) -> tuple[int, int]:
    """common_words_extraction.py, generate_input_output, lines 102-111: below 4096 the example is
    get_example(num_words, 6, 1, num_cw), else get_example(num_words, freq_cw=30, freq_ucw=3, num_cw)
    (scripts/synthetic.yaml, cwe)."""
    return (6, 1) if max_seq_length < 4096 else (30, 3)


def ruler_cwe_num_words(max_seq_length: int, prompt_tokens, tokens_to_generate: int, incremental: int = 10) -> int:
    """common_words_extraction.py, sys_word_pair_random, lines 137-169: RULER's binary search for the
    largest number of words whose prompt (``prompt_tokens(num_words)``) plus the tokens to generate fits."""
    tokens_per_words = prompt_tokens(4096) / 4096
    estimated_max_words = int(max_seq_length // tokens_per_words) * 2
    lower_bound, upper_bound = incremental, max(estimated_max_words, incremental * 2)
    optimal_num_words = None
    while lower_bound <= upper_bound:
        mid = (lower_bound + upper_bound) // 2
        if prompt_tokens(mid) + tokens_to_generate <= max_seq_length:
            optimal_num_words, lower_bound = mid, mid + 1
        else:
            upper_bound = mid - 1
    return optimal_num_words if optimal_num_words is not None else incremental


@pytest.mark.parametrize("length", [256, 1024, 4095, 4096, 8192])
def test_cwe_preset_matches_rulers_generator(length, corpus):
    task = preset_task("cwe", corpus)
    num_cw = 10  # scripts/synthetic.yaml, cwe: num_cw 10
    common, other = ruler_cwe_frequencies(length)

    def prompt_tokens(num_words: int) -> int:  # get_example's word list (lines 91-92) and the question, in tokens here
        return num_cw * common + (num_words - num_cw) * other + len(task.question)

    # RULER's tokens to generate are memarena's answer tokens: one per common word
    words = ruler_cwe_num_words(length, prompt_tokens, tokens_to_generate=num_cw)
    assert task.list_words(length) == words
    for example in task.test_examples(seed=0, knobs={"context_len": length}, count=5):
        assert len(example.tokens) == length
        text = example.tokens[: length - num_cw - len(task.question)]
        padding = text == task.pad
        assert padding.sum() < other and not padding[padding.sum():].any()  # the leftover opens the example
        ids, counts = np.unique(text[~padding], return_counts=True)
        assert len(ids) == words and set(ids.tolist()) <= set(task.word_ids.tolist())
        assert sorted(counts.tolist()) == [other] * (words - num_cw) + [common] * num_cw  # get_example's list
        answer = example.labels[example.answer_positions]
        assert sorted(answer.tolist()) == sorted(ids[counts == common].tolist())  # get_example returns `common`
        assert task.score(example, task.oracle(example)) == {"string_match_all": 1.0, "exact_match": 1.0}
    assert task.chance(context_len=length)["string_match_all"] == pytest.approx(10 / 4900)
