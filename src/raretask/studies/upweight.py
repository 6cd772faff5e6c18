"""Up-weighting check (SPEC Part C): does the planner's minimal frequency hold in training?

For each width N the planner gives p*(N), the smallest frequency of the target task at which
a width-N minimiser retains its first m features (Theorem 3). The task is trained at
multiples of p*(N) (others scaled down in proportion): below 1 it should stay unlearned,
above 1 it should be learned.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

import pandas as pd

from ..errors import ConfigError
from ..mixture import min_frequency, reweighted
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ..sim import RecordSchedule
from ..validate import Distinct, NonEmpty, PosFloat, PosInt, strict
from ._config import StudyConfig, check_features, check_task
from ._run import Analysis, Cell, last_step


@strict
class Settings:
    """The up-weighting study's own settings (SPEC C)."""

    multipliers: Annotated[list[PosFloat], NonEmpty, Distinct] = field(default_factory=lambda: [0.5, 1.5])
    """Multiples of the planner's minimal frequency p*(N) to train the target task at."""
    features: PosInt = 1
    """How many of the target task's features the plan is for (at most the block dimension d)."""
    rare_task: PosInt | None = None
    """1-based target task; None: the rarest (lowest prior, highest index)."""

    def check(self, cfg: StudyConfig) -> None:
        check_features(cfg, self.features)
        check_task(cfg, "rare_task", self.rare_task)


def target_index(cfg: StudyConfig) -> int:
    spec = cfg.spec()
    return (cfg.settings.rare_task - 1) if cfg.settings.rare_task is not None else min(range(spec.K), key=lambda k: (spec.pi[k], -k))


def planned(cfg: StudyConfig, width: int) -> float:
    p = min_frequency(cfg.spec(), target_index(cfg) + 1, width, cfg.settings.features)
    if p is None or p == 0.0:
        raise ConfigError("widths", f"width {width}: the plan needs no up-weighting or none suffices",
                          "widths where the target task needs up-weighting")
    return p


def cells(cfg: StudyConfig) -> list[Cell]:
    spec, k = cfg.spec(), target_index(cfg)
    out = []
    for N in cfg.widths:
        p = planned(cfg, N)
        for m in cfg.settings.multipliers:
            if not 0 < m * p < 1:
                raise ConfigError("multipliers", f"{m} x {p:.3g} is not a frequency", "m * p* in (0, 1)")
            s2 = reweighted(spec, k + 1, m * p)
            for seed in cfg.seeds:
                out.append(Cell(id=f"N{N}-x{m:g}-seed{seed}", labels={"multiplier": float(m), "planned": p,
                                                                      "seed": seed},
                                spec=s2, train=cfg.train_config(seed), widths=[N],
                                record=RecordSchedule("log", cfg.record_points)))
    return out


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    k = target_index(cfg) + 1
    last = last_step(results)
    last = last[last["task"] == k]
    fin = last.groupby(["width", "multiplier"])[["n_features", "corrected_signal"]].mean().reset_index()
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    checks = []
    for i, N in enumerate(sorted(cfg.widths)):
        r = fin[fin["width"] == N].sort_values("multiplier")
        ax.plot(r["multiplier"], r["corrected_signal"], "o-", color=f"C{i}", label=f"N = {N} (p* = {planned(cfg, N):.3g})")
        for _, row in r.iterrows():
            m = row["multiplier"]
            want = m > 1
            got = bool(row["n_features"] >= cfg.settings.features)
            checks.append(Check(f"N={N}, frequency {m:g} x p*: task {k} learned ({cfg.settings.features} feature(s))",
                                f"{row['n_features']:.1f} features, s~ = {row['corrected_signal']:.3f}",
                                "learned" if want else "not learned", got == want))
    ax.axvline(1.0, color="k", ls="--", label="planned minimal frequency")
    ax.set_xscale("log")
    ax.set_xlabel("target frequency / planned minimum p*(N)")
    ax.set_ylabel(f"final corrected signal of task {k}")
    ax.legend()
    path = save(fig, out / "figures" / "upweight.png")
    f = Figure(path, f"Task {k} trained at multiples of the planner's minimal frequency p*(N) (others scaled down "
                     "in proportion). Theory (Theorem 3): learned above 1, not below.", checks)
    summary = {"target_task": k, "planned": {str(N): planned(cfg, N) for N in cfg.widths},
               "final": fin.to_dict(orient="records")}
    return Analysis("Up-weighting check (SPEC Part C): the planner's minimal frequency, tested by training.",
                    [], [f], summary)
