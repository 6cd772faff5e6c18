"""Complexity sweep (SPEC A5.5, App. D, Figs. 13-16): tasks whose spectra decay slowly need
more width; phase diagrams over alpha ranges and retention of the complex rare task.

The retention part follows the task the paper follows (App. D.3): the lowest aggregate
utility pi_k tr(C_k) under the first alpha range (``rare_task`` overrides it). The report
also names the task whose first feature Theorem 3 retains last (largest N*_(k,1)), which is
generally another one: the lowest total utility is not the lowest leading utility.
"""

from __future__ import annotations

from dataclasses import field, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from ..mixture import critical_widths
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ..validate import Distinct, NonEmpty, PosInt, PosPair, strict
from . import phase, retention
from ._config import StudyConfig, check_task
from ._run import Analysis


@strict
class Settings:
    """The complexity sweep's own settings: its phase part (alpha ranges) and its retention part."""

    alpha_ranges: Annotated[list[PosPair], NonEmpty, Distinct] = field(default_factory=lambda: [[0.5, 2.0]])
    """Spectral-decay ranges [lo, hi], each replacing ``mixture.alpha_range`` (one phase diagram each);
    the retention part uses the first."""
    retention_widths: Annotated[list[PosInt], NonEmpty, Distinct] | None = None
    """Widths of the retention part (None: ``widths``)."""
    gaps_enabled: bool = True
    """Also run the retention part over ``gaps``."""
    gaps: Annotated[list[PosInt], NonEmpty, Distinct] = field(default_factory=lambda: [1, 4, 16, 64, 256, 1024])
    """Retention part: steps G between the followed task's injections (SPEC A5.3)."""
    rare_task: PosInt | None = None
    """1-based task the retention part follows; None: the lowest aggregate utility (App. D.3)."""
    trace_every: PosInt = 1
    """Retention part: keep the followed task's corrected signal every this many steps."""

    def check(self, cfg: StudyConfig) -> None:
        check_task(cfg, "rare_task", self.rare_task)
        for lo, hi in self.alpha_ranges:
            cfg.spec(alpha_range=(lo, hi))
        for w in self.retention_widths or []:
            cfg.spec().check_width(w, "retention_widths")


def followed_task(cfg: StudyConfig) -> dict:
    """The retention part's task under the first alpha range and why (1-based task numbers):
    argmin_k pi_k tr(C_k) (App. D.3), unless ``rare_task`` names one; with the runner-up and
    the task whose first feature Theorem 3 retains last."""
    lo, hi = cfg.settings.alpha_ranges[0]
    spec = cfg.spec(alpha_range=(lo, hi))
    agg = spec.pi * spec.trace_C
    crit1 = critical_widths(spec)[:, 0]
    order = np.argsort(agg, kind="stable")
    k = cfg.settings.rare_task - 1 if cfg.settings.rare_task is not None else int(order[0])
    last = int(np.argmax(crit1))
    info = lambda j: {"task": j + 1, "aggregate_utility": float(agg[j]), "alpha": float(spec.alphas[j]),  # noqa: E731
                      "complexity_m90": int(spec.complexity_m90()[j]), "critical_width_1": int(crit1[j])}
    return {"followed": info(k), "why": "rare_task setting" if cfg.settings.rare_task is not None else
            "lowest aggregate utility pi_k tr(C_k) (App. D.3)",
            "lowest_aggregate": info(int(order[0])), "runner_up": info(int(order[1])),
            "last_first_feature": info(last), "alpha_range": [lo, hi]}


def _retention_cfg(cfg: StudyConfig) -> StudyConfig:
    lo, hi = cfg.settings.alpha_ranges[0]
    s = cfg.settings
    own = retention.Settings(gaps=s.gaps, rare_task=followed_task(cfg)["followed"]["task"], trace_every=s.trace_every)
    return replace(cfg, study="retention", mixture={**cfg.mixture, "alpha_range": [lo, hi]},
                   widths=s.retention_widths or cfg.widths, settings=own)


def cells(cfg: StudyConfig):
    out = phase.cells(cfg)
    if cfg.settings.gaps_enabled:
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
    for i, (lo, hi) in enumerate(cfg.settings.alpha_ranges):
        spec = cfg.spec(alpha_range=(lo, hi))
        ax.plot(spec.complexity_m90(), critical_widths(spec)[:, -1], "o", color=f"C{i}",
                label=f"alpha in [{lo:g}, {hi:g}]")
    ax.set_xlabel("complexity m_k(0.9)")
    ax.set_ylabel("width for all features, N*_(k,d)")
    ax.legend()
    figures.append(Figure(save(fig, out / "figures" / "complexity-vs-width.png"),
                          "Task complexity m_k(0.9) against the width Theorem 3 needs to retain all of the task's "
                          "features, N*_(k,d)."))
    intro = ("Complexity sweep (SPEC A5.5): phase diagrams over alpha ranges (complex tasks need more "
             "width) and retention of a complex rare task.")
    if cfg.settings.gaps_enabled and trace is not None:
        rc = _retention_cfg(cfg)
        rt = trace[trace["cell"].str.startswith("retention-")]
        rr = results[results["cell"].str.startswith("retention-")]
        b = retention.analyze(rc, rr, rt, out)
        ft = followed_task(cfg)
        f, lo_, ru, last = ft["followed"], ft["lowest_aggregate"], ft["runner_up"], ft["last_first_feature"]
        desc = lambda x: (f"task {x['task']} (pi_k tr(C_k) = {x['aggregate_utility']:.4g}, alpha = {x['alpha']:.3g}, "  # noqa: E731
                          f"m_90 = {x['complexity_m90']}, N*_(k,1) = {x['critical_width_1']})")
        intro += (f" The retention part follows {desc(f)}, chosen by {ft['why']} under alpha in "
                  f"[{ft['alpha_range'][0]:g}, {ft['alpha_range'][1]:g}]; the runner-up is {desc(ru)}. The task whose "
                  f"first feature Theorem 3 retains last is {desc(last)}.")
        rows = [Check("retention part follows", desc(f), f"lowest aggregate utility: {desc(lo_)}", None),
                Check("task whose first feature is retained last (largest N*_(k,1))", desc(last), "shown for "
                      "comparison", None)]
        b.figures[0].checks[:0] = rows
        figures += b.figures
        summary["retention"] = {**b.summary, "task_choice": ft}
    return Analysis(intro, a.checks, figures, summary)
