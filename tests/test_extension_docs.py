"""The worked examples of docs/adding-a-baseline.md and docs/adding-a-task.md, run as a user would.

In a scratch copy of the checkout, the docs' files are added (one Python file and one YAML each,
nothing else edited) and the property tests and the CLI pick them up. Then the same code is
installed as a plug-in package from a temporary directory (entry points) and run from this
checkout, unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TINY

DOCS = [REPO / "docs" / "adding-a-baseline.md", REPO / "docs" / "adding-a-task.md"]
BLOCK = re.compile(r"```(\w+)\n# file: (\S+)\n(.*?)```", re.DOTALL)
PROPERTY_TESTS = ["tests/test_mechanism_properties.py", "tests/test_task_properties.py"]
SELECTED = "gated_recurrence or first_letter"


def doc_files() -> dict[str, str]:
    """path -> text of every block that starts with '# file: <path>', in doc order."""
    files: dict[str, str] = {}
    for doc in DOCS:
        for _, path, text in BLOCK.findall(doc.read_text()):
            files[path] = files.get(path, "") + text
    return files


def run(args: list[str], cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=environment,
                          timeout=600)


def cli(*overrides: str) -> list[str]:
    tiny = [o for o in TINY if not o.startswith("task.grid")]
    return ["-c", "import sys; from harness.cli import main; sys.argv[0] = 'memarena'; main()", *tiny, *overrides,
            "mechanism=gated_recurrence", "task=first_letter", "cache_dir=null", "hydra.mode=RUN"]


def check_run(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(gated_recurrence on first_letter seed=0): ok" in result.stdout


def check_property_tests(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    passed = int(re.search(r"(\d+) passed", result.stdout).group(1))
    assert passed >= 15 and "failed" not in result.stdout  # both components, every contract


def test_docs_name_one_python_file_and_one_yaml_per_component():
    assert sorted(doc_files()) == ["baselines/gated_recurrence.py", "conf/mechanism/gated_recurrence.yaml",
                                   "conf/task/first_letter.yaml", "pyproject.toml", "tasks/first_letter.py"]


def test_worked_examples_added_to_a_checkout_pass_the_property_tests_and_run(tmp_path):
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if name.split("/")[0] in ("results", "reports"):
            continue
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, checkout / name)
    for path, text in doc_files().items():
        if path != "pyproject.toml":
            (checkout / path).write_text(text)
    found = run(["-c", "import harness; print(harness.__file__)"], checkout, [checkout])
    assert found.stdout.strip() == str(checkout / "harness" / "__init__.py")
    check_property_tests(run(["-m", "pytest", "-q", "-p", "no:cacheprovider", *PROPERTY_TESTS, "-k", SELECTED],
                             checkout, [checkout, checkout / "tests"]))
    check_run(run(cli(f"results_dir={tmp_path / 'results'}", f"reports_dir={tmp_path / 'reports'}"), checkout,
                  [checkout]))


def test_worked_examples_as_an_installed_plug_in(tmp_path):
    files = doc_files()
    package = tmp_path / "my-memory"
    (package / "my_memory").mkdir(parents=True)
    (package / "my_memory" / "__init__.py").write_text("")
    (package / "my_memory" / "gated_recurrence.py").write_text(files["baselines/gated_recurrence.py"])
    (package / "my_memory" / "first_letter.py").write_text(files["tasks/first_letter.py"])
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        + files["pyproject.toml"] + '\n[tool.setuptools]\npackages = ["my_memory"]\n')
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              "--no-build-isolation", "--target", str(site), str(package)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    assert list(site.glob("my_memory-0.1.0.dist-info/entry_points.txt"))
    check_property_tests(run(["-m", "pytest", "-q", "-p", "no:cacheprovider", *PROPERTY_TESTS, "-k", SELECTED],
                             REPO, [site, REPO, REPO / "tests"]))
    check_run(run(cli(f"results_dir={tmp_path / 'results'}", f"reports_dir={tmp_path / 'reports'}"), tmp_path,
                  [site, REPO]))


def test_a_broken_plug_in_is_named(tmp_path):
    site = tmp_path / "site"
    (site / "broken_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "broken_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (site / "broken_plugin-0.1.dist-info" / "entry_points.txt").write_text("[memarena.mechanisms]\nbroken = no_such_module\n")
    result = run(["-c", "import harness; harness.mechanisms()"], tmp_path, [site, REPO])
    assert result.returncode != 0
    assert "mechanism plug-in 'broken' (no_such_module, group memarena.mechanisms) failed to load" in result.stderr
