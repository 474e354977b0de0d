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

The grid is ``tune.lr_grid``, or ``tune.lr_range``: ``points`` log-spaced rates from ``low`` to ``high``
(rounded to 3 significant digits). A grid *brackets* the best rate when the winner is not at an end of
it, or is at an end without beating its neighbour beyond validation noise. When the winner sits at an
end and beats its neighbour beyond noise (``NOISE_RULE``), the best rate may lie outside the grid:
with ``tune.max_extensions`` > 0 one more rate is tried, one log step beyond that end (the end rate
times its ratio to its neighbour), as an ordinary tuning run, and the choice is made again; at most
``max_extensions`` times. ``harness.engine.run`` executes the plan's tuning runs, then asks
``extension`` for the next rate, in a loop; the record's ``tuning`` holds the planned grid, the rates
run (``lr_grid``), each extension with the comparison that asked for it, and the final ``edge``
comparison (whether the chosen rate still sits at an end beyond noise when the bound stopped the
extensions).

Hydra's sweeper launches the (configuration, seed) jobs, e.g. ``experiment=reference_256``; the choice
inside a job needs the results of the other rates, which independent sweep jobs cannot see.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from harness.store.weights import WEIGHTS_FILE

#: z of the noise rule: a paired z-test at the two-sided 5% level
NOISE_Z = 1.96
NOISE_RULE = ("an end rate beats its neighbour beyond validation noise when the mean per-example difference of the "
              f"headline metric between them, on the validation examples both scored, exceeds {NOISE_Z} times its "
              "standard error (standard deviation of the differences / sqrt(n)): a paired z-test at the two-sided "
              "5% level; a neighbour whose tuning run failed or diverged is beaten")


class TuningFailed(RuntimeError):
    """No rate of the grid gave a usable tuning run."""


@dataclass
class Trial:
    """One stored tuning run: its rate, identity and record, and its per-example validation outcomes."""

    lr: float
    run_id: str
    run_dir: Path
    record: dict[str, Any]
    #: the rows of its outcomes.csv (None: it stored none, e.g. it diverged)
    outcomes: pd.DataFrame | None


def planned_grid(cfg: DictConfig) -> list[float]:
    """The rates the plan tunes: ``tune.lr_grid``, or ``tune.lr_range``'s log-spaced rates (3 significant digits)."""
    span = cfg.tune.lr_range
    if span.low is None:
        return [float(lr) for lr in cfg.tune.lr_grid]
    return [round_rate(lr) for lr in np.geomspace(span.low, span.high, span.points)]


def listed(cfg: DictConfig) -> DictConfig:
    """``cfg`` with its ``tune.lr_range`` written out as ``tune.lr_grid``: a range and the list of its rates
    are one grid, so they make the same runs (the same run_ids) and the report reads one key."""
    if cfg.tune.lr_range.low is None:
        return cfg
    out = copy.deepcopy(cfg)
    out.tune.lr_grid = planned_grid(cfg)
    _range_off(out)
    return out


def _range_off(cfg: DictConfig) -> None:
    cfg.tune.lr_range.low = cfg.tune.lr_range.high = None
    cfg.tune.lr_range.points = 5


def round_rate(lr: float) -> float:
    """A rate to 3 significant digits, as configs and run_ids show it."""
    return float(f"{lr:.3g}")


def tuned(cfg: DictConfig) -> bool:
    """Whether ``cfg`` chooses its learning rate by tuning runs first (a test run with a rate grid)."""
    return bool(planned_grid(cfg)) and cfg.eval.split == "test"


def trial_config(cfg: DictConfig, lr: float) -> DictConfig:
    """The tuning run of ``cfg`` at learning rate ``lr``: seed ``tune.seed``, validation examples, no tuning."""
    trial = copy.deepcopy(cfg)
    trial.train.lr = float(lr)
    trial.seed = cfg.tune.seed
    trial.eval.split = "validation"
    trial.tune.lr_grid = []
    _range_off(trial)
    trial.tune.max_extensions = 0
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


def scored(trials: list[Trial]) -> list[dict[str, Any]]:
    """Each trial's rate, run, status, validation score and final loss, by rate."""
    return [{"lr": trial.lr, "run_id": trial.run_id, "status": trial.record.get("status"),
             "validation_score": validation_score(trial.record),
             "final_loss": (trial.record.get("training") or {}).get("final_loss", math.inf)}
            for trial in sorted(trials, key=lambda trial: trial.lr)]


def paired_difference(better: Trial, other: Trial) -> dict[str, Any]:
    """``better`` minus ``other`` on the validation examples both scored (headline metric, sign applied so that
    positive favours ``better``): mean, standard error and n of the per-example differences, and whether the
    mean exceeds ``NOISE_Z`` standard errors (``beyond_noise``)."""
    if validation_score(other.record) is None:
        return {"mean": None, "standard_error": None, "n": 0, "beyond_noise": True,
                "why": f"the neighbour's tuning run is {other.record.get('status')}"}
    if better.outcomes is None or other.outcomes is None:
        return {"mean": None, "standard_error": None, "n": 0, "beyond_noise": False,
                "why": "no per-example validation outcomes to compare"}
    metric = better.record["primary_metric"]
    sign = 1.0 if next(cell["higher_is_better"] for cell in better.record["cells"] if cell["metric"] == metric) else -1.0
    ours, theirs = (frame[frame["metric"] == metric] for frame in (better.outcomes, other.outcomes))
    key = [column for column in ours.columns if column != "value" and column in theirs.columns]
    pairs = ours.merge(theirs, on=key, suffixes=("", "_other"))
    differences = sign * (pairs["value"] - pairs["value_other"]).to_numpy(dtype=float)
    if len(differences) == 0:
        return {"mean": None, "standard_error": None, "n": 0, "beyond_noise": False,
                "why": "no validation example scored by both"}
    mean = float(differences.mean())
    error = float(differences.std(ddof=1) / math.sqrt(len(differences))) if len(differences) > 1 else math.inf
    return {"mean": mean, "standard_error": error, "n": len(differences), "beyond_noise": bool(mean > NOISE_Z * error)}


def edge_comparison(trials: list[Trial]) -> dict[str, Any] | None:
    """Where the best trial sits at an end of the rates run: that end ("low" or "high"), the winner, its
    neighbour and their ``paired_difference``; None if it sits inside (or no rate is usable, or one rate ran)."""
    rates = sorted(trial.lr for trial in trials)
    try:
        best = choose(scored(trials))["lr"]
    except TuningFailed:
        return None
    if len(rates) < 2 or best not in (rates[0], rates[-1]):
        return None
    edge = "low" if best == rates[0] else "high"
    neighbour = rates[1] if edge == "low" else rates[-2]
    by_rate = {trial.lr: trial for trial in trials}
    return {"edge": edge, "lr": best, "neighbour_lr": neighbour,
            **paired_difference(by_rate[best], by_rate[neighbour])}


def extension(cfg: DictConfig, trials: list[Trial]) -> dict[str, Any] | None:
    """The next rate to tune, one log step beyond the end where the best trial sits and beats its neighbour
    beyond noise, with that comparison; None when the grid brackets the best rate or ``tune.max_extensions``
    rates were added already."""
    added = [trial for trial in trials if trial.lr not in planned_grid(cfg)]
    if len(added) >= cfg.tune.max_extensions:
        return None
    comparison = edge_comparison(trials)
    if comparison is None or not comparison["beyond_noise"]:
        return None
    lr = round_rate(comparison["lr"] ** 2 / comparison["neighbour_lr"])  # one log step beyond the end
    return {"lr": lr, "beyond": comparison}


def choose_rate(cfg: DictConfig, trials: list[Trial],
                extensions: list[dict[str, Any]] | None = None) -> tuple[DictConfig, dict[str, Any]]:
    """``cfg`` at the rate its tuning runs choose, with the selection to store in its record.

    ``trials``: every tuning run (the planned grid's and the ``extensions``' rates, as ``extension`` asked for them).
    """
    rows = scored(trials)
    best = choose(rows)
    chosen = copy.deepcopy(cfg)
    chosen.train.lr = best["lr"]
    return chosen, {"lr_grid": [row["lr"] for row in rows], "chosen_lr": best["lr"], "seed": cfg.tune.seed,
                    "split": "validation", "trials": rows,
                    "rule": "highest mean validation headline metric, ties to the lower final training loss",
                    "planned_grid": planned_grid(cfg), "extensions": extensions or [],
                    "max_extensions": cfg.tune.max_extensions, "edge": edge_comparison(trials),
                    "noise_rule": NOISE_RULE}


def weights_to_reuse(seed: int, tuning: dict[str, Any], run_dirs: dict[str, Path]) -> Path | None:
    """The winning tuning run's directory (``run_dirs``: each tuning run's, by run_id) if it trained
    this very model (``seed`` is the tuning seed) and kept its weights; else None."""
    if seed != tuning["seed"]:
        return None
    winner = next(trial for trial in tuning["trials"] if trial["lr"] == tuning["chosen_lr"])
    run_dir = run_dirs[winner["run_id"]]
    return run_dir if (run_dir / WEIGHTS_FILE).is_file() else None
