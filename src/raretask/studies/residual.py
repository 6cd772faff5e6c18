"""Residual control (SPEC A5.2, paper Fig. 3 / Fig. 19): rare tasks are learned only once
the frequent tasks' residual delta_F falls below Proposition 6's threshold delta*_r.

The rare task r defaults to the most frequent task outside F: Proposition 6 compares r with
the frequent block only, which is exact for that task (a rarer task also competes with the
rare tasks above it, so its own threshold is reached later). ``rare_task`` overrides it.
Width N = D is left out of the checks: there every task is captured trivially.

The runs are the phase diagram's (same cells, shared through the cell cache); the analysis
plots the rare tasks' corrected signal against delta_F per width, for each beta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from ..mixture import proposition6
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ..validate import Distinct, NonEmpty, NonNegFloat, PosInt, strict
from ._config import StudyConfig, check_task
from ._run import Analysis, last_step
from .phase import cells, mixture_settings  # noqa: F401  (same runs as the phase diagram)


@strict
class Settings:
    """The residual study's own settings (its runs are the phase diagram's)."""

    betas: Annotated[list[NonNegFloat], NonEmpty, Distinct] | None = None
    """Prior exponents to sweep, each replacing ``mixture.beta``; None: ``mixture.beta`` alone."""
    rare_task: PosInt | None = None
    """1-based rare task r; None: the most frequent task outside the frequent set."""

    def check(self, cfg: StudyConfig) -> None:
        check_task(cfg, "rare_task", self.rare_task)


def final_by_width(res: pd.DataFrame) -> pd.DataFrame:
    last = last_step(res)
    return last.groupby(["width", "task"])[["corrected_signal", "residual"]].mean().reset_index()


def residual_checks(row: pd.DataFrame, threshold: float, r: int, title: str) -> list[Check]:
    """Proposition 6 against one rare task's final (width, residual, corrected_signal) rows
    (widths N < D): ~0 wherever delta_F > delta*_r; off the baseline at every width with
    delta_F <= delta*_r, rising as delta_F falls and reaching >= 0.5 at the smallest."""
    above = row[row["residual"] > threshold]
    below = row[row["residual"] <= threshold].sort_values("residual", ascending=False)
    out = []
    name = f"{title}: task {r}'s largest s~ where delta_F > delta*_r"
    if len(above):
        m = float(above["corrected_signal"].max())
        out.append(Check(name, m, "~0 (<= 0.1)", m <= 0.1))
    else:
        out.append(Check.not_measurable(name, "~0 (<= 0.1)", "no width has delta_F above delta*_r"))
    names = (f"{title}: task {r}'s s~ at every width with delta_F <= delta*_r (N < D)",
             f"{title}: task {r}'s s~ as delta_F falls below delta*_r (N < D)")
    if not len(below):
        why = "no width below D has delta_F below delta*_r"
        return out + [Check.not_measurable(names[0], "off the baseline (> 0.1) at each", why),
                      Check.not_measurable(names[1], "rises toward 1 (non-decreasing, >= 0.5 at the smallest)", why)]
    sig = below["corrected_signal"].to_numpy()
    low = [int(w) for w, v in zip(below["width"], sig) if v <= 0.1]
    out.append(Check(names[0], {int(w): round(float(v), 3) for w, v in zip(below["width"], sig)},
                     "off the baseline (> 0.1) at each" + (f"; not at N = {low}" if low else ""), not low))
    out.append(Check(names[1], [round(float(v), 3) for v in sig],
                     "rises toward 1 (non-decreasing within 0.05, >= 0.5 at the smallest)",
                     bool(np.all(np.diff(sig) >= -0.05) and sig[-1] >= 0.5)))
    return out


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    sets = mixture_settings(cfg)
    fig, axes = new_figure(len(sets), 1, height=2.4)
    checks, summary = [], {"settings": {}}
    for ax, (sid, override, labels) in zip(axes[0], sets):
        spec = cfg.spec(**override)
        F = set(spec.frequent_set.tolist())
        rare = [k + 1 for k in range(spec.K) if k not in F]
        if not rare:
            continue
        chosen = cfg.settings.rare_task if cfg.settings.rare_task is not None else min(rare, key=lambda k: (-spec.pi[k - 1], k))
        p6 = proposition6(spec, chosen)
        fin = final_by_width(results[results["cell"].str.startswith(sid + "-")])
        r = p6.task
        row = fin[fin["task"] == r].sort_values("width")
        mean_rare = fin[fin["task"].isin(rare)].groupby("width")[["corrected_signal", "residual"]].mean()
        ax.plot(mean_rare["residual"], mean_rare["corrected_signal"], "s-", color="0.6", ms=4,
                label=f"mean over rare tasks ({len(rare)})")
        ax.plot(row["residual"], row["corrected_signal"], "o-", color="C3", label=f"rare task {r}")
        for _, x in row.iterrows():
            ax.annotate(str(int(x["width"])), (x["residual"], x["corrected_signal"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.axvline(p6.delta_star, color="k", ls="--", label=f"delta*_r = {p6.delta_star:.3g} (Prop. 6)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-3, 3x10^-3, ... collide in a narrow panel
        ax.set_xlabel("frequent-set residual delta_F (final)")
        ax.set_ylabel("corrected signal s~ (final)")
        title = ", ".join(f"{k}={v:g}" for k, v in labels.items())
        ax.set_title(title)
        ax.legend()
        tol = 1e-9 * float(spec.utilities[sorted(F)].sum())  # delta_F at float rounding counts as 0
        checks += residual_checks(row[row["width"] < spec.D], p6.delta_star + tol, r, title)
        summary["settings"][sid] = {
            "rare_task": r, "delta_star": p6.delta_star, "critical_width_prop6": p6.critical_width,
            "widths": row["width"].tolist(), "residual": row["residual"].tolist(),
            "rare_corrected_signal": row["corrected_signal"].tolist(),
        }
    path = save(fig, out / "figures" / "residual.png")
    figure = Figure(path, "Final corrected signal of the rare tasks against the frequent set's residual "
                    "delta_F, one point per width (labels). Dashed: Proposition 6's threshold delta*_r for the "
                    "rare task r (default: the most frequent task outside F); its signal should be ~0 to its right and rise "
                    "toward 1 to its left, at every width there.", checks)
    intro = ("Residual control (SPEC A5.2): widths that explain the frequent tasks well enough "
             "(delta_F below delta*_r) free directions for the rare tasks.")
    return Analysis(intro, [], [figure], summary)
