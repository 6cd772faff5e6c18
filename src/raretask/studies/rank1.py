"""Rank-1 staircase (SPEC A5.6, App. E.1.2): with d = 1 and lambda = 1 the utility is the
prior, so task k is learned exactly when the width reaches k (Theorem 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..mixture import critical_widths
from ..report.html import Check, Figure
from ..report.plots import heatmap_with_staircase, new_figure, save
from ._config import StudyConfig
from ._run import Analysis
from ._theory_helpers import first_grid_index
from .phase import cells, final_table  # noqa: F401  (same runs, rank-1 mixture)


def resolution(results: pd.DataFrame, grid: list[int], crit: np.ndarray, threshold: float) -> dict:
    """Per seed, the first recorded step from which every width's learned set (alignment >=
    ``threshold``) equals Theorem 3's {k : N >= N*_k} at every later record: how many steps a
    single seed needs to resolve the staircase, near-ties included. None when a width is
    still off at the last record (``off`` lists the widths and tasks)."""
    out = {}
    theory = np.asarray(grid)[None, :] >= np.asarray(crit)[:, None]  # (K, widths)
    for seed, g in results.groupby("seed"):
        steps = np.sort(g["step"].unique())
        t = g.pivot_table(index=["step", "task"], columns="width", values="signal", aggfunc="mean")
        good = []
        off = {}
        for st in steps:
            m = t.loc[st].reindex(index=range(1, len(crit) + 1), columns=grid).to_numpy() >= threshold
            good.append(bool(np.array_equal(m, theory)))
            if st == steps[-1]:
                bad = np.argwhere(m != theory)
                for k, w in bad:
                    off.setdefault(int(grid[w]), []).append(int(k + 1))
        good = np.asarray(good)
        tail = np.nonzero(~good)[0]
        first = 0 if not len(tail) else (tail[-1] + 1 if tail[-1] + 1 < len(steps) else None)
        out[int(seed)] = {"resolved_at_step": int(steps[first]) if first is not None else None,
                          "last_step": int(steps[-1]), "off_at_end": off}
    return out


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    spec = cfg.spec()
    grid = sorted(cfg.widths)
    align = final_table(results, "signal", grid, spec.K)  # s_k = ||P_E e_k||^2 when d = 1
    # seed-mean alignment against the feature threshold: one seed's unresolved near-tie
    # (tasks 30 and 32 differ in prior by ~10%) is a property of that seed's init, not of
    # the staircase
    learned = align >= spec.feature_threshold
    crit = critical_widths(spec)[:, 0]
    th_idx = np.searchsorted(np.asarray(grid), crit, side="left")
    emp_idx = first_grid_index(learned)
    off = np.abs(emp_idx - th_idx)
    n_off = int((off > 0).sum())
    worst = int(off.max())
    # "learned iff N >= k": every (task, width) cell classified, compared with theory
    theory_learned = np.asarray(grid)[None, :] >= crit[:, None]
    cell_agree = float((learned == theory_learned).mean())
    fig, axes = new_figure(1, 1, height=2.9)
    heatmap_with_staircase(axes[0, 0], align, grid, {"Theorem 3: N*_k = k": crit},
                           "alignment ||P_E e_k||^2 after training", "alignment", fig=fig)
    path = save(fig, out / "figures" / "rank1-staircase.png")
    res = resolution(results, grid, crit, spec.feature_threshold)
    single = "; ".join(
        f"seed {s}: " + (f"resolved from step {r['resolved_at_step']:,}" if r["resolved_at_step"] is not None
                         else f"not resolved within {r['last_step']:,} steps (off at N = "
                              + ", ".join(f"{w}: tasks {ks}" for w, ks in r["off_at_end"].items()) + ")")
        for s, r in res.items())
    checks = [
        Check("tasks whose first learned width is off the linear staircase (N*_k = k), seed-mean alignment",
              n_off, "at most 1, by one grid step", n_off <= 1 and worst <= 1),
        Check("largest offset from the staircase (grid steps), seed-mean alignment", worst, "<= 1", worst <= 1),
        Check("steps a single seed needs until every width's learned set equals Theorem 3's (near-ties "
              "included, e.g. tasks 30 and 32 at K = 32)", single, "information: the seed-mean criterion above stands on this",
              None),
        Check("(task, width) cells where 'learned' agrees with 'N >= k'", cell_agree, "informative", None),
    ]
    fig_ = Figure(path, "Rank-1 mixture (d = 1, lambda = 1): alignment of each task's direction with the encoder's "
                  "row space per width. Theory: task k is learned iff N >= k (white staircase).", checks)
    summary = {"first_learned_width": [int(grid[i]) if i < len(grid) else None for i in emp_idx],
               "theory_width": crit.tolist(), "tasks_off": n_off, "single_seed_resolution": res}
    return Analysis("Rank-1 staircase (SPEC A5.6).", [], [fig_], summary)
