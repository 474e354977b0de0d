"""Generated test examples cached as Arrow datasets (Hugging Face ``datasets``), keyed by what made them.

Every run of a sweep meets the same test cells: the first run generates them and saves them (``Dataset.save_to_disk`` into a temporary directory, then one
rename, so a killed run leaves no half-written cache), later runs memory-map them. The key is a
hash of the task's name and options, the seed, the cells, and the source of
the task's module and of the harness modules that generate examples, so that editing a generator
invalidates its cache. A cache entry that cannot be read is generated again. Tasks with
``cacheable = False`` (the dataset-backed ones, whose tokenization ``datasets`` caches already)
are generated directly. Training examples are not cached: they are generated as training goes
(harness/engine/training_stream.py), which takes a few batches of memory instead of the whole stream.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.taskkit.task import Example, Task

#: harness modules whose code shapes generated examples
GENERATOR_MODULES = ("harness.taskkit.task", "harness.taskkit.haystack", "harness.taskkit.vocabulary")
COLUMNS = ("tokens", "labels", "targets", "knobs", "info")


def _helper_modules(module_name: str) -> list[str]:
    """Modules of the task's own package whose functions or classes the task module uses (e.g. a
    story generator beside the task), so that editing them invalidates the cache too."""
    package = module_name.split(".")[0]
    used = {getattr(value, "__module__", None) for value in vars(importlib.import_module(module_name)).values()}
    return sorted(name for name in used if name and name != module_name and name.split(".")[0] == package)


@functools.cache
def code_version(module_name: str) -> str:
    modules = (module_name, *_helper_modules(module_name), *GENERATOR_MODULES)
    sources = [inspect.getsource(importlib.import_module(name)) for name in modules]
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:16]


class ExampleCache:
    """Test cells of a task, from the cache in ``directory`` (None: no cache)."""

    def __init__(self, directory: str | Path | None):
        self.directory = None if directory is None else Path(directory).expanduser()

    def test_cells(self, task: Task, seed: int, cells: list[dict[str, Any]], count: int,
                   split: str = "test") -> list[list[Example]]:
        """The ``count`` examples of every cell of an evaluation split, in the order of ``cells``."""
        if self.directory is None or not task.cacheable:
            return [task.test_examples(seed, knobs, count, split) for knobs in cells]
        data = self._dataset(task, {"split": split, "seed": seed, "cells": cells, "count": count},
                             lambda: (example for knobs in cells
                                      for example in task.test_examples(seed, knobs, count, split)))
        return [_examples(data[index * count : (index + 1) * count]) for index in range(len(cells))]

    def _dataset(self, task: Task, spec: dict[str, Any], generate: Callable[[], Iterable[Example]]):
        import datasets

        key = json.dumps({"task": task.name, "options": asdict(task.config), "code": code_version(type(task).__module__),
                          "columns": COLUMNS, **spec}, sort_keys=True, default=str)
        path = self.directory / task.name / hashlib.sha256(key.encode()).hexdigest()[:24]
        if path.is_dir():
            try:
                return datasets.load_from_disk(str(path)).with_format("numpy")
            except Exception as error:  # a damaged entry is a cache miss, not a failed run
                warnings.warn(f"example cache {path} is unreadable ({type(error).__name__}: {error}); regenerating it")
                shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            datasets.disable_progress_bars()
            # the key's hash is the fingerprint: datasets would otherwise hash the whole table
            datasets.Dataset(_table(list(generate())), fingerprint=path.name).save_to_disk(str(scratch / "data"))
            (scratch / "data" / "key.json").write_text(key)
            os.replace(scratch / "data", path)
        except OSError:
            if not path.is_dir():  # another run stored the same entry first: use theirs
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return datasets.load_from_disk(str(path)).with_format("numpy")


def _table(examples: list[Example]):
    """One Arrow table of the examples: token arrays as list columns, knobs and info as JSON."""
    import pyarrow as pa

    def column(arrays: list[np.ndarray]):
        offsets = np.concatenate(([0], np.cumsum([len(array) for array in arrays])))
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(np.concatenate(arrays), pa.int64()))

    return pa.table({"tokens": column([e.tokens for e in examples]), "labels": column([e.labels for e in examples]),
                     "targets": column([e.training_targets for e in examples]),
                     "knobs": pa.array([json.dumps(e.knobs) for e in examples]),
                     "info": pa.array([json.dumps(e.info) for e in examples])})


def _examples(batch: dict[str, Any]) -> list[Example]:
    return [Example(np.asarray(tokens, dtype=np.int64), np.asarray(labels, dtype=np.int64), json.loads(knobs),
                    np.asarray(targets, dtype=np.int64), json.loads(info))
            for tokens, labels, targets, knobs, info in
            zip(batch["tokens"], batch["labels"], batch["targets"], batch["knobs"], batch["info"])]
