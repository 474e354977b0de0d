"""The results store: one directory per run, written so that no reader sees half a record.

Layout: ``<results_dir>/<experiment>/<run_id>/`` with ``config.yaml`` (the resolved config),
``outcomes.csv`` (one row per test example and metric, for paired statistics) and
``result.json`` (its shape: harness/store/schema.py). Every file is written to a temporary name in the same
directory and renamed into place; ``result.json`` is written last, so a run whose
``result.json`` is present and valid is complete, and a run killed midway leaves no record and
is redone on the next invocation. Concurrent writers of the same run write the same content and
the last rename wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.config import semantic_config
from harness.store.schema import SCHEMA_VERSION, record_problem

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"
OUTCOMES_FILE = "outcomes.csv"
#: statuses of a complete run; a "failed" run is retried when the same config runs again
FINAL_STATUSES = ("ok", "oom", "diverged")


def run_id(semantic_config: dict[str, Any]) -> str:
    """A short stable hash of a run's semantic config."""
    canonical = json.dumps(semantic_config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text, or bytes) to ``path``: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide a shared store from its readers
        with os.fdopen(handle, "wb" if isinstance(content, bytes) else "w") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class CorruptRecord(ValueError):
    pass


def read_result(run_dir: Path) -> dict[str, Any]:
    """The run's record; raises FileNotFoundError if absent, CorruptRecord if unreadable or of the wrong shape."""
    path = run_dir / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptRecord(f"{path}: not valid JSON ({error})") from None
    problem = record_problem(record)
    if problem is not None:
        raise CorruptRecord(f"{path}: not a memarena result of schema version {SCHEMA_VERSION} ({problem})")
    if record["run_id"] != run_dir.name:
        raise CorruptRecord(f"{path}: the record of run {record['run_id']}, stored under another run's directory")
    return record


def completed_status(run_dir: Path) -> str | None:
    """The status of a complete record in ``run_dir``, or None if the run must (re)run."""
    try:
        status = read_result(run_dir)["status"]
    except FileNotFoundError:
        return None
    except CorruptRecord as error:
        warnings.warn(f"{error}; the run will be redone", stacklevel=2)
        return None
    return status if status in FINAL_STATUSES else None


def write_run(run_dir: Path, config_yaml: str, result: dict[str, Any], outcomes_csv: str | None) -> None:
    """Store one run; ``result.json`` goes last and marks the record complete."""
    write_atomic(run_dir / CONFIG_FILE, config_yaml)
    if outcomes_csv is not None:
        write_atomic(run_dir / OUTCOMES_FILE, outcomes_csv)
    write_atomic(run_dir / RESULT_FILE, json.dumps({"schema_version": SCHEMA_VERSION, **result}, indent=1))


def load_experiment(results_dir: Path, experiment: str) -> list[dict[str, Any]]:
    """Every valid record of an experiment, one per trained configuration and seed.

    Unreadable, foreign or wrongly shaped records are skipped with a warning naming the file. Two
    records that trained the same configuration with the same seed (the same run stored under an
    older run_id, or evaluated on another grid) are one model, not two samples: only the newest
    is kept, and the others are named in a warning, so that no report pools them as seeds.
    """
    root = Path(results_dir) / experiment
    if not root.is_dir():
        return []
    kept: dict[tuple, tuple[Path, dict[str, Any]]] = {}
    for run_dir in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
        try:
            record = read_result(run_dir)
        except FileNotFoundError:
            warnings.warn(f"{run_dir}: no {RESULT_FILE} (an unfinished run); skipped", stacklevel=2)
            continue
        except CorruptRecord as error:
            warnings.warn(f"{error}; skipped", stacklevel=2)
            continue
        key = (record["mechanism"], record["task"], record["seed"], trained_configuration(run_dir))
        if key in kept:
            (older, _), (newer, record) = sorted([kept[key], (run_dir, record)],
                                                 key=lambda item: item[1]["provenance"].get("time") or "")
            warnings.warn(f"{older}: the same configuration and seed as {newer}, which is newer; skipped "
                          "(a duplicate is one trained model, not another seed)", stacklevel=2)
            run_dir = newer
        kept[key] = (run_dir, record)
    return [record for _, record in sorted(kept.values(), key=lambda item: item[0].name)]


#: (section, key) of the semantic config that shape only the evaluation, not the trained model
TRAINED_MODEL_EXCLUDES = (("eval", None), ("task", "grid"))


def trained_model_id(semantic: dict[str, Any]) -> str:
    """A hash of what the trained weights depend on: the semantic config without the evaluation settings.

    With early stopping (``train.eval_every``) the weights also depend on the cells that stopped training,
    the evaluation grid's cells within the training lengths (harness/engine/early_stopping.py), and their
    scoring: those stay in, so ``mode=eval`` over longer lengths still finds the run, and a different
    stopping grid does not."""
    kept = {key: dict(value) if isinstance(value, dict) else value for key, value in semantic.items()}
    training = semantic.get("train") or {}
    if training.get("eval_every") is not None:
        evaluation = semantic.get("eval") or {}
        grid = dict(evaluation.get("grid") or {})
        grid["context_len"] = [length for length in grid.get("context_len", []) if length <= training["context_len"]]
        kept["eval"] = {"stopping_grid": grid, "scoring": evaluation.get("scoring")}
        return run_id(kept)
    for section, key in TRAINED_MODEL_EXCLUDES:
        if key is None:
            kept.pop(section, None)
        elif isinstance(kept.get(section), dict):
            kept[section].pop(key, None)
    return run_id(kept)


def trained_configuration(run_dir: Path) -> str:
    """``trained_model_id`` of the run's stored config; the run's own name if that cannot be read."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE))
    except Exception:  # an unreadable config cannot be matched with another run's: the run stands alone
        return run_dir.name
    if not isinstance(config, dict):
        return run_dir.name
    return trained_model_id(semantic_config(config))
