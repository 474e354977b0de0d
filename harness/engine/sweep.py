"""The end of a sweep: the reports regenerated once, one summary of every job's outcome, and an
exit code that counts failures.

Each job writes ``memarena_status.json`` into its own Hydra output directory (the worker's, with
any launcher: local, joblib or a cluster through submitit, as long as the sweep directory is on a
shared file system). When the sweep ends, ``SweepSummary`` reads them back on the submitting
machine, regenerates the report of every experiment the jobs stored into (once, not per job),
prints one line, and exits with status 1 if any run failed or any config was rejected.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.store.records import write_atomic

STATUS_FILE = "memarena_status.json"


def write_job_status(outcome: dict[str, Any]) -> None:
    """Record this job's outcome in its Hydra output directory."""
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    write_atomic(output_dir / STATUS_FILE, json.dumps(outcome))


def leaderboard_line(leaderboard: Path) -> str:
    """Where a run's or sweep's leaderboard is, for the last line of its output."""
    return f"[memarena] leaderboard: {leaderboard} and {leaderboard.with_name('index.html')}"


def outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob(f"*/{STATUS_FILE}"))]


def summarize(jobs: list[dict[str, Any]]) -> Counter:
    return Counter("skipped" if outcome.get("skipped") else outcome["status"] for outcome in jobs)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.report import write_report

        jobs = outcomes(Path(config.hydra.sweep.dir))
        counts = summarize(jobs)
        total = sum(counts.values())
        parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        print(f"[memarena] sweep finished: {total} run(s): {parts or 'none'}")
        reported = {(job["results_dir"], job["reports_dir"], job["experiment"]) for job in jobs
                    if "experiment" in job and job["status"] != "rejected"}
        for results_dir, reports_dir, experiment in sorted(reported):
            if (Path(results_dir) / experiment).is_dir():
                print(leaderboard_line(write_report(Path(results_dir), Path(reports_dir), experiment)))
        if counts["failed"] or counts["rejected"]:
            print(f"[memarena] {counts['failed']} run(s) failed (their records hold the tracebacks), "
                  f"{counts['rejected']} config(s) rejected before any work (errors above)", file=sys.stderr)
            sys.exit(1)
