"""Generated examples cached as Arrow files by Hugging Face ``datasets``, keyed by what made them.

Every run of a sweep trains on the same examples and meets the same test cells: the first run
generates them into the cache (``Dataset.from_generator``, written atomically by ``datasets``),
later runs memory-map them. The key is the fingerprint ``datasets`` takes of the generator's
arguments: the task's options, the seed, the step lengths or cells, and a hash of the source of
the task's module and of the harness modules that generate examples, so that editing a generator
invalidates its cache. Tasks with ``cacheable = False`` (the dataset-backed ones, whose
tokenization ``datasets`` caches already) are generated directly.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.task import Example, Task

#: harness modules whose code shapes generated examples
GENERATOR_MODULES = ("harness.task", "harness.haystack", "harness.vocabulary")


@functools.cache
def code_version(module_name: str) -> str:
    import importlib

    sources = [inspect.getsource(importlib.import_module(name)) for name in (module_name, *GENERATOR_MODULES)]
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:16]


class ExampleCache:
    """Training batches and test cells of a task, from the cache in ``directory`` (None: no cache)."""

    def __init__(self, directory: str | Path | None):
        self.directory = None if directory is None else Path(directory).expanduser()

    def training_batches(self, task: Task, seed: int, lengths: list[int], batch_size: int) -> Callable[[int], list[Example]]:
        """A function step -> the ``batch_size`` training examples of that step (of length lengths[step])."""
        if self.directory is None or not task.cacheable:
            return lambda step: task.training_examples(seed, step, batch_size, lengths[step])
        data = self._dataset(_training_rows, task, seed=seed, lengths=json.dumps(list(lengths)), batch_size=batch_size)
        return lambda step: _examples(data[step * batch_size : (step + 1) * batch_size])

    def test_cells(self, task: Task, seed: int, cells: list[dict[str, Any]], count: int) -> list[list[Example]]:
        """The ``count`` test examples of every cell, in the order of ``cells``."""
        if self.directory is None or not task.cacheable:
            return [task.test_examples(seed, knobs, count) for knobs in cells]
        data = self._dataset(_test_rows, task, seed=seed, cells=json.dumps(cells), count=count)
        return [_examples(data[index * count : (index + 1) * count]) for index in range(len(cells))]

    def _dataset(self, rows: Callable[..., Iterator[dict[str, Any]]], task: Task, **spec: Any):
        import datasets

        datasets.disable_progress_bars()
        arguments = {"task_name": task.name, "task_options": json.dumps(_options(task), sort_keys=True, default=str),
                     "code": code_version(type(task).__module__), **spec}
        data = datasets.Dataset.from_generator(
            functools.partial(rows, task), gen_kwargs=arguments, cache_dir=str(self.directory),
            features=datasets.Features({
                "tokens": datasets.Sequence(datasets.Value("int64")), "labels": datasets.Sequence(datasets.Value("int64")),
                "targets": datasets.Sequence(datasets.Value("int64")), "knobs": datasets.Value("string"),
                "info": datasets.Value("string")}))
        return data.with_format("numpy")


def _options(task: Task) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(task.config)


def _row(example: Example) -> dict[str, Any]:
    return {"tokens": example.tokens.tolist(), "labels": example.labels.tolist(), "targets": example.training_targets.tolist(),
            "knobs": json.dumps(example.knobs), "info": json.dumps(example.info)}


# Lists reach the generators as JSON strings: `datasets` would split a list argument into shards.
def _training_rows(task: Task, task_name: str, task_options: str, code: str, seed: int, lengths: str,
                   batch_size: int) -> Iterator[dict[str, Any]]:
    for step, length in enumerate(json.loads(lengths)):
        for example in task.training_examples(seed, step, batch_size, length):
            yield _row(example)


def _test_rows(task: Task, task_name: str, task_options: str, code: str, seed: int, cells: str,
               count: int) -> Iterator[dict[str, Any]]:
    for knobs in json.loads(cells):
        for example in task.test_examples(seed, knobs, count):
            yield _row(example)


def _examples(batch: dict[str, Any]) -> list[Example]:
    return [Example(np.asarray(tokens, dtype=np.int64), np.asarray(labels, dtype=np.int64), json.loads(knobs),
                    np.asarray(targets, dtype=np.int64), json.loads(info))
            for tokens, labels, targets, knobs, info in
            zip(batch["tokens"], batch["labels"], batch["targets"], batch["knobs"], batch["info"])]
