"""The report is self-contained and every figure renders in a real browser."""

import pytest

from raretask.report.browser import check_rendering, find_chromium
from raretask.studies import build_config, run_study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "one-neuron"
    run_study(build_config("one-neuron", "quick"), out)
    return out / "report.html"


def test_report_is_self_contained(report):
    html = report.read_text()
    assert "<img" in html and "data:image/png;base64," in html
    assert "src='http" not in html and 'src="http' not in html and "<link" not in html


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (.ci/run installs it)")
def test_every_figure_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    ok, total = check_rendering(report, screenshot=shot)
    assert total >= 1 and ok == total
    assert shot.exists() and shot.stat().st_size > 10_000
