"""Learning-rate tuning by protocol: every configuration at its best rate, chosen on validation examples only.

For a run whose ``tune.lr_grid`` is not empty, the plan (harness/engine/plan.py) lists one *tuning
run* per rate before the run itself: the same configuration trained with seed ``tune.seed`` at that
rate and evaluated on the validation split (``eval.split=validation``: examples drawn with a seed
tag that the test set never uses), in the same experiment. They are ordinary runs (stored
atomically, skipped when done, resumed when killed), shared by every seed of the configuration.
Once they are stored, ``choose_rate`` picks the rate with the best mean validation headline metric
over the grid's cells, an OOM cell counting as the metric's worst value and a failed or diverged
tuning run not competing; ties go to the lower final training loss (the evaluator computes no
validation loss). The run itself then trains at that rate with its own seed and is evaluated on
the test set; its record's ``tuning`` holds the grid, each rate's validation score and tuning run,
and the choice. No test example is read before the choice is made.

The run whose seed is ``tune.seed`` would train exactly the model that the winning tuning run
trained (same configuration, seed and rate; the evaluation split trains nothing). It is not trained
again: ``weights_to_reuse`` names that run's stored weights, and the run evaluates them on the test
set, its record naming the tuning run in ``tuning.weights_from``. Without stored weights
(``keep_weights=false``) it trains, and gets the same model.

Hydra's sweeper launches the (configuration, seed) jobs, e.g. ``experiment=reference``; the choice
inside a job needs the results of the other rates, which independent sweep jobs cannot see.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.store.weights import WEIGHTS_FILE


class TuningFailed(RuntimeError):
    """No rate of the grid gave a usable tuning run."""


def tuned(cfg: DictConfig) -> bool:
    """Whether ``cfg`` chooses its learning rate by tuning runs first (a test run with a rate grid)."""
    return bool(cfg.tune.lr_grid) and cfg.eval.split == "test"


def trial_config(cfg: DictConfig, lr: float) -> DictConfig:
    """The tuning run of ``cfg`` at learning rate ``lr``: seed ``tune.seed``, validation examples, no tuning."""
    trial = copy.deepcopy(cfg)
    trial.train.lr = float(lr)
    trial.seed = cfg.tune.seed
    trial.eval.split = "validation"
    trial.tune.lr_grid = []
    return trial


def validation_score(record: dict[str, Any]) -> float | None:
    """Mean headline metric over the record's cells, OOM cells as the worst value; None if the run failed."""
    if record.get("status") != "ok":
        return None
    cells = [cell for cell in record["cells"] if cell["metric"] == record["primary_metric"]]
    if not cells:
        return None
    higher_is_better = bool(cells[0]["higher_is_better"])
    worst = 0.0 if higher_is_better else math.inf
    mean = sum(cell["value"] if cell["status"] == "ok" else worst for cell in cells) / len(cells)
    return mean if higher_is_better else -mean


def choose(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The best trial: highest validation score (higher is better, sign applied), then lowest final loss."""
    usable = [trial for trial in trials if trial["validation_score"] is not None]
    if not usable:
        raise TuningFailed("every learning rate of tune.lr_grid failed or diverged in its tuning run: "
                           + ", ".join(f"lr={trial['lr']}: {trial['status']}" for trial in trials))
    return max(usable, key=lambda trial: (round(trial["validation_score"], 12), -trial["final_loss"]))


def choose_rate(cfg: DictConfig, trials: list[tuple[str, dict[str, Any]]]) -> tuple[DictConfig, dict[str, Any]]:
    """``cfg`` at the rate its tuning runs choose, with the selection to store in its record.

    ``trials`` holds each rate's tuning run as (run_id, its record), in the order of ``tune.lr_grid``.
    """
    scored = [{"lr": float(lr), "run_id": identifier, "status": record.get("status"),
               "validation_score": validation_score(record),
               "final_loss": (record.get("training") or {}).get("final_loss", math.inf)}
              for lr, (identifier, record) in zip(cfg.tune.lr_grid, trials)]
    best = choose(scored)
    chosen = copy.deepcopy(cfg)
    chosen.train.lr = best["lr"]
    return chosen, {"lr_grid": [trial["lr"] for trial in scored], "chosen_lr": best["lr"], "seed": cfg.tune.seed,
                    "split": "validation", "trials": scored,
                    "rule": "highest mean validation headline metric, ties to the lower final training loss"}


def weights_to_reuse(seed: int, tuning: dict[str, Any], run_dirs: dict[str, Path]) -> Path | None:
    """The winning tuning run's directory (``run_dirs``: each tuning run's, by run_id) if it trained
    this very model (``seed`` is the tuning seed) and kept its weights; else None."""
    if seed != tuning["seed"]:
        return None
    winner = next(trial for trial in tuning["trials"] if trial["lr"] == tuning["chosen_lr"])
    run_dir = run_dirs[winner["run_id"]]
    return run_dir if (run_dir / WEIGHTS_FILE).is_file() else None
