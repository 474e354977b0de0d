"""Pretrained causal LMs from ``transformers`` with memory policies on their KV cache.

The second model family beside the models trained from scratch (harness/layers/model.py, baselines/):
a pretrained model reads memarena's text tasks rendered as prompts, in segments, through a
policy that bounds its cache (``full``, ``sliding_window`` with optional sinks,
``transformer_xl``, ``compressive``, ``kvpress``), and writes its answer greedily.

    from harness.pretrained import PretrainedLM, build_policy
    lm = PretrainedLM.load("Qwen/Qwen2.5-0.5B-Instruct", chat_template=True)
    prompt = lm.encode(context, question, answer_prefix)
    result = lm.generate(prompt, build_policy("sliding_window", window=1024, sinks=4), segment_len=512,
                         max_new_tokens=32)

From the command line: ``memarena model=hf model.name=<name or directory> policy=<name> task=...``
(harness/pretrained/run.py checks, runs and stores it as trained runs are stored).

Needs the ``hf`` extra (``transformers``); ``kvpress`` presses need the ``kvpress`` extra.
"""

from harness.pretrained.cache import kv_bytes
from harness.pretrained.model import Generation, PretrainedLM, Prompt
from harness.pretrained.policies import Policy, build_policy, policies

__all__ = ["Generation", "Policy", "PretrainedLM", "Prompt", "build_policy", "kv_bytes", "policies"]
