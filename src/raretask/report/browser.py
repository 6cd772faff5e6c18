"""Open a report in headless Chromium and confirm every embedded figure decoded."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_rendering(report: Path, screenshot: Path | None = None, timeout: float = 90.0) -> tuple[int, int]:
    """(figures decoded, figures present) as counted by the page's own load-time check.

    Optionally saves a full-page screenshot. Raises RuntimeError without Chromium."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    url = Path(report).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=timeout).stdout
    m = re.search(r"figures rendered: (\d+)/(\d+)", dom)
    if not m:
        raise RuntimeError("the report's render check did not run")
    if screenshot is not None:
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400",
                            f"--screenshot={Path(screenshot).resolve()}", url], capture_output=True, timeout=timeout)
    return int(m.group(1)), int(m.group(2))
