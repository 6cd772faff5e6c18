"""One neuron, two tasks (SPEC A4 Example 7, A5.7, paper Fig. 11, App. C.4).

u = cos(theta) a + sin(theta) b. The common task pulls theta to 0 every step; the rare task
pushes it toward pi/2 once every G steps. Between rare updates theta shrinks by about
exp(-2 eta lambda_1 G): the rare task's trace is erased unless G is short.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..mixture import one_neuron_decay, one_neuron_step
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ._config import StudyConfig
from ._run import Analysis


def simulate(theta0: float, eta: float, lam1: float, lam2: float, gap: int, cycles: int) -> np.ndarray:
    """theta after every step; each cycle is one rare-task step followed by G common steps.

    Returns (cycles * (G + 1) + 1,) angles, starting at theta0."""
    out = [theta0]
    th = theta0
    for _ in range(cycles):
        th = float(one_neuron_step(th, eta, lam2, task=2))
        out.append(th)
        for _ in range(gap):
            th = float(one_neuron_step(th, eta, lam1, task=1))
            out.append(th)
    return np.asarray(out)


def run(cfg: StudyConfig, out: Path):
    t0 = time.perf_counter()
    lam1, lam2 = cfg.lambdas
    rows = []
    for gap in cfg.gaps:
        th = simulate(cfg.theta0, cfg.eta, lam1, lam2, gap, cycles=6)
        rows.append(pd.DataFrame({"gap": gap, "step": np.arange(len(th)), "theta": th}))
    results = pd.concat(rows, ignore_index=True)
    return results, None, time.perf_counter() - t0


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    lam1, lam2 = cfg.lambdas
    eta = cfg.eta
    fig, axes = new_figure(2, 1, size=(5.6, 4.2))
    rows = []
    for i, gap in enumerate(sorted(cfg.gaps)):
        r = results[results["gap"] == gap]
        axes[0, 0].plot(r["step"], r["theta"], "-", color=f"C{i % 10}", lw=1, label=f"G = {gap}")
        # shrink over the G common steps that follow the first rare step
        th = r["theta"].to_numpy()
        measured = th[1 + gap] / th[1]
        law = float(one_neuron_decay(eta, lam1, gap))
        rows.append((gap, measured, law))
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_ylabel("theta (rad)")
    axes[0, 0].set_title(f"theta: rare step every G steps (eta={eta}, lambda=({lam1}, {lam2}))", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    g = np.array([r[0] for r in rows], float)
    meas = np.array([r[1] for r in rows])
    law = np.array([r[2] for r in rows])
    gg = np.geomspace(g.min(), g.max(), 200)
    axes[0, 1].plot(gg, one_neuron_decay(eta, lam1, gg), "k-", label="exp(-2 eta lambda_1 G)")
    axes[0, 1].plot(g, meas, "o", color="C3", label="measured theta(after G)/theta(before)")
    axes[0, 1].set_xscale("log")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_xlabel("gap G")
    axes[0, 1].set_ylabel("shrink factor")
    axes[0, 1].legend(fontsize=8)
    path = save(fig, out / "figures" / "one-neuron.png")
    # the law is the small-angle, small-step limit: compare where eta*lambda_1*G <= 1
    in_range = eta * lam1 * g <= 1.0
    rel = np.abs(meas - law) / law
    worst = float(rel[in_range].max()) if in_range.any() else float("nan")
    checks = [Check(f"G = {int(a)}: shrink factor measured vs law", float(m), float(lw),
                    bool(abs(m - lw) / lw <= 0.05) if ok else None)
              for a, m, lw, ok in zip(g, meas, law, in_range)]
    checks.insert(0, Check("worst relative error vs exp(-2 eta lambda_1 G) where eta*lambda_1*G <= 1", worst,
                           "<= 0.05 (small-angle law)", bool(worst <= 0.05)))
    fig_ = Figure(path, "Left: theta after a rare-task step followed by G common steps (six cycles). Right: the "
                  "measured shrink of theta over the G common steps against the law exp(-2 eta lambda_1 G).",
                  checks)
    summary = {"gaps": g.tolist(), "measured_shrink": meas.tolist(), "law": law.tolist()}
    return Analysis("One neuron, two orthogonal rank-one tasks (SPEC A4 Example 7).", [], [fig_], summary)
