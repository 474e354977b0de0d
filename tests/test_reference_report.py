"""The committed leaderboards are what the committed results regenerate (timestamps aside)."""

from __future__ import annotations

import re
import sys

import _plotly_utils.optional_imports as plotly_imports
import pytest
from plotly.offline import get_plotlyjs

from conftest import REPO
from harness.report import write_report

REFERENCE = "reference_256"
TIMESTAMP = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
PLOTLY_JS = re.compile(r"<script type='text/javascript'>.*?</script>", re.DOTALL)


def normalise(text: str) -> str:
    return TIMESTAMP.sub("Generated <time>", text)


@pytest.mark.parametrize("experiment", [REFERENCE, "zoology_mqar"])
def test_committed_reports_regenerate_from_the_committed_results(tmp_path, experiment):
    assert (REPO / "results" / experiment).is_dir(), f"the {experiment} results are not committed"
    write_report(REPO / "results", tmp_path, experiment)
    for name in ("leaderboard.md", "leaderboard.csv"):
        committed = (REPO / "reports" / experiment / name).read_text()
        assert normalise((tmp_path / experiment / name).read_text()) == normalise(committed), name


def test_reference_html_regenerates_with_the_same_plotly(tmp_path):
    committed = (REPO / "reports" / REFERENCE / "index.html").read_text()
    version = re.search(r"plotly\.js v([\d.]+)", committed).group(1)
    if f"plotly.js v{version}" not in get_plotlyjs()[:2000]:
        pytest.skip(f"the reference page embeds plotly.js {version}; another version is installed")
    write_report(REPO / "results", tmp_path, REFERENCE)
    regenerated = (tmp_path / REFERENCE / "index.html").read_text()
    assert normalise(PLOTLY_JS.sub("", regenerated, count=1)) == normalise(PLOTLY_JS.sub("", committed, count=1))


def _page_without_plotly_js(results_dir, reports_dir) -> str:
    write_report(results_dir, reports_dir, REFERENCE)
    return normalise(PLOTLY_JS.sub("", (reports_dir / REFERENCE / "index.html").read_text(), count=1))


def test_reference_html_is_the_same_whether_orjson_is_installed_or_not(tmp_path, monkeypatch):
    """plotly serialises with orjson whenever it can import it, and orjson writes floats differently;
    the page must not depend on it (issue #28: a fresh venv without orjson failed the test above)."""
    pytest.importorskip("orjson", reason="orjson is in the test extras; without it only one side can be built")
    with_orjson = _page_without_plotly_js(REPO / "results", tmp_path / "with")
    monkeypatch.setitem(sys.modules, "orjson", None)  # `import orjson` now raises ImportError
    monkeypatch.setattr(plotly_imports, "_not_importable", set())  # plotly caches what it failed to import
    without_orjson = _page_without_plotly_js(REPO / "results", tmp_path / "without")
    assert plotly_imports.get_module("orjson") is None, "orjson was not hidden from plotly"
    assert without_orjson == with_orjson
