"""Matched-frequency retention (SPEC A5.3, paper Fig. 4, App. E.3).

The rare task is left out of ordinary batches and injected every G steps as a batch of
round(G * pi_r * B) samples, so its long-run frequency is the same for every gap. A width
that keeps what it saw accumulates signal across injections; a narrow one is pulled back by
the frequent tasks' gradients between injections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ..sim import RecordSchedule, RetentionSampler
from ._config import StudyConfig
from ._run import Analysis, Cell


def rare_task(cfg: StudyConfig) -> int:
    """0-based rare task: the configured one, else the rarest (lowest prior, highest index)."""
    spec = cfg.spec()
    if cfg.rare_task is not None:
        return cfg.rare_task - 1
    return min(range(spec.K), key=lambda k: (spec.pi[k], -k))


def cells(cfg: StudyConfig) -> list[Cell]:
    spec = cfg.spec()
    r = rare_task(cfg)
    out = []
    for gap in cfg.gaps:
        for seed in cfg.seeds:
            train = cfg.train_config(seed)
            # remedies as options: replay needs gaps of at least two steps
            replay = cfg.replay_every if cfg.replay_every and cfg.replay_every < gap else 0
            sampler = RetentionSampler(spec.pi, train.batch_size, seed=seed, rare=r, gap=gap, replay_every=replay)
            out.append(Cell(id=f"gap{gap}-seed{seed}", labels={"gap": gap, "seed": seed}, spec=spec, train=train,
                            widths=list(cfg.widths), sampler=sampler, trace_tasks=[r],
                            trace_every=cfg.trace_every, record=RecordSchedule("log", cfg.record_points),
                            conflict_removal=r if cfg.conflict_removal else None))
    return out


def final_signal(trace: pd.DataFrame, steps: int, window: int) -> pd.DataFrame:
    """Mean traced s~_r over the last ``window`` steps (a whole number of injection cycles
    for every gap), per (gap, width), averaged over seeds."""
    tail = trace[trace["step"] > steps - window]
    return tail.groupby(["gap", "width"])["corrected_signal"].mean().unstack("width")


def injection_cycles(tr: pd.DataFrame, gap: int) -> pd.DataFrame:
    """Per injection of one width's trace: the jump the injection caused and how much of the
    signal was kept until just before the next injection.

    The update of the injection batch drawn at step t (0-based, (t+1) % G == 0) is the trace
    value at step t+1. Returns columns: step, jump, kept (fraction of the jump still present
    before the next injection; 1 = fully retained, 0 = fully decayed)."""
    s = tr.set_index("step")["corrected_signal"].sort_index()
    inj = np.arange(gap, int(s.index.max()) - gap + 1, gap)
    after = s.reindex(inj).to_numpy()
    before = s.reindex(inj - 1).to_numpy()
    before_next = s.reindex(inj + gap - 1).to_numpy()
    jump = after - before
    kept = (before_next - before) / np.where(np.abs(jump) > 1e-12, jump, np.nan)
    return pd.DataFrame({"step": inj, "jump": jump, "kept": kept})


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace: pd.DataFrame, out: Path) -> Analysis:
    spec = cfg.spec()
    steps = cfg.train_config(0).steps
    r = rare_task(cfg)
    window = max(max(cfg.gaps), steps // 10)
    window = (window // max(cfg.gaps)) * max(cfg.gaps) or max(cfg.gaps)
    fin = final_signal(trace, steps, window)
    widths = sorted(cfg.widths)
    gaps = sorted(cfg.gaps)
    small, large = widths[0], widths[-1]

    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for i, w in enumerate(widths):
        ax.plot(gaps, fin.loc[gaps, w], "o-", color=f"C{i}", label=f"N = {w}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("gap G between injections (steps)")
    ax.set_ylabel(f"final corrected signal of task {r + 1}")
    ax.set_title(f"matched-frequency retention (pi_r = {spec.pi[r]:.3g}, B = {cfg.train_config(0).batch_size})")
    ax.legend()
    p1 = save(fig, out / "figures" / "retention-vs-gap.png")

    tol = 0.05
    checks1 = []
    for w in widths:
        v = fin.loc[gaps, w].to_numpy()
        mono = bool(np.all(np.diff(v) <= tol))
        checks1.append(Check(f"N={w}: final s~_r non-increasing in G (tolerance {tol})",
                             [round(float(x), 3) for x in v], "decreasing with G", mono))
    def g_half(w: int) -> float:
        v = fin.loc[gaps, w].to_numpy()
        half = 0.5 * v[0]
        below = np.nonzero(v <= half)[0]
        if v[0] <= 0.1:
            return float(gaps[0])  # never learned, even at the smallest gap
        if not len(below):
            return float("inf")
        i = below[0]
        lg = np.log2(gaps)  # interpolate on log2(G) between the bracketing gaps
        return float(2 ** np.interp(half, [v[i], v[i - 1]], [lg[i], lg[i - 1]]))

    gh = {w: g_half(w) for w in widths}
    checks1.append(Check(f"gap at which s~_r falls to half its G={gaps[0]} value: N={small} vs N={large}",
                         f"{gh[small]:.3g} vs {gh[large]:.3g}", f"far smaller at N={small} (>= 4x)",
                         bool(gh[large] >= 4 * gh[small])))
    # per-step dynamics at the largest gap the wide model still learns across
    learned = [g for g in gaps if fin.loc[g, large] > 0.5]
    g_show = max(learned) if learned else gaps[0]
    fig, axes = new_figure(1, 3, size=(10.0, 2.9))
    kept, rise, traces = {}, {}, {}
    for i, w in enumerate((small, large)):
        tr = trace[(trace["gap"] == g_show) & (trace["width"] == w) & (trace["seed"] == cfg.seeds[0])]
        traces[w] = tr
        axes[0, 0].plot(tr["step"], tr["corrected_signal"], "-", color=f"C{i}", lw=0.8, label=f"N = {w}")
        cyc = injection_cycles(tr, g_show)
        s = tr.set_index("step")["corrected_signal"]
        # while the signal is still rising: at the plateau gain and decay balance by definition
        start, end = float(s.iloc[: max(1, g_show)].mean()), float(s.iloc[-window:].mean())
        reached = s.index[(s - start) >= 0.8 * (end - start)] if end > start else s.index[:0]
        rising = cyc["step"] < (reached[0] if len(reached) else s.index.max())
        good = cyc[rising & (cyc["jump"] > 1e-3)]  # injections that moved the signal at all
        kept[w] = float(np.nanmedian(good["kept"])) if len(good) else 0.0
        rise[w] = float(s.iloc[-window:].mean() - s.iloc[: max(1, g_show)].mean())
    # zoom on the six cycles where the wide model's signal rises fastest, same window for both
    s = traces[large].set_index("step")["corrected_signal"]
    roll = s.rolling(6 * g_show, min_periods=1).mean().diff(6 * g_show)
    centre = int(roll.idxmax()) if roll.notna().any() else int(s.index[len(s) // 2])
    lo = max(1, centre - 3 * g_show)
    for i, w in enumerate((small, large)):
        tr = traces[w]
        seg = tr[(tr["step"] >= lo) & (tr["step"] <= lo + 6 * g_show)]
        ax = axes[1 + i, 0]
        ax.plot(seg["step"], seg["corrected_signal"], "-", color=f"C{i}", lw=1)
        for k in range(lo // g_show, (lo + 6 * g_show) // g_show + 1):
            ax.axvline(k * g_show, color="0.75", lw=0.6, zorder=0)
        ax.set_ylabel("s~_r")
        ax.set_title(f"N = {w}: six injection cycles (grey lines) where the N = {large} signal rises fastest",
                     fontsize=9)
    axes[0, 0].set_ylabel("s~_r")
    axes[0, 0].set_title(f"G = {g_show}: per-step rare-task signal over the run", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    p2 = save(fig, out / "figures" / "retention-dynamics.png")
    checks2 = [
        Check(f"N={small}, G={g_show}: median share of an injection's gain kept until the next, while rising "
              "(gains > 1e-3; none: 0)",
              kept[small], "< 0.5 (decays between injections)", bool(kept[small] < 0.5)),
        Check(f"N={large}, G={g_show}: median share of an injection's gain kept until the next, while rising "
              "(gains > 1e-3; none: 0)",
              kept[large], ">= 0.5 (retains)", bool(kept[large] >= 0.5)),
        Check(f"N={large}, G={g_show}: rise of s~_r from the first cycle to the end",
              rise[large], "> 0.3 (accumulates across injections)", bool(rise[large] > 0.3)),
    ]
    f1 = Figure(p1, f"Final corrected signal of the rare task (mean over the last {window} steps, a whole number of "
                    "injection cycles) against the gap G, per width. The task's long-run frequency is the same for "
                    "every G.", checks1)
    f2 = Figure(p2, f"Per-step corrected signal of the rare task at G = {g_show} (the largest gap the wide model still "
                    "learns at): over the whole run (top) and zoomed on six injection cycles per width. The narrow model "
                    "decays back between injections, the wide one keeps each gain and builds on it.", checks2)
    summary = {"rare_task": r + 1, "prior": float(spec.pi[r]), "window": window, "gap_shown": g_show,
               "gap_half_signal": {str(w): gh[w] for w in widths}, "kept_share": {str(w): kept[w] for w in kept},
               "final_signal": {str(w): {str(g): float(fin.loc[g, w]) for g in gaps} for w in widths},
               "injection_size": {str(g): int(round(g * spec.pi[r] * cfg.train_config(0).batch_size)) for g in gaps}}
    intro = ("Matched-frequency retention (SPEC A5.3): the rare task appears only in injection batches every G "
             "steps, enlarged so that its long-run frequency is unchanged.")
    return Analysis(intro, [], [f1, f2], summary)
