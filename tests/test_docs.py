"""The documentation: every "SPEC X" the code and the README cite has its item in docs/spec.md,
and the site builds with ``mkdocs build --strict``."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC_PAGE = ROOT / "docs" / "spec.md"

# "SPEC A4", "SPEC A5.3", "SPEC B", "SPEC Part C" (not "SPEC defaults", "the SPEC's")
CITATION = re.compile(r"\bSPEC (?:Part )?([A-C])(\d+(?:\.\d+)?)?\b")
# a heading with an attr_list id: "### A1. Data {#a1}"
ANCHOR = re.compile(r"^#{1,6} .*\{[^}]*#([a-z0-9-]+)[^}]*\}\s*$", re.M)
SUFFIXES = {".py", ".json", ".md", ".txt", ".toml", ".html", ".cfg"}


def anchor_of(letter: str, number: str | None) -> str:
    """The spec.md anchor of a citation: A4 -> a4, A5.3 -> a5-3, Part C -> c."""
    return letter.lower() + (number or "").replace(".", "-")


def citations(text: str, where: str = "") -> dict[str, set[str]]:
    """{anchor: {where the citation occurs}} for every SPEC citation in ``text``."""
    out: dict[str, set[str]] = {}
    for m in CITATION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.setdefault(anchor_of(m.group(1), m.group(2)), set()).add(f"{where}:{line} ({m.group(0)})")
    return out


def cited() -> dict[str, set[str]]:
    """Every SPEC citation in README.md and the package sources (build metadata excluded)."""
    files = [ROOT / "README.md"] + sorted(
        p for p in (ROOT / "src").rglob("*")
        if p.is_file() and p.suffix in SUFFIXES and not any(part.endswith(".egg-info") or part == "__pycache__"
                                                            for part in p.parts))
    out: dict[str, set[str]] = {}
    for f in files:
        for anchor, where in citations(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT))).items():
            out.setdefault(anchor, set()).update(where)
    return out


def anchors(page: Path = SPEC_PAGE) -> set[str]:
    return set(ANCHOR.findall(page.read_text(encoding="utf-8")))


def missing(cites: dict[str, set[str]], known: set[str]) -> list[str]:
    """One line per cited item without a heading anchor, naming where it is cited."""
    return [f"#{a} cited at {', '.join(sorted(cites[a])[:3])}" for a in sorted(cites) if a not in known]


def test_every_cited_spec_item_has_an_anchor_in_docs_spec():
    cites, known = cited(), anchors()
    assert len(cites) >= 10, "found too few SPEC citations: the pattern no longer matches the code"
    for item in ("a", "a1", "a2", "a3", "a4", "a5", "b", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "c"):
        assert item in known, f"docs/spec.md has no heading {{#{item}}}"
    gaps = missing(cites, known)
    assert not gaps, "SPEC items cited but missing from docs/spec.md:\n" + "\n".join(gaps)


def test_the_checker_reports_a_citation_the_spec_lacks():
    fake = citations("see SPEC B9 and SPEC A5.9; SPEC A4, SPEC Part C and the SPEC defaults are fine", "fake.py")
    assert set(fake) == {"b9", "a5-9", "a4", "c"}
    gaps = missing(fake, anchors())
    assert len(gaps) == 2 and gaps[0].startswith("#a5-9") and gaps[1].startswith("#b9"), gaps
    assert "fake.py:1 (SPEC B9)" in gaps[1]


@pytest.mark.slow
def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                        "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr
    page = site / "spec" / "index.html"
    if not page.exists():
        page = site / "spec.html"
    html = page.read_text(encoding="utf-8")
    for item in ("a4", "a5-3", "b6", "c"):
        assert f'id="{item}"' in html, f"built spec page lacks the anchor {item}"
