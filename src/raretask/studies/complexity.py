"""Complexity sweep (SPEC A5.5, App. D, Figs. 13-16): tasks whose spectra decay slowly need
more width; phase diagrams over alpha ranges and retention of the complex rare task."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..mixture import critical_widths
from ..report.html import Figure
from ..report.plots import new_figure, save
from . import phase, retention
from ._config import StudyConfig
from ._run import Analysis


def _retention_cfg(cfg: StudyConfig) -> StudyConfig:
    lo, hi = cfg.alpha_ranges[0]
    return replace(cfg, mixture={**cfg.mixture, "alpha_range": [lo, hi]}, alpha_ranges=None,
                   widths=cfg.retention_widths or cfg.widths)


def cells(cfg: StudyConfig):
    out = phase.cells(cfg)
    if cfg.gaps_enabled:
        rc = _retention_cfg(cfg)
        rcells = retention.cells(rc)
        for c in rcells:
            c.id = "retention-" + c.id
        out += rcells
    return out


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    ph = results[~results["cell"].str.startswith("retention-")]
    a = phase.analyze(cfg, ph, None, out)
    figures, summary = list(a.figures), {"phase": a.summary}
    # complexity vs the width needed for all of a task's features
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for i, (lo, hi) in enumerate(cfg.alpha_ranges):
        spec = cfg.spec(alpha_range=(lo, hi))
        ax.plot(spec.complexity_m90(), critical_widths(spec)[:, -1], "o", color=f"C{i}",
                label=f"alpha in [{lo:g}, {hi:g}]")
    ax.set_xlabel("complexity m_k(0.9)")
    ax.set_ylabel("Theorem 3: width to retain all features, N*_(k,d)")
    ax.legend()
    figures.append(Figure(save(fig, out / "figures" / "complexity-vs-width.png"),
                          "Task complexity m_k(0.9) against the width Theorem 3 needs to retain all of the task's "
                          "features."))
    if cfg.gaps_enabled and trace is not None:
        rc = _retention_cfg(cfg)
        rt = trace[trace["cell"].str.startswith("retention-")]
        rr = results[results["cell"].str.startswith("retention-")]
        b = retention.analyze(rc, rr, rt, out)
        figures += b.figures
        summary["retention"] = b.summary
    return Analysis("Complexity sweep (SPEC A5.5): phase diagrams over alpha ranges (complex tasks need more "
                    "width) and retention of a complex rare task.", a.checks, figures, summary)
