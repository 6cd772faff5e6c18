"""The scaling sweep's report (``SWEEP/scaling/``): the paper's Sec. 4 across model sizes.

Reads what the sweep wrote, trains nothing: ``report/eval.parquet`` (every checkpoint of
every run), each run's ``run_config.json`` and, for the probed runs, ``RUN/probes/*.parquet``.

Layout of ``SWEEP/scaling``::

    runs.parquet           one row per run: size, schedule, seed, final metrics
    critical.parquet       one row per size: f* with its bootstrap interval (lm.scaling)
    probes.parquet         one row per (probed run, checkpoint): the probe summaries
    scaling-summary.json   the above, the power-law fit and every check's verdict
    figures/*.png, report.html

Definitions (fixed before the sweep ran):

- frequency: instances per training token, rate / (batch x seq_len);
- f*(size): where a logistic fit of test accuracy in log10 frequency (chance 0.5 for cmp,
  ceiling fitted) crosses the midpoint, over the grid runs of every seed and the last
  ``final_checkpoints`` checkpoints of each; 95% bootstrap interval (``critical_frequency``);
- size: non-embedding parameters 16 L h^2 (the ladder varies width; the embedding and output
  layers, 2 V h, follow the vocabulary, not capacity); total parameters are listed beside;
- learned step (Fig. 6a): the first checkpoint at which test accuracy reaches the midpoint;
- equal LM loss / equal compute (Figs. 22, 23): task loss interpolated along training at the
  held-out LM loss, or the compute 6 N D, that both the smallest and the largest size reach.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, RaretaskError
from ..report.html import Check, Figure, write_report
from ..runfolder import atomic_parquet, atomic_write
from . import scaling
from ._models import non_embedding_params

FINAL_CHECKPOINTS = 3


def _sweep_record(sweep_dir: Path, name: str | None, overrides) -> dict:
    from ._sweep import load_sweep

    rec = sweep_dir / "sweep.json"
    if name is None:
        if not rec.exists():
            raise ConfigError("sweep", f"{sweep_dir} has no sweep.json", "a folder made by `raretask lm sweep`")
        d = json.loads(rec.read_text())
        return d["sweep"]
    return load_sweep(name, overrides)


def run_table(sweep_dir: str | Path) -> pd.DataFrame:
    """Every checkpoint of every run of a sweep, with each run's schedule and seed."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "report" / "eval.parquet"
    if not path.exists():
        raise ConfigError("sweep", f"{sweep_dir} has no report/eval.parquet", "a finished `raretask lm sweep` folder")
    df = pd.read_parquet(path)
    meta = {}
    for run in df["run"].unique():
        cfg = json.loads((Path(run) / "run_config.json").read_text())
        cfg = cfg.get("config", cfg)
        kind = "gap" if cfg.get("every") else ("seed" if int(cfg.get("seed", 0)) else "grid")
        meta[run] = {"name": Path(run).name, "kind": kind, "seed": int(cfg.get("seed", 0)),
                     "rate": cfg.get("rate"), "every": cfg.get("every"), "n": cfg.get("n"),
                     "non_embedding_params": non_embedding_params(cfg["preset"])}
    m = pd.DataFrame.from_dict(meta, orient="index")
    return df.join(m, on="run")


def critical_table(df: pd.DataFrame, chance: float, final_checkpoints: int = FINAL_CHECKPOINTS,
                   n_boot: int = 1000) -> pd.DataFrame:
    """f* per size from the rate runs (grid and seeds), last ``final_checkpoints`` of each."""
    rows = []
    rated = df[df["kind"] != "gap"]
    for preset, g in rated.groupby("preset", sort=False):
        last = g.sort_values("step").groupby("run").tail(final_checkpoints)
        cf = scaling.critical_frequency(last["per_token_frequency"], last["test_accuracy"], chance, n_boot=n_boot)
        rows.append({"preset": preset, "non_embedding_params": int(g["non_embedding_params"].iloc[0]),
                     "params": int(g["params"].iloc[0]), "f_star": cf.f_star, "f_star_lo": cf.lo,
                     "f_star_hi": cf.hi, "bracketed": cf.bracketed, "slope_per_decade": cf.slope,
                     "ceiling": cf.ceiling, "points": cf.points, "runs": int(last["run"].nunique())})
    return pd.DataFrame(rows).sort_values("non_embedding_params").reset_index(drop=True)


def fit(crit: pd.DataFrame, exclude_largest: bool = False) -> scaling.PowerLaw:
    """The power law of f* in non-embedding parameters over the sizes whose f* lies inside
    their frequency grid (an extrapolated f* is not a measurement)."""
    c = crit[crit["bracketed"] & np.isfinite(crit["f_star"])]
    if exclude_largest:
        c = c[c["non_embedding_params"] < crit["non_embedding_params"].max()]
    if len(c) < 2:
        state = ", ".join(f"{r.preset}: " + ("not fitted" if not np.isfinite(r.f_star) else
                                             f"{r.f_star:.3g} {'inside' if r.bracketed else 'outside'} its grid")
                          for r in crit.itertuples())
        raise RaretaskError(f"cannot fit f*(size): {len(c)} size(s) with an f* inside their frequency grid"
                            f"{' (the largest left out)' if exclude_largest else ''}, at least 2 needed ({state}); "
                            "a sweep whose rates bracket each size's midpoint is needed")
    return scaling.fit_power_law(c["non_embedding_params"], c["f_star"], c["f_star_lo"], c["f_star_hi"])


def _interp(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """y at x = at along a training curve (x monotone after sorting); nan outside its range."""
    o = np.argsort(x)
    x, y = np.asarray(x, float)[o], np.asarray(y, float)[o]
    if not len(x) or at < x[0] or at > x[-1]:
        return float("nan")
    return float(np.interp(at, x, y))


def equal_budget(df: pd.DataFrame) -> pd.DataFrame:
    """Figs. 22, 23: for each pair of adjacent sizes and each rate, the task test loss of both
    at the held-out LM loss both reach along training, and at the compute 6 N D both reach
    (interpolated between checkpoints; NaN where one curve does not span the level). Adjacent
    pairs, because a much larger model reaches a much smaller one's final compute before its
    first checkpoint."""
    grid = df[df["kind"] == "grid"]
    sizes = grid.groupby("preset")["non_embedding_params"].first().sort_values()
    rows = []
    for small, large in zip(sizes.index[:-1], sizes.index[1:]):
        for f, g in grid.groupby("per_token_frequency"):
            a, b = g[g["preset"] == small].sort_values("step"), g[g["preset"] == large].sort_values("step")
            if a.empty or b.empty:
                continue
            lm_level = max(a["heldout_loss"].min(), b["heldout_loss"].min())  # the worse final: reached by both
            c_level = min(a["compute"].max(), b["compute"].max())
            row = {"per_token_frequency": f, "small": small, "large": large, "heldout_loss_level": lm_level,
                   "compute_level": c_level}
            for who, t in (("small", a), ("large", b)):
                row[f"{who}_task_loss_at_lm"] = _interp(-t["heldout_loss"].values, t["task_test_loss"].values,
                                                        -lm_level)
                row[f"{who}_task_loss_at_compute"] = _interp(np.log(t["compute"].values),
                                                             t["task_test_loss"].values, math.log(c_level))
            rows.append(row)
    return pd.DataFrame(rows, columns=["per_token_frequency", "small", "large", "heldout_loss_level", "compute_level",
                                       "small_task_loss_at_lm", "small_task_loss_at_compute",
                                       "large_task_loss_at_lm", "large_task_loss_at_compute"])


def learned_steps(df: pd.DataFrame, chance: float) -> pd.DataFrame:
    """Fig. 6a: per grid run, the first checkpoint step at which test accuracy reaches the
    midpoint between chance and 1 (NaN: not within the run)."""
    mid = chance + (1 - chance) / 2
    rows = []
    for run, g in df[df["kind"] == "grid"].groupby("run"):
        g = g.sort_values("step")
        hit = g[g["test_accuracy"] >= mid]
        rows.append({"run": run, "preset": g["preset"].iloc[0],
                     "non_embedding_params": int(g["non_embedding_params"].iloc[0]),
                     "per_token_frequency": float(g["per_token_frequency"].iloc[0]),
                     "learned_step": float(hit["step"].iloc[0]) if len(hit) else float("nan")})
    return pd.DataFrame(rows)


def probe_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (probed run, checkpoint): best DAS IIA, best PCA R^2, largest MLP-ablation
    drop, median gradient cosines; 'init' rows are the untrained model of that size."""
    rows = []
    for run in df["run"].unique():
        pdir = Path(run) / "probes"
        if not (pdir / "summary.json").exists():
            continue
        g = df[df["run"] == run].iloc[0]
        tabs = {p.stem: pd.read_parquet(p) for p in pdir.glob("*.parquet")}
        cks = sorted({c for t in tabs.values() if "checkpoint" in t for c in t["checkpoint"].unique()})
        for ck in cks:
            row = {"run": Path(run).name, "preset": g["preset"], "non_embedding_params": int(g["non_embedding_params"]),
                   "per_token_frequency": float(g["per_token_frequency"]), "checkpoint": ck,
                   "trained": ck != "init"}
            t = tabs.get("das")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["das_iia"] = float(t[t["checkpoint"] == ck]["iia"].max())
            t = tabs.get("pca")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["pca_r2"] = float(t[t["checkpoint"] == ck]["r2"].max())
            t = tabs.get("localize")
            if t is not None and len(t[t["checkpoint"] == ck]):
                row["localize_max_drop"] = float(t[t["checkpoint"] == ck]["zero_drop"].max())
            t = tabs.get("gradients")
            if t is not None and len(t[t["checkpoint"] == ck]):
                s = t[t["checkpoint"] == ck]
                row["cos_nontask_median"] = float(s["cos_nontask"].median())
                row["cos_task_median"] = float(s["cos_task"].median())
            rows.append(row)
    return pd.DataFrame(rows)


# ---- checks: each takes the measured quantity and can answer no -----------------------------

def check_falls_with_size(law: scaling.PowerLaw | None, why: str = "") -> Check:
    """Sec. 4 / Fig. 5: f* falls with size (the exponent's whole 95% interval below 0)."""
    name = "f* falls with model size (power-law exponent in non-embedding parameters)"
    if law is None:
        return Check.not_measurable(name, "exponent < 0, interval below 0", why or "fewer than 2 sizes with f*")
    return Check(name, f"{law.exponent:+.3f} [{law.exponent_lo:+.3f}, {law.exponent_hi:+.3f}]; "
                       f"x{law.per_doubling:.3f} per doubling", "exponent < 0, interval below 0",
                 bool(law.exponent_hi < 0))


def check_bracketed(crit: pd.DataFrame) -> list[Check]:
    """Each size's f* is inside its grid (else it is not a measurement)."""
    out = []
    for r in crit.itertuples():
        name = f"{r.preset}: f* inside the frequency grid"
        if not np.isfinite(r.f_star):
            out.append(Check.not_measurable(name, "a midpoint crossing", "the logistic fit failed"))
        else:
            out.append(Check(name, f"{r.f_star:.3g} [{r.f_star_lo:.3g}, {r.f_star_hi:.3g}]", "inside the grid",
                             bool(r.bracketed)))
    return out


def check_loss_falls_with_size(final: pd.DataFrame) -> Check:
    """Fig. 5 (loss): at every rate, the largest size ends with a lower task loss than the smallest."""
    g = final[final["kind"] == "grid"]
    lo, hi = g["non_embedding_params"].min(), g["non_embedding_params"].max()
    a = g[g["non_embedding_params"] == lo].set_index("per_token_frequency")["task_test_loss"]
    b = g[g["non_embedding_params"] == hi].set_index("per_token_frequency")["task_test_loss"]
    common = a.index.intersection(b.index)
    name = "largest size's final task loss below the smallest's at every rate"
    if not len(common) or lo == hi:
        return Check.not_measurable(name, "all rates", "needs two sizes at common rates")
    wins = int((b[common] < a[common]).sum())
    return Check(name, f"{wins}/{len(common)} rates", "all rates", wins == len(common))


def check_gap(final: pd.DataFrame) -> list[Check]:
    """Fig. 6b: at matched frequency, the task loss at the largest gap exceeds that at G = 1."""
    out = []
    gap = final[(final["kind"] == "gap") | (final["kind"] == "grid")]
    gaps = final[final["kind"] == "gap"]
    for preset, g in gaps.groupby("preset"):
        f = g["per_token_frequency"].iloc[0]
        rows = gap[(gap["preset"] == preset) & np.isclose(gap["per_token_frequency"], f)]
        G = rows["every"].fillna(1).astype(int)
        name = f"{preset}: task loss rises from G = 1 to the largest gap at matched frequency"
        if (G == 1).sum() == 0 or len(G.unique()) < 2:
            out.append(Check.not_measurable(name, "loss(G max) > loss(G = 1)", "no G = 1 run at this frequency"))
            continue
        l1 = float(rows[G == 1]["task_test_loss"].iloc[0])
        lg = float(rows[G == G.max()]["task_test_loss"].iloc[0])
        out.append(Check(name, f"{l1:.3f} -> {lg:.3f} (G = {int(G.max())})", "rises", lg > l1))
    return out


def check_equal_budget(eq: pd.DataFrame, col: str, what: str) -> Check:
    """Figs. 22/23: at equal LM loss / compute the larger of two adjacent sizes has the lower
    task loss, at every (pair, rate) where both curves reach the level."""
    name = f"larger of adjacent sizes has the lower task loss at equal {what}"
    ok = eq[np.isfinite(eq[f"small_task_loss_{col}"]) & np.isfinite(eq[f"large_task_loss_{col}"])]
    if ok.empty:
        return Check.not_measurable(name, "every (pair, rate)", f"no pair of sizes reaches a common {what}")
    wins = int((ok[f"large_task_loss_{col}"] < ok[f"small_task_loss_{col}"]).sum())
    return Check(name, f"{wins}/{len(ok)} (pair, rate)", "every (pair, rate)", wins == len(ok))


def check_learned_order(steps: pd.DataFrame) -> list[Check]:
    """Fig. 6a: within a size, a more frequent task is learned no later."""
    out = []
    for preset, g in steps.groupby("preset", sort=False):
        g = g.dropna(subset=["learned_step"]).sort_values("per_token_frequency")
        name = f"{preset}: more frequent injections learned no later"
        if len(g) < 2:
            out.append(Check.not_measurable(name, "learned step non-increasing in frequency",
                                            f"{len(g)} rate(s) learned"))
            continue
        ok = bool(np.all(np.diff(g["learned_step"].values) <= 0))
        out.append(Check(name, ", ".join(f"{f:.1e}: {int(s)}" for f, s in zip(g["per_token_frequency"],
                                                                                g["learned_step"])),
                         "non-increasing in frequency", ok))
    return out


def check_probe_trend(probes: pd.DataFrame, col: str, claim: str, higher_is_claim: bool) -> list[Check]:
    """Sec. 4.3/4.4: the trained metric at the largest size vs the smallest, per probed rate."""
    out = []
    if probes.empty or col not in probes:
        return out
    tr = probes[probes["trained"]].dropna(subset=[col])
    for f, g in tr.groupby("per_token_frequency"):
        name = f"{claim} (injected {f:.1e}/token)"
        if g["non_embedding_params"].nunique() < 2:
            out.append(Check.not_measurable(name, "largest vs smallest", "one size probed"))
            continue
        a = float(g.loc[g["non_embedding_params"].idxmin(), col])
        b = float(g.loc[g["non_embedding_params"].idxmax(), col])
        out.append(Check(name, f"smallest {a:.3f}, largest {b:.3f}", "largest " + (">" if higher_is_claim else "<")
                         + " smallest", (b > a) if higher_is_claim else (b < a)))
    return out


def theory_curve(widths=(8, 16, 32, 64, 128, 256, 512)) -> tuple[np.ndarray, np.ndarray, float]:
    """The synthetic theory's p*(N) for the paper mixture's rarest task (K = 32)."""
    from ..mixture import MixtureSpec

    spec = MixtureSpec()
    w = np.asarray(widths)
    p, slope = scaling.theory_exponent(spec, spec.K, w)
    return w, p, slope


def scaling_report(sweep_dir: str | Path, name: str | None = None, overrides=None) -> dict:
    """Write ``SWEEP/scaling`` (see the module docstring); returns {"report", "summary"}."""
    from ._sweep import CHANCE

    sweep_dir = Path(sweep_dir)
    sw = _sweep_record(sweep_dir, name, overrides)
    chance = CHANCE[sw["task"]]
    df = run_table(sweep_dir)
    final = df.sort_values("step").groupby("run").tail(1).reset_index(drop=True)
    crit = critical_table(df, chance, int(sw.get("final_checkpoints", FINAL_CHECKPOINTS)))
    try:
        law, why = fit(crit), ""
    except RaretaskError as e:
        law, why = None, str(e)
    eq = equal_budget(df)
    steps = learned_steps(df, chance)
    probes = probe_table(df)
    out = sweep_dir / "scaling"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    checks = [check_falls_with_size(law, why), *check_bracketed(crit), check_loss_falls_with_size(final),
              *check_gap(final), check_equal_budget(eq, "at_lm", "held-out LM loss"),
              check_equal_budget(eq, "at_compute", "compute 6ND"), *check_learned_order(steps),
              *check_probe_trend(probes, "das_iia", "DAS IIA higher in the largest model", True),
              *check_probe_trend(probes, "pca_r2", "PCA R^2 higher in the largest model", True),
              *check_probe_trend(probes, "cos_nontask_median",
                                 "interference (median cos(g_r, non-task)) weaker in the largest model", True)]
    tw, tp, tslope = theory_curve()
    figures = _figures(df, final, crit, law, eq, steps, probes, (tw, tp, tslope), chance, out / "figures")
    for name_, t in (("runs", final), ("critical", crit), ("probes", probes), ("equal-budget", eq),
                     ("learned-steps", steps)):
        atomic_parquet(t, out / f"{name_}.parquet")
    summary = {"sweep": sw, "critical": crit.to_dict(orient="records"),
               "power_law": None if law is None else
               {"exponent": law.exponent, "exponent_lo": law.exponent_lo, "exponent_hi": law.exponent_hi,
                "intercept": law.intercept, "per_doubling": law.per_doubling, "params": list(law.params),
                "f_star": list(law.f_star), "residuals": list(law.residuals)},
               "theory": {"widths": tw.tolist(), "p_star": tp.tolist(), "slope_in_width": tslope},
               "checks": [c.to_dict() for c in checks],
               "checks_count": {v: sum(c.verdict == v for c in checks) for v in ("yes", "no", "n/a")}}
    atomic_write(out / "scaling-summary.json", json.dumps(summary, indent=2, default=_json_default))
    report = write_report(out / "report.html", "raretask lm: larger models learn rarer tasks?",
                          _intro(sw, crit, law), checks, figures, sw,
                          {"runs": int(df["run"].nunique()), "sizes": int(crit.shape[0])})
    return {"report": str(report), "summary": summary}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)


def _intro(sw: dict, crit: pd.DataFrame, law) -> str:
    rows = "".join(f"<tr><td>{r.preset}</td><td>{r.non_embedding_params:,}</td><td>{r.params:,}</td>"
                   f"<td>{r.f_star:.3g}</td><td>[{r.f_star_lo:.3g}, {r.f_star_hi:.3g}]</td>"
                   f"<td>{'yes' if r.bracketed else 'no (extrapolated)'}</td></tr>" for r in crit.itertuples())
    verdict = ("no size's f* could be fitted" if law is None else
               f"f* scales as P^{law.exponent:+.3f} (95% interval [{law.exponent_lo:+.3f}, {law.exponent_hi:+.3f}]), "
               f"a factor {law.per_doubling:.3f} per doubling of non-embedding parameters")
    return (f"Injected task {sw['task']} at {len(sw['rates'])} rates per batch ({', '.join(f'{r:g}' for r in sw['rates'])}) "
            f"on {len(sw['presets'])} sizes, equal tokens per run. Critical frequency f* (midpoint of chance and "
            f"ceiling, logistic fit, 95% bootstrap interval): {verdict}.<table><tr><th>size</th><th>non-embedding "
            f"params</th><th>params</th><th>f* per token</th><th>interval</th><th>inside grid</th></tr>{rows}</table>")


def _figures(df, final, crit, law, eq, steps, probes, theory, chance, fdir: Path) -> list[Figure]:
    from ..report.plots import new_figure, save

    figs = []
    sizes = list(crit["preset"])
    col = {p: f"C{i}" for i, p in enumerate(sizes)}
    rated = final[final["kind"] != "gap"]
    fig, axes = new_figure(2, 1, size=(12, 4.6))
    for p in sizes:
        g = rated[rated["preset"] == p]
        s0 = g[g["kind"] == "grid"].sort_values("per_token_frequency")
        lab = f"{p} ({int(g['non_embedding_params'].iloc[0]):,} non-emb.)"
        axes[0, 0].plot(s0["per_token_frequency"], s0["test_accuracy"], "-o", color=col[p], label=lab)
        axes[0, 1].plot(s0["per_token_frequency"], s0["task_test_loss"], "-o", color=col[p], label=lab)
        s1 = g[g["kind"] == "seed"]
        axes[0, 0].plot(s1["per_token_frequency"], s1["test_accuracy"], "x", color=col[p], ms=8)
        axes[0, 1].plot(s1["per_token_frequency"], s1["task_test_loss"], "x", color=col[p], ms=8)
    axes[0, 0].axhline(chance + (1 - chance) / 2, color="k", lw=0.6, ls=":", label="midpoint")
    axes[0, 0].set(xscale="log", xlabel="injected instances per token", ylabel="final test accuracy",
                   title="Fig. 5 analog: accuracy")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="injected instances per token",
                   ylabel="final LABEL loss (test)", title="Fig. 5 analog: task loss")
    axes[0, 0].legend(fontsize=7)
    figs.append(Figure(save(fig, fdir / "fig5-accuracy-loss.png"),
                       "Final test accuracy and LABEL loss against the injected per-token frequency, one curve per "
                       "size (seed 0; crosses: the second seed at the rates nearest each size's midpoint)."))

    fig, axes = new_figure(2, 1, size=(12, 4.6))
    ax = axes[0, 0]
    c = crit[np.isfinite(crit["f_star"])]
    ax.errorbar(c["non_embedding_params"], c["f_star"],
                yerr=[c["f_star"] - c["f_star_lo"].fillna(c["f_star"]), c["f_star_hi"].fillna(c["f_star"]) - c["f_star"]],
                fmt="o", capsize=4, color="C0", label="measured f* (95% bootstrap)")
    for r in c.itertuples():
        if not r.bracketed:
            ax.annotate("outside grid", (r.non_embedding_params, r.f_star), fontsize=7)
    if law is not None:
        P = np.geomspace(min(crit["non_embedding_params"]) / 1.5, max(crit["non_embedding_params"]) * 1.5, 50)
        draws = law.boot[:, [0]] + law.boot[:, [1]] * np.log10(P)[None]
        lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
        ax.plot(P, 10 ** (law.intercept + law.exponent * np.log10(P)), "C1-",
                label=f"fit: P^{law.exponent:+.2f}, x{law.per_doubling:.2f}/doubling")
        ax.fill_between(P, 10**lo, 10**hi, color="C1", alpha=0.2)
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters", ylabel="critical frequency f* (per token)",
           title="f*(size)")
    ax.legend(fontsize=7)
    tw, tp, tslope = theory
    ax = axes[0, 1]
    ok = np.isfinite(tp) & (tp > 0)
    ax.plot(tw[ok] / tw[ok][0], tp[ok] / tp[ok][0], "s-", color="C2",
            label=f"theory p*(N), task 32 of the paper mixture: N^{tslope:+.2f}")
    if law is not None:
        # non-embedding parameters grow as width^2 at fixed depth: exponent in width = 2 b
        wr = np.sqrt(np.asarray(law.params) / law.params[0])
        ax.plot(wr, np.asarray(law.f_star) / law.f_star[0], "o-", color="C0",
                label=f"LM f*: width^{2 * law.exponent:+.2f}")
    ax.set(xscale="log", yscale="log", xlabel="width / smallest width", ylabel="critical frequency / smallest's",
           title="LM exponent vs the synthetic theory's")
    ax.legend(fontsize=7)
    figs.append(Figure(save(fig, fdir / "critical-frequency.png"),
                       "Left: critical frequency f* per size with its bootstrap interval, and the power law fitted to "
                       "the sizes whose f* lies inside the grid. Right: the same against width (parameters ~ width^2 "
                       "at fixed depth) beside the planner's minimal frequency p*(N) of the paper mixture's rarest "
                       "task (Theorem 3), each relative to its smallest width."))

    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for p in sizes:
        g = steps[steps["preset"] == p].sort_values("per_token_frequency")
        ax.plot(g["per_token_frequency"], g["learned_step"], "-o", color=col[p], label=p)
    ax.set(xscale="log", xlabel="injected instances per token", ylabel="first checkpoint at the accuracy midpoint",
           title="Fig. 6a analog: when the task is learned")
    ax.legend(fontsize=7)
    figs.append(Figure(save(fig, fdir / "fig6a-learned-step.png"),
                       "The step at which each rate's task is learned, per size (missing: not learned in the run). "
                       "The reference templates ('it has increased from {x} to', '{x} + {y} =') were counted in the "
                       "corpus (report/eval-summary.json); where they never occur they give no frequency to place."))

    gaps = final[final["kind"] == "gap"]
    if not gaps.empty:
        fig, axes = new_figure(1, 1)
        ax = axes[0, 0]
        for p, g in gaps.groupby("preset"):
            f = g["per_token_frequency"].iloc[0]
            base = final[(final["preset"] == p) & (final["kind"] == "grid") & np.isclose(final["per_token_frequency"], f)]
            pts = pd.concat([base.assign(every=1), g]).sort_values("every")
            ax.plot(pts["every"], pts["task_test_loss"], "-o", color=col.get(p, "k"), label=f"{p} ({f:.1e}/token)")
        ax.set(xscale="log", xlabel="gap G (batches between injections)", ylabel="final LABEL loss (test)",
               title="Fig. 6b analog: matched frequency, growing gap")
        ax.legend(fontsize=7)
        figs.append(Figure(save(fig, fdir / "fig6b-gap.png"),
                           "Task loss at one total frequency delivered as n instances every G batches (G = 1 is the "
                           "grid's run at that rate), smallest and largest size."))

    fig, axes = new_figure(2, 1, size=(12, 4.6))
    grid = df[df["kind"] == "grid"]
    for p in sizes:
        for j, (f, g) in enumerate(grid[grid["preset"] == p].groupby("per_token_frequency")):
            g = g.sort_values("step")
            lab = p if j == 0 else None
            axes[0, 0].plot(g["heldout_loss"], g["task_test_loss"], "-", color=col[p], lw=0.6 + 0.4 * j, label=lab)
            axes[0, 1].plot(g["compute"], g["task_test_loss"], "-", color=col[p], lw=0.6 + 0.4 * j, label=lab)
    axes[0, 0].invert_xaxis()
    axes[0, 0].set(xlabel="held-out LM loss", ylabel="LABEL loss (test)", yscale="log",
                   title="Fig. 22 analog: task loss vs LM loss")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="compute 6 N D (FLOPs)", ylabel="LABEL loss (test)",
                   title="Fig. 23 analog: task loss vs compute")
    axes[0, 0].legend(fontsize=7)
    figs.append(Figure(save(fig, fdir / "fig22-23-equal-budget.png"),
                       "Injected-task loss along training against held-out LM loss and against compute, per size "
                       "(colour) and rate (line width grows with frequency)."))

    if not probes.empty:
        metrics = [m for m in ("das_iia", "pca_r2", "localize_max_drop", "cos_nontask_median") if m in probes]
        fig, axes = new_figure(len(metrics), 1, size=(4.2 * len(metrics), 4.2))
        for ax, m in zip(axes.ravel(), metrics):
            for j, (f, g) in enumerate(probes.groupby("per_token_frequency")):
                for trained, ls in ((True, "-o"), (False, "--s")):
                    s = g[g["trained"] == trained].dropna(subset=[m]).sort_values("non_embedding_params")
                    ax.plot(s["non_embedding_params"], s[m], ls, color=f"C{j}",
                            label=f"{f:.1e}/token, {'trained' if trained else 'untrained'}")
            ax.set(xscale="log", xlabel="non-embedding parameters", title=m)
        axes.ravel()[0].legend(fontsize=6)
        figs.append(Figure(save(fig, fdir / "probes-across-sizes.png"),
                           "Inside the models (Sec. 4.3, 4.4): best DAS interchange accuracy, best PCA R^2, the largest "
                           "MLP zero-ablation drop and the median cosine of g_r with the non-task gradient, per size; "
                           "dashed: the untrained model of the same size and seed."))
    return figs


def sizing(sweep_dir: str | Path, frequency: float | None = None, params: float | None = None,
           exclude_largest: bool = False) -> dict:
    """``raretask lm sizing``: the power law of f* over a finished scaling sweep's sizes, and
    the answer to one question: the smallest model (non-embedding parameters) predicted to learn
    a task at ``frequency`` per token, or the lowest frequency a model of ``params`` learns.
    Every answer carries its 95% interval and how far outside the fitted range it lies.
    ``exclude_largest``: fit without the largest size and predict its f* (the test a user
    relies on: does the fit predict a size it has not seen?)."""
    if frequency is not None and params is not None:
        raise ConfigError("sizing", "both --frequency and --params given", "one question at a time")
    path = Path(sweep_dir) / "scaling" / "critical.parquet"
    if not path.exists():
        raise ConfigError("sweep", f"{sweep_dir} has no scaling/critical.parquet",
                          "a folder where `raretask lm sweep cpu-scaling` (or another scaling sweep) finished")
    crit = pd.read_parquet(path)
    law = fit(crit, exclude_largest)
    tw, tp, tslope = theory_curve()
    res = {"fitted_sizes": [{"non_embedding_params": int(p), "f_star": f, "residual_log10": r}
                            for p, f, r in zip(law.params, law.f_star, law.residuals)],
           "fitted_range": list(law.range), "exponent": law.exponent,
           "exponent_interval": [law.exponent_lo, law.exponent_hi], "per_doubling": law.per_doubling,
           "exponent_in_width": 2 * law.exponent, "theory_exponent_in_width": tslope,
           "left_out": [r.preset for r in crit.itertuples() if not (r.bracketed and np.isfinite(r.f_star))]}
    if exclude_largest:
        big = crit.loc[crit["non_embedding_params"].idxmax()]
        ans = scaling.lowest_frequency_for(law, float(big["non_embedding_params"]))
        measured = float(big["f_star"])
        res["held_out"] = {"preset": big["preset"], "non_embedding_params": int(big["non_embedding_params"]),
                           "predicted_f_star": ans.value, "interval": [ans.lo, ans.hi],
                           "measured_f_star": measured,
                           "measured_interval": [float(big["f_star_lo"]), float(big["f_star_hi"])],
                           "measured_bracketed": bool(big["bracketed"]),
                           "ratio_predicted_to_measured": ans.value / measured if measured > 0 else float("nan"),
                           "measured_inside_interval": bool(ans.lo <= measured <= ans.hi),
                           "outside_range": ans.outside_range}
    if frequency is not None:
        a = scaling.smallest_params_for(law, float(frequency))
        res["answer"] = {"question": "smallest model for frequency", "frequency": float(frequency),
                         "non_embedding_params": a.value, "interval": [a.lo, a.hi], "outside_range": a.outside_range}
    if params is not None:
        a = scaling.lowest_frequency_for(law, float(params))
        res["answer"] = {"question": "lowest frequency for model", "non_embedding_params": float(params),
                         "frequency": a.value, "interval": [a.lo, a.hi], "outside_range": a.outside_range}
    return res


def sizing_text(res: dict) -> str:
    """The sizing answer as the CLI prints it."""
    lo, hi = res["fitted_range"]
    lines = [f"fit: f* = c * P^b over {len(res['fitted_sizes'])} sizes, P = non-embedding parameters "
             f"{lo:,.0f}..{hi:,.0f}",
             f"  b = {res['exponent']:+.3f} (95% [{res['exponent_interval'][0]:+.3f}, "
             f"{res['exponent_interval'][1]:+.3f}]): f* x{res['per_doubling']:.3f} per doubling of P",
             f"  in width (P ~ width^2 at fixed depth): {res['exponent_in_width']:+.3f}; the synthetic theory's "
             f"p*(N) of the paper mixture's rarest task: {res['theory_exponent_in_width']:+.3f}"]
    for s in res["fitted_sizes"]:
        lines.append(f"  P = {s['non_embedding_params']:>10,}: f* = {s['f_star']:.3g}/token, "
                     f"residual {s['residual_log10']:+.3f} decades")
    if res["left_out"]:
        lines.append(f"  not fitted (f* outside its grid or not measurable): {', '.join(res['left_out'])}")
    if "held_out" in res:
        h = res["held_out"]
        lines.append(f"held-out largest size {h['preset']} (P = {h['non_embedding_params']:,}): predicted f* "
                     f"{h['predicted_f_star']:.3g} [{h['interval'][0]:.3g}, {h['interval'][1]:.3g}], measured "
                     f"{h['measured_f_star']:.3g}; predicted / measured = {h['ratio_predicted_to_measured']:.3f}; "
                     f"measured {'inside' if h['measured_inside_interval'] else 'OUTSIDE'} the interval "
                     f"(extrapolated x{h['outside_range']:.2f} beyond the fitted range)")
    a = res.get("answer")
    if a:
        where = ("inside the fitted range" if a["outside_range"] <= 1.0 else
                 f"EXTRAPOLATED: x{a['outside_range']:.2f} outside the fitted range {lo:,.0f}..{hi:,.0f}")
        if a["question"] == "smallest model for frequency":
            lines.append(f"smallest model predicted to learn a task at {a['frequency']:.3g}/token: "
                         f"P = {a['non_embedding_params']:,.0f} non-embedding parameters "
                         f"[{a['interval'][0]:,.0f}, {a['interval'][1]:,.0f}] ({where})")
        else:
            lines.append(f"lowest frequency a model of P = {a['non_embedding_params']:,.0f} learns: "
                         f"{a['frequency']:.3g}/token [{a['interval'][0]:.3g}, {a['interval'][1]:.3g}] ({where})")
    return "\n".join(lines)
