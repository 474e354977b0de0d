"""Typed configs of a run, stored in Hydra's ConfigStore; the YAML files under harness/conf/ extend them.

The primary config ``config_schema`` types every group: a misspelt key or a value of the wrong
type in a YAML file or an override fails at composition, before any work, naming the key. The
``mechanism`` and ``task`` groups are typed by each component's own ``Config`` dataclass, stored
as ``schema/<group>/<name>`` by the registry and named in the component's YAML defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from harness.registry import MECHANISMS, TASKS

#: the Hydra config tree, shipped inside the package so that any install (wheel, non-editable) finds it
CONF_DIR = Path(__file__).resolve().parent / "conf"


@dataclass
class ModelConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4
    #: tokens read per forward call; the mechanism's state carries everything before them
    segment_len: int = 64


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 16
    #: each step draws its sequence length uniformly from [min_context_len, context_len]
    context_len: int = 256
    min_context_len: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    grad_clip: float = 1.0


@dataclass
class EvalConfig:
    #: knob -> values; the evaluation grid is their Cartesian product
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"context_len": [256]})
    examples_per_cell: int = 32
    batch_size: int = 32
    #: seed of the test examples, shared by all runs so that mechanisms meet the same examples
    seed: int = 0
    #: a cell whose measured peak memory for one example exceeds this is recorded as out of
    #: memory (enforced on CPU and GPU alike); null: only the device's own limit
    max_memory_gb: Optional[float] = None
    #: "test", or "validation": examples drawn with a seed tag the test set never uses (for tuning)
    split: str = "test"
    #: "generate": the model writes each answer greedily, reading its own outputs (as the papers
    #: score); "teacher_forced": the argmax at each answer position given the true prefix (diagnosis)
    scoring: str = "generate"


@dataclass
class TuneConfig:
    """Learning-rate tuning by protocol (harness/tuning.py): each configuration trains once per rate
    of ``lr_grid`` with seed ``seed``, is scored on validation examples, and the best rate trains the
    run itself. Empty grid: no tuning, ``train.lr`` as given."""

    lr_grid: list[float] = field(default_factory=list)
    seed: int = 0


@dataclass
class CheckpointConfig:
    """When training writes a checkpoint into the run directory (null: never on that count)."""

    every_steps: Optional[int] = 1000
    every_minutes: Optional[float] = 10.0


@dataclass
class RunConfig:
    #: experiment name: runs are stored under <results_dir>/<name>/
    name: str = "default"
    mechanism: Any = MISSING
    task: Any = MISSING
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    eval: EvalConfig = MISSING
    seed: int = 0
    #: set the mechanism's memory knob so that its state per sequence (all layers, fp32) fits
    #: this many bytes; null keeps the mechanism's own options
    state_budget_bytes: Optional[int] = None
    #: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
    device: str = "auto"
    #: "fp32", or "bf16" (autocast: matrix multiplies in bfloat16, weights and state in fp32)
    precision: str = "fp32"
    #: compile each block with torch.compile (harness/compile.py: static shapes)
    compile: bool = False
    results_dir: str = "results"
    #: where generated examples are cached for the runs of a sweep to share; null: no cache
    cache_dir: Optional[str] = "~/.cache/memarena"
    reports_dir: str = "reports"
    #: rerun and overwrite a run whose complete record is already stored
    force: bool = False
    #: progress bars on stderr; null: only when stderr is a terminal (not in redirected logs)
    progress: Optional[bool] = None
    #: "train": train, then evaluate; "eval": evaluate the stored trained model on this config's
    #: grid, adding the cells its record lacks (see harness/evaluate_stored.py)
    mode: str = "train"
    #: keep the trained weights in the run directory (model.pt), for later evaluations
    keep_weights: bool = True
    #: processes generating training batches ahead of the training step; 0: in the training process
    data_workers: int = 1
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


#: keys that do not change what a run computes; left out of its run_id
NON_SEMANTIC_KEYS = ("name", "results_dir", "reports_dir", "cache_dir", "force", "progress", "mode", "keep_weights",
                     "data_workers", "checkpoint")
#: (section, key) -> the value at which a key added later computes what runs computed before it
#: existed: left out of the run_id at that value, so that stored runs keep their ids
NEUTRAL_VALUES = {("eval", "split"): "test", ("tune", "lr_grid"): [], ("tune", "seed"): 0,
                  ("mechanism", "segment"): None, ("task", "preset"): None,
                  ("eval", "scoring"): "teacher_forced",
                  ("task", "kv_pairs_per_token"): None}


def semantic_config(container: dict[str, Any]) -> dict[str, Any]:
    """The resolved config that a run_id hashes: without NON_SEMANTIC_KEYS, nor keys at their NEUTRAL_VALUES."""
    semantic = {key: dict(value) if isinstance(value, dict) else value for key, value in container.items()
                if key not in NON_SEMANTIC_KEYS}
    for (section, key), neutral in NEUTRAL_VALUES.items():
        if section in semantic and semantic[section].get(key, neutral) == neutral:
            semantic[section].pop(key, None)
            if not semantic[section]:
                del semantic[section]
    return semantic


HELP = """memarena: train and evaluate long-context memory mechanisms, one stored record per run.

  memarena                          the default experiment (quick: a sweep over five mechanisms)
  memarena mechanism=NAME           one mechanism on the default task
  memarena -m seed=0,1 task=mqar    a sweep (Hydra multirun); rerunning it skips what is stored
  memarena --cfg job                the composed config of one run (the default experiment's
                                    sweep is under hydra.sweeper.params: memarena --cfg hydra)
  memarena --config-dir DIR ...     add your own presets (DIR laid out like harness/conf)
  memarena-report                   rebuild the leaderboards from the store

Groups (GROUP=OPTION):
{groups}

Options (KEY=VALUE), with the values this command would use:
$CONFIG
More in README.md and docs/ of the source. Hydra's own flags: memarena --hydra-help
"""


def help_template() -> str:
    """memarena --help: its own groups and options (not Hydra's generic text, not the schema/* groups)."""
    groups = {group.relative_to(CONF_DIR).as_posix(): {path.stem for path in group.glob("*.yaml")}
              for group in sorted(path.parent for path in CONF_DIR.rglob("*.yaml") if path.parent != CONF_DIR)}
    for registry in (MECHANISMS, TASKS):
        groups[registry.group] |= set(registry.names())  # plug-ins without a YAML of their own
    lines = [f"  {group}: {', '.join(sorted(options))}" for group, options in groups.items()]
    return HELP.replace("{groups}", "\n".join(lines))


def register_configs() -> None:
    """Store the schemas and memarena's --help in Hydra's ConfigStore (idempotent); call before composing."""
    store = ConfigStore.instance()
    store.store(group="hydra/help", name="memarena", node={"app_name": "memarena", "template": help_template()})
    for registry in (MECHANISMS, TASKS):
        for name in registry.names():
            if not (CONF_DIR / registry.group / f"{name}.yaml").is_file():
                # a plug-in without a YAML of its own here: selectable by name, with its Config's defaults
                store.store(group=registry.group, name=name, node=registry.get(name).Config)
    store.store(name="config_schema", node=RunConfig)
