"""The sizing answer of a scaling sweep (``raretask lm sizing``) and the tables the scaling
report shows about it: per-size f* from runs, the law with its confidence and prediction
intervals, the check that f* falls at every step of the ladder, rollout validation (fit the
k smallest sizes, predict the next) and the comparison of two replicate sweeps.

Reads ``SWEEP/scaling/critical.parquet`` (one row per size, written by the scaling report)
or, for ``critical_table``, the sweep's checkpoint table. Definitions: ``raretask.lm.scaling``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, RaretaskError
from ..report.html import Check
from . import scaling
from .scaling import interval_text

FINAL_CHECKPOINTS = 3


# ---- per size ----------------------------------------------------------------------------------

def run_points(df: pd.DataFrame, final_checkpoints: int = FINAL_CHECKPOINTS) -> pd.DataFrame:
    """One row per rate run (grid and seeds, not gap runs): its size, per-token frequency,
    seed and final test accuracy, the mean over its last ``final_checkpoints`` checkpoints
    (so a run is one observation, never several)."""
    rated = df[df["kind"].isin(("grid", "seed"))]
    last = rated.sort_values("step").groupby("run").tail(final_checkpoints)
    return (last.groupby("run", sort=False)
            .agg(preset=("preset", "first"), non_embedding_params=("non_embedding_params", "first"),
                 params=("params", "first"), per_token_frequency=("per_token_frequency", "first"),
                 seed=("seed", "first"), kind=("kind", "first"), test_accuracy=("test_accuracy", "mean"),
                 checkpoints=("step", "size"),
                 **({"rate": ("rate", "first")} if "rate" in last else {}))
            .reset_index())


def sweep_seed_noise(points: pd.DataFrame) -> tuple[float, int]:
    """The sweep's seed-to-seed sd of a run's final accuracy, pooled over its (size, rate)
    cells run with more than one seed; (sd, degrees of freedom)."""
    groups = [g["test_accuracy"].values for _, g in points.groupby(["preset", "per_token_frequency"])]
    return scaling.seed_noise(groups)


def critical_table(df: pd.DataFrame, chance: float, final_checkpoints: int = FINAL_CHECKPOINTS,
                   n_boot: int = 1000) -> pd.DataFrame:
    """f* per size (``scaling.critical_frequency``) from its runs, each run redrawn in the
    bootstrap with the sweep's pooled seed noise (the residual spread when no cell has two
    seeds). Censored sizes keep f* = nan and say on which side."""
    pts = run_points(df, final_checkpoints)
    noise, dof = sweep_seed_noise(pts)
    rows = []
    for preset, g in pts.groupby("preset", sort=False):
        cf = scaling.critical_frequency(g["per_token_frequency"], g["test_accuracy"], chance,
                                        noise_sd=noise if dof else None, n_boot=n_boot)
        rows.append({"preset": preset, "non_embedding_params": int(g["non_embedding_params"].iloc[0]),
                     "params": int(g["params"].iloc[0]), "f_star": cf.f_star, "f_star_lo": cf.lo,
                     "f_star_hi": cf.hi, "se_log10": cf.se_log10, "censored": cf.censored,
                     "bracketed": cf.bracketed, "level": cf.level, "f_star_ceiling": cf.f_star_ceiling,
                     "ceiling": cf.ceiling, "slope_per_decade": cf.slope, "runs": cf.runs, "rates": cf.rates,
                     "f_min": cf.f_min, "f_max": cf.f_max, "noise_sd": cf.noise_sd, "noise_dof": dof,
                     "converged": cf.converged, "censored_draws": cf.censored_draws,
                     "rate_min": float(g["rate"].min()) if "rate" in g else np.nan,
                     "rate_max": float(g["rate"].max()) if "rate" in g else np.nan})
    return pd.DataFrame(rows).sort_values("non_embedding_params").reset_index(drop=True)


def describe_row(r) -> str:
    """A critical.parquet row as text (``scaling.f_star_text``)."""
    return scaling.f_star_text(r.f_star, r.f_star_lo, r.f_star_hi, getattr(r, "censored", ""), r.f_min, r.f_max,
                               getattr(r, "rate_min", None), getattr(r, "rate_max", None),
                               getattr(r, "converged", True))


# ---- the law -----------------------------------------------------------------------------------

def measured(crit: pd.DataFrame) -> pd.DataFrame:
    """The sizes whose f* is a number (not censored, fitted)."""
    ok = np.isfinite(crit["f_star"]) & crit["bracketed"].astype(bool)
    return crit[ok].sort_values("non_embedding_params")


def fit(crit: pd.DataFrame, exclude_largest: bool = False) -> scaling.PowerLaw:
    """The law of f* in non-embedding parameters over the sizes with a measured f*
    (a censored size is a bound, not a point)."""
    if crit["non_embedding_params"].nunique() < 2:
        raise ConfigError("sweep", f"{crit['non_embedding_params'].nunique()} model size(s)",
                          "a scaling sweep of at least two sizes (a law across sizes needs them)")
    c = measured(crit)
    if exclude_largest:
        c = c[c["non_embedding_params"] < crit["non_embedding_params"].max()]
    if len(c) < 2:
        state = ", ".join(f"{r.preset}: {describe_row(r)}" for r in crit.itertuples())
        raise RaretaskError(f"cannot fit f*(size): {len(c)} size(s) with a measured f*"
                            f"{' (the largest left out)' if exclude_largest else ''}, at least 2 needed ({state}); "
                            "a sweep whose rates bracket each size's learned level is needed")
    se = c["se_log10"] if "se_log10" in c else None
    return scaling.fit_power_law(c["non_embedding_params"], c["f_star"], se)


def _pair_verdict(a, b) -> tuple[bool | None, str]:
    """Does f* fall from size a to the larger b? (True, False, or None: not resolved)."""
    ca, cb = getattr(a, "censored", ""), getattr(b, "censored", "")
    if not ((ca or np.isfinite(a.f_star)) and (cb or np.isfinite(b.f_star))):
        return None, "an f* could not be fitted"
    if ca == cb and ca:
        return None, f"both {ca} the rates run"
    if ca == "above" or cb == "below":
        return True, f"{describe_row(a)} -> {describe_row(b)}"
    if ca == "below" or cb == "above":
        return False, f"{describe_row(a)} -> {describe_row(b)}"
    text = f"{a.f_star:.3g} -> {b.f_star:.3g} (x{b.f_star / a.f_star:.2f})"
    if b.f_star_hi < a.f_star_lo:
        return True, text
    if b.f_star_lo > a.f_star_hi:
        return False, text
    return None, text + ": the 95% intervals overlap"


def check_falls_with_size(crit: pd.DataFrame) -> list[Check]:
    """Sec. 4 / Fig. 5: f* falls at every adjacent pair of sizes. A pair answers yes only when
    its intervals separate (or censoring orders them); overlapping intervals are "not
    resolved" (n/a), never a yes. The overall row is yes only when every pair is."""
    c = crit.sort_values("non_embedding_params").reset_index(drop=True)
    name = "f* falls with model size at every adjacent pair"
    if len(c) < 2:
        return [Check.not_measurable(name, "every pair resolved and falling", "fewer than 2 sizes")]
    out, verdicts = [], []
    for a, b in zip(c.itertuples(), c.iloc[1:].itertuples()):
        ok, text = _pair_verdict(a, b)
        pname = f"f* falls from {a.preset} to {b.preset}"
        verdicts.append(ok)
        out.append(Check.not_measurable(pname, "falls, intervals apart", f"not resolved: {text}") if ok is None
                   else Check(pname, text, "falls, intervals apart", ok))
    yes, no = sum(v is True for v in verdicts), sum(v is False for v in verdicts)
    summary = f"{yes} of {len(verdicts)} pairs fall, {no} rise, {len(verdicts) - yes - no} not resolved"
    overall = (Check(name, summary, "every pair resolved and falling", False) if no else
               Check(name, summary, "every pair resolved and falling", True) if yes == len(verdicts) else
               Check.not_measurable(name, "every pair resolved and falling", summary))
    return [overall, *out]


def check_exponent(law: scaling.PowerLaw | None, why: str = "") -> Check:
    """The law's exponent: its whole 95% confidence interval below 0."""
    name = "power-law exponent of f* in non-embedding parameters below 0"
    if law is None:
        return Check.not_measurable(name, "exponent < 0, interval below 0", why or "fewer than 2 sizes with f*")
    return Check(name, f"{law.exponent:+.3f} [{law.exponent_lo:+.3f}, {law.exponent_hi:+.3f}]; "
                       f"x{law.per_doubling:.3f} per doubling", "exponent < 0, interval below 0",
                 bool(law.exponent_hi < 0))


# ---- validation --------------------------------------------------------------------------------

def rollout(crit: pd.DataFrame) -> pd.DataFrame:
    """Fit on the k smallest measured sizes, predict the next (k = 2 .. n-1): predicted f*,
    95% prediction interval, measured f*, ratio and whether it is covered. A next size whose
    f* is censored is listed with its bound and no coverage."""
    c = crit.sort_values("non_embedding_params").reset_index(drop=True)
    rows = []
    for k in range(2, len(c)):
        train = c.iloc[:k]
        nxt = c.iloc[k]
        try:
            law = fit(train)
        except (ConfigError, RaretaskError) as e:
            rows.append({"fitted": ", ".join(train["preset"]), "predicted_size": nxt["preset"],
                         "predicted": np.nan, "pi_lo": np.nan, "pi_hi": np.nan, "measured": nxt["f_star"],
                         "ratio": np.nan, "covered": None, "note": str(e).split(";")[0]})
            continue
        y, lo, hi = law.predict(float(nxt["non_embedding_params"]), "prediction")
        m = float(nxt["f_star"])
        cen = str(nxt.get("censored", "") or "")
        covered = None if (cen or not np.isfinite(m)) else bool(10**lo <= m <= 10**hi)
        # the other question: the size predicted to learn at the next size's measured f*
        inv = (scaling.smallest_params_for(law, m) if covered is not None and law.exponent < 0 and 0 < m < 1
               else None)
        rows.append({"fitted": ", ".join(measured(train)["preset"]), "predicted_size": nxt["preset"],
                     "predicted": float(10**y), "pi_lo": float(10**lo), "pi_hi": float(10**hi), "measured": m,
                     "ratio": float(10**y / m) if np.isfinite(m) and m > 0 else np.nan, "covered": covered,
                     "params": float(nxt["non_embedding_params"]),
                     "params_predicted": inv.value if inv else np.nan, "params_lo": inv.lo if inv else np.nan,
                     "params_hi": inv.hi if inv else np.nan,
                     "params_covered": None if inv is None else bool(inv.lo <= nxt["non_embedding_params"] <= inv.hi),
                     "note": f"measured f* {cen} the rates run" if cen else
                     ("scatter and bend not estimable from 2 sizes" if not np.isfinite(law.tau2) else "")})
    return pd.DataFrame(rows, columns=["fitted", "predicted_size", "predicted", "pi_lo", "pi_hi", "measured", "ratio",
                                       "covered", "params", "params_predicted", "params_lo", "params_hi",
                                       "params_covered", "note"])


def rollout_text(t: pd.DataFrame) -> str:
    if t.empty:
        return "rollout: needs at least 3 sizes"
    lines = ["rollout (fit the smaller sizes, predict the next; 95% prediction interval):",
             f"  {'fitted':<22} {'next':<6} {'predicted':>10} {'interval':>22} {'measured':>10} {'ratio':>6}  covered"]
    for r in t.itertuples():
        cov = {True: "yes", False: "NO", None: "-"}[r.covered]
        lines.append(f"  {r.fitted:<22} {r.predicted_size:<6} {r.predicted:>10.3g} "
                     f"{'[%.3g, %.3g]' % (r.pi_lo, r.pi_hi):>22} {r.measured:>10.3g} {r.ratio:>6.2f}  {cov}"
                     + (f"  ({r.note})" if r.note else ""))
    n = t["covered"].notna().sum()
    covered = int(t["covered"].eq(True).sum())
    lines.append(f"  coverage: {covered} of {int(n)} predictions inside their interval"
                 + ("" if n else " (none measurable)"))
    inv = t[t["params_covered"].notna()]
    if len(inv):
        lines.append("  the other direction (--frequency): the smallest size predicted to learn at the next size's "
                     "measured f*, 95% prediction interval:")
        for r in inv.itertuples():
            lines.append(f"    {r.predicted_size:<6} P = {r.params:>12,.0f}: predicted {r.params_predicted:>12,.0f} "
                         f"{interval_text(r.params_lo, r.params_hi, '{:,.0f}'):>28}  "
                         f"{'yes' if r.params_covered else 'NO'}")
    return "\n".join(lines)


def compare_replicates(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per size, the f* of two replicate sweeps side by side, and whether each lies in the
    other's interval (censored sizes: whether both are censored on the same side)."""
    m = a.merge(b, on="preset", suffixes=("_a", "_b"))
    rows = []
    for r in m.itertuples():
        ca, cb = (r.censored_a or ""), (r.censored_b or "")
        if ca or cb:
            a_in_b = b_in_a = (ca == cb)
        else:
            a_in_b = bool(r.f_star_lo_b <= r.f_star_a <= r.f_star_hi_b)
            b_in_a = bool(r.f_star_lo_a <= r.f_star_b <= r.f_star_hi_a)
        rows.append({"preset": r.preset, "non_embedding_params": r.non_embedding_params_a,
                     "a": _row_text(r, "a"), "b": _row_text(r, "b"),
                     "ratio_b_to_a": r.f_star_b / r.f_star_a if not (ca or cb) else np.nan,
                     "a_in_b": a_in_b, "b_in_a": b_in_a})
    return pd.DataFrame(rows)


def _row_text(r, s: str) -> str:
    """One side (suffix ``s``) of a merged row of two critical tables, as text."""
    return scaling.f_star_text(*(getattr(r, f"{k}_{s}") for k in ("f_star", "f_star_lo", "f_star_hi", "censored",
                                                                   "f_min", "f_max")))


# ---- the command -------------------------------------------------------------------------------

def theory_curve(widths=(8, 16, 32, 64, 128, 256, 512)) -> tuple[np.ndarray, np.ndarray, float]:
    """The synthetic theory's p*(N) for the paper mixture's rarest task (K = 32)."""
    from ..mixture import MixtureSpec

    spec = MixtureSpec()
    w = np.asarray(widths)
    p, slope = scaling.theory_exponent(spec, spec.K, w)
    return w, p, slope


def read_critical(sweep_dir: str | Path) -> pd.DataFrame:
    path = Path(sweep_dir) / "scaling" / "critical.parquet"
    if not path.exists():
        raise ConfigError("sweep", f"{sweep_dir} has no scaling/critical.parquet",
                          "a folder where `raretask lm sweep cpu-scaling` (or another scaling sweep) finished")
    crit = pd.read_parquet(path)
    if "censored" not in crit:
        raise ConfigError("sweep", f"{path} was written before f* was defined at the learned level",
                          "the sweep's report rewritten: re-run its `raretask lm sweep` command (training resumes "
                          "as complete; only the report is redone)")
    return crit


def sizing(sweep_dir: str | Path, frequency: float | None = None, params: float | None = None,
           exclude_largest: bool = False, validate: bool = False, replicate: str | Path | None = None) -> dict:
    """``raretask lm sizing``: the law of f* over a finished scaling sweep's sizes and the
    answer to one question, each with its prediction interval (the answer) and confidence
    interval (the curve), and how far outside the fitted range it lies.
    ``exclude_largest``: fit without the largest size and predict it. ``validate``: the
    rollout table. ``replicate``: a second sweep of the same grid, compared size by size."""
    if frequency is not None and params is not None:
        raise ConfigError("sizing", "both --frequency and --params given", "one question at a time")
    crit = read_critical(sweep_dir)
    law = fit(crit, exclude_largest)
    tw, tp, tslope = theory_curve()
    res = {"sizes": [{"preset": r.preset, "non_embedding_params": int(r.non_embedding_params),
                      "f_star": r.f_star, "interval": [r.f_star_lo, r.f_star_hi], "censored": r.censored,
                      "f_star_ceiling": r.f_star_ceiling, "text": describe_row(r)} for r in crit.itertuples()],
           "fitted_sizes": [{"non_embedding_params": int(p), "f_star": f, "se_log10": s, "residual_log10": r}
                            for p, f, s, r in zip(law.params, law.f_star, law.se_log10, law.residuals)],
           "fitted_range": list(law.range), "exponent": law.exponent,
           "exponent_interval": [law.exponent_lo, law.exponent_hi], "per_doubling": law.per_doubling,
           "scatter_tau2": law.tau2, "new_size_se_log10": law.new_se_log10, "fit_converged": law.converged,
           "curvature": law.curvature, "curvature_se": law.curvature_se, "prediction_scatter2": law.scatter2,
           "straight_weight": law.straight_weight,
           "exponent_in_width": 2 * law.exponent, "theory_exponent_in_width": tslope,
           "left_out": [r.preset for r in crit.itertuples() if not (r.bracketed and np.isfinite(r.f_star))]}
    if exclude_largest:
        big = crit.loc[crit["non_embedding_params"].idxmax()]
        ans = scaling.lowest_frequency_for(law, float(big["non_embedding_params"]))
        m = float(big["f_star"])
        cen = str(big["censored"] or "")
        res["held_out"] = {"preset": big["preset"], "non_embedding_params": int(big["non_embedding_params"]),
                           "predicted_f_star": ans.value, "prediction_interval": [ans.lo, ans.hi],
                           "confidence_interval": [ans.conf_lo, ans.conf_hi], "measured_f_star": m,
                           "measured_text": describe_row(big), "measured_censored": cen,
                           "ratio_predicted_to_measured": ans.value / m if m > 0 else float("nan"),
                           "measured_inside_prediction_interval": None if cen or not np.isfinite(m) else
                           bool(ans.lo <= m <= ans.hi),
                           "outside_range": ans.outside_range}
    if validate:
        res["rollout"] = rollout(crit).to_dict(orient="records")
    if replicate is not None:
        res["replicate"] = {"sweep": str(replicate),
                            "sizes": compare_replicates(crit, read_critical(replicate)).to_dict(orient="records")}
    for key, value in (("frequency", frequency), ("params", params)):
        if value is None:
            continue
        a = (scaling.smallest_params_for(law, float(value)) if key == "frequency" else
             scaling.lowest_frequency_for(law, float(value)))
        res["answer"] = {"question": "smallest model for frequency" if key == "frequency" else
                         "lowest frequency for model", key: float(value),
                         "value": a.value, "prediction_interval": [a.lo, a.hi],
                         "confidence_interval": [a.conf_lo, a.conf_hi], "outside_range": a.outside_range}
    return res


def jsonable(o):
    """``o`` with numpy scalars as Python numbers and nan/inf as None (strict JSON)."""
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, (np.bool_, bool)):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def curvature_text(res: dict) -> str:
    """The bend line of ``sizing_text``: the bent law beside the straight one and its share of
    the prediction (``scaling.PowerLaw``)."""
    k, se, n = res.get("curvature"), res.get("curvature_se"), len(res["fitted_sizes"])
    if k is None or not math.isfinite(k):
        return (f"bend: not estimable from {n} sizes; the prediction interval is the straight law's alone, "
                "too narrow if the law bends")
    w = res["straight_weight"]
    scatter = res.get("prediction_scatter2")
    return (f"bend: {k:+.3f} (se {se:.3f}) decades per decade^2 of log10 P over the {n} sizes; the prediction interval "
            f"averages the straight law (weight {w:.2f}) and the bent one (weight {1 - w:.2f}, Akaike weights), so it "
            "widens fastest where they part"
            + ("; with 3 sizes the line's one spare degree of freedom is read as the bend" if n == 3 else "")
            + (f"; scatter around the bent law tau = {math.sqrt(scatter):.3f} decades"
               if n > 3 and scatter is not None and math.isfinite(scatter) else ""))


def _outside_note(value: float, interval) -> str:
    """Said when the straight law's value lies outside its own prediction interval (a bend the
    sizes show carries the model average away from the line)."""
    lo, hi = interval
    if lo is None or hi is None or lo <= value <= hi:
        return ""
    return " (the straight law's value lies outside it: the bend the sizes show moves where a measurement lands)"


def sizing_text(res: dict) -> str:
    """The sizing answer as the CLI prints it."""
    lo, hi = res["fitted_range"]
    lines = ["f* per size (test accuracy crosses the learned level, the midpoint of chance and 1; 95% interval "
             "from redrawn runs):"]
    lines += [f"  {s['preset']:<6} P = {s['non_embedding_params']:>10,}: {s['text']}" for s in res["sizes"]]
    tau = res["scatter_tau2"]
    lines += [f"law: f* = c * P^b over {len(res['fitted_sizes'])} sizes, P = non-embedding parameters "
              f"{lo:,.0f}..{hi:,.0f} (Huber fit in log space)",
              f"  b = {res['exponent']:+.3f} (95% confidence [{res['exponent_interval'][0]:+.3f}, "
              f"{res['exponent_interval'][1]:+.3f}]): f* x{res['per_doubling']:.3f} per doubling of P",
              "  scatter of sizes around the law: " + ("not estimable from 2 sizes (taken as 0)"
                                                       if not math.isfinite(tau)
                                                       else f"tau = {math.sqrt(tau):.3f} decades"),
              "  " + curvature_text(res),
              f"  in width (P ~ width^2 at fixed depth): {res['exponent_in_width']:+.3f}; the synthetic theory's "
              f"p*(N) of the paper mixture's rarest task: {res['theory_exponent_in_width']:+.3f}"]
    for s in res["fitted_sizes"]:
        lines.append(f"  P = {s['non_embedding_params']:>10,}: residual {s['residual_log10']:+.3f} decades "
                     f"(its own error {s['se_log10']:.3f})")
    if res["left_out"]:
        lines.append(f"  not fitted (censored or not measurable): {', '.join(res['left_out'])}")
    if "held_out" in res:
        h = res["held_out"]
        pi, ci = h["prediction_interval"], h["confidence_interval"]
        verdict = ("its f* is censored, so no number to compare" if h["measured_inside_prediction_interval"] is None
                   else "inside the prediction interval" if h["measured_inside_prediction_interval"]
                   else "OUTSIDE the prediction interval")
        lines.append(f"held-out largest size {h['preset']} (P = {h['non_embedding_params']:,}, extrapolated "
                     f"x{h['outside_range']:.2f}): predicted f* {h['predicted_f_star']:.3g}, 95% prediction interval "
                     f"{interval_text(*pi)}{_outside_note(h['predicted_f_star'], pi)} (confidence "
                     f"{interval_text(*ci)}); measured {h['measured_text']}; "
                     + ("" if h["measured_censored"] else
                        f"predicted / measured = {h['ratio_predicted_to_measured']:.3f}; ") + verdict)
    if "rollout" in res:
        lines.append(rollout_text(pd.DataFrame(res["rollout"])))
    if "replicate" in res:
        lines.append(f"replicate sweep {res['replicate']['sweep']} (b) beside this one (a):")
        for r in res["replicate"]["sizes"]:
            lines.append(f"  {r['preset']:<6} a {r['a']:<34} b {r['b']:<34} a in b's: "
                         f"{'yes' if r['a_in_b'] else 'NO'}, b in a's: {'yes' if r['b_in_a'] else 'NO'}")
    a = res.get("answer")
    if a:
        where = ("inside the fitted range" if a["outside_range"] <= 1.0 else
                 f"EXTRAPOLATED: x{a['outside_range']:.2f} outside the fitted range {lo:,.0f}..{hi:,.0f}")
        pi, ci = a["prediction_interval"], a["confidence_interval"]
        if a["question"] == "smallest model for frequency":
            lines.append(f"smallest model predicted to learn a task at {a['frequency']:.3g}/token: "
                         f"P = {a['value']:,.0f} non-embedding parameters ({where})")
            lines.append(f"  95% prediction interval {interval_text(*pi, '{:,.0f}')}{_outside_note(a['value'], pi)}: "
                         "the sizes whose measured f* may still land at this frequency; this is the interval to plan with")
            lines.append(f"  95% confidence interval {interval_text(*ci, '{:,.0f}')}: "
                         "where the fitted curve crosses it")
        else:
            lines.append(f"lowest frequency a model of P = {a['params']:,.0f} learns: {a['value']:.3g}/token ({where})")
            lines.append(f"  95% prediction interval {interval_text(*pi)}{_outside_note(a['value'], pi)}: "
                         "where a new run of this size will measure f*; "
                         "this is the interval to plan with")
            lines.append(f"  95% confidence interval {interval_text(*ci)}: where the fitted curve is")
    return "\n".join(lines)
