"""The HTML leaderboard in headless Chromium: the plots render and the console stays clean."""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import subprocess

import pytest

from harness.report import build_leaderboard
from harness.report.html import leaderboard_html
from test_report import config, store_run

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom"]


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> str:
    """Debian's chromium, installed here when absent and possible; else the test is skipped."""
    path = shutil.which("chromium")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        # one install at a time: under `pytest -n` every worker process runs this fixture, and a second
        # apt-get would fail on the first one's lock (the workers' temporary folders share this parent)
        with open(tmp_path_factory.getbasetemp().parent / "chromium-install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if shutil.which("chromium") is None:
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


#: appended to the page under test: lists every pair of text labels of one figure whose boxes overlap
OVERLAP_PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const found = [];
  document.querySelectorAll('.js-plotly-plot').forEach((plot) => {
    const boxes = [...plot.querySelectorAll('text')].filter((t) => t.textContent.trim())
      .map((t) => [t.textContent, t.getBoundingClientRect()]).filter(([, b]) => b.width > 0 && b.height > 0);
    boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
      const w = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const h = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (w > 1 && h > 1) found.push(plot.id + ': ' + a + ' / ' + b);
    }));
  });
  const out = document.createElement('pre'); out.id = 'overlaps'; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
}, 500));</script>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """A report with the hard cases: long labels, OOM at the longest length, a depth knob, training curves."""
    results = tmp_path_factory.mktemp("store") / "results"
    curve = [{"step": step, "loss": 2.0 / step, "lr": 0.001} for step in (50, 100, 150)]
    store_run(results, "fa", config("full_attention", 0), {64: 32}, oom=(128,), curve=curve)
    store_run(results, "sw", config("sliding_window", 0, window=5), {64: 30, 128: 12}, curve=curve)
    store_run(results, "sw2", config("sliding_window", 0, window=100), {64: 31, 128: 29}, curve=curve)
    store_run(results, "cm", config("compressive", 0), {64: 32, 128: 31}, curve=curve)
    store_run(results, "lstm", config("lstm_gated", 0), {64: 1, 128: 0}, curve=curve)
    return leaderboard_html(build_leaderboard(results, "demo"), "demo", "Generated now.")


def test_plots_render_without_console_errors_or_overlapping_labels(chromium, page, tmp_path):
    dom, errors = render(chromium, page.replace("</body>", OVERLAP_PROBE + "</body>"), tmp_path)
    assert errors == []
    figures = page.count("Plotly.newPlot")
    assert figures >= 5
    assert dom.count('class="main-svg"') >= figures  # every figure drew its SVG
    overlaps = re.search(r'<pre id="overlaps">(.*?)</pre>', dom, re.DOTALL)
    assert overlaps is not None, "the overlap probe did not run"
    assert json.loads(html.unescape(overlaps.group(1))) == []


def test_overlapping_labels_would_be_caught(chromium, page, tmp_path):
    crowded = page.replace('"tickvals":[64,128]', '"tickvals":[64,64.5,128]', 1).replace(
        '"ticktext":["64","128"]', '"ticktext":["sixty-four","sixty-four and a half","128"]', 1)
    assert crowded != page
    dom, _ = render(chromium, crowded.replace("</body>", OVERLAP_PROBE + "</body>"), tmp_path)
    overlaps = re.search(r'<pre id="overlaps">(.*?)</pre>', dom, re.DOTALL)
    assert "sixty-four" in html.unescape(overlaps.group(1))


def test_a_script_error_would_be_caught(chromium, page, tmp_path):
    _, errors = render(chromium, page.replace("</body>", "<script>missing()</script></body>"), tmp_path)
    assert any("missing" in line for line in errors)
