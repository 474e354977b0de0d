"""Typed configs of a run, stored in Hydra's ConfigStore; the YAML files under conf/ extend them.

The primary config ``config_schema`` types every group: a misspelt key or a value of the wrong
type in a YAML file or an override fails at composition, before any work, naming the key. The
``mechanism`` and ``task`` groups are typed by each component's own ``Config`` dataclass, stored
as ``schema/<group>/<name>`` by the registry and named in the component's YAML defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from harness.registry import MECHANISMS, TASKS

_PACKAGE_DIR = Path(__file__).resolve().parent
#: the Hydra config tree: conf/ at the top of a checkout (source or editable install); a wheel ships it
#: inside the package as harness/conf/ (pyproject.toml maps the package harness.conf to conf/)
CONF_DIR = _PACKAGE_DIR / "conf" if (_PACKAGE_DIR / "conf").is_dir() else _PACKAGE_DIR.parent / "conf"


@dataclass
class ModelConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    #: the MLP after each mixer is mlp_ratio x d_model wide; 0: no MLP (the mixers alone, as Zoology's MQAR models)
    mlp_ratio: int = 4
    #: tokens read per forward call; the mechanism's state carries everything before them
    segment_len: int = 64


@dataclass
class PretrainedModelConfig:
    """``model=hf``: a pretrained causal LM that ``transformers`` loads (harness/pretrained), read in segments
    through a memory policy on its KV cache (the ``policy`` group) instead of a model trained here."""

    #: a Hugging Face hub name (``Qwen/Qwen2.5-7B-Instruct``) or a directory saved with ``save_pretrained``
    name: str = MISSING
    #: wrap the prompt in the tokenizer's chat template (the context and question as the user's turn)
    chat_template: bool = False
    #: null: bfloat16 on CUDA, float32 on CPU; or float32, bfloat16, float16
    dtype: Optional[str] = None
    #: model tokens read per forward pass; the policy cuts the cache between passes
    segment_len: int = 512
    #: null: the benchmark template's budget (RULER's tokens_to_generate)
    max_new_tokens: Optional[int] = None


@dataclass
class PolicyConfig:
    """A memory policy on a pretrained model's KV cache (harness/pretrained/policies.py). ``budget``: the most
    cached positions a bounded policy keeps between segments; when set, it sizes the policy's own knobs
    (``Policy.options_for_budget``) so that policies compare at equal memory; ``full`` keeps everything."""

    name: str = MISSING
    budget: Optional[int] = None


@dataclass
class FullOptions:
    """``full`` has no options: it keeps everything."""


@dataclass
class SlidingWindowOptions:
    #: each token sees itself and the window - 1 tokens before it
    window: int = 4096
    #: attention sinks (StreamingLLM): the first tokens, visible to every later token
    sinks: int = 0


@dataclass
class TransformerXLOptions:
    #: cached positions a segment sees besides itself
    mem_len: int = 4096


@dataclass
class CompressiveOptions:
    mem_len: int = 2048
    #: compressed slots, each the mean of ``rate`` positions that left the memory
    cmem_len: int = 1024
    rate: int = 4


@dataclass
class KvPressOptions:
    #: a press class exported by kvpress (StreamingLLMPress, SnapKVPress, KnormPress, ...)
    press: str = "StreamingLLMPress"
    #: its keyword arguments, e.g. {compression_ratio: 0.5}
    press_options: dict[str, Any] = field(default_factory=dict)


#: policy name -> the dataclass of its options (harness/pretrained/policies.py builds each policy on its own)
POLICY_OPTIONS: dict[str, type] = {"full": FullOptions, "sliding_window": SlidingWindowOptions,
                                   "transformer_xl": TransformerXLOptions, "compressive": CompressiveOptions,
                                   "kvpress": KvPressOptions}


@dataclass
class TrainConfig:
    """How long and how a run trains. It stops at the first of: ``steps`` steps, the token budget
    ``max_tokens``, and (with ``eval_every``) a plateau of its validation score (harness/engine/early_stopping.py)."""

    #: the most training steps; null: as many as ``max_tokens`` allows (then ``max_tokens`` is required)
    steps: Optional[int] = 300
    batch_size: int = 16
    #: each step draws its sequence length uniformly from [min_context_len, context_len]
    context_len: int = 256
    min_context_len: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    grad_clip: float = 1.0
    #: token budget: training stops before the step that would take it past this many input tokens
    #: (batch_size x each step's length); the learning-rate schedule spans the steps that fit. null: no budget
    max_tokens: Optional[int] = None
    #: score the model on validation examples every this many steps (and at the last step), keep the weights
    #: of the best check and stop on a plateau; null: no early stopping (the four keys below then stay unset)
    eval_every: Optional[int] = None
    #: checks in a row without an improvement of more than ``min_delta`` that stop training
    patience: int = 5
    #: the least rise of the validation score (the headline metric, in its units) that counts as an improvement
    min_delta: float = 0.0
    #: the least fall of the training loss (its mean over the steps since the previous check) below its lowest
    #: at a check so far, as a share of its fall from the first check to that lowest, that also restarts the
    #: patience: a model still learning is not stopped while an all-or-nothing score sits at 0
    #: (docs/findings/reference-256.md); null: the score alone
    loss_min_fall: Optional[float] = None
    #: validation examples per cell of each check (the eval grid's cells within the training lengths)
    eval_examples: int = 64
    #: seed of those examples, drawn from the validation split (never the test set); a run scored on
    #: validation (a tuning run) needs it to differ from eval.seed, so that what stops training never chooses the rate
    eval_seed: int = 1


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
class LrRange:
    """A log-spaced learning-rate grid: ``points`` rates from ``low`` to ``high``, ends included (off while
    ``low`` and ``high`` are null)."""

    low: Optional[float] = None
    high: Optional[float] = None
    points: int = 5


@dataclass
class TuneConfig:
    """Learning-rate tuning by protocol (harness/engine/tuning.py): each configuration trains once per rate
    of ``lr_grid`` with seed ``seed``, is scored on validation examples, and the best rate trains the
    run itself. Empty grid: no tuning, ``train.lr`` as given."""

    lr_grid: list[float] = field(default_factory=list)
    seed: int = 0
    #: a log-spaced grid instead of ``lr_grid``: ``points`` rates from ``low`` to ``high`` (3 significant
    #: digits), e.g. ``tune.lr_range={low:1e-4,high:1e-2,points:5}``; low and high null: ``lr_grid`` as given
    lr_range: LrRange = field(default_factory=LrRange)
    #: the most rates added beyond an end of the grid, one at a time, while the rate chosen sits at that end
    #: and beats its neighbour beyond validation noise (harness/engine/tuning.py); 0: the grid as given
    max_extensions: int = 0


@dataclass
class CheckpointConfig:
    """When training writes a checkpoint into the run directory (null: never on that count)."""

    every_steps: Optional[int] = 1000
    every_minutes: Optional[float] = 10.0


#: the configuration with perfect memory that every experiment's ranking is read against
DEFAULT_CEILING = "full_attention"


@dataclass
class RunConfig:
    #: experiment name: runs are stored under <results_dir>/<name>/
    name: str = "default"
    mechanism: Any = MISSING
    task: Any = MISSING
    #: a ModelConfig (a model trained here: conf/model/tiny.yaml, small.yaml) or a PretrainedModelConfig (model=hf)
    model: Any = MISSING
    #: model=hf only: the memory policy on the pretrained model's KV cache (conf/policy/); null: full
    policy: Any = None
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
    #: compile each block with torch.compile (harness/engine/compile.py: static shapes)
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
    #: grid, adding the cells its record lacks (see harness/engine/evaluate_stored.py)
    mode: str = "train"
    #: keep the trained weights in the run directory (model.pt), for later evaluations
    keep_weights: bool = True
    #: processes generating training batches ahead of the training step; 0: in the training process
    data_workers: int = 1
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    #: the experiment's ceiling: the mechanism with perfect memory. The report says, per task, whether
    #: it reached CEILING_LEVEL at every trained length; if not, the ranking measures learning, not memory
    ceiling: str = DEFAULT_CEILING


#: keys that do not change what a run computes; left out of its run_id
NON_SEMANTIC_KEYS = ("name", "results_dir", "reports_dir", "cache_dir", "force", "progress", "mode", "keep_weights",
                     "data_workers", "checkpoint", "ceiling")
#: (section, key) -> the value at which a key added later computes what runs computed before it
#: existed: left out of the run_id at that value, so that stored runs keep their ids
NEUTRAL_VALUES = {("eval", "split"): "test", ("tune", "lr_grid"): [], ("tune", "seed"): 0,
                  ("mechanism", "segment"): None, ("task", "preset"): None,
                  ("eval", "scoring"): "teacher_forced",
                  ("task", "kv_pairs_per_token"): None, ("task", "random_non_queries"): True,
                  ("task", "training_pairs"): "uniform", ("task", "tokens_to_generate"): 0,
                  ("mechanism", "backend"): "auto",
                  ("train", "max_tokens"): None, ("train", "eval_every"): None, ("train", "patience"): 5,
                  ("train", "min_delta"): 0.0, ("train", "loss_min_fall"): None, ("train", "eval_examples"): 64, ("train", "eval_seed"): 1,
                  ("tune", "lr_range"): {"low": None, "high": None, "points": 5}, ("tune", "max_extensions"): 0}


#: top-level keys a pretrained model (model=hf) does not use: it is not trained, and greedy decoding has no seed
NOT_PRETRAINED = ("mechanism", "train", "tune", "seed", "state_budget_bytes")


def is_pretrained(cfg: Any) -> bool:
    """Whether a composed config runs a pretrained model (``model=hf``) rather than training one."""
    return OmegaConf.get_type(cfg, "model") is PretrainedModelConfig


def without_neutral_values(container: dict[str, Any]) -> dict[str, Any]:
    """The config without keys at their NEUTRAL_VALUES: a key added later reads the same whether a stored config
    predates it (absent) or not (present at its neutral value)."""
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in container.items()}
    for (section, key), neutral in NEUTRAL_VALUES.items():
        if isinstance(config.get(section), dict) and config[section].get(key, neutral) == neutral:
            config[section].pop(key, None)
    return config


def semantic_config(container: dict[str, Any]) -> dict[str, Any]:
    """The resolved config that a run_id hashes: without NON_SEMANTIC_KEYS, nor keys at their NEUTRAL_VALUES
    (a trained run's ``policy``, null, included: it was added with the pretrained family)."""
    semantic = without_neutral_values({key: value for key, value in container.items()
                                       if key not in NON_SEMANTIC_KEYS and not (key == "policy" and value is None)})
    return {key: value for key, value in semantic.items() if not (isinstance(value, dict) and not value)
            or key not in {section for section, _ in NEUTRAL_VALUES}}


HELP = """memarena: train and evaluate long-context memory mechanisms, one stored record per run.

  memarena                          the default experiment (quick: a sweep over five mechanisms)
  memarena mechanism=NAME           one mechanism on the default task
  memarena -m seed=0,1 task=mqar    a sweep (Hydra multirun); rerunning it skips what is stored
  memarena --cfg job                the composed config of one run (the default experiment's
                                    sweep is under hydra.sweeper.params: memarena --cfg hydra)
  memarena --config-dir DIR ...     add your own presets (DIR laid out like conf)
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
    store.store(group="schema/model", name="streaming", node=ModelConfig)
    store.store(group="schema/model", name="hf", node=PretrainedModelConfig)
    for name, options in POLICY_OPTIONS.items():
        store.store(group="schema/policy", name=name, node=policy_schema(name, options))
    store.store(name="config_schema", node=RunConfig)


def policy_schema(name: str, options: type) -> type:
    """The typed config of policy ``name``: PolicyConfig (its name, a budget) with the policy's own options."""
    schema = dataclasses.make_dataclass(f"{options.__name__.removesuffix('Options')}PolicyConfig",
                                        [("name", str, field(default=name))], bases=(PolicyConfig, options))
    schema.__module__ = __name__
    return schema
