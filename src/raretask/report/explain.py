"""Plain-language summary of finished study runs (``raretask explain RUN...``, the end of
``make demo``): what was computed, where the report is, and what each "no" and "n/a" means.

Every sentence is derived from the run's own ``summary.json`` and ``config.json`` and from the
study's presets; none is written ahead of the verdicts."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..runfolder import read_json


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _paper_steps(study: str) -> int | None:
    from ..studies._config import load_preset

    try:
        return int(load_preset(study, "paper")["train"]["steps"])
    except (ConfigError, KeyError, TypeError, ValueError):
        return None


def explain_run(run: str | Path, paper_steps: int | None | bool = True) -> list[str]:
    """Lines describing one study run folder. ``paper_steps``: the paper preset's training steps
    (True: read from the study's presets; None: the study has no paper preset)."""
    run = Path(run)
    if not (run / "summary.json").is_file() or not (run / "config.json").is_file():
        raise ConfigError("run", f"{run} holds no finished study (summary.json, config.json)",
                          "the --out folder of a finished `raretask study` run")
    s = read_json(run / "summary.json", "the run's summary.json")
    cfg = read_json(run / "config.json", "the run's config.json").get("config", {})
    study, preset = s.get("study", "?"), s.get("preset", "?")
    checks = s.get("checks", [])
    count = {v: sum(c.get("verdict") == v for c in checks) for v in ("yes", "no", "n/a")}
    steps = (cfg.get("train") or {}).get("steps")
    widths = cfg.get("widths")
    lines = [f"{study} ({preset} preset): widths {_fmt(widths)}, {steps:,} steps per width; "
             f"{count['yes']} yes, {count['no']} no, {count['n/a']} n/a. Report: {run / 'report.html'}"
             if isinstance(steps, int) else
             f"{study} ({preset} preset): {count['yes']} yes, {count['no']} no, {count['n/a']} n/a. "
             f"Report: {run / 'report.html'}"]
    for c in checks:
        if c.get("verdict") == "no":
            lines.append(f"  no: {c['name']}: measured {_fmt(c['measured'])}, the claim {_fmt(c['expected'])}.")
    if count["no"]:
        if paper_steps is True:
            paper_steps = _paper_steps(study) if preset != "paper" else None
        shorter = isinstance(paper_steps, int) and isinstance(steps, int) and paper_steps > steps
        lines.append("  A no means this run's measurement does not show the claim at this run's scale. " + (
            f"The {preset} preset trains {steps:,} steps, the paper preset {paper_steps:,} ({paper_steps / steps:.0f}x): "
            f"run `raretask study {study} --preset paper` before reading it as evidence against the paper."
            if shorter else "At this scale it is evidence against the claim.")
            + f" Why each threshold is what it is: docs/studies/{study}.md.")
    for c in checks:
        if c.get("verdict") == "n/a":
            why = str(c.get("measured", "")).removeprefix("n/a: ")
            lines.append(f"  n/a: {c['name']}: {why}.")
    if count["n/a"]:
        lines.append("  An n/a means this run could not measure what the claim needs; it never counts as a pass.")
    if not count["no"] and not count["n/a"]:
        lines.append("  Every check holds.")
    return lines
