"""Every bad input found by probing the CLI fails before any work, naming the key, and writes nothing."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import compose_config, run_cli, tiny_overrides
from harness.engine.checks import ConfigError
from harness.engine.plan import prepare
from harness.engine.run import run


def written(tmp_path) -> list[str]:
    return sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))


def assert_rejected(tmp_path, overrides: list[str], message: str) -> None:
    config = compose_config(tiny_overrides(tmp_path) + overrides)
    with pytest.raises(ConfigError, match=message) as error:
        run(config)
    assert len(str(error.value).splitlines()) == 1, "one line"
    assert written(tmp_path) == [], "a rejected config wrote"


@pytest.mark.parametrize("override, message", [
    ("train.grad_clip=-1", r"train.grad_clip=-1.0: must be a finite number > 0"),
    ("train.grad_clip=0", r"train.grad_clip=0.0: must be a finite number > 0"),
    ("train.warmup_steps=-5", r"train.warmup_steps=-5: must be an integer >= 0"),
    ("train.lr=-1", r"train.lr=-1.0: must be a finite number > 0"),
    ("train.lr=nan", r"train.lr=nan: must be a finite number > 0"),
    ("train.lr=inf", r"train.lr=inf: must be a finite number > 0"),
    ("train.weight_decay=-1", r"train.weight_decay=-1.0: must be a finite number >= 0"),
    ("eval.max_memory_gb=0", r"eval.max_memory_gb=0.0: must be a finite number > 0 or null"),
    ("eval.max_memory_gb=1e-6", r"eval.max_memory_gb=1e-06: smaller than the model's weights"),
    ("state_budget_bytes=0", r"state_budget_bytes=0: must be an integer >= 1"),
    ("model.mlp_ratio=-1", r"model.mlp_ratio=-1: must be an integer >= 0"),
    ("train.context_len=0", r"train.context_len=0: must be an integer >= 1"),
    ("eval.grid.context_len=[]", r"eval.grid.context_len=\[\]: give at least one value"),
    ("task.grid.depth=[]", r"task.grid.depth=\[\]: give at least one value"),
    ("name=", r"name='': must be a plain non-empty name"),
    ("name=../../x", r"name='../../x': must be a plain non-empty name"),
    ("name=/an/absolute/path", r"name='/an/absolute/path': must be a plain"),
    ("name=.hidden", r"name='.hidden': must be a plain"),
    ("eval.scoring=beam", r"eval.scoring='beam': choose one of \['generate', 'teacher_forced'\]"),
    ("results_dir='~/memarena-results'", r"results_dir='~/memarena-results': '~' is not expanded here"),
    ("reports_dir='~'", r"reports_dir='~': '~' is not expanded here"),
    ("results_dir=", r"results_dir='': give a directory"),
    ("cache_dir=", r"cache_dir='': give a directory or null \(no cache\)"),
])
def test_bad_numbers_grids_and_names(tmp_path, override, message):
    assert_rejected(tmp_path, [override], message)


@pytest.mark.parametrize("override, message", [
    ("train.context_len=100000000", r"train.context_len=100000000 tokens\) needs at least"),
    ("eval.grid.context_len=[10000000000]", r"the longest evaluated cell .*context_len=10000000000 tokens\) needs"),
])
def test_a_run_larger_than_the_machine(tmp_path, override, message):
    # prepare alone: were the check to miss, run() would allocate until the kernel kills the tests
    with pytest.raises(ConfigError, match=message):
        prepare(compose_config(tiny_overrides(tmp_path) + [override]))
    assert written(tmp_path) == []


def test_a_window_longer_than_the_context_costs_what_the_context_holds(tmp_path):
    """A window of 1e9 tokens over 48..64-token contexts is full attention: accepted, and its cache holds
    what the context holds (it was once refused, its 1e9-slot cache estimated at hundreds of GB)."""
    record = run(compose_config(tiny_overrides(tmp_path) + ["mechanism.window=1000000000"]))
    assert record["status"] == "ok", record.get("error")
    for cell in record["cells"]:  # one layer of d_model 16: (k, v) x 16 fp32 numbers per cached position
        assert cell["state_bytes"] <= cell["knobs"]["context_len"] * 2 * 16 * 4, cell


def test_transformer_xl_without_memory(tmp_path):
    config = compose_config(tiny_overrides(tmp_path, mechanism="transformer_xl") + ["mechanism.mem_len=0"])
    with pytest.raises(ConfigError, match=r"transformer_xl: mem_len must be >= 1"):
        run(config)
    assert written(tmp_path) == []


@pytest.mark.parametrize("key", ["results_dir", "reports_dir", "cache_dir"])
def test_a_directory_that_is_a_file(tmp_path, key):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = compose_config(tiny_overrides(tmp_path) + [f"{key}={blocker / 'below'}"])
    with pytest.raises(ConfigError, match=rf"{key}='.*below': cannot write to .* \(.*file is not a directory\)"):
        run(config)
    assert written(tmp_path) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ConfigError, match="results_dir=.*locked.*is not writable"):
            run(compose_config(tiny_overrides(tmp_path) + [f"results_dir={locked}"]))
    finally:
        locked.chmod(stat.S_IRWXU)


def test_an_empty_data_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    overrides = [f"task.data_files.train={empty}", f"results_dir={tmp_path / 'results'}"]
    with pytest.raises(ConfigError, match=r"qa: data file .*empty.jsonl of split 'train' is empty"):
        run(compose_config(tiny_overrides(tmp_path, task="qa") + overrides))
    assert written(tmp_path) == ["empty.jsonl"]


@pytest.mark.parametrize("override, message", [
    ("eval.examples_per_cell=100000", r"qa: split 'test' has only \d+ example\(s\) .* 100000 are needed"),
    ("train.batch_size=100000", r"qa: split 'train' has only \d+ example\(s\) .* 100000 are needed"),
    ("task.document_column=passage", r"qa: split 'train' has no column\(s\) \['passage'\]"),
])
def test_data_that_cannot_fill_the_run(tmp_path, override, message):
    config = compose_config(tiny_overrides(tmp_path, task="qa") + [override])
    with pytest.raises(ConfigError, match=message):
        run(config)
    assert written(tmp_path) == []


def test_the_cli_exits_with_2_and_one_line(tmp_path):
    result = run_cli(*tiny_overrides(tmp_path), "hydra.mode=RUN", "train.grad_clip=-1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "memarena: error: train.grad_clip=-1.0: must be a finite number > 0 (the largest gradient norm)"
    assert not (tmp_path / "results").exists()
