"""Shared measurements of the benchmark suite, and the summary it writes to reports/benchmarks.md.

Run the suite with ``python -m pytest benchmarks`` (about 12 minutes on a 2-core CPU; it is not
part of the test suite). Every benchmark adds rows to a section; at the end of the session the
sections are written, each with the machine and the date it was measured on, to
``reports/benchmarks.md`` (and ``reports/benchmarks.json``). Sections a session did not run (say,
``python -m pytest benchmarks/test_lstm_fused.py``) keep their last measurement. A benchmark that
states a target (the lstm_gated ratio, the bounded mechanisms' scaling, the harness overhead)
asserts it after recording its row: a miss fails the benchmark and its figures are still written.
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.engine.cpu_allocator import retain_freed_memory
from harness.engine.measure import synchronize
from harness.store.records import write_atomic

retain_freed_memory()  # as memarena's runs on CPU do

REPORT = Path(__file__).resolve().parent.parent / "reports" / "benchmarks.md"
STORE = REPORT.with_suffix(".json")
#: section title -> {"introduction", "measured", "rows"}, of this session
SECTIONS: dict[str, dict] = defaultdict(lambda: {"introduction": "", "measured": "", "rows": []})


def record(section: str, introduction: str, row: dict) -> None:
    """Add one row to a section of reports/benchmarks.md."""
    entry = SECTIONS[section]
    entry.update(introduction=introduction, measured=_machine_and_date())
    entry["rows"].append(row)


def _machine_and_date() -> str:
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, size: int, seconds: float = 3.0) -> float:
    """FLOP/s of the fastest square matrix multiply (2 n^3 FLOPs) in ``seconds`` of them.

    A few multiplies are not enough on a shared machine: the first ones after a quiet spell, or
    next to another process, ran at half speed, and a low peak inflates every utilisation."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


@pytest.fixture(scope="session")
def matmul_peak() -> float:
    peak = measure_matmul_peak(torch.device("cpu"), torch.float32, 2048)
    record("Machine", "", {"device": "CPU", "matmul peak (GFLOP/s, fastest in 3 s)": round(peak / 1e9, 1),
                           "dtype": "fp32", "size": 2048, "torch threads": torch.get_num_threads()})
    return peak


@pytest.fixture(scope="session")
def gpu_matmul_peak() -> float:
    device = torch.device("cuda")
    peak = measure_matmul_peak(device, torch.bfloat16, 8192)
    # its own section: a session on a GPU machine keeps the CPU's row, measured elsewhere, and vice versa
    record("Machine (GPU)", "", {"device": torch.cuda.get_device_name(device), "matmul peak (GFLOP/s, fastest in 3 s)":
                           round(peak / 1e9, 1), "dtype": "bf16", "size": 8192, "torch threads": torch.get_num_threads()})
    return peak


def pytest_sessionfinish(session, exitstatus) -> None:
    if not SECTIONS:
        return
    sections = json.loads(STORE.read_text()) if STORE.is_file() else {}
    sections.update(SECTIONS)
    lines = ["# Benchmarks", "", "Written by `python -m pytest benchmarks`; each section says when and where it was "
             "measured. Figures from one shared machine: compare within a section.", ""]
    for title, entry in sections.items():
        lines += [f"## {title}", "", f"Measured {entry['measured']}.", ""]
        lines += [entry["introduction"], ""] if entry["introduction"] else []
        lines += [pd.DataFrame(entry["rows"]).to_markdown(index=False), ""]
    write_atomic(STORE, json.dumps(sections, indent=1))
    write_atomic(REPORT, "\n".join(lines))
