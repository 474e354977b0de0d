"""Where a stored number came from: the code, the machine, and the settings that change its last digits."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO_DIR = Path(__file__).resolve().parents[2]


def provenance(device: torch.device) -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    return {
        "git_commit": commit,
        # the store and the reports may live in the checkout; writing them changes no code
        "git_dirty": bool(_git("status", "--porcelain", "--", ".", ":(exclude)results", ":(exclude)reports"))
        if commit else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }


def numerics(device: torch.device, precision: str) -> dict[str, Any]:
    """Settings that change a run's numbers in their last digits (the order of floating-point sums)
    without changing what it computes: recorded with the run, not part of its run_id."""
    return {"threads": torch.get_num_threads(), "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "device": str(device), "precision": precision}


def machine_load(data_workers: int) -> dict[str, Any]:
    """The machine's load when timings are taken: the 1-minute load average (runnable processes, this run's
    threads and its ``data_workers`` among them) against the cores. The report flags timings taken while the
    load exceeded the cores plus this run's own data workers: other processes then shared the machine."""
    return {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "data_workers": data_workers,
            "loadavg_1min_before": os.getloadavg()[0]}


def settings_mismatch(stored: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """'' if the stored run was computed with the current settings, else a sentence naming the differences."""
    if stored is None:
        return "; it records no thread count or device (an older record)"
    differences = [f"{key}={stored.get(key)} (here {value})" for key, value in current.items() if stored.get(key) != value]
    return f"; it was computed with {', '.join(differences)}, so its numbers may differ slightly" if differences else ""


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
