"""Both installs find their configs (conf/ at the top of the checkout); a user's own config directory extends them.

The full wheel check (a wheel installed into a fresh venv outside the checkout, running a tiny job from
another directory) takes minutes of pip and runs in `.ci/run`; here, the wheel's contents, and the
editable install that the README's commands make, run from outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from harness.config import CONF_DIR


def test_the_wheel_ships_every_config_and_the_sample_data(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("memarena-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert CONF_DIR == REPO / "conf", "a checkout reads conf/ at its top"
    configs = {f"harness/conf/{path.relative_to(CONF_DIR).as_posix()}" for path in CONF_DIR.rglob("*.yaml")}
    assert "harness/conf/config.yaml" in configs and configs <= shipped
    assert {"tasks/data/qa/train.jsonl", "tasks/data/summarization/test.jsonl"} <= shipped


def test_a_users_config_directory_adds_an_experiment(tmp_path):
    mine = tmp_path / "my-conf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("# @package _global_\nname: mine\ntrain:\n  steps: 7\n")
    result = run_cli("--config-dir", str(tmp_path / "my-conf"), "experiment=mine", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: mine" in result.stdout and "steps: 7" in result.stdout


def _editable_checkout() -> Path | None:
    """The checkout memarena is installed from in editable mode (pip's direct_url.json), else None."""
    installed = [dist for dist in metadata.distributions(path=[sysconfig.get_paths()["purelib"]])
                 if dist.metadata["Name"] == "memarena"]  # the interpreter's, not the egg-info in the checkout
    if not installed:
        return None
    origin = json.loads(installed[0].read_text("direct_url.json") or "{}")
    if not origin.get("dir_info", {}).get("editable"):
        return None
    return Path(origin["url"].removeprefix("file://")).resolve()


def test_the_editable_install_runs_from_outside_the_checkout(tmp_path):
    if _editable_checkout() != REPO.resolve():
        pytest.skip("memarena is not installed in editable mode from this checkout (the README installs it so)")
    script = shutil.which("memarena", path=str(Path(sys.executable).parent))
    assert script is not None, "the editable install made no memarena console script"
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([script, "experiment=quick", "mechanism=lstm_gated", "--cfg", "job"], cwd=tmp_path,
                            capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "name: lstm_gated" in result.stdout and "name: quick" in result.stdout
