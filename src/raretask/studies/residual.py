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

import pandas as pd

from ..mixture import proposition6
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ._config import StudyConfig
from ._run import Analysis, last_step
from .phase import cells, settings  # noqa: F401  (same runs as the phase diagram)


def final_by_width(res: pd.DataFrame) -> pd.DataFrame:
    last = last_step(res)
    return last.groupby(["width", "task"])[["corrected_signal", "residual"]].mean().reset_index()


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    sets = settings(cfg)
    fig, axes = new_figure(len(sets), 1, size=(5.2, 4.2))
    checks, summary = [], {"settings": {}}
    for ax, (sid, override, labels) in zip(axes[0], sets):
        spec = cfg.spec(**override)
        F = set(spec.frequent_set.tolist())
        rare = [k + 1 for k in range(spec.K) if k not in F]
        if not rare:
            continue
        chosen = cfg.rare_task if cfg.rare_task is not None else min(rare, key=lambda k: (-spec.pi[k - 1], k))
        p6 = proposition6(spec, chosen - 1)
        fin = final_by_width(results[results["cell"].str.startswith(sid + "-")])
        r = p6.task + 1
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
        ax.set_xlabel("frequent-set residual delta_F (final)")
        ax.set_ylabel("corrected signal s~ (final)")
        title = ", ".join(f"{k}={v:g}" for k, v in labels.items())
        ax.set_title(title)
        ax.legend(fontsize=7)
        tol = 1e-9 * float(spec.utilities[sorted(F)].sum())  # delta_F at float rounding counts as 0
        inner = row[row["width"] < spec.D]
        above = inner[inner["residual"] > p6.delta_star + tol]
        below = inner[inner["residual"] <= p6.delta_star + tol]
        max_above = float(above["corrected_signal"].max()) if len(above) else float("nan")
        best_below = float(below.sort_values("residual")["corrected_signal"].iloc[0]) if len(below) else float("nan")
        checks += [
            Check(f"{title}: task {r}'s largest s~ where delta_F > delta*_r", max_above, "~0 (<= 0.1)",
                  bool(len(above)) and max_above <= 0.1),
            Check(f"{title}: task {r}'s s~ at the smallest delta_F < delta*_r (N < D)", best_below,
                  "rises toward 1 (>= 0.5)", bool(len(below)) and best_below >= 0.5),
        ]
        summary["settings"][sid] = {
            "rare_task": r, "delta_star": p6.delta_star, "critical_width_prop6": p6.critical_width,
            "widths": row["width"].tolist(), "residual": row["residual"].tolist(),
            "rare_corrected_signal": row["corrected_signal"].tolist(),
        }
    path = save(fig, out / "figures" / "residual.png")
    figure = Figure(path, "Final corrected signal of the rare tasks against the frequent set's residual "
                    "delta_F, one point per width (labels). Dashed: Proposition 6's threshold delta*_r for the "
                    "rare task r (default: the most frequent task outside F); its signal should be ~0 to its right and rise toward 1 to its left.", checks)
    intro = ("Residual control (SPEC A5.2): widths that explain the frequent tasks well enough "
             "(delta_F below delta*_r) free directions for the rare tasks.")
    return Analysis(intro, [], [figure], summary)
