"""Memory of generating the training stream: a 20k-step run against a 2k-step run, and per batch at scale.

Each measurement runs in a fresh process that generates a whole stream (no training) at the quick
experiment's settings (passkey, batch 16, lengths 48..128): peak RSS of that process and of its
DataLoader worker (``ru_maxrss`` of self and children; includes the interpreter and torch), and
in another process with the stream generated in-process (``data_workers=0``) tracemalloc's peak
of the Python and numpy allocations made while generating. Target: the 20k-step run within 1.2x
of the 2k-step run on both. Then the leaderboard preset's batches (32 x up to 4096 tokens): bytes
of one batch, and peak RSS of a short stream with one worker, for the README's estimate.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import record

MEASURE = """
import json, resource, sys, tracemalloc
import harness
from harness.config import TrainConfig
from harness.engine.training_stream import step_lengths, training_batches
steps, workers, batch_size, min_len, max_len = (int(value) for value in sys.argv[1:])
config = TrainConfig(steps=steps, batch_size=batch_size, context_len=max_len, min_context_len=min_len)
task, lengths = harness.build_task("passkey"), step_lengths(0, config)
if workers == 0:
    tracemalloc.start()
batch_bytes = 0
for tokens, targets in training_batches(task, 0, lengths, batch_size, workers=workers):
    batch_bytes = max(batch_bytes, tokens.nbytes + targets.nbytes)
print(json.dumps({"tracemalloc_peak": tracemalloc.get_traced_memory()[1] if workers == 0 else None,
                  "batch_bytes": batch_bytes,
                  "rss_self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "rss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measure(steps: int, workers: int, batch_size: int = 16, min_len: int = 48, max_len: int = 128) -> dict:
    arguments = [str(value) for value in (steps, workers, batch_size, min_len, max_len)]
    result = subprocess.run([sys.executable, "-c", MEASURE, *arguments], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("workers", [1, 0])
def test_stream_memory_does_not_grow_with_steps(workers):
    short, long = measure(2000, workers), measure(20000, workers)
    key = "tracemalloc_peak" if workers == 0 else "rss_self_kib"
    row = {"data_workers": workers, "2k steps": short, "20k steps": long}
    record("Training stream memory", __doc__.split("\n\n")[1].replace("\n", " "), row)
    assert long[key] <= 1.2 * short[key]
    if workers:
        assert long["rss_children_kib"] <= 1.2 * short["rss_children_kib"]


def test_leaderboard_batches():
    row = {"data_workers": 1, "leaderboard, 20 steps": measure(20, 1, batch_size=32, min_len=512, max_len=4096)}
    record("Training stream memory", __doc__.split("\n\n")[1].replace("\n", " "), row)
