"""Self-contained HTML reports: figures embedded as base64 PNG, no external assets."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runfolder import atomic_write


@dataclass
class Check:
    """One theory-vs-measurement comparison shown in the report and summary.

    A check answers "yes" (ok True), "no" (ok False) or "n/a" (na True: the claim needs a
    quantity this run could not measure, e.g. the retention of a width that never learned the
    task; it never counts as a pass). ok None without na is an informative row, not a check."""

    name: str
    """What is compared."""
    measured: Any
    """The measured value (number or short text)."""
    expected: Any
    """The theory's value or the acceptance criterion."""
    ok: bool | None
    """Whether it agrees; None for informative rows and for checks that are not measurable."""
    na: bool = False
    """True: the claim could not be measured in this run (``measured`` says why)."""

    @classmethod
    def not_measurable(cls, name: str, expected: Any, why: str) -> "Check":
        """A check whose quantity this run cannot measure: shown as n/a, never a pass."""
        return cls(name, f"n/a: {why}", expected, None, na=True)

    @property
    def verdict(self) -> str:
        """'yes', 'no', 'n/a', or '' for an informative row."""
        if self.na:
            return "n/a"
        return {True: "yes", False: "no", None: ""}[self.ok]

    def to_dict(self) -> dict:
        return {"name": self.name, "measured": self.measured, "expected": self.expected, "ok": self.ok,
                "verdict": self.verdict}


def all_passed(checks: list[Check]) -> bool:
    """True when every check (informative rows aside) answers yes; an n/a is not a pass."""
    return all(c.ok is True for c in checks if c.ok is not None or c.na)


@dataclass
class Figure:
    """A PNG figure in the run directory with its caption."""

    path: Path
    caption: str
    checks: list[Check] = field(default_factory=list)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _checks_table(checks: list[Check]) -> str:
    if not checks:
        return ""
    rows = []
    for c in checks:
        mark = {"yes": "&#10003;", "no": "&#10007;", "n/a": "n/a", "": ""}[c.verdict]
        cls = {"yes": "ok", "no": "bad", "n/a": "na", "": ""}[c.verdict]
        rows.append(f"<tr class='{cls}'><td>{html.escape(c.name)}</td><td>{html.escape(_fmt(c.measured))}</td>"
                    f"<td>{html.escape(_fmt(c.expected))}</td><td>{mark}</td></tr>")
    return ("<table><tr><th>comparison</th><th>measured</th><th>theory / criterion</th><th></th></tr>"
            + "".join(rows) + "</table>")


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
tr.ok td:last-child{color:#1a7f37;font-weight:bold} tr.bad td:last-child{color:#c62828;font-weight:bold}
tr.na td:last-child{color:#8a6d00;font-weight:bold}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.92em;color:#444;margin-top:.4em}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}
"""

# Marks the page once every embedded figure has decoded, so a headless browser can verify it.
_CHECK_JS = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var el = document.getElementById('render-check');
  el.textContent = 'figures rendered: ' + ok + '/' + imgs.length;
  el.setAttribute('data-ok', String(ok === imgs.length && imgs.length > 0));
});
</script>
"""


def _summary_checks(checks: list[Check], figures: list[Figure]) -> list[str]:
    """The verdict tally of every check, then the checks no figure shows: each check appears once,
    under its figure when it has one."""
    shown = {id(c) for f in figures for c in f.checks}
    shown_eq = [c for f in figures for c in f.checks]
    rest = [c for c in checks if id(c) not in shown and c not in shown_eq]
    tally = {v: sum(c.verdict == v for c in checks) for v in ("yes", "no", "n/a")}
    if not any(tally.values()):
        return ["<h2>Theory vs measurement</h2>", _checks_table(rest)] if rest else []
    line = ", ".join(f"{n} {v}" for v, n in tally.items() if n)
    where = " (each under its figure" + (", the others below)" if rest else ")") if len(rest) < len(checks) else ""
    return ["<h2>Theory vs measurement</h2>", f"<p id='verdicts'>Checks: {line}{where}.</p>", _checks_table(rest)]


def write_report(path: Path, title: str, intro: str, checks: list[Check], figures: list[Figure],
                 config: dict, meta: dict) -> Path:
    """Write ``report.html``: summary checks, then each figure beside its theory comparison."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>{intro}</p>",
             "<p><small>" + " · ".join(f"{html.escape(k)}: {html.escape(_fmt(v))}" for k, v in meta.items())
             + "</small></p>",
             # for the headless-browser check (report.browser), not for the reader
             "<p id='render-check' data-ok='false' hidden>figures rendered: (script not run)</p>",
             *_summary_checks(checks, figures)]
    for i, fig in enumerate(figures, 1):
        data = base64.b64encode(Path(fig.path).read_bytes()).decode()
        parts.append(f"<h2>Figure {i}: {html.escape(Path(fig.path).stem)}</h2><figure>"
                     f"<img alt='{html.escape(Path(fig.path).name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{fig.caption}</figcaption></figure>{_checks_table(fig.checks)}")
    parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre>")
    parts.append(_CHECK_JS + "</body></html>")
    atomic_write(path, "".join(parts))
    return path
