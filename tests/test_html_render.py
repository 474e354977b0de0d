"""The HTML leaderboard in headless Chromium: the plots render and the console stays clean."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from harness.figures import leaderboard_html
from harness.report import Leaderboard
from test_report import OUTCOMES, RECORDS

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed here when absent and possible; else the test is skipped."""
    path = shutil.which("chromium")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(command, capture_output=True, timeout=900,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("headless Chromium is not installed and could not be (apt-get install chromium, as root)")
    return path


def render(chromium: str, page: str, tmp_path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages that report errors."""
    path = tmp_path / "index.html"
    path.write_text(page)
    result = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", path.as_uri()],
                            capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines()
              if "CONSOLE" in line and re.search(r"Uncaught|Error|error", line)]
    return result.stdout, errors


def test_plots_render_without_console_errors(chromium, tmp_path):
    page = leaderboard_html(Leaderboard(RECORDS, OUTCOMES), "demo")
    dom, errors = render(chromium, page, tmp_path)
    assert errors == []
    figures = page.count("Plotly.newPlot")
    assert figures >= 4
    assert dom.count('class="main-svg"') >= figures  # every figure drew its SVG


def test_a_script_error_would_be_caught(chromium, tmp_path):
    page = leaderboard_html(Leaderboard(RECORDS, OUTCOMES), "demo").replace("</body>", "<script>missing()</script></body>")
    _, errors = render(chromium, page, tmp_path)
    assert any("missing" in line for line in errors)
