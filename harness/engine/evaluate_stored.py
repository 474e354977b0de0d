"""Train once, evaluate many: ``mode=eval`` evaluates stored trained models on cells their records lack.

``memarena mode=eval <the run's overrides> eval.grid.context_len=[...]`` (or ``-m`` over a sweep)
composes the config as a training run would, finds the stored runs of the same trained model (the
same resolved config once ``harness.store.records.TRAINED_MODEL_EXCLUDES`` and the non-semantic keys are left out: the
evaluation grid, the other evaluation settings and the task's own grid shape no training), loads
their weights (``model.pt``), evaluates the cells of the new grid their records lack, and adds
those cells and outcomes to the records; cells already present are not recomputed. The record
keeps its run_id and its training; ``evaluations`` lists each later evaluation (time, code,
device, command, settings) and each added cell names its entry by index (``cell["evaluation"]``).
The test examples must be those of the stored cells (same ``eval.examples_per_cell`` and
``eval.seed``). Two evaluations of one run at the same time may lose one's cells (last write wins).
"""

from __future__ import annotations

import io
import json
import numbers
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from harness.config import NEUTRAL_VALUES, semantic_config
from harness.engine.evaluate import evaluate
from harness.taskkit.example_cache import ExampleCache
from harness.engine.checks import ConfigError
from harness.engine.plan import PlannedRun, autocast, prepare, show_progress
from harness.engine.tuning import listed
from harness.engine.provenance import provenance
from harness.store.records import CONFIG_FILE, OUTCOMES_FILE, read_result, trained_model_id, write_run
from harness.store.weights import WEIGHTS_FILE, load_weights

#: evaluation settings that choose the test examples and how they are scored: a stored cell is
#: only "present", and new cells may only join a record, if they agree
SAME_EVALUATION = ("examples_per_cell", "seed", "split", "scoring")


def stored_semantic(run_dir: Path) -> dict[str, Any]:
    container = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE), resolve=True)
    return semantic_config(container)


def find_trained_runs(plan: PlannedRun) -> list[Path]:
    """The run directories of this experiment whose complete record trained the same model."""
    wanted = trained_model_id(plan.semantic)
    experiment = plan.run_dir.parent
    runs = [path for path in sorted(experiment.glob(f"*/{CONFIG_FILE}")) if not path.parent.name.startswith(".")]
    return [path.parent for path in runs if trained_model_id(stored_semantic(path.parent)) == wanted]


def _checked_runs(plan: PlannedRun) -> list[tuple[Path, dict[str, Any]]]:
    """The stored runs to evaluate with their records; ConfigError, before any work, if there are none."""
    where = plan.run_dir.parent
    runs = find_trained_runs(plan)
    if not runs:
        raise ConfigError(f"mode=eval: no stored run of this trained model in {where}; "
                          "train it first (the same command without mode=eval)")
    checked = []
    for run_dir in runs:
        try:
            record = read_result(run_dir)
        except (FileNotFoundError, ValueError):
            continue  # unfinished or unreadable: not a trained model to evaluate
        if record["status"] != "ok":
            continue
        stored_eval = stored_semantic(run_dir)["eval"]
        for key in SAME_EVALUATION:
            stored = stored_eval.get(key, NEUTRAL_VALUES.get(("eval", key)))  # a key left out at its neutral value
            if stored != getattr(plan.config.eval, key):
                raise ConfigError(f"mode=eval: eval.{key}={getattr(plan.config.eval, key)} but {run_dir} was "
                                  f"evaluated with eval.{key}={stored}; use that value so cells compare")
        if not (run_dir / WEIGHTS_FILE).is_file():
            raise ConfigError(f"mode=eval: {run_dir} has no stored weights ({WEIGHTS_FILE}; kept since keep_weights "
                              "was added, unless keep_weights=false); rerun it with force=true to keep them")
        checked.append((run_dir, record))
    if not checked:
        raise ConfigError(f"mode=eval: the stored runs of this trained model in {where} did not complete training "
                          f"({', '.join(path.name for path in runs)})")
    return checked


def evaluate_stored(cfg: DictConfig) -> dict[str, Any]:
    """Add the cells of this config's grid to every stored record of its trained model; return a status."""
    plan = prepare(listed(cfg))  # a tune.lr_range is stored as its list of rates
    config = plan.config
    runs = _checked_runs(plan)
    wanted = plan.task.evaluation_cells(config.eval.grid)
    added = 0
    for run_dir, record in runs:
        present = {_cell_key(cell["knobs"]) for cell in record["cells"]}
        missing = [knobs for knobs in wanted if _cell_key(knobs) not in present]
        label = f"{config.name}/{run_dir.name} ({config.mechanism.name} on {config.task.name} seed={config.seed})"
        if not missing:
            print(f"[memarena] {label}: every cell of the grid already evaluated; nothing to do")
            continue
        load_weights(plan.model, run_dir)
        cells, outcomes = evaluate(plan.model, plan.task, config.eval, config.model.segment_len, plan.device,
                                   show_progress(config.progress), autocast(plan.device, config.precision),
                                   ExampleCache(config.cache_dir), missing)
        evaluations = record.setdefault("evaluations", [])
        evaluations.append({**provenance(plan.device), "cells": missing, "batch_size": config.eval.batch_size,
                            "max_memory_gb": config.eval.max_memory_gb, "precision": config.precision})
        record["cells"] += [{**cell, "evaluation": len(evaluations) - 1} for cell in cells]
        write_run(run_dir, (run_dir / CONFIG_FILE).read_text(), record, _merged_outcomes(run_dir, missing, outcomes))
        added += len(missing)
        print(f"[memarena] {label}: evaluated {len(missing)} more cell(s) of the stored model, no training")
    return {"run_id": ",".join(run_dir.name for run_dir, _ in runs), "status": "ok", "skipped": not added}


def _cell_key(knobs: dict[str, Any]) -> str:
    """A cell's knobs as text, numbers as floats (a depth of 0 is the cell 0.0; CSV gives numpy numbers)."""
    return json.dumps({key: float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value
                       for key, value in knobs.items()}, sort_keys=True)


def _merged_outcomes(run_dir: Path, cells: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> str:
    """The stored outcomes and the new cells' ones; rows of those cells left by an interrupted evaluation are dropped."""
    path = run_dir / OUTCOMES_FILE
    stored = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if len(stored):
        knobs = list(cells[0])
        new = {_cell_key(cell) for cell in cells}
        stale = [_cell_key(dict(zip(knobs, values))) in new for values in stored[knobs].itertuples(index=False)]
        stored = stored[[not flag for flag in stale]]
    buffer = io.StringIO()
    pd.concat([stored, pd.DataFrame(outcomes)], ignore_index=True).to_csv(buffer, index=False)
    return buffer.getvalue()
