"""Complexity sweep (SPEC A5.5, App. D, Figs. 13-16): tasks whose spectra decay slowly need
more width; phase diagrams over alpha ranges and retention of the complex rare task.

The retention part follows the task the paper follows (App. D.3): the lowest aggregate
utility pi_k tr(C_k) under the first alpha range (``rare_task`` overrides it). The report
also names the task whose first feature Theorem 3 retains last (largest N*_(k,1)), which is
generally another one: the lowest total utility is not the lowest leading utility.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

import numpy as np

from ..mixture import critical_widths
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from . import phase, retention
from ._config import StudyConfig
from ._run import Analysis


def followed_task(cfg: StudyConfig) -> dict:
    """The retention part's task under the first alpha range and why (1-based task numbers):
    argmin_k pi_k tr(C_k) (App. D.3), unless ``rare_task`` names one; with the runner-up and
    the task whose first feature Theorem 3 retains last."""
    lo, hi = cfg.alpha_ranges[0]
    spec = cfg.spec(alpha_range=(lo, hi))
    agg = spec.pi * spec.trace_C
    crit1 = critical_widths(spec)[:, 0]
    order = np.argsort(agg, kind="stable")
    k = cfg.rare_task - 1 if cfg.rare_task is not None else int(order[0])
    last = int(np.argmax(crit1))
    info = lambda j: {"task": j + 1, "aggregate_utility": float(agg[j]), "alpha": float(spec.alphas[j]),  # noqa: E731
                      "complexity_m90": int(spec.complexity_m90()[j]), "critical_width_1": int(crit1[j])}
    return {"followed": info(k), "why": "rare_task setting" if cfg.rare_task is not None else
            "lowest aggregate utility pi_k tr(C_k) (App. D.3)",
            "lowest_aggregate": info(int(order[0])), "runner_up": info(int(order[1])),
            "last_first_feature": info(last), "alpha_range": [lo, hi]}


def _retention_cfg(cfg: StudyConfig) -> StudyConfig:
    lo, hi = cfg.alpha_ranges[0]
    return replace(cfg, mixture={**cfg.mixture, "alpha_range": [lo, hi]}, alpha_ranges=None,
                   widths=cfg.retention_widths or cfg.widths, rare_task=followed_task(cfg)["followed"]["task"])


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
    intro = ("Complexity sweep (SPEC A5.5): phase diagrams over alpha ranges (complex tasks need more "
             "width) and retention of a complex rare task.")
    if cfg.gaps_enabled and trace is not None:
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
