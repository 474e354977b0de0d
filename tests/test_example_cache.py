"""Generated test examples cached with `datasets`: identical to generating them, shared, keyed by options and code."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.taskkit.example_cache import ExampleCache, _helper_modules, code_version

CELLS = [{"context_len": 64}, {"context_len": 96}]  # of qa
NIAH_CELLS = CELLS  # niah places its needles at random: no depth knob


def same(a, b):
    return (np.array_equal(a.tokens, b.tokens) and np.array_equal(a.labels, b.labels)
            and np.array_equal(a.training_targets, b.training_targets) and a.knobs == b.knobs and a.info == b.info)


@pytest.mark.parametrize("name", ["passkey", "babi_qa"])
def test_cached_examples_equal_generated_ones(name, tmp_path):
    task = harness.build_task(name)
    cells = [{"context_len": 64, **{k: v[0] for k, v in task.config.grid.items()}},
             {"context_len": 96, **{k: v[-1] for k, v in task.config.grid.items()}}]
    cached = ExampleCache(tmp_path).test_cells(task, 0, cells, 4)
    for knobs, examples in zip(cells, cached):
        assert len(examples) == 4 and all(same(a, b) for a, b in zip(task.test_examples(0, knobs, 4), examples))


def arrow_files(directory):
    return sorted(directory.rglob("*.arrow"))


def test_a_second_run_reads_the_cache_and_other_options_get_their_own(tmp_path):
    task, cells = harness.build_task("niah"), NIAH_CELLS
    ExampleCache(tmp_path).test_cells(task, 0, cells, 5)
    [written] = arrow_files(tmp_path)
    stamp = written.stat().st_mtime_ns
    again = ExampleCache(tmp_path).test_cells(harness.build_task("niah"), 0, cells, 5)
    assert arrow_files(tmp_path) == [written] and written.stat().st_mtime_ns == stamp
    assert len(again[1][0].tokens) == 96
    ExampleCache(tmp_path).test_cells(harness.build_task("niah", value_digits=4), 0, cells, 5)
    ExampleCache(tmp_path).test_cells(task, 1, cells, 5)
    assert len(arrow_files(tmp_path)) == 3


def test_the_key_covers_the_generator_code():
    assert code_version("tasks.niah") != code_version("tasks.passkey")
    assert len(code_version("tasks.niah")) == 16
    # babi_qa's stories and its background corpus come from modules beside it: their code is in the key too
    assert _helper_modules("tasks.babi_qa") == ["tasks.babi_stories", "tasks.sample_corpus"]


def test_no_directory_or_dataset_backed_tasks_generate_directly(tmp_path):
    task = harness.build_task("qa")
    [examples] = ExampleCache(tmp_path).test_cells(task, 0, CELLS[1:], 2)
    assert all(same(a, b) for a, b in zip(task.test_examples(0, CELLS[1], 2), examples))
    assert not arrow_files(tmp_path)
    passkey = harness.build_task("passkey")
    [direct] = ExampleCache(None).test_cells(passkey, 0, [{"context_len": 64, "depth": 0.5}], 2)
    assert all(same(a, b) for a, b in zip(passkey.test_examples(0, {"context_len": 64, "depth": 0.5}, 2), direct))


def test_a_damaged_entry_is_regenerated_with_a_warning(tmp_path):
    task = harness.build_task("niah")
    ExampleCache(tmp_path).test_cells(task, 0, NIAH_CELLS, 5)
    [written] = arrow_files(tmp_path)
    written.write_bytes(b"not arrow")
    with pytest.warns(UserWarning, match="unreadable"):
        [_, examples] = ExampleCache(tmp_path).test_cells(task, 0, NIAH_CELLS, 5)
    assert all(same(a, b) for a, b in zip(task.test_examples(0, NIAH_CELLS[1], 5), examples))
    assert not [path for path in tmp_path.rglob(".*") if path.is_dir()]  # no scratch directory left behind
