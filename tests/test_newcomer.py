"""A newcomer's path: memarena's own --help, one run without a sweep folder, where the leaderboard
is, no progress bars in redirected output, a one-line Ctrl-C, and a checkout that ignores its venv."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, TINY, run_cli


def test_help_lists_memarenas_groups_and_options_not_hydras_internals(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mechanism: compressive, full_attention" in result.stdout and "experiment: gpu_reference, leaderboard" in result.stdout
    assert "train:\n  steps: 2000" in result.stdout  # the options, with the values this command would use
    assert "schema/" not in result.stdout and "Powered by Hydra" not in result.stdout


def test_one_mechanism_is_one_run_that_says_where_the_leaderboard_is(tmp_path):
    tiny = [o for o in TINY if not o.startswith(("eval.grid", "task.grid", "progress"))]
    result = run_cli("mechanism=sliding_window", "mechanism.window=8", *tiny, "eval.grid.context_len=[48]",
                     "task.grid.depth=[0.5]", "cache_dir=null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "multirun").exists(), "a single run made a sweep folder"
    last = result.stdout.strip().splitlines()[-1]
    assert last == "[memarena] leaderboard: reports/quick/leaderboard.md and reports/quick/index.html"
    assert (tmp_path / "reports" / "quick" / "index.html").is_file()
    assert "train sliding_window" not in result.stderr and "it/s" not in result.stderr, "progress bars in a log"


def test_ctrl_c_says_nothing_partial_was_stored_and_how_to_resume(tmp_path):
    code = ("import sys, harness.engine.run\n"
            "def interrupted(cfg): raise KeyboardInterrupt\n"
            "harness.engine.run.run = interrupted\n"
            "from harness.cli import main; sys.argv[0] = 'memarena'; main()")
    result = subprocess.run([sys.executable, "-c", code, "mechanism=sliding_window"], cwd=tmp_path, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 130
    assert result.stderr.strip() == ("memarena: interrupted; nothing partial was stored (finished runs are kept): "
                                     "rerun the same command to resume")


def test_a_venv_and_hydras_folders_in_the_checkout_are_ignored():
    paths = [".venv/bin/python", "venv/bin/python", "multirun/2026-01-01/0/x", "outputs/2026-01-01/x", "dist/x.whl"]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert ignored == paths
