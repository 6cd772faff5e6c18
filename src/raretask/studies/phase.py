"""Phase diagram (SPEC A5.1, paper Fig. 2, App. E.1.1): which tasks each width learns.

Every width trains on the same batches for each (beta, seed); the final per-task losses
form a heat map over (task, width) with the Theorem-3 staircase N*_{k,1} drawn on it, and
the total loss per width is compared with the Theorem-3 optimum sum_{i>N} mu_i.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from ..mixture import critical_widths, predicted_total_loss
from ..report.html import Check, Figure
from ..report.plots import heatmap_with_staircase, new_figure, save
from ..sim import RecordSchedule
from ._config import StudyConfig
from ._run import Analysis, Cell, last_step
from ._theory_helpers import first_grid_index, theory_grid_tables
from ..validate import Distinct, NonEmpty, NonNegFloat, strict


@strict
class Settings:
    """The phase diagram's own settings (residual shares them: same runs)."""

    betas: Annotated[list[NonNegFloat], NonEmpty, Distinct] | None = None
    """Prior exponents to sweep, each replacing ``mixture.beta`` (one cell per beta x seed);
    None: ``mixture.beta`` alone."""


def mixture_settings(cfg: StudyConfig) -> list[tuple[str, dict, dict]]:
    """(id, mixture overrides, labels) per mixture setting of the sweep: the ``alpha_ranges``
    or ``betas`` the study's settings name (phase, residual, complexity), else the mixture."""
    alpha_ranges = getattr(cfg.settings, "alpha_ranges", None)
    if alpha_ranges:
        return [(f"alpha{lo:g}-{hi:g}", {"alpha_range": (lo, hi)}, {"alpha_lo": lo, "alpha_hi": hi})
                for lo, hi in alpha_ranges]
    betas = getattr(cfg.settings, "betas", None) or [cfg.spec().beta]
    return [(f"beta{b:g}", {"beta": b}, {"beta": float(b)}) for b in betas]


def cells(cfg: StudyConfig) -> list[Cell]:
    out = []
    for sid, override, labels in mixture_settings(cfg):
        spec = cfg.spec(**override)
        for seed in cfg.seeds:
            out.append(Cell(id=f"{sid}-seed{seed}", labels={**labels, "seed": seed}, spec=spec,
                            train=cfg.train_config(seed), widths=list(cfg.widths),
                            record=RecordSchedule("log", cfg.record_points)))
    return out


def final_table(results: pd.DataFrame, value: str, grid: list[int], K: int) -> np.ndarray:
    """Seed-mean of ``value`` at each cell's last step, as (K, len(grid))."""
    last = last_step(results)
    t = last.groupby(["width", "task"])[value].mean().unstack("width")
    return t.reindex(index=range(1, K + 1), columns=grid).to_numpy()


def agreement_checks(spec, grid, res, label: str) -> tuple[list[Check], dict]:
    """Where each task is first learned, measured vs Theorem 3, and the total-loss curve."""
    theory = theory_grid_tables(spec, grid)
    sig = final_table(res, "corrected_signal", grid, spec.K)
    nfeat = final_table(res, "n_features", grid, spec.K)
    crit1 = critical_widths(spec)[:, 0]
    grid_a = np.asarray(grid)
    theory_first = np.searchsorted(grid_a, crit1, side="left")  # first grid width >= N*_{k,1}
    emp_sig = first_grid_index(sig > 0.5)
    emp_feat = first_grid_index(nfeat >= 1)
    th_sig = first_grid_index(theory["corrected_signal"] > 0.5)
    within = lambda a, b: float(np.mean(np.abs(a - b) <= 1))  # noqa: E731
    f_sig_n1 = within(emp_sig, theory_first)
    f_feat_n1 = within(emp_feat, theory_first)
    f_sig_sig = within(emp_sig, th_sig)
    total_emp = final_table(res, "total_loss", grid, spec.K)[0]
    total_th = theory["total_loss"]
    floor = 0.01 * total_th[0]
    rel = np.where(total_th > floor, np.abs(total_emp - total_th) / np.maximum(total_th, 1e-300), np.nan)
    absdiff = np.abs(total_emp - total_th)
    ok_total = bool(np.all(np.where(total_th > floor, rel <= 0.10, absdiff <= floor)))
    checks = [
        # information only (SPEC A3, A5.1): one feature can carry under half of tr(C_k), so s~ > 0.5
        # is reached after N*_(k,1) by construction; the two checks below compare like with like
        Check(f"{label}: tasks whose first width with s~ > 0.5 is within one grid step of N*_(k,1)",
              f_sig_n1, "information (not a check: s~ > 0.5 needs more than the first feature)", None),
        Check(f"{label}: tasks whose first width with >= 1 learned feature is within one grid step of N*_(k,1)",
              f_feat_n1, ">= 0.9", f_feat_n1 >= 0.9),
        Check(f"{label}: tasks whose first width with s~ > 0.5 is within one grid step of Theorem 3's",
              f_sig_sig, ">= 0.9", f_sig_sig >= 0.9),
        Check(f"{label}: total loss vs Theorem 3, worst relative error (widths with optimum > 1% of L*(N_min))",
              float(np.nanmax(rel)) if np.any(np.isfinite(rel)) else 0.0, "<= 0.10 at every width", ok_total),
    ]
    detail = {
        "grid": grid, "critical_width_1": crit1, "first_width_signal_gt_half": [
            int(grid[i]) if i < len(grid) else None for i in emp_sig],
        "first_width_one_feature": [int(grid[i]) if i < len(grid) else None for i in emp_feat],
        "total_loss_measured": total_emp, "total_loss_theorem3": total_th,
        "total_loss_relative_error": rel,
    }
    return checks, detail


def plot_phase(spec, grid, res, title: str, path: Path, theory: dict) -> Path:
    norm = final_table(res, "norm_loss", grid, spec.K)
    fig, axes = new_figure(2, 1, height=3.0)
    crit = critical_widths(spec)
    stair = {"Theorem 3: N*(k,1)": crit[:, 0], "Theorem 3: N*(k,d)": crit[:, -1]}
    heatmap_with_staircase(axes[0, 0], norm, grid, stair, f"measured normalised loss ({title})",
                           "L_k / tr(C_k)", fig=fig)
    heatmap_with_staircase(axes[0, 1], theory["norm_loss"], grid, stair, "Theorem 3 prediction",
                           "L*_k / tr(C_k)", fig=fig)
    return save(fig, path)


def plot_total_loss(spec, grid, res, title: str, path: Path) -> Path:
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    last = last_step(res)
    per_seed = last.groupby(["seed", "width"])["total_loss"].first().unstack("width")[grid]
    mean, std = per_seed.mean().to_numpy(), per_seed.std().fillna(0).to_numpy()
    ax.errorbar(grid, mean, yerr=std, fmt="o", color="C0", label="measured (mean ± sd over seeds)")
    Ns = np.arange(1, spec.D)  # the optimum at N = D is exactly 0, off a log axis
    ax.plot(Ns, [predicted_total_loss(spec, n) for n in Ns], "k-", lw=1.2, label="Theorem 3: sum_{i>N} mu_i")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width N")
    ax.set_ylabel("population loss")
    ax.set_title(f"total loss vs width ({title})")
    ax.legend()
    return save(fig, path)


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    grid = sorted(cfg.widths)
    checks, figures, summary = [], [], {"settings": {}}
    for sid, override, labels in mixture_settings(cfg):
        spec = cfg.spec(**override)
        res = results[results["cell"].str.startswith(sid + "-")]
        theory = theory_grid_tables(spec, grid)
        title = ", ".join(f"{k}={v:g}" for k, v in labels.items())
        c, detail = agreement_checks(spec, grid, res, title)
        share = float(spec.spectra[:, 0].min() / spec.trace_C.max())
        f1 = Figure(plot_phase(spec, grid, res, title, out / "figures" / f"phase-{sid}.png", theory),
                    f"Normalised per-task loss after training (left) and the Theorem-3 optimum (right), {title}. "
                    "White line: critical width N*(k,1) at which task k's first feature is retained; red dashed: "
                    "N*(k,d) at which all of them are. The first row is information, not a check: a task's first "
                    f"feature carries as little as {share:.0%} of its trace here, so s~ > 0.5 needs more features than "
                    "the first and is reached after N*(k,1); the two checks compare like with like.", c[:3])
        f2 = Figure(plot_total_loss(spec, grid, res, title, out / "figures" / f"total-loss-{sid}.png"),
                    f"Total population loss per width against Theorem 3's optimum, {title}.", c[3:])
        figures += [f1, f2]
        summary["settings"][sid] = detail
    intro = ("Phase diagram of the synthetic mixture (SPEC A5.1): each width trains on the same batches; "
             "the learned region should follow the utility staircase of Theorem 3.")
    return Analysis(intro, checks, figures, summary)
