"""Interference remedies (SPEC Part C): what lets a small model learn a rare task?

Baseline: a width-N student, the rare task r left out of ordinary batches and injected every
G steps at its natural long-run frequency (the SPEC A5.3 schedule), where a narrow model
forgets between injections. At equal steps, the same width N with one change each:

- ``shorter-gaps``: the same rare data at the same frequency, injected every G' < G steps;
- ``replay``: the latest injection's samples presented again every R steps (no new data);
- ``upweight``: the rare task at ``upweight_margin`` x the planner's minimum p*(N), the
  others scaled down in proportion, spread as a data pipeline spreads an up-weighted source
  (the shorter gap G'; against ``shorter-gaps`` this isolates the frequency);
- ``conflict-removal``: the other tasks' encoder gradient projected off the rare task's
  latest gradient when they conflict (one-sided PCGrad);

against ``double-width``: 2N, trained with the baseline (the 2N member of the baseline cell).

Reported per remedy: the rare task's final corrected signal and learned features, the common
tasks' loss (the other tasks weighted by their original prior) and compute (model FLOPs of
a per-sample implementation: 6 N (D + d) per sample, plus the projection's vector work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..mixture import min_frequency, reweighted
from ..report.html import Check, Figure
from ..report.plots import new_figure, save
from ..sim import RecordSchedule, RetentionSampler
from ..validate import Field, PosInt, strict
from ._config import StudyConfig, check_features, check_task
from ._run import Analysis, Cell, last_step
from .retention import matched_frequency, rare_index

REMEDIES = ("baseline", "shorter-gaps", "replay", "upweight", "conflict-removal", "double-width")


@strict
class Settings:
    """The remedies study's own settings (SPEC Part C)."""

    remedy_gap: PosInt = 64
    """Steps G between the rare task's injections in the baseline."""
    short_gap: PosInt = 1
    """The gap of the 'shorter gaps' remedy (same long-run frequency; < remedy_gap)."""
    replay_every: PosInt = 8
    """The replay remedy: replay the latest injection's rare samples every this many steps
    between injections, no new rare data (< remedy_gap)."""
    upweight_margin: Annotated[float, Field(gt=0)] = 1.5
    """The up-weighted frequency as a multiple of the planner's minimum p*(N)."""
    features: PosInt = 1
    """How many of the rare task's features the up-weighting plan is for."""
    rare_task: PosInt | None = None
    """1-based rare task; None: the rarest (lowest prior, highest index)."""
    trace_every: PosInt = 1
    """Keep the rare task's corrected signal every this many steps."""

    def check(self, cfg: StudyConfig) -> None:
        check_task(cfg, "rare_task", self.rare_task)
        check_features(cfg, self.features)
        if self.replay_every >= self.remedy_gap:
            raise ConfigError("replay_every", f"{self.replay_every} with remedy_gap {self.remedy_gap}",
                              "1 <= replay_every < remedy_gap")
        if self.short_gap >= self.remedy_gap:
            raise ConfigError("short_gap", f"{self.short_gap} with remedy_gap {self.remedy_gap}",
                              "short_gap < remedy_gap")


def _check(cfg: StudyConfig) -> None:
    spec = cfg.spec()
    for N in cfg.widths:
        if 2 * N > spec.D:
            raise ConfigError("widths", f"{N}: doubling it exceeds D = {spec.D}", f"widths <= {spec.D // 2}")


def planned(cfg: StudyConfig, width: int) -> float:
    """The up-weighted frequency: ``upweight_margin`` x p*(N), at least the natural prior."""
    spec, r = cfg.spec(), rare_index(cfg)
    p = min_frequency(spec, r + 1, width, cfg.settings.features)
    if p is None:
        raise ConfigError("widths", f"{width} < features {cfg.settings.features}", f"widths >= {cfg.settings.features}")
    f = cfg.settings.upweight_margin * p
    if not 0 < f < 1:
        raise ConfigError("upweight_margin", f"{cfg.settings.upweight_margin} x p* = {f:.3g}", "a frequency in (0, 1)")
    return max(f, float(spec.pi[r]))


def cells(cfg: StudyConfig) -> list[Cell]:
    _check(cfg)
    spec, r = cfg.spec(), rare_index(cfg)
    out = []
    for N in cfg.widths:
        for seed in cfg.seeds:
            train = cfg.train_config(seed)
            B = train.batch_size

            def cell(name, widths, sampler, spec_=spec, protect=None):
                return Cell(id=f"N{N}-{name}-seed{seed}", labels={"remedy": name, "small_width": N, "seed": seed},
                            spec=spec_, train=train, widths=widths, sampler=sampler, trace_tasks=[r + 1],
                            trace_every=cfg.settings.trace_every, record=RecordSchedule("log", cfg.record_points),
                            conflict_removal=protect)

            base = RetentionSampler(spec.pi, B, seed=seed, rare_task=r + 1, gap=cfg.settings.remedy_gap)
            short = RetentionSampler(spec.pi, B, seed=seed, rare_task=r + 1, gap=cfg.settings.short_gap)
            up = reweighted(spec, r + 1, planned(cfg, N))
            # the prior the sampler sees carries the up-weighting; metrics keep the original prior
            upweighted = RetentionSampler(up.pi, B, seed=seed, rare_task=r + 1, gap=cfg.settings.short_gap)
            for smp, field in ((base, "remedy_gap"), (short, "short_gap"), (upweighted, "short_gap")):
                matched_frequency(smp, train.steps, field)
            out += [
                cell("baseline", [N, 2 * N], base),
                cell("shorter-gaps", [N], short),
                cell("replay", [N], RetentionSampler(spec.pi, B, seed=seed, rare_task=r + 1, gap=cfg.settings.remedy_gap,
                                                     replay_every=cfg.settings.replay_every)),
                cell("upweight", [N], upweighted),
                cell("conflict-removal", [N], base, protect=r + 1),
            ]
    return out


def _compute(cell: Cell, width: int, steps: int, projection: bool) -> tuple[float, int, int]:
    """(model FLOPs, rare presentations, fresh rare samples) of one member over the run."""
    spec, s = cell.spec, cell.sampler
    counts = s.counts(np.arange(steps))
    samples = float(counts.sum())
    flops = 6.0 * width * (spec.D + spec.d) * samples
    if projection:  # per step: the rare task's encoder gradient (2 d N D) and 3 N x D vector ops
        flops += steps * (2.0 * spec.d * width * spec.D + 6.0 * width * spec.D)
    shown = int(counts[:, s.rare].sum())
    fresh = s.injected(steps) if s.replay_every else shown
    return flops, shown, fresh


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the small members plus the baseline cell's 2N member, with a ``label``
    column: the remedy, or "double-width" for that 2N member."""
    df = df.assign(label=np.where((df["remedy"] == "baseline") & (df["width"] == 2 * df["small_width"]),
                                  "double-width", df["remedy"]))
    return df[(df["width"] == df["small_width"]) | (df["label"] == "double-width")]


def outcome_table(cfg: StudyConfig, results: pd.DataFrame) -> pd.DataFrame:
    """One row per (small width, remedy): final rare signal, features, common loss (seed
    means and standard errors), compute, rare presentations and fresh rare samples."""
    spec, r = cfg.spec(), rare_index(cfg)
    steps = cfg.train_config(0).steps
    last = labelled(last_step(results))
    w = np.delete(spec.pi, r)
    w = w / w.sum()
    rows = []
    by_id = {c.id: c for c in cells(cfg)}
    for (N, label), g in last.groupby(["small_width", "label"]):
        per_seed = []
        for seed, gs in g.groupby("seed"):
            rare = gs[gs["task"] == r + 1].iloc[0]
            common = gs[gs["task"] != r + 1].sort_values("task")["loss"].to_numpy()
            per_seed.append((rare["corrected_signal"], rare["n_features"], float(common @ w)))
        a = np.asarray(per_seed)
        sem = a.std(0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.full(3, np.nan)
        cell = by_id[f"N{N}-{'baseline' if label == 'double-width' else label}-seed{cfg.seeds[0]}"]
        width = 2 * N if label == "double-width" else N
        flops, shown, fresh = _compute(cell, width, steps, label == "conflict-removal")
        rows.append({"small_width": int(N), "remedy": label, "width": width,
                     "rare_signal": a[:, 0].mean(), "rare_signal_sem": sem[0], "rare_features": a[:, 1].mean(),
                     "common_loss": a[:, 2].mean(), "common_loss_sem": sem[2], "flops": flops,
                     "rare_presentations": shown, "rare_fresh_samples": fresh,
                     "rare_frequency": float(cell.sampler.prior[r]),
                     "rare_frequency_ratio": cell.sampler.frequency_ratio(steps)})
    t = pd.DataFrame(rows)
    t["order"] = t["remedy"].map({n: i for i, n in enumerate(REMEDIES)})
    t = t.sort_values(["small_width", "order"]).drop(columns="order").reset_index(drop=True)
    base = t[t["remedy"] == "baseline"].set_index("small_width")
    t["learned"] = t["rare_features"] >= cfg.settings.features
    t["common_loss_change"] = t["common_loss"] / t["small_width"].map(base["common_loss"]) - 1.0
    t["compute_ratio"] = t["flops"] / t["small_width"].map(base["flops"])
    return t


def _verdict(t: pd.DataFrame, N: int, r: int) -> str:
    rows = t[(t["small_width"] == N) & (t["remedy"] != "baseline")]
    works = [f"{x.remedy} (s~ = {x.rare_signal:.2f}, common-task loss {100 * x.common_loss_change:+.1f}%, "
             f"compute x{x.compute_ratio:.2f})" for x in rows.itertuples() if x.learned]
    fails = [f"{x.remedy} (s~ = {x.rare_signal:.2f})" for x in rows.itertuples() if not x.learned]
    return (f"N = {N}, task {r + 1}: learned with " + ("; ".join(works) if works else "no remedy")
            + ". Not learned with " + ("; ".join(fails) if fails else "none") + ".")


def remedy_checks(t: pd.DataFrame, gap: int, r: int) -> list[Check]:
    """Per small width of the outcome table ``t``: the premise (the baseline leaves the
    0-based task r unlearned) as a check, and each remedy's outcome as information."""
    checks = []
    for N in sorted(t["small_width"].unique()):
        sub = t[t["small_width"] == N].set_index("remedy")
        b = sub.loc["baseline"]
        checks.append(Check(f"N={N}, gap {gap}: baseline leaves task {r + 1} unlearned (the premise)",
                            f"{b['rare_features']:.1f} features, s~ = {b['rare_signal']:.3f}", "not learned",
                            not bool(b["learned"])))
        for name in REMEDIES[1:]:
            x = sub.loc[name]
            checks.append(Check(
                f"N={N}, {name}: task {r + 1} learned? (common-task loss change, compute vs baseline)",
                f"{'learned' if x['learned'] else 'not learned'}: s~ = {x['rare_signal']:.3f}, "
                f"{100 * x['common_loss_change']:+.1f}%, x{x['compute_ratio']:.2f}", "informative", None))
    return checks


def analyze(cfg: StudyConfig, results: pd.DataFrame, trace, out: Path) -> Analysis:
    r = rare_index(cfg)
    t = outcome_table(cfg, results)
    checks = remedy_checks(t, cfg.settings.remedy_gap, r)
    verdicts = [_verdict(t, N, r) for N in sorted(cfg.widths)]
    figures = [_outcome_figure(cfg, t, out, r, checks), _trace_figure(cfg, trace, out, r)]
    intro = ("Interference remedies (SPEC Part C), compared at equal steps. " + " ".join(verdicts)
             + f" Settings: gap G = {cfg.settings.remedy_gap}, shorter gap {cfg.settings.short_gap}, replay every "
               f"{cfg.settings.replay_every} steps, up-weighting to {cfg.settings.upweight_margin:g} x the planner's p*(N).")
    summary = {"rare_task": r + 1, "verdict": verdicts, "table": t.to_dict(orient="records"),
               "planned_frequency": {str(N): planned(cfg, N) for N in cfg.widths}}
    return Analysis(intro, [], figures, summary)


def _outcome_figure(cfg, t, out, r, checks) -> Figure:
    fig, axes = new_figure(2, 1, height=3.4)  # room for the remedies' names under the bars
    a, b = axes[0, 0], axes[0, 1]
    markers = dict(zip(dict.fromkeys(t["remedy"]), "osD^vP*X<>"))
    ticks, names = [], []
    for i, N in enumerate(sorted(cfg.widths)):
        sub = t[t["small_width"] == N]
        x = np.arange(len(sub)) + i * (len(sub) + 1)
        colors = ["C2" if v else "C3" for v in sub["learned"]]
        a.bar(x, sub["rare_signal"], yerr=sub["rare_signal_sem"].fillna(0), color=colors)
        ticks += list(x)
        names += [f"{n} (N={w})" for n, w in zip(sub["remedy"], sub["width"])]
        for row in sub.itertuples():
            # a marker per remedy (named in the legend), hollow for the second width: remedies that
            # cost nothing sit on top of each other, where names written beside them would collide
            b.scatter(row.compute_ratio, 100 * row.common_loss_change, marker=markers[row.remedy], s=30,
                      facecolors=("C2" if row.learned else "C3") if i == 0 else "none",
                      edgecolors="C2" if row.learned else "C3")
    a.set_xticks(ticks, names, rotation=90)  # every width's bars (set once: a second call replaces the first)
    a.axhline(0, color="k", lw=0.5)
    a.set_title("rare task: green = learned (>= %d feature)" % cfg.settings.features)
    a.set_ylabel(f"final signal of task {r + 1}")
    b.axhline(0, color="k", lw=0.5)
    b.set_xlabel("compute vs baseline (model FLOPs ratio)")
    b.set_ylabel("common-task loss change (%)")
    b.set_title("cost of each remedy")
    for name, m in markers.items():
        b.scatter([], [], marker=m, color="0.4", s=30, label=name)
    b.legend(title="filled: first width" if len(cfg.widths) > 1 else None)
    path = save(fig, out / "figures" / "remedies.png")
    return Figure(path, f"Left: task {r + 1}'s final corrected signal per remedy (seed mean +- s.e.). Right: what "
                        "each remedy costs: common-task loss (other tasks, original prior weights) and compute, "
                        "both relative to the baseline small model; green: the rare task learned, orange: not.", checks)


def _trace_figure(cfg, trace, out, r) -> Figure:
    fig, axes = new_figure(len(cfg.widths), 1, height=2.4)
    for j, N in enumerate(sorted(cfg.widths)):
        ax = axes[0, j]
        tr = labelled(trace[trace["small_width"] == N])
        for i, name in enumerate(REMEDIES):
            s = tr[tr["label"] == name].groupby("step")["corrected_signal"].mean()
            if len(s) > 2000:  # thin for plotting; the parquet keeps every step
                s = s.iloc[:: len(s) // 2000]
            ax.plot(s.index, s.to_numpy(), color=f"C{i}", lw=0.8, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(f"corrected signal of task {r + 1}")
        ax.set_title(f"small width N = {N}")
        ax.legend()
    path = save(fig, out / "figures" / "remedies-dynamics.png")
    return Figure(path, f"Task {r + 1}'s corrected signal during training, per remedy (seed mean).", [])
