"""Matched-frequency retention (SPEC A5.3, paper Fig. 4, App. E.3).

The rare task is left out of ordinary batches and injected every G steps, injection j
carrying floor((j+1) G q) - floor(j G q) samples with q = pi_r B / (1 - pi_r), so its share of
all samples is pi_r at every gap (``RetentionSampler``); the realised share / pi_r is
recorded per gap, and a gap that cannot be matched within 1% over the run is refused. A width
that keeps what it saw accumulates signal across injections; a narrow one is pulled back by
the frequent tasks' gradients between injections.

Retention of one injection (its "kept share"): (s~_r just before the next injection - s~_r
just before this one) / (peak of s~_r within the cycle - s~_r just before this one), at most
1. A width whose s~_r never rises more than the noise floor above its start is "not learned:
retention not measurable", and every check that needs its retention answers n/a; the noise
floor is three standard deviations of s~_r for a uniformly random N-dimensional row space
(the random-init spread that s~ = 0 centres). Otherwise only the cycles of the rising phase
whose gain stands out of the trace's own step noise count, and fewer than ``MIN_CYCLES`` of
them is "not measurable" too.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, NamedTuple

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..mixture import MixtureSpec
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ..sim import RecordSchedule, RetentionSampler
from ..validate import Distinct, NonEmpty, NonNegInt, PosInt, strict
from ._config import StudyConfig, check_task
from ._run import Analysis, Cell

MATCH_TOLERANCE = 0.01
"""Largest |realised rare frequency / pi_r - 1| a run may have (SPEC A5.3)."""
MIN_CYCLES = 3
"""Fewest injection cycles with a gain above the noise floor for a measured retention."""


@strict
class Settings:
    """The retention study's own settings (SPEC A5.3)."""

    gaps: Annotated[list[PosInt], NonEmpty, Distinct] = field(default_factory=lambda: [1, 4, 16, 64, 256, 1024])
    """Steps G between the rare task's injections; every gap keeps its long-run frequency pi_r."""
    rare_task: PosInt | None = None
    """1-based rare task; None: the rarest (lowest prior, highest index)."""
    trace_every: PosInt = 1
    """Keep the rare task's corrected signal every this many steps."""
    replay_every: NonNegInt = 0
    """Replay the latest injection's rare samples every this many steps between injections (no
    new rare data; gaps of at least two steps); 0: off."""
    conflict_removal: bool = False
    """Project the other tasks' encoder gradient off the rare task's latest gradient when they
    conflict (PCGrad-style remedy)."""

    def check(self, cfg: StudyConfig) -> None:
        check_task(cfg, "rare_task", self.rare_task)


def rare_index(cfg: StudyConfig) -> int:
    """0-based rare task: the configured one, else the rarest (lowest prior, highest index)."""
    spec = cfg.spec()
    if cfg.settings.rare_task is not None:
        return cfg.settings.rare_task - 1
    return min(range(spec.K), key=lambda k: (spec.pi[k], -k))


def cells(cfg: StudyConfig) -> list[Cell]:
    spec = cfg.spec()
    r = rare_index(cfg)
    out = []
    for gap in cfg.settings.gaps:
        for seed in cfg.seeds:
            train = cfg.train_config(seed)
            # remedies as options: replay needs gaps of at least two steps
            every = cfg.settings.replay_every
            replay = every if every and every < gap else 0
            sampler = RetentionSampler(spec.pi, train.batch_size, seed=seed, rare_task=r + 1, gap=gap, replay_every=replay)
            ratio = matched_frequency(sampler, train.steps)
            out.append(Cell(id=f"gap{gap}-seed{seed}", labels={"gap": gap, "seed": seed, "rare_frequency_ratio": ratio},
                            spec=spec, train=train,
                            widths=list(cfg.widths), sampler=sampler, trace_tasks=[r + 1],
                            trace_every=cfg.settings.trace_every, record=RecordSchedule("log", cfg.record_points),
                            conflict_removal=r + 1 if cfg.settings.conflict_removal else None))
    return out


def matched_frequency(sampler: RetentionSampler, steps: int, field: str = "gaps") -> float:
    """The realised rare-task frequency / pi_r over ``steps``; refuses a schedule that misses
    pi_r by more than ``MATCH_TOLERANCE`` (steps that end long after the last injection)."""
    ratio = sampler.frequency_ratio(steps)
    if abs(ratio - 1.0) > MATCH_TOLERANCE:
        J, G = steps // sampler.gap, sampler.gap
        raise ConfigError(field, f"G={G} over {steps} steps gives the rare task {ratio:.3f} x its prior pi_r "
                                 f"({J} injections cover {J * G} of the {steps} steps)",
                          f"gaps whose injections match pi_r within {MATCH_TOLERANCE:.0%}: steps a multiple of "
                          "every gap, or gaps much smaller than steps")
    return ratio


def noise_floor(spec: MixtureSpec, task: int, width: int) -> float:
    """Three standard deviations of s~ of 0-based ``task`` for a uniformly random rank-N
    projector P in R^D: Var(P_ii) = v = 2N(D-N) / (D^2 (D+2)), Cov(P_ii, P_jj) = -v/(D-1), so
    Var(s) = v (sum w^2 - (1 - sum w^2) / (D - 1)) with weights w = lambda / sum lambda."""
    D, N = spec.D, int(width)
    if N >= D:
        return 0.0
    lam = spec.spectra[task]
    w2 = float(np.sum((lam / lam.sum()) ** 2))
    v = 2.0 * N * (D - N) / (D * D * (D + 2.0))
    var = v * (w2 - (1.0 - w2) / (D - 1))
    return float(3.0 * np.sqrt(max(var, 0.0)) / (1.0 - N / D))


def final_signal(trace: pd.DataFrame, steps: int, window: int) -> pd.DataFrame:
    """Mean traced s~_r over the last ``window`` steps (a whole number of injection cycles
    for every gap), per (gap, width), averaged over seeds."""
    tail = trace[trace["step"] > steps - window]
    return tail.groupby(["gap", "width"])["corrected_signal"].mean().unstack("width")


def injection_cycles(tr: pd.DataFrame, gap: int) -> pd.DataFrame:
    """Per injection cycle of one width's trace (one seed): gain and retained share.

    The update of the injection batch drawn at step t (0-based, (t+1) % G == 0) is the trace
    value at step t+1 =: i, so a cycle runs over trace steps i .. i+G-1 and "just before" it
    is step i-1. Returns columns: step (i), before, peak (max over the cycle), before_next
    (step i+G-1), gain (peak - before) and kept ((before_next - before) / gain, <= 1 when
    gain > 0; NaN when gain <= 0). Cycles missing from the trace are left out."""
    s = tr.set_index("step")["corrected_signal"].sort_index()
    inj = np.arange(gap, int(s.index.max()) - gap + 2, gap)
    full = s.reindex(np.arange(0, int(s.index.max()) + 1)).to_numpy()
    if not len(inj):
        return pd.DataFrame(columns=["step", "before", "peak", "before_next", "gain", "kept"])
    win = full[inj[:, None] + np.arange(gap)[None, :]]  # (cycles, G)
    before = full[inj - 1]
    peak = win.max(axis=1)
    before_next = win[:, -1]
    gain = peak - before
    kept = np.where(gain > 0, (before_next - before) / np.where(gain > 0, gain, 1.0), np.nan)
    df = pd.DataFrame({"step": inj, "before": before, "peak": peak, "before_next": before_next,
                       "gain": gain, "kept": kept})
    return df[np.isfinite(df[["before", "peak", "before_next"]]).all(axis=1)].reset_index(drop=True)


def rising_cycles(tr: pd.DataFrame, gap: int, window: int, floor: float = 0.0) -> pd.DataFrame:
    """The injection cycles of one trace while its signal is still rising: before the level
    just before an injection first reaches 80% of its rise from the first cycle to the cycles
    of the final ``window`` steps. Every cycle when that rise is not above ``floor``. At the
    plateau gain and decay balance by definition, so every width keeps ~0 there; retention is
    a property of the rising phase. (Levels before injections, not the raw trace, so that the
    sawtooth of the cycles themselves is not mistaken for a rise.)"""
    cyc = injection_cycles(tr, gap)
    if not len(cyc):
        return cyc
    start = float(cyc["before"].iloc[0])
    end = float(cyc.loc[cyc["step"] > cyc["step"].max() - window, "before"].mean())
    if end - start <= floor:
        return cyc
    reached = cyc["step"][(cyc["before"] - start) >= 0.8 * (end - start)]
    return cyc[cyc["step"] < reached.iloc[0]]


def step_noise(tr: pd.DataFrame, gap: int) -> float:
    """Robust sd (1.4826 x MAD) of the one-step changes of s~ at updates without rare
    samples: the batch-to-batch fluctuation an injection's gain must stand out from."""
    s = tr.set_index("step")["corrected_signal"].sort_index()
    d = np.diff(s.to_numpy())
    d = d[(np.asarray(s.index[1:]) % gap != 0) & (np.diff(np.asarray(s.index)) == 1)]
    d = d[np.isfinite(d)]
    return float(1.4826 * np.median(np.abs(d - np.median(d)))) if len(d) else 0.0


def kept_share(traces: list[pd.DataFrame], gap: int, window: int, floor: float) -> dict:
    """Distribution of the kept share of ``traces`` (one per seed) at gap ``gap``.

    A trace whose s~_r never rises more than ``floor`` (the random-init spread) above its
    start never learned anything and contributes no cycle. Otherwise its rising-phase cycles
    count when their gain exceeds 3 x step noise x sqrt(G) (the spread of a G-step random walk
    of the trace's own fluctuations). ``measurable`` is False below ``MIN_CYCLES`` counted
    cycles (then there are no quantiles, and ``why`` says why)."""
    if gap < 2:
        return {"gap": gap, "traces_moved": 0, "above_noise": 0, "measurable": False,
                "why": "G = 1: no steps between injections"}
    cycles, moved = [], 0
    for t in traces:
        x = t.sort_values("step")["corrected_signal"].to_numpy()
        if not len(x) or float(np.nanmax(x) - x[0]) <= floor:
            continue
        moved += 1
        cyc = rising_cycles(t, gap, window, floor)
        cycles.append(cyc[cyc["gain"] > 3.0 * step_noise(t, gap) * np.sqrt(gap)])
    good = pd.concat(cycles, ignore_index=True) if cycles else pd.DataFrame({"kept": []})
    out = {"gap": gap, "traces_moved": moved, "above_noise": int(len(good)),
           "measurable": bool(len(good) >= MIN_CYCLES)}
    if out["measurable"]:
        q = np.quantile(good["kept"].to_numpy(), [0.0, 0.25, 0.5, 0.75, 1.0])
        out.update({"min": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
                    "max": float(q[4]), "values": good["kept"].to_numpy()})
    elif not moved:
        out["why"] = (f"not learned: s~_r never rose more than the noise floor {floor:.3g} above its start, "
                      "retention not measurable")
    else:
        out["why"] = (f"only {len(good)} injection cycles with a gain above the step noise while rising, "
                      "retention not measurable")
    return out


def _g_half(v: np.ndarray, gaps: list[int]) -> float:
    """Gap at which the final signal first falls to half its smallest-gap value (log2
    interpolation between the bracketing gaps); inf when it never does."""
    half = 0.5 * v[0]
    below = np.nonzero(v <= half)[0]
    if not len(below):
        return float("inf")
    i = below[0]
    lg = np.log2(gaps)
    return float(2 ** np.interp(half, [v[i], v[i - 1]], [lg[i], lg[i - 1]]))


def retention_checks(fin: pd.DataFrame, ratio: dict, floor: dict, kept: dict, rise: float, g_show: int,
                     small: int, large: int) -> tuple[list[Check], list[Check], dict]:
    """The study's checks from its measurements (pure, so each can be fed a violating result).

    fin: final s~_r, index gaps, columns widths; ratio: gap -> realised frequency / pi_r;
    floor: width -> noise floor; kept: width -> ``kept_share`` dict at ``g_show``; rise: the
    wide model's rise of s~_r at ``g_show``. Returns (gap-curve checks, dynamics checks,
    half-signal gaps)."""
    gaps, widths = list(fin.index), list(fin.columns)
    tol = 0.05
    learned = {w: bool(np.any(fin[w].to_numpy() > floor[w])) for w in widths}
    r = [float(ratio[g]) for g in gaps]
    checks1 = [Check("realised rare-task frequency / pi_r at every gap", [round(x, 4) for x in r],
                     f"within [{1 - MATCH_TOLERANCE:g}, {1 + MATCH_TOLERANCE:g}]",
                     bool(all(abs(x - 1) <= MATCH_TOLERANCE for x in r)))]
    for w in widths:
        v = fin[w].to_numpy()
        name = f"N={w}: final s~_r non-increasing in G (tolerance {tol})"
        if not learned[w]:
            checks1.append(Check.not_measurable(name, "decreasing with G",
                                                f"not learned at any gap (final s~_r <= noise floor {floor[w]:.3g})"))
        else:
            checks1.append(Check(name, [round(float(x), 3) for x in v], "decreasing with G",
                                 bool(np.all(np.diff(v) <= tol))))
    gh = {w: (_g_half(fin[w].to_numpy(), gaps) if fin[w].iloc[0] > floor[w] else None) for w in widths}
    name = f"gap at which s~_r falls to half its G={gaps[0]} value: N={small} vs N={large}"
    if gh[small] is None or gh[large] is None:
        who = [f"N={w}" for w in (small, large) if gh[w] is None]
        checks1.append(Check.not_measurable(name, f"far smaller at N={small} (>= 4x)",
                                            f"{' and '.join(who)} not learned at G={gaps[0]}"))
    else:
        checks1.append(Check(name, f"{gh[small]:.3g} vs {gh[large]:.3g}", f"far smaller at N={small} (>= 4x)",
                             bool(gh[large] >= 4 * gh[small])))
    checks2 = []
    for w, want, ok in ((small, "< 0.5 (decays between injections)", lambda m: m < 0.5),
                        (large, ">= 0.5 (retains)", lambda m: m >= 0.5)):
        name = (f"N={w}, G={g_show}: median share of an injection's gain kept until the next, while rising "
                "(cycles with gains above noise)")
        k = kept[w]
        if not k["measurable"]:
            checks2.append(Check.not_measurable(name, want, k["why"]))
        else:
            checks2.append(Check(name, f"{k['median']:.3f} (IQR {k['q25']:.2f}-{k['q75']:.2f}, "
                                       f"{k['above_noise']} cycles)", want, bool(ok(k["median"]))))
    checks2.append(Check(f"N={large}, G={g_show}: rise of s~_r from the first cycle to the end", rise,
                         "> 0.3 (accumulates across injections)", bool(rise > 0.3)))
    return checks1, checks2, gh


class _Measured(NamedTuple):
    """What ``analyze`` computes before anything is drawn or said."""

    spec: object
    steps: int
    batch: int
    rare: int
    """0-based index of the rare task."""
    window: int
    gaps: list
    widths: list
    fin: pd.DataFrame
    """Final corrected signal, gaps x widths."""
    ratio: dict
    floor: dict
    kept_all: dict
    multi: list
    g_show: int
    shown: pd.Series
    """The wide model's per-step signal at ``g_show`` (first seed)."""
    rise: float


def _measure(cfg: StudyConfig, results: pd.DataFrame, trace: pd.DataFrame) -> _Measured:
    spec = cfg.spec()
    steps = cfg.train_config(0).steps
    r = rare_index(cfg)
    window = max(max(cfg.settings.gaps), steps // 10)
    window = (window // max(cfg.settings.gaps)) * max(cfg.settings.gaps) or max(cfg.settings.gaps)
    widths, gaps = sorted(cfg.widths), sorted(cfg.settings.gaps)
    fin = final_signal(trace, steps, window).loc[gaps, widths]
    large = widths[-1]
    ratio = results.groupby("gap")["rare_frequency_ratio"].first().to_dict()
    floor = {w: noise_floor(spec, r, w) for w in widths}
    traces = {(g, w): [t for _, t in trace[(trace["gap"] == g) & (trace["width"] == w)].groupby("seed")]
              for g in gaps for w in widths}
    kept_all = {w: {g: kept_share(traces[g, w], g, window, floor[w]) for g in gaps} for w in widths}
    # per-step dynamics at the largest gap (>= 2) the wide model still learns across
    multi = [g for g in gaps if g >= 2] or gaps
    learned_wide = [g for g in multi if fin.loc[g, large] > 0.5]
    g_show = max(learned_wide) if learned_wide else multi[0]
    s_large = trace[(trace["gap"] == g_show) & (trace["width"] == large) & (trace["seed"] == cfg.seeds[0])]
    s = s_large.set_index("step")["corrected_signal"].sort_index()
    rise = float(s.iloc[-window:].mean() - s.iloc[: max(1, g_show)].mean())
    return _Measured(spec, steps, cfg.train_config(0).batch_size, r, window, gaps, widths, fin, ratio, floor, kept_all,
                     multi, g_show, s, rise)


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace: pd.DataFrame, out: Path) -> Analysis:
    m = _measure(cfg, results, trace)
    small, large = m.widths[0], m.widths[-1]
    checks1, checks2, gh = retention_checks(m.fin, m.ratio, m.floor, {w: m.kept_all[w][m.g_show] for w in m.widths},
                                            m.rise, m.g_show, small, large)
    f1 = Figure(_vs_gap_figure(m, out), f"Final corrected signal of the rare task (mean over the last {m.window} steps, "
                "a whole number of injection cycles) against the gap G, per width; dotted: each width's noise floor (3 "
                "sd of s~ for a random row space). Under each gap: the realised rare-task frequency / pi_r, which the "
                "schedule keeps at 1.", checks1)
    f2 = Figure(_dynamics_figure(m, trace, cfg.seeds[0], out),
                f"Per-step corrected signal of the rare task at G = {m.g_show} (the largest gap the wide model still "
                "learns at): over the whole run (top) and zoomed on six injection cycles per width, where the "
                "wide model's signal rises fastest, both zooms with one y span so that neither is stretched. "
                + dynamics_caption(checks2, small, large), checks2)
    f3 = Figure(_kept_figure(m.kept_all, m.widths, m.multi, out),
                "Retained share of each injection's gain, (s~ before the next injection - s~ before this one) / "
                "(peak in the cycle - s~ before this one), over the cycles of the rising phase whose gain exceeds "
                "the trace's step noise; per gap and width (box: quartiles, whiskers: 10th-90th percentiles; the "
                "full range is in summary.json). 'n/a': fewer than "
                f"{MIN_CYCLES} such cycles, so retention is not measurable there.")
    intro = ("Matched-frequency retention (SPEC A5.3): the rare task appears only in injection batches every G "
             "steps, enlarged so that its long-run frequency is pi_r at every G (cumulative rounding of "
             "q = pi_r B / (1 - pi_r) samples per step).")
    return Analysis(intro, [], [f1, f2, f3], _summary(m, gh))


def dynamics_caption(checks2: list, small: int, large: int) -> str:
    """The dynamics figure's sentence, derived from its three checks' verdicts (narrow decays,
    wide keeps, wide accumulates), never stated ahead of them."""
    decays, keeps, builds = (c.verdict for c in checks2[:3])
    narrow = {"yes": f"The narrow model (N = {small}) decays back between injections",
              "no": f"The narrow model (N = {small}) keeps half or more of each gain here",
              "n/a": f"Whether the narrow model (N = {small}) keeps its gains is not measurable here"}[decays]
    wide = {"yes": f"the wide one (N = {large}) keeps each gain",
            "no": f"the wide one (N = {large}) keeps less than half of each gain",
            "n/a": f"whether the wide one (N = {large}) keeps its gains is not measurable"}[keeps]
    build = {"yes": " and builds on it.", "no": " and does not build up across injections.",
             "n/a": "."}[builds]
    return f"{narrow}; {wide}{build}"


def _vs_gap_figure(m: _Measured, out: Path) -> Path:
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for i, w in enumerate(m.widths):
        ax.plot(m.gaps, m.fin[w], "o-", color=f"C{i}", label=f"N = {w}")
        ax.axhline(m.floor[w], color=f"C{i}", ls=":", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(m.gaps, [f"{g}\n(f/pi_r {m.ratio[g]:.3f})" for g in m.gaps], fontsize=7)
    ax.set_xlabel("gap G (steps); under it: realised frequency / pi_r")
    ax.set_ylabel(f"final corrected signal of task {m.rare + 1}")
    ax.set_title(f"matched-frequency retention\n(pi_r = {m.spec.pi[m.rare]:.3g}, B = {m.batch})")
    ax.legend(title="dotted: noise floor")
    return save(fig, out / "figures" / "retention-vs-gap.png")


def _dynamics_figure(m: _Measured, trace: pd.DataFrame, seed: int, out: Path) -> Path:
    small, large, g_show, s = m.widths[0], m.widths[-1], m.g_show, m.shown
    fig, axes = new_figure(1, 3, height=1.7)
    for i, w in enumerate((small, large)):
        tr = trace[(trace["gap"] == g_show) & (trace["width"] == w) & (trace["seed"] == seed)]
        axes[0, 0].plot(tr["step"], tr["corrected_signal"], "-", color=f"C{i}", lw=0.8, label=f"N = {w}")
    # zoom on the six cycles where the wide model's signal rises fastest, same window for both
    roll = s.rolling(6 * g_show, min_periods=1).mean().diff(6 * g_show)
    centre = int(roll.idxmax()) if roll.notna().any() else int(s.index[len(s) // 2])
    lo = max(1, centre - 3 * g_show)
    segs = []
    for i, w in enumerate((small, large)):
        tr = trace[(trace["gap"] == g_show) & (trace["width"] == w) & (trace["seed"] == seed)]
        segs.append(tr[(tr["step"] >= lo) & (tr["step"] <= lo + 6 * g_show)])
    # one y span for both zooms (each centred on its own signal): the narrow model's noise must
    # not be stretched into cycles the wide one's scale would not show
    spans = [float(g["corrected_signal"].max() - g["corrected_signal"].min()) for g in segs if len(g)]
    half = 0.55 * max(spans + [1e-9])
    for i, (w, seg) in enumerate(zip((small, large), segs)):
        ax = axes[1 + i, 0]
        ax.plot(seg["step"], seg["corrected_signal"], "-", color=f"C{i}", lw=1)
        for k in range(lo // g_show, (lo + 6 * g_show) // g_show + 1):
            ax.axvline(k * g_show, color="0.75", lw=0.6, zorder=0)
        if len(seg):
            mid = 0.5 * float(seg["corrected_signal"].max() + seg["corrected_signal"].min())
            ax.set_ylim(mid - half, mid + half)
        ax.set_ylabel("s~_r")
        ax.set_title(f"N = {w}: six cycles (grey: injections)")
    axes[0, 0].set_ylabel("s~_r")
    axes[0, 0].set_title(f"G = {g_show}: rare-task signal over the run")
    axes[0, 0].legend()
    axes[-1, 0].set_xlabel("step")
    return save(fig, out / "figures" / "retention-dynamics.png")


def _summary(m: _Measured, gh: dict) -> dict:
    inj = {}
    for g in m.gaps:
        smp = RetentionSampler(m.spec.pi, m.batch, seed=0, rare_task=m.rare + 1, gap=g)
        sizes = smp.injection_sizes(np.arange(m.steps // g))
        inj[str(g)] = {"mean": float(g * smp.rate), "min": int(sizes.min()) if len(sizes) else 0,
                       "max": int(sizes.max()) if len(sizes) else 0, "total": int(sizes.sum())}
    ws, gs = m.widths, m.gaps
    return {"rare_task": m.rare + 1, "prior": float(m.spec.pi[m.rare]), "window": m.window, "gap_shown": m.g_show,
            "noise_floor": {str(w): m.floor[w] for w in ws},
            "learned": {str(w): {str(g): bool(m.fin.loc[g, w] > m.floor[w]) for g in gs} for w in ws},
            "gap_half_signal": {str(w): gh[w] for w in ws},
            "kept_share": {str(w): {str(g): {k: v for k, v in m.kept_all[w][g].items() if k != "values"}
                                    for g in gs} for w in ws},
            "final_signal": {str(w): {str(g): float(m.fin.loc[g, w]) for g in gs} for w in ws},
            "rare_frequency_ratio": {str(g): float(m.ratio[g]) for g in gs},
            "injection_size": inj}


def _kept_figure(kept_all: dict, widths: list[int], gaps: list[int], out: Path) -> Path:
    fig, axes = new_figure(1, 1, height=2.6, page=len(gaps) * len(widths) > 4)
    ax = axes[0, 0]
    n = len(widths)
    for j, g in enumerate(gaps):
        for i, w in enumerate(widths):
            x = j * (n + 1) + i
            k = kept_all[w][g]
            if k["measurable"]:
                ax.boxplot([k["values"]], positions=[x], widths=0.7, whis=(10, 90), showfliers=False,
                           patch_artist=True, manage_ticks=False,
                           boxprops={"facecolor": f"C{i}", "alpha": 0.6}, medianprops={"color": "k"})
            else:
                ax.text(x, 0.0, "n/a", ha="center", va="center", fontsize=7, color=f"C{i}", rotation=90)
    ax.set_xticks([j * (n + 1) + (n - 1) / 2 for j in range(len(gaps))], [f"G = {g}" for g in gaps])
    ax.set_xlim(-1, len(gaps) * (n + 1) - 1)
    for i, w in enumerate(widths):
        ax.plot([], [], "s", color=f"C{i}", label=f"N = {w}")
    ax.axhline(1.0, color="0.5", lw=0.6, ls="--")
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_ylabel("retained share of an injection's gain")
    ax.legend()
    return save(fig, out / "figures" / "retention-kept-share.png")
