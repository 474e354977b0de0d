"""Generated examples cached with `datasets`: identical to generating them, shared, keyed by options and code."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.example_cache import ExampleCache, code_version

LENGTHS = [48, 64, 56, 64]


def same_batch(examples, batch):
    tokens, targets = batch
    return (tokens.shape == (len(examples), len(examples[0].tokens)) and tokens.dtype == targets.dtype == np.int64
            and np.array_equal(tokens, np.stack([e.tokens for e in examples]))
            and np.array_equal(targets, np.stack([e.training_targets for e in examples])))


def same(a, b):
    return (np.array_equal(a.tokens, b.tokens) and np.array_equal(a.labels, b.labels)
            and np.array_equal(a.training_targets, b.training_targets) and a.knobs == b.knobs and a.info == b.info)


@pytest.mark.parametrize("name", ["passkey", "babi_qa"])
def test_cached_examples_equal_generated_ones(name, tmp_path):
    task = harness.build_task(name)
    batches = ExampleCache(tmp_path).training_batches(task, 3, LENGTHS, 5)
    for step, length in enumerate(LENGTHS):
        assert same_batch(task.training_examples(3, step, 5, length), batches(step))
    cells = [{"context_len": 64, **{k: v[0] for k, v in task.config.grid.items()}},
             {"context_len": 96, **{k: v[-1] for k, v in task.config.grid.items()}}]
    cached = ExampleCache(tmp_path).test_cells(task, 0, cells, 4)
    for knobs, examples in zip(cells, cached):
        assert len(examples) == 4 and all(same(a, b) for a, b in zip(task.test_examples(0, knobs, 4), examples))


def arrow_files(directory):
    return sorted(directory.rglob("*.arrow"))


def test_a_second_run_reads_the_cache_and_other_options_get_their_own(tmp_path):
    task = harness.build_task("niah")
    ExampleCache(tmp_path).training_batches(task, 0, LENGTHS, 5)
    [written] = arrow_files(tmp_path)
    stamp = written.stat().st_mtime_ns
    again = ExampleCache(tmp_path).training_batches(harness.build_task("niah"), 0, LENGTHS, 5)
    assert arrow_files(tmp_path) == [written] and written.stat().st_mtime_ns == stamp
    assert again(1)[0].shape == (5, 64)
    ExampleCache(tmp_path).training_batches(harness.build_task("niah", num_keys=2), 0, LENGTHS, 5)
    ExampleCache(tmp_path).training_batches(task, 1, LENGTHS, 5)
    assert len(arrow_files(tmp_path)) == 3


def test_the_key_covers_the_generator_code():
    assert code_version("tasks.niah") != code_version("tasks.passkey")
    assert len(code_version("tasks.niah")) == 16


def test_no_directory_or_dataset_backed_tasks_generate_directly(tmp_path):
    task = harness.build_task("qa")
    batches = ExampleCache(tmp_path).training_batches(task, 0, [64], 2)
    assert same_batch(task.training_examples(0, 0, 2, 64), batches(0))
    assert not arrow_files(tmp_path)
    direct = ExampleCache(None).training_batches(harness.build_task("passkey"), 0, [64], 2)
    assert same_batch(harness.build_task("passkey").training_examples(0, 0, 2, 64), direct(0))


def test_a_damaged_entry_is_regenerated_with_a_warning(tmp_path):
    task = harness.build_task("passkey")
    ExampleCache(tmp_path).training_batches(task, 0, LENGTHS, 5)
    [written] = arrow_files(tmp_path)
    written.write_bytes(b"not arrow")
    with pytest.warns(UserWarning, match="unreadable"):
        batches = ExampleCache(tmp_path).training_batches(task, 0, LENGTHS, 5)
    assert same_batch(task.training_examples(0, 2, 5, LENGTHS[2]), batches(2))
    assert not [path for path in tmp_path.rglob(".*") if path.is_dir()]  # no scratch directory left behind
