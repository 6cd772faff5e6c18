"""Long horizon (SPEC A5.4, paper Fig. 21, App. E.4): tasks above a width's capacity stay at
the random baseline however long training runs, so the bottleneck is capacity, not time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..mixture import critical_widths
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ._config import StudyConfig
from ._run import Analysis
from .phase import cells  # noqa: F401  (phase-style runs, long)


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    spec = cfg.spec()
    crit = critical_widths(spec)[:, 0]
    widths = sorted(cfg.widths)
    fig, axes = new_figure(len(widths), 1, height=2.2)
    checks, summary = [], {"widths": {}}
    steps = int(results["step"].max())
    for ax, w in zip(axes[0], widths):
        r = results[results["width"] == w].groupby(["step", "task"])["corrected_signal"].mean().unstack("task")
        above = [k for k in range(1, spec.K + 1) if crit[k - 1] > w]
        below = [k for k in range(1, spec.K + 1) if crit[k - 1] <= w]
        r = r[r.index > 0]
        for k in below:
            ax.plot(r.index, r[k], "-", color="C0", lw=0.8, alpha=0.6)
        for k in above:
            ax.plot(r.index, r[k], "-", color="C1", lw=0.8, alpha=0.6)  # vermillion
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("corrected signal s~_k")
        ax.set_title(f"N = {w}: {len(below)} within, {len(above)} above")
        if not above:
            continue
        final = r.loc[steps, above]
        tenth = r.index[r.index >= steps / 10][0]
        late_gain = float((r.loc[steps, above] - r.loc[tenth, above]).max())
        checks += [
            Check(f"N={w}: largest final s~ of the {len(above)} above-capacity tasks at step {steps:,}",
                  float(final.max()), "at the random baseline (<= 0.05)", bool(final.max() <= 0.05)),
            Check(f"N={w}: largest gain of an above-capacity task from step {int(tenth):,} to {steps:,}",
                  late_gain, "no slow catch-up (<= 0.02)", bool(late_gain <= 0.02)),
        ]
        summary["widths"][str(w)] = {"above_capacity_tasks": above, "final_max": float(final.max()),
                                     "final_mean": float(final.mean()), "late_gain": late_gain}
    path = save(fig, out / "figures" / "long-horizon.png")
    fig_ = Figure(path, f"Corrected signal of every task over {steps:,} steps (log axis). Blue: tasks within the width's capacity; "
                  "vermillion: tasks whose first feature lies above the width's capacity (N*_(k,1) > N, Theorem 3); they stay at or below the "
                  "random-projection baseline 0.", checks)
    return Analysis("Long horizon (SPEC A5.4): more steps do not buy above-capacity tasks.", [], [fig_], summary)
