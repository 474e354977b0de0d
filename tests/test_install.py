"""A non-editable install finds its configs; a user's own config directory extends them.

The full check (a wheel installed into a fresh venv outside the checkout, running a tiny job from
another directory) takes minutes of pip and runs in `.ci/run`; here, the wheel's contents.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO, run_cli
from harness.config import CONF_DIR


def test_the_wheel_ships_every_config_and_the_sample_data(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("memarena-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
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
