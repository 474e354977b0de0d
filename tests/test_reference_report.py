"""The committed reference leaderboard is what the committed results regenerate (timestamps aside)."""

from __future__ import annotations

import re

import pytest
from plotly.offline import get_plotlyjs

from conftest import REPO
from harness.report import write_report

REFERENCE = "reference"
TIMESTAMP = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
PLOTLY_JS = re.compile(r"<script type='text/javascript'>.*?</script>", re.DOTALL)


def normalise(text: str) -> str:
    return TIMESTAMP.sub("Generated <time>", text)


def test_reference_report_regenerates_from_the_committed_results(tmp_path):
    assert (REPO / "results" / REFERENCE).is_dir(), "the reference results are not committed"
    write_report(REPO / "results", tmp_path, REFERENCE)
    for name in ("leaderboard.md", "leaderboard.csv"):
        committed = (REPO / "reports" / REFERENCE / name).read_text()
        assert normalise((tmp_path / REFERENCE / name).read_text()) == normalise(committed), name


def test_reference_html_regenerates_with_the_same_plotly(tmp_path):
    committed = (REPO / "reports" / REFERENCE / "index.html").read_text()
    version = re.search(r"plotly\.js v([\d.]+)", committed).group(1)
    if f"plotly.js v{version}" not in get_plotlyjs()[:2000]:
        pytest.skip(f"the reference page embeds plotly.js {version}; another version is installed")
    write_report(REPO / "results", tmp_path, REFERENCE)
    regenerated = (tmp_path / REFERENCE / "index.html").read_text()
    assert normalise(PLOTLY_JS.sub("", regenerated, count=1)) == normalise(PLOTLY_JS.sub("", committed, count=1))
