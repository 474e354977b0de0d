"""One pretrained-model run: a model, a memory policy and a task, evaluated cell by cell into a record.

``run_pretrained(config)`` loads the model, renders every test example of every cell as a prompt
(harness/pretrained/prompts.py), generates greedily through the policy and scores the text with
the task's scorer. It returns the record (the shape of ``result.json``, harness/store/schema.py,
with ``family: "pretrained"``, ``mechanism: "pretrained/<policy>"`` and no training, so that reports keep
these rows apart from trained ones) and the per-example outcomes; writing them to the store is the
caller's. Costs per cell, measured: ``state_bytes`` (the largest KV cache of an example between
forward passes, summed from its tensors; the most over the cell's examples), ``peak_memory_bytes``
(harness/engine/measure.py's method over the first example's generation, weights not counted),
``prefill_tokens_per_s`` (median over examples; min and max too), decode latency per token (p50,
p95 over all decoded tokens) and ``tokens_per_s`` (prompt and generated tokens over all time), plus
the lengths: a cell's ``context_len`` counts the model's tokens, every prompt (template, question and
answer prefix included) is at most that long and as long as the task's granularity allows
(harness/pretrained/sizing.py); each cell records its prompts' mean, least and most model tokens
and their mean length in the task's own tokens (``task_len_mean``), each outcome its own. Timings on a shared CPU are noisy: compare them within
one machine and run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from harness.build import build_task
from harness.engine.measure import MEMORY_METHOD, is_out_of_memory, peak_memory
from harness.engine.provenance import provenance
from harness.pretrained.model import PretrainedLM
from harness.pretrained.policies import build_policy
from harness.pretrained.prompts import score
from harness.pretrained.sizing import sized_prompts
from harness.store.schema import SCHEMA_VERSION
from harness.report.stats import mean_interval
from harness.store.records import run_id


@dataclass
class PretrainedRunConfig:
    model: str  # a hub name or a directory saved with save_pretrained
    task: str
    context_lens: list[int]
    task_options: dict[str, Any] = field(default_factory=dict)
    policy: str = "full"
    policy_options: dict[str, Any] = field(default_factory=dict)
    #: the task's other grid knobs (say {"qa": [1, 2]}); the task's own values where left out
    grid: dict[str, list[Any]] = field(default_factory=dict)
    examples_per_cell: int = 10
    seed: int = 0  # the test seed
    segment_len: int = 512
    #: null: the benchmark template's budget (RULER's tokens_to_generate)
    max_new_tokens: Optional[int] = None
    chat_template: bool = False
    device: Optional[str] = None  # null: CUDA when there is one
    dtype: Optional[str] = None  # null: bfloat16 on CUDA, float32 on CPU


def semantic(config: PretrainedRunConfig) -> dict[str, Any]:
    """What a pretrained run computes, as its stored ``config.yaml`` and its ``run_id`` hash it: the model,
    the policy, the task and the evaluation (not the device: the record's provenance names it)."""
    return {"family": "pretrained",
            "model": {"name": config.model, "chat_template": config.chat_template, "dtype": config.dtype,
                      "segment_len": config.segment_len, "max_new_tokens": config.max_new_tokens},
            "policy": {"name": config.policy, **config.policy_options},
            "task": {"name": config.task, **config.task_options},
            "eval": {"grid": {"context_len": list(config.context_lens), **config.grid}, "lengths": "model tokens",
                     "examples_per_cell": config.examples_per_cell, "seed": config.seed}}


def run_pretrained(config: PretrainedRunConfig,
                   lm: Optional[PretrainedLM] = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(record, outcomes) of one run; ``lm``: a model already loaded from ``config.model``."""
    task = build_task(config.task, **config.task_options)
    policy = build_policy(config.policy, **config.policy_options)  # bad options fail before the model loads
    lm = lm or PretrainedLM.load(config.model, config.device, config.dtype, config.chat_template)
    import transformers

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id(semantic(config)),
        "family": "pretrained", "mechanism": f"pretrained/{config.policy}", "model": config.model,
        "policy": config.policy, "policy_options": config.policy_options, "task": config.task, "seed": config.seed,
        "parameters": lm.parameters, "bounded_state": policy.bound() is not None, "kv_positions": policy.bound(),
        "primary_metric": task.primary_metric,
        "provenance": {**provenance(lm.device), "transformers": transformers.__version__, "dtype": str(lm.model.dtype),
                       "data": task.data_sources()},
        "measurement": {"peak_memory": MEMORY_METHOD[lm.device.type], "state_bytes": "KV-cache tensors' bytes"},
        "training": None,
    }
    cells, outcomes = [], []
    for knobs in task.evaluation_cells({"context_len": list(config.context_lens), **config.grid}):
        try:
            rows, cell_outcomes = _cell(lm, task, knobs, config)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            chance = task.chance(**knobs)
            rows = [{"knobs": knobs, "metric": metric, "higher_is_better": higher, "status": "oom",
                     "error": str(error).splitlines()[0], "n": 0, "value": None, "chance": chance[metric]}
                    for metric, higher in task.metrics.items()]
            cell_outcomes = []
        cells += rows
        outcomes += cell_outcomes
    record.update(status="ok", error=None, cells=cells)
    return record, outcomes


def _cell(lm: PretrainedLM, task, knobs: dict[str, Any], config: PretrainedRunConfig):
    """Rows per metric of one cell and its outcome rows per (example, metric)."""
    sized = sized_prompts(task, knobs, config.examples_per_cell, config.seed, lm.encode)
    scores: dict[str, list[float]] = {metric: [] for metric in task.metrics}
    outcomes, generations, templates = [], [], set()
    elapsed, first = 0.0, None

    def generate(prompt, budget):
        return lm.generate(prompt, build_policy(config.policy, **config.policy_options), config.segment_len, budget)

    for index, item in enumerate(sized):
        example, text_prompt, prompt = item.example, item.text, item.prompt
        templates.add(text_prompt.template)
        budget = config.max_new_tokens or text_prompt.max_new_tokens
        first = first or (prompt, budget)
        start = time.perf_counter()
        generation = generate(prompt, budget)
        elapsed += time.perf_counter() - start
        generations.append(generation)
        for metric, value in score(task, example, text_prompt, generation.text).items():
            scores[metric].append(value)
            outcomes.append({**knobs, "example": index, **example.info, "metric": metric, "value": value,
                             "prompt_tokens": len(prompt), "task_len": item.task_len, "kv_bytes": generation.kv_bytes,
                             "generated": generation.text})
    prompt_lengths = [len(s.prompt) for s in sized]
    peak = peak_memory(lambda: generate(*first), lm.device)  # profiled apart: the timings above are not
    rates = [g.prompt_tokens / g.prefill_s for g in generations if g.prefill_s > 0]
    latencies = [seconds for g in generations for seconds in g.decode_s]
    tokens = sum(g.prompt_tokens + len(g.tokens) for g in generations)
    costs = {
        "state_bytes": max(g.kv_bytes for g in generations), "peak_memory_bytes": peak,
        "tokens_per_s": tokens / elapsed if elapsed else None,
        "prefill_tokens_per_s": float(np.median(rates)) if rates else None,
        "prefill_tokens_per_s_min": min(rates, default=None), "prefill_tokens_per_s_max": max(rates, default=None),
        "decode_latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "decode_latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        "prompt_tokens_mean": float(np.mean(prompt_lengths)), "prompt_tokens_min": min(prompt_lengths),
        "prompt_tokens_max": max(prompt_lengths), "task_len_mean": float(np.mean([s.task_len for s in sized])),
        "template": ",".join(sorted(templates)),
    }
    chance = task.chance(**knobs)
    rows = []
    for metric, higher_is_better in task.metrics.items():
        value, low, high = mean_interval(np.array(scores[metric]))
        rows.append({"knobs": knobs, "metric": metric, "higher_is_better": higher_is_better, "status": "ok",
                     "n": len(scores[metric]), "value": value, "ci_low": low, "ci_high": high,
                     "chance": chance[metric], **costs})
    return rows, outcomes
