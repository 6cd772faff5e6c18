"""The interference stage of a scaling sweep: gradient interference read *during training*, at
and between injections, for every size of the ladder (paper Sec. 4.4, Fig. 9; SPEC B6, B7).

Every size in ``interference.presets`` trains once with ``n`` instances every ``every`` steps
(the same per-token frequency for all sizes), with the live interference monitor on
(``monitor_interference = monitor``, ``monitor_refresh = 1``: g_r and its task neurons are
recomputed at every reading, at the current weights). The monitor reads each injection step at or
after a multiple of ``monitor`` and the offsets inside the gap after it (``monitor_plan``).

The paper's three claims, fixed here before the first run, each a check:

- (i) the median injection-step cos(g_r, g_batch) rises with size: the largest size's lies above
  the smallest's (the count of ordered adjacent pairs is shown);
- (ii) between injections (offset > 0) the spread of cos(g_r, g_nontask) falls with size: its IQR
  and its median |cos| are lower in the largest size than in the smallest;
- (iii) in the ``larger`` largest sizes the median batch cosine at mid-gap (offset G // 2) lies
  below its injection-step median.

A cosine between unrelated directions in d coordinates is about 1/sqrt(d) in size (median |cos|
of a random direction: 0.674 / sqrt(d)), and d = (MLP inputs + 1) x task neurons x width grows with
size. So part of a size effect in |cos| comes from the dimension alone: every |cos| is shown beside
that baseline, and (i) and (ii) are also judged on values divided by it ("normalised"). (iii)
compares one size with itself, so the normalisation leaves it unchanged.

Layout: the runs are ``SWEEP/<preset>-<task>-interference-every<G>-n<n>`` (their monitor logs in
``interference/``); the scaling report writes ``scaling/interference.parquet`` (one row per
size) and ``figures/fig9-interference.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from ..report.html import Check
from ..runfolder import read_parts
from ..validate import Distinct, NonEmpty, PosInt, strict

RANDOM_MEDIAN_ABS = 0.6745
"""Median |cos| of a random direction against a fixed one in d coordinates is about this / sqrt(d)
(|N(0, 1/d)| has median 0.6745 / sqrt(d) for large d)."""


@strict
class InterferenceStage:
    """The ``interference`` table of a scaling sweep preset."""

    presets: Annotated[list[str], NonEmpty, Distinct]
    """Model presets (the sizes) to train with the monitor, smallest first."""
    n: PosInt
    """Instances per injection (at most the batch size)."""
    every: PosInt
    """Steps G between injections (the same n and G for every size: equal per-token frequency)."""
    monitor: PosInt = 50
    """The monitor's K: it reads the first injection at or after each multiple of K, the offsets
    in the gap after it, and every K-th step."""
    larger: PosInt = 2
    """Claim (iii) is checked in this many of the largest sizes."""


def stage_of(sw: dict) -> InterferenceStage | None:
    """A sweep's interference stage, validated (``None`` when it has none)."""
    from ..validate import build

    return build(InterferenceStage, sw["interference"], "interference") if sw.get("interference") else None


def run_name(preset: str, task: str, stage: InterferenceStage) -> str:
    return f"{preset}-{task}-interference-every{stage.every}-n{stage.n}"


def read_monitor(sweep_dir: str | Path, sw: dict) -> pd.DataFrame:
    """Every monitor reading of the stage's runs, with ``preset`` and ``non_embedding_params``
    (empty when the sweep has no stage or no run has logged yet)."""
    from ._models import non_embedding_params

    stage = stage_of(sw)
    if stage is None:
        return pd.DataFrame()
    frames = []
    for p in stage.presets:
        log = read_parts(Path(sweep_dir) / run_name(p, sw["task"], stage) / "interference")
        if log is not None and len(log):
            frames.append(log.assign(preset=p, non_embedding_params=non_embedding_params(p)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _iqr(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.quantile(0.75) - x.quantile(0.25)) if len(x) else float("nan")


def _median(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.median()) if len(x) else float("nan")


def interference_table(log: pd.DataFrame) -> pd.DataFrame:
    """One row per size (smallest first): readings, the random-direction baseline, and

    - ``inj_cos_batch`` (median), ``inj_cos_batch_iqr``: cos(g_r, g_batch) at injection steps;
    - ``mid_cos_batch``: its median at mid-gap (offset == period // 2, offset > 0);
    - ``gap_cos_nontask_iqr``, ``gap_abs_cos_nontask``: IQR and median |.| of cos(g_r, g_nontask)
      between injections (offset > 0);
    - ``inj_abs_cos_nontask``: median |cos(g_r, g_nontask)| at injection steps;
    - ``*_norm``: the same divided by the baseline 0.6745 / sqrt(dim)."""
    cols = ["preset", "non_embedding_params", "dim", "baseline", "readings", "injections", "inj_cos_batch",
            "inj_cos_batch_iqr", "mid_cos_batch", "gap_cos_nontask_iqr", "gap_abs_cos_nontask", "inj_abs_cos_nontask"]
    if log.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (preset, P), g in log.groupby(["preset", "non_embedding_params"], sort=False):
        inj = g["injection"].fillna(False).astype(bool)
        off = g["offset"].astype("Float64")
        gap = g[(off > 0).fillna(False).to_numpy(bool)]
        mid = gap[(gap["offset"].astype(int) == gap["period"].astype(int) // 2).to_numpy(bool)]
        dim = float(g["dim"].dropna().median()) if "dim" in g and g["dim"].notna().any() else float("nan")
        rows.append({"preset": preset, "non_embedding_params": int(P), "dim": dim,
                     "baseline": RANDOM_MEDIAN_ABS / np.sqrt(dim) if dim > 0 else float("nan"),
                     "readings": len(g), "injections": int(inj.sum()),
                     "inj_cos_batch": _median(g.loc[inj, "cos_batch"]), "inj_cos_batch_iqr": _iqr(g.loc[inj, "cos_batch"]),
                     "mid_cos_batch": _median(mid["cos_batch"]),
                     "gap_cos_nontask_iqr": _iqr(gap["cos_nontask"]),
                     "gap_abs_cos_nontask": _median(gap["cos_nontask"].abs()),
                     "inj_abs_cos_nontask": _median(g.loc[inj, "cos_nontask"].abs())})
    t = pd.DataFrame(rows, columns=cols).sort_values("non_embedding_params").reset_index(drop=True)
    for c in ("inj_cos_batch", "inj_cos_batch_iqr", "gap_cos_nontask_iqr", "gap_abs_cos_nontask",
              "inj_abs_cos_nontask"):
        t[f"{c}_norm"] = t[c] / t["baseline"]
    return t


def _ends(t: pd.DataFrame, col: str) -> tuple[float, float, int, int] | None:
    """(smallest size's value, largest's, ordered adjacent pairs, pairs) of ``col`` rising with
    size, or None when fewer than two sizes have it."""
    v = t[col].to_numpy(float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or not np.isfinite(t[col].to_numpy(float)).all():
        return None
    return float(v[0]), float(v[-1]), int((np.diff(v) > 0).sum()), len(v) - 1


def check_injection_rises(t: pd.DataFrame, normalised: bool = False) -> Check:
    """(i) The median injection-step cos(g_r, g_batch) is higher in the largest size than in
    the smallest (``normalised``: each divided by its random-direction baseline)."""
    col = "inj_cos_batch" + ("_norm" if normalised else "")
    name = ("(i) median injection-step cos(g_r, g_batch) higher in the largest size than in the smallest"
            + (", divided by the random baseline" if normalised else ""))
    e = _ends(t, col) if len(t) else None
    if e is None:
        return Check.not_measurable(name, "largest > smallest", "needs two sizes with injection readings"
                                    + (" and a baseline" if normalised else ""))
    lo, hi, up, pairs = e
    return Check(name, f"{lo:.4g} -> {hi:.4g} ({up}/{pairs} adjacent pairs rise)", "largest > smallest", hi > lo)


def check_gap_spread_falls(t: pd.DataFrame, normalised: bool = False) -> list[Check]:
    """(ii) Between injections, the IQR and the median |.| of cos(g_r, g_nontask) are lower in
    the largest size than in the smallest."""
    out = []
    for col, what in (("gap_cos_nontask_iqr", "IQR of cos(g_r, g_nontask)"),
                      ("gap_abs_cos_nontask", "median |cos(g_r, g_nontask)|")):
        c = col + ("_norm" if normalised else "")
        name = (f"(ii) between injections, {what} lower in the largest size than in the smallest"
                + (", divided by the random baseline" if normalised else ""))
        e = _ends(t, c) if len(t) else None
        if e is None:
            out.append(Check.not_measurable(name, "largest < smallest", "needs two sizes with readings between "
                                            "injections" + (" and a baseline" if normalised else "")))
            continue
        lo, hi, up, pairs = e
        out.append(Check(name, f"{lo:.4g} -> {hi:.4g} ({pairs - up}/{pairs} adjacent pairs fall)",
                         "largest < smallest", hi < lo))
    return out


def check_mid_gap_below(t: pd.DataFrame, larger: int) -> Check:
    """(iii) In each of the ``larger`` largest sizes, the median batch cosine at mid-gap lies
    below its injection-step median."""
    name = f"(iii) in the {larger} largest sizes, median cos(g_r, g_batch) at mid-gap below its injection-step value"
    top = t.tail(larger)
    ok = top[np.isfinite(top["mid_cos_batch"].to_numpy(float)) & np.isfinite(top["inj_cos_batch"].to_numpy(float))]
    if len(t) < larger or len(ok) < len(top):
        return Check.not_measurable(name, "mid-gap < injection in each", f"needs mid-gap and injection readings in "
                                    f"{larger} sizes")
    below = ok["mid_cos_batch"] < ok["inj_cos_batch"]
    measured = "; ".join(f"{r.preset}: {r.mid_cos_batch:.4g} vs {r.inj_cos_batch:.4g}" for r in ok.itertuples())
    return Check(name, measured, "mid-gap < injection in each", bool(below.all()))


def interference_checks(t: pd.DataFrame, larger: int) -> list[Check]:
    """The stage's checks: (i) and (ii) raw and normalised, then (iii)."""
    return [check_injection_rises(t), check_injection_rises(t, True), *check_gap_spread_falls(t),
            *check_gap_spread_falls(t, True), check_mid_gap_below(t, larger)]


def surviving(checks: list[Check]) -> str:
    """Which claims hold raw and which survive the normalisation, in words derived from the
    verdicts of ``interference_checks``."""
    def held(cs):
        return "n/a" if any(c.na for c in cs) else ("yes" if all(c.ok for c in cs) else "no")

    raw_i, norm_i = held(checks[0:1]), held(checks[1:2])
    raw_ii, norm_ii = held(checks[2:4]), held(checks[4:6])
    return (f"claim (i) holds raw: {raw_i}, after dividing by the random baseline: {norm_i}; claim (ii) holds raw: "
            f"{raw_ii}, normalised: {norm_ii}; claim (iii): {checks[6].verdict} (one size against itself: the "
            "normalisation leaves it unchanged).")


def fig9(log: pd.DataFrame, t: pd.DataFrame, path: Path) -> Path:
    """Paper Fig. 9 analog, one column per size (smallest left): top, cos(g_r, g_batch) and
    cos(g_r, g_nontask) at each reading against the training step, injection readings marked;
    bottom, their median and IQR against the offset in the gap, with +-baseline dotted."""
    from ..report.plots import legend_below, new_figure, save

    sizes = list(t["preset"])
    fig, axes = new_figure(max(len(sizes), 1), 2, height=2.0)
    for j, p in enumerate(sizes):
        g = log[log["preset"] == p].sort_values("step")
        inj = g["injection"].fillna(False).astype(bool).to_numpy()
        base = float(t.loc[t["preset"] == p, "baseline"].iloc[0])
        top, bot = axes[0, j], axes[1, j]
        top.plot(g["step"], g["cos_nontask"], ".", ms=3, color="C0", label="cos(g_r, g_nontask)")
        top.plot(g["step"][inj], g["cos_batch"][inj], "v", ms=4, color="C1", label="cos(g_r, g_batch), injection")
        top.plot(g["step"][~inj], g["cos_batch"][~inj], ".", ms=3, color="0.45", label="cos(g_r, g_batch), in the gap")
        top.set(title=f"{p} ({int(t.loc[t['preset'] == p, 'non_embedding_params'].iloc[0]):,} params)",
                xlabel="training step")
        read = g[g["offset"].notna()]
        for col, color in (("cos_batch", "C1"), ("cos_nontask", "C0")):
            q = read.groupby(read["offset"].astype(int))[col].quantile([0.25, 0.5, 0.75]).unstack()
            if q.empty:
                continue
            bot.plot(q.index, q[0.5], "o-", ms=3, color=color, label=f"{col.replace('cos_', 'cos(g_r, g_')}): median")
            bot.fill_between(q.index, q[0.25], q[0.75], color=color, alpha=0.2, lw=0)
        bot.set(xlabel="steps since the injection (0: injection)")
        if np.isfinite(base):
            for ax in (top, bot):
                ax.axhline(base, color="k", ls=":", lw=0.8)
                ax.axhline(-base, color="k", ls=":", lw=0.8)
        for ax in (top, bot):
            ax.axhline(0, color="k", lw=0.5)
            ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_ylabel("cosine with g_r")
    axes[1, 0].set_ylabel("cosine with g_r (median, IQR)")
    if sizes:  # one legend for every panel, below them (the bottom row's medians share the colours)
        h, lab = axes[0, 0].get_legend_handles_labels()
        h2, lab2 = axes[1, 0].get_legend_handles_labels()
        axes[0, 0].plot([], [], " ", label=" ")  # keeps the two groups in their own columns
        for hh, ll in zip(h2, lab2):
            axes[0, 0].plot([], [], "o-", ms=3, color=hh.get_color(), label=ll + ", IQR band")
        legend_below(fig, axes[0, 0], ncol=2)
    return save(fig, path)
