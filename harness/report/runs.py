"""The runs of an experiment as report rows: a row is a configuration, never a mechanism name alone.

Runs are grouped by every resolved config key that differs between the runs of a task, the seed
excepted (mechanism options, state budget, model, training, precision, evaluation settings...).
Keys that vary within one mechanism's runs name the row (``transformer_xl mem_len=8``); keys that
vary outside the mechanism group (a state budget, a model size, a learning rate) are the row's
*setting*: shown as columns, and paired tests only compare rows of the same setting, which also
guarantees they met the same test examples. The evaluation grid and the task's grid are the
report's columns, not parts of a configuration. A learning rate chosen by tuning (``tune.lr_grid``)
names the row too (``lr=0.003``): it is part of the configuration, not a setting to pair within.
Tuning runs themselves (``eval.split=validation``) are not rows: they were scored on validation
examples, and the records they chose for name them.

The two model families stay apart: pretrained language models (records with ``family: "pretrained"``,
harness/pretrained) form a section of their own per task (``PRETRAINED_SECTION``), so they are never
ranked or paired with models trained here; in it, a policy's options (``policy.*``) name the rows
as a mechanism's options do, and the model (``model.name``) is a setting.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from harness.config import DEFAULT_CEILING, NON_SEMANTIC_KEYS, without_neutral_values
from harness.store.records import CONFIG_FILE, OUTCOMES_FILE, load_experiment

#: keys that never separate two runs into two rows: the replicate, and the grids (report columns)
NOT_CONFIGURATION = ("seed", "eval.grid", "task.grid", *NON_SEMANTIC_KEYS)
#: short names of setting keys in labels and column headers
SHORT_NAMES = {"state_budget_bytes": "budget", "model.name": "model"}
#: config groups whose options name a row (a trained model's mechanism, a pretrained model's memory policy)
ROW_GROUPS = ("mechanism.", "policy.")
#: the report section of a task's pretrained-model runs
PRETRAINED_SECTION = "{task} (pretrained models)"
#: the ceiling of a pretrained model's section: the same model with its whole KV cache
PRETRAINED_CEILING = "pretrained/full"


def section(record: dict[str, Any]) -> str:
    """The report section of a run: its task, or for a pretrained model ``PRETRAINED_SECTION``."""
    return PRETRAINED_SECTION.format(task=record["task"]) if record.get("family") == "pretrained" else record["task"]


def ceiling(record: dict[str, Any], config: dict[str, Any]) -> str:
    """The mechanism a run's ranking is read against: the experiment's ``ceiling``, or for a pretrained
    model its full KV cache (``pretrained/full``)."""
    if record.get("family") == "pretrained":
        return PRETRAINED_CEILING
    return config.get("ceiling") or DEFAULT_CEILING


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become tuples so that values are hashable."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def read_config(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved config, flattened, without keys at their neutral values (so a config stored before
    such a key existed and one stored after make one row); a run without a readable one is known by its
    mechanism only."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE), resolve=False)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
    except Exception as error:  # OmegaConf raises several types for unreadable YAML
        warnings.warn(f"{run_dir / CONFIG_FILE}: unreadable config ({error}); the run is grouped by mechanism "
                      "name only", stacklevel=2)
        config = {}
    flat = flatten(without_neutral_values(config))
    flat.setdefault("mechanism.name", record["mechanism"])
    flat.setdefault("task.name", record["task"])
    return flat


def configuration_keys(configs: pd.DataFrame) -> tuple[dict[str, list[str]], list[str]]:
    """Per mechanism, the keys that name its rows (its options that vary among its runs, and a tuned
    learning rate); and the setting keys (other keys that vary)."""
    # whole keys or sections: "mode" (a flag) must not drop "model.d_model"
    keys = [key for key in configs.columns if not any(key == excluded or key.startswith(f"{excluded}.")
                                                      for excluded in NOT_CONFIGURATION)]
    varying = [key for key in keys if configs[key].astype(str).nunique(dropna=False) > 1]
    tuned = "tune.lr_grid" in configs.columns and configs["tune.lr_grid"].map(bool).any()
    settings = _one_per_partition(configs, [key for key in varying
                                            if not key.startswith(ROW_GROUPS) and not (tuned and key == "train.lr")])
    per_mechanism = {
        mechanism: [key for key in varying if key.startswith(ROW_GROUPS)
                    and key not in ("mechanism.name", "policy.name") and group[key].astype(str).nunique(dropna=False) > 1] + (["train.lr"] if tuned else [])
        for mechanism, group in configs.groupby("mechanism.name")
    }
    return per_mechanism, settings


def _one_per_partition(configs: pd.DataFrame, keys: list[str]) -> list[str]:
    """``keys`` less those whose values follow one to one from an earlier key's (``train.min_context_len`` set to
    ``train.context_len`` in a sweep over lengths): they split the runs the same way and would only lengthen labels."""
    values = configs[keys].astype(str)
    kept: list[str] = []
    for key in keys:
        if not any(values.groupby(earlier)[key].nunique().max() == 1 and values.groupby(key)[earlier].nunique().max() == 1
                   for earlier in kept):
            kept.append(key)
    return kept


def short_name(key: str) -> str:
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def _assignment(key: str, value: Any) -> str:
    return f"{short_name(key)}={'null' if value is None or value != value else value}"


def runs_frame(results_dir: Path, experiment: str) -> pd.DataFrame:
    """One row per stored run (every status), with its configuration row, setting and record."""
    records = load_experiment(results_dir, experiment)
    entries = []
    for record in records:
        config = read_config(Path(results_dir) / experiment / record["run_id"], record)
        entries.append((record, config))
    return label_runs(entries)


def label_runs(entries: list[tuple[dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    """Label each (record, flat config) with its row and setting, section by section: a task, or a task's
    pretrained models (``load_experiment`` already keeps one record per trained configuration and seed)."""
    frames = []
    for task in sorted({section(record) for record, _ in entries}):
        chosen = [(record, config) for record, config in entries
                  if section(record) == task and config.get("eval.split", "test") == "test"]
        if not chosen:
            continue
        configs = pd.DataFrame([config for _, config in chosen])
        per_mechanism, settings = configuration_keys(configs)
        rows = []
        for record, full_config in chosen:
            config = {key: full_config.get(key) for key in configs.columns}
            mechanism = record["mechanism"]
            label = " ".join([mechanism, *(_assignment(key, config[key]) for key in per_mechanism.get(mechanism, []))])
            setting = ", ".join(_assignment(key, config[key]) for key in settings)
            rows.append({"task": task, "row": f"{label} ({setting})" if setting else label, "label": label,
                         "setting": setting, "mechanism": mechanism, "seed": record["seed"], "run_id": record["run_id"],
                         "status": record["status"], "record": record,
                         "ceiling": ceiling(record, full_config), "planned_lengths": planned_lengths(record, full_config),
                         **{short_name(key): config[key] for key in settings}})
        frames.append(pd.DataFrame(rows))
    if not frames:
        return pd.DataFrame(columns=["task", "row", "label", "setting", "mechanism", "seed", "run_id", "status", "record",
                                     "ceiling", "planned_lengths"])
    return pd.concat(frames, ignore_index=True)


def planned_lengths(record: dict[str, Any], config: dict[str, Any]) -> tuple[int, ...]:
    """The context lengths a run is evaluated at: those its evaluation grid asks for and those of the cells it
    holds (``mode=eval`` adds cells beyond the grid it trained with); empty when neither says: every length."""
    cells = {cell["knobs"].get("context_len") for cell in record.get("cells") or []}
    return tuple(sorted({int(length) for length in [*(config.get("eval.grid.context_len") or ()), *cells]
                         if length is not None}))


def outcomes_frame(results_dir: Path, experiment: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Per-example outcomes of the complete runs, with row and seed; an unreadable file is skipped with a warning."""
    frames = []
    for run in runs[runs["status"] == "ok"].itertuples():
        path = Path(results_dir) / experiment / run.run_id / OUTCOMES_FILE
        try:
            frame = pd.read_csv(path)
            if not {"example", "metric", "value"} <= set(frame.columns):
                raise ValueError("missing columns")
        except (OSError, ValueError, pd.errors.ParserError) as error:
            warnings.warn(f"{path}: unreadable outcomes ({error}); left out of the intervals and paired tests",
                          stacklevel=2)
            continue
        frames.append(frame.assign(task=run.task, row=run.row, seed=run.seed, run_id=run.run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
