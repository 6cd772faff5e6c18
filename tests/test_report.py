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


def chromium_when_installed(wait_s: float = 900.0):
    """Chromium's path, waiting while ``.ci/run`` still installs it in the background (it does
    so beside the package install; the marker file named by RARETASK_CHROMIUM_PENDING exists
    until the installer ends); None when there is none."""
    import os
    import time
    from pathlib import Path

    marker = os.environ.get("RARETASK_CHROMIUM_PENDING")
    t0 = time.time()
    while find_chromium() is None and marker and Path(marker).exists() and time.time() - t0 < wait_s:
        time.sleep(2)
    return find_chromium()


def test_every_figure_renders_in_headless_chromium(report, tmp_path):
    if chromium_when_installed() is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    shot = tmp_path / "shot.png"
    ok, total = check_rendering(report, screenshot=shot)
    assert total >= 1 and ok == total
    assert shot.exists() and shot.stat().st_size > 10_000


def test_each_check_is_shown_once_with_a_tally(tmp_path):
    """A check attached to a figure is shown under it only; the others in the summary table; the
    tally counts them all; the render marker is hidden from the reader."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raretask.report.html import Check, Figure, write_report

    fig, ax = plt.subplots()
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    a, b, c = Check("alpha-check", 1, 1, True), Check("beta-check", 2, 1, False), Check.not_measurable("gamma-check", 1, "x")
    html = write_report(tmp_path / "r.html", "t", "i", [a, b, c], [Figure(tmp_path / "f.png", "cap", [a])], {}, {}).read_text()
    assert html.count("alpha-check") == 1 and html.count("beta-check") == 1 and html.count("gamma-check") == 1
    assert html.index("beta-check") < html.index("<figure>") < html.index("alpha-check")
    assert "Checks: 1 yes, 1 no, 1 n/a (each under its figure, the others below)." in html
    assert "<p id='render-check' data-ok='false' hidden>" in html
