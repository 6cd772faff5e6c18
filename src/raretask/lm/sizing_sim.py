"""Calibration of the sizing intervals by simulation (``raretask bench sizing``).

A simulated sweep has a known truth: log10 f*(P) is a power law, optionally bent (a
quadratic term in log10 P), and each size's final test accuracy is a logistic in log10
frequency that crosses the learned level at that f*. A run's accuracy is the curve plus seed
noise; its last checkpoints add a little checkpoint noise. The sweep is shaped like
``cpu-scaling``: the same sizes and rates, one grid seed, and a second seed at the two rates
nearest each size's learned level, chosen from the grid's final accuracy as the real sweep
chooses them.

For each simulated sweep, the largest size is held out: the law is fitted on the others and
its 95% prediction interval is checked against the held-out size's *measured* f* (what a
user would measure, noise included). The share of sweeps where it covers is the coverage;
calibrated means 90-98% (``check_calibration``).

The method before (kept here only to measure it, ``legacy_*``): f* at the midpoint of chance
and the fitted ceiling, a bootstrap over points (every last checkpoint of every run as an
independent point), and a weighted line with a parametric bootstrap of the sizes' intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..report.html import Check
from . import scaling
from ._tasks import CHANCE

CPU_SCALING_SHAPE = {"params": (18432, 73728, 294912, 1179648), "rates": (16, 5.656854, 2, 0.707107, 0.25),
                     "batch_tokens": 1024, "chance": 0.5, "final_checkpoints": 3}
"""The cpu-scaling sweep's shape: non-embedding parameters of w24..w192, rates per batch of 16 x 64."""


@dataclass(frozen=True)
class Truth:
    """The known truth of a simulated sweep (defaults: ``measured_truth`` of the real sweep)."""

    intercept: float
    """log10 f* at P = 1 of the straight part."""
    exponent: float
    """d log10 f* / d log10 P at the geometric middle of the sizes."""
    curvature: float = 0.0
    """Quadratic term: + curvature * (log10 P - middle)^2 (positive: the fall slows with size)."""
    slope: float | tuple = 3.0
    """Logistic slope of accuracy per decade of frequency (one for all sizes, or one per size)."""
    ceiling: float | tuple = 0.98
    """Accuracy the curve saturates at (one for all sizes, or one per size)."""
    seed_sd: float = 0.05
    """Seed-to-seed sd of a run's final accuracy."""
    checkpoint_sd: float = 0.01
    """Sd of one of a run's last checkpoints around the run's level."""

    def per_size(self, name: str, n: int) -> np.ndarray:
        """``slope`` or ``ceiling`` as one value per size."""
        v = np.atleast_1d(np.asarray(getattr(self, name), float))
        if len(v) not in (1, n):
            raise ConfigError(name, f"{len(v)} values for {n} sizes", "one value, or one per size")
        return np.broadcast_to(v, (n,))

    def log_f_star(self, params, middle: float) -> np.ndarray:
        x = np.log10(np.asarray(params, float))
        return self.intercept + self.exponent * x + self.curvature * (x - middle) ** 2


@dataclass(frozen=True)
class SweepShape:
    """What a simulated sweep runs."""

    params: tuple = CPU_SCALING_SHAPE["params"]
    rates: tuple = CPU_SCALING_SHAPE["rates"]
    batch_tokens: int = CPU_SCALING_SHAPE["batch_tokens"]
    chance: float = CPU_SCALING_SHAPE["chance"]
    final_checkpoints: int = CPU_SCALING_SHAPE["final_checkpoints"]
    boundary_seeds: int = 1

    def __post_init__(self):
        if len(self.params) < 3:
            raise ConfigError("params", f"{len(self.params)} sizes", "at least 3 (two to fit, one held out)")
        if len(self.rates) < 3:
            raise ConfigError("rates", f"{len(self.rates)} rates", "at least 3")

    @property
    def middle(self) -> float:
        return float(np.mean(np.log10(self.params)))


def simulate_sweep(shape: SweepShape, truth: Truth, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated sweep: a row per (run, last checkpoint) with preset, non_embedding_params,
    per_token_frequency, seed, kind and test_accuracy (the columns the report's tables use)."""
    level = scaling.learned_level(shape.chance)
    f = np.asarray(shape.rates, float) / shape.batch_tokens
    xs = np.log10(f)
    rows = []
    slopes, ceilings = truth.per_size("slope", len(shape.params)), truth.per_size("ceiling", len(shape.params))
    for i, (P, xstar) in enumerate(zip(shape.params, truth.log_f_star(shape.params, shape.middle))):
        k, ceil = float(slopes[i]), float(ceilings[i])
        if not ceil > level:
            raise ConfigError("ceiling", f"{ceil} for size {P}", f"above the learned level {level}")
        x0 = xstar - math.log((level - shape.chance) / (ceil - level)) / k
        mean = scaling._curve(xs, x0, k, ceil, shape.chance)

        def runs(seed, which):
            for j in which:
                a = mean[j] + rng.normal(0, truth.seed_sd)
                for c in range(shape.final_checkpoints):
                    rows.append({"preset": f"s{i}", "non_embedding_params": int(P), "params": int(P),
                                 "per_token_frequency": f[j], "seed": seed, "kind": "grid" if seed == 0 else "seed",
                                 "run": f"s{i}-r{j}-seed{seed}", "step": c,
                                 "test_accuracy": float(np.clip(a + rng.normal(0, truth.checkpoint_sd), 0, 1))})
        runs(0, range(len(f)))
        final = {r["per_token_frequency"]: r["test_accuracy"] for r in rows
                 if r["preset"] == f"s{i}" and r["seed"] == 0 and r["step"] == shape.final_checkpoints - 1}
        near = sorted(range(len(f)), key=lambda j: (abs(final[f[j]] - level), f[j]))[:2]
        for s in range(1, shape.boundary_seeds + 1):
            runs(s, near)
    return pd.DataFrame(rows)


# ---- the two methods ---------------------------------------------------------------------------

def new_prediction(df: pd.DataFrame, chance: float, n_boot: int = 200) -> dict:
    """The current method: per-size f* from runs (``lm.sizing.critical_table``), the law on
    all but the largest, its 95% prediction interval at the largest."""
    from ..errors import RaretaskError
    from .sizing import critical_table, fit

    crit = critical_table(df, chance, final_checkpoints=int(df["step"].max()) + 1, n_boot=n_boot)
    big = crit.iloc[-1]
    try:
        law = fit(crit, exclude_largest=True)
    except (ConfigError, RaretaskError):  # fewer than 2 measured sizes: listed as not fitted, not counted
        return {"measured": float(big["f_star"]), "censored": str(big["censored"]), "fitted": False}
    P = float(big["non_embedding_params"])
    y, lo, hi = law.predict(P, "prediction")
    _, slo, shi = without_bend(law).predict(P, "prediction")
    return {"measured": float(big["f_star"]), "censored": str(big["censored"]), "fitted": True,
            "predicted": float(10**y), "lo": float(10**lo), "hi": float(10**hi), "sizes_fitted": len(law.params),
            "no_bend": (float(10**slo), float(10**shi))}


def without_bend(law: scaling.PowerLaw) -> scaling.PowerLaw:
    """``law`` as it was before the bent law joined it (stops 26-27): the straight law alone,
    the scatter around the line (``tau2``) in its prediction; kept only to measure what the
    model average adds."""
    return replace(law, bent_coef=(), straight_weight=1.0, scatter2=law.tau2)


def no_bend_variant(r: dict) -> dict:
    """``new_prediction``'s result with the interval of ``without_bend``."""
    if not r["fitted"]:
        return r
    return {**r, "lo": r["no_bend"][0], "hi": r["no_bend"][1]}


def t_variant(r: dict) -> dict:
    """``new_prediction``'s result ``r`` with a Student-t quantile on n - 2 degrees of freedom
    in place of the normal one (the textbook small-sample correction when the variance is
    estimated from the residuals alone); measured to show why it is not the default."""
    from scipy.stats import t as student

    if not r["fitted"] or r["sizes_fitted"] < 3:
        return {**r, "fitted": False, "why": "fewer than 3 sizes fitted (t needs n - 2 >= 1)"}
    k = float(student.ppf(0.975, r["sizes_fitted"] - 2)) / scaling.Z95
    y = math.log10(r["predicted"])
    return {**r, "lo": 10 ** (y - k * (y - math.log10(r["lo"]))), "hi": 10 ** (y + k * (math.log10(r["hi"]) - y))}


def _legacy_critical(f, acc, chance, n_boot, rng):
    x = np.log10(np.asarray(f, float))
    y = np.asarray(acc, float)
    x0, _, _, _ = scaling.fit_logistic(x, y[None], chance, margin=3.0)
    W = rng.multinomial(len(x), np.full(len(x), 1.0 / len(x)), size=n_boot).astype(float)
    distinct = np.array([len(np.unique(x[w > 0])) for w in W])
    bx0, _, _, _ = scaling.fit_logistic(x, np.tile(y, (n_boot, 1)), chance, margin=3.0, W=W)
    bx0 = bx0[distinct >= 3]
    lo, hi = np.quantile(bx0, [0.025, 0.975]) if len(bx0) >= 20 else (np.nan, np.nan)
    return float(x0[0]), float(lo), float(hi), bool(x.min() <= x0[0] <= x.max())


def legacy_prediction(df: pd.DataFrame, chance: float, n_boot: int = 200, seed: int = 0) -> dict:
    """The method before issue 21 (see the module docstring), at the largest size."""
    rng = np.random.default_rng(seed)
    sizes = []
    for P, g in df.groupby("non_embedding_params"):
        x0, lo, hi, ok = _legacy_critical(g["per_token_frequency"], g["test_accuracy"], chance, n_boot, rng)
        sizes.append((float(P), x0, lo, hi, ok))
    *fit_on, big = sorted(sizes)
    use = [s for s in fit_on if s[4] and np.isfinite(s[2])]
    out = {"measured": float(10 ** big[1]), "censored": "" if big[4] else "outside", "fitted": len(use) >= 2}
    if not out["fitted"]:
        return out
    x = np.log10([s[0] for s in use])
    yv = np.asarray([s[1] for s in use])
    sd = np.asarray([(s[3] - s[2]) / (2 * scaling.Z95) for s in use])
    sd = np.where(sd > 0, sd, np.median(sd[sd > 0]) if (sd > 0).any() else 0.1)
    A = np.stack([np.ones_like(x), x], 1)
    w = 1 / sd**2

    def wls(v):
        return np.linalg.lstsq(A * np.sqrt(w)[:, None], v * np.sqrt(w), rcond=None)[0]

    c, b = wls(yv)
    boot = np.asarray([wls(yv + rng.normal(0, sd)) for _ in range(2000)])
    xb = math.log10(big[0])
    lo, hi = np.quantile(boot[:, 0] + boot[:, 1] * xb, [0.025, 0.975])
    out.update(predicted=float(10 ** (c + b * xb)), lo=float(10**lo), hi=float(10**hi))
    return out


# ---- coverage ----------------------------------------------------------------------------------

@dataclass
class Coverage:
    """Coverage of one method over simulated sweeps."""

    method: str
    law: str
    sweeps: int
    counted: int
    """Sweeps whose held-out size has a measured (uncensored) f* and whose law could be fitted."""
    covered: int
    median_width_decades: float
    """Median width of the 95% interval, in decades of f*."""
    reasons: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.covered / self.counted if self.counted else float("nan")


def coverage(shape: SweepShape, truth: Truth, sweeps: int, seed: int = 0, n_boot: int = 200,
             methods=("new", "legacy"), progress=None) -> list[Coverage]:
    """Simulate ``sweeps`` sweeps of ``truth`` and measure each method's coverage of the held-out
    largest size. ``progress(1)`` is called after each sweep."""
    if sweeps < 1:
        raise ConfigError("sweeps", f"{sweeps}", ">= 1")
    return merge([coverage_part(shape, truth, range(sweeps), seed, n_boot, methods, progress)])


def law_label(truth: Truth) -> str:
    return "straight" if truth.curvature == 0 else f"bent ({truth.curvature:+.3f} decades per decade^2)"


def coverage_part(shape: SweepShape, truth: Truth, indices, seed: int = 0, n_boot: int = 200,
                  methods=("new", "legacy"), progress=None) -> dict:
    """The raw counts of ``coverage`` over the simulated sweeps numbered ``indices`` (sweep i
    draws from the generator seeded (seed, i), so a split over workers gives the same
    numbers)."""
    res = {m: {"counted": 0, "covered": 0, "widths": [], "reasons": {}, "intervals": []} for m in methods}
    res["_meta"] = {"label": law_label(truth), "sweeps": 0}
    for i in indices:
        rng = np.random.default_rng([seed, i])
        res["_meta"]["sweeps"] += 1
        df = simulate_sweep(shape, truth, rng)
        new = (new_prediction(df, shape.chance, n_boot) if {"new", "new-t", "no-bend"} & set(methods) else None)
        for m in methods:
            r = (new if m == "new" else t_variant(new) if m == "new-t" else no_bend_variant(new) if m == "no-bend" else
                 legacy_prediction(df, shape.chance, n_boot, seed=int(rng.integers(2**31))))
            why = ("held-out size censored" if r["censored"] else
                   r.get("why", "law not fitted") if not r["fitted"] else "")
            if why:
                res[m]["reasons"][why] = res[m]["reasons"].get(why, 0) + 1
                continue
            res[m]["counted"] += 1
            res[m]["covered"] += int(r["lo"] <= r["measured"] <= r["hi"])
            res[m]["widths"].append(math.log10(r["hi"] / r["lo"]))
            res[m]["intervals"].append((r["predicted"], r["lo"], r["hi"], r["measured"]))
        if progress:
            progress(1)
    return res


def merge(parts: list[dict]) -> list[Coverage]:
    """``Coverage`` per method from the counts of one or more ``coverage_part`` calls."""
    out = []
    for m in [k for k in parts[0] if k != "_meta"]:
        reasons: dict = {}
        for p in parts:
            for k, v in p[m]["reasons"].items():
                reasons[k] = reasons.get(k, 0) + v
        widths = [w for p in parts for w in p[m]["widths"]]
        out.append(Coverage(m, parts[0]["_meta"]["label"], sum(p["_meta"]["sweeps"] for p in parts),
                            sum(p[m]["counted"] for p in parts), sum(p[m]["covered"] for p in parts),
                            float(np.median(widths)) if widths else float("nan"), reasons))
    return out


def rescaled(part: dict, method: str, scale: float) -> Coverage:
    """The coverage ``method`` would have had on the same simulated sweeps with each interval's
    half-widths (log space) multiplied by ``scale`` (< 1 only to show the check can fail)."""
    rows = part[method]["intervals"]
    covered, widths = 0, []
    for pred, lo, hi, m in rows:
        y = math.log10(pred)
        a, b = y - scale * (y - math.log10(lo)), y + scale * (math.log10(hi) - y)
        covered += int(a <= math.log10(m) <= b)
        widths.append(b - a)
    return Coverage(f"{method} x{scale:g}", part["_meta"]["label"], part["_meta"]["sweeps"], len(rows), covered,
                    float(np.median(widths)) if widths else float("nan"))


CALIBRATED = (0.90, 0.98)
"""A nominal 95% prediction interval is calibrated when its simulated coverage lies here."""


def check_calibration(cov: Coverage) -> Check:
    """Yes when the simulated coverage of the nominal 95% interval lies within ``CALIBRATED``."""
    name = f"{cov.method} method: 95% prediction interval of the held-out size, {cov.law} law"
    expected = f"coverage in [{CALIBRATED[0]:.0%}, {CALIBRATED[1]:.0%}]"
    if not cov.counted:
        return Check.not_measurable(name, expected, "no simulated sweep could be counted")
    return Check(name, f"{cov.rate:.1%} of {cov.counted} sweeps (median width {cov.median_width_decades:.2f} "
                       "decades)", expected, bool(CALIBRATED[0] <= cov.rate <= CALIBRATED[1]))


# ---- the truth from a real sweep ---------------------------------------------------------------

def measured_truth(sweep_dir) -> tuple[Truth, SweepShape, dict]:
    """The truth to simulate, estimated from a finished scaling sweep: the law (straight) and
    its curvature (a quadratic in log10 P over the measured sizes, 0 with fewer than 3), the
    median logistic slope and ceiling, the pooled seed noise of its seed pairs, and the sd of a
    run's last checkpoints around their mean. Returns (truth, shape, provenance)."""
    import json
    from pathlib import Path

    from .scaling_report import run_table
    from .sizing import critical_table, measured, run_points, sweep_seed_noise

    rec = Path(sweep_dir) / "sweep.json"
    if not rec.exists():
        raise ConfigError("from", f"{sweep_dir} has no sweep.json", "a finished scaling sweep (raretask lm sweep)")
    sw = json.loads(rec.read_text())["sweep"]
    df = run_table(sweep_dir)
    fc = int(sw.get("final_checkpoints", 3))
    chance = CHANCE[sw["task"]]
    crit = critical_table(df, chance, fc, n_boot=200)
    pts = run_points(df, fc)
    noise, dof = sweep_seed_noise(pts)
    last = df[df["kind"].isin(("grid", "seed"))].sort_values("step").groupby("run").tail(fc)
    ck = float(np.sqrt(last.groupby("run")["test_accuracy"].var(ddof=1).mean()))
    m = measured(crit)
    x, y = np.log10(m["non_embedding_params"].values.astype(float)), np.log10(m["f_star"].values)
    params = tuple(int(p) for p in sorted(crit["non_embedding_params"]))
    middle = float(np.mean(np.log10(params)))
    curv = float(np.polyfit(x - middle, y, 2)[0]) if len(m) >= 3 else 0.0
    b, c = np.polyfit(x, y, 1)
    # per size: its own fitted slope and ceiling where its f* is measured, the median elsewhere
    crit = crit.set_index("non_embedding_params").loc[list(params)]
    ok = np.isfinite(crit["f_star"]).values & crit["bracketed"].astype(bool).values
    slopes = np.where(ok, crit["slope_per_decade"], np.median(m["slope_per_decade"]))
    ceilings = np.where(ok, crit["ceiling"], np.median(m["ceiling"]))
    truth = Truth(float(c), float(b), 0.0, tuple(float(v) for v in slopes), tuple(float(v) for v in ceilings),
                  float(noise), ck)
    batch = int(sw["train"]["batch_size"]) * int(sw["train"]["seq_len"])
    shape = SweepShape(params, tuple(float(r) for r in sw["rates"]), batch, chance, fc, len(sw.get("boundary_seeds", [])))
    # the truth simulated is straight (its "curvature" 0); the bend the sweep shows is the bent law's
    prov = {"sweep": str(sweep_dir), "seed_noise_dof": dof, "sizes_measured": int(len(m)), **asdict(truth),
            "measured_curvature": curv}
    return truth, shape, prov


# ---- the benchmark -----------------------------------------------------------------------------

MEASURED = {
    "sweep": "cpu-scaling, 2026-12-03 (docs/measured/cpu-scaling-2026-12-03), measured_truth of its folder",
    "truth": {"intercept": -0.8946249649436517, "exponent": -0.27689325889161887, "curvature": 0.0,
              "slope": (4.502906571353588, 4.176830082638581, 5.876690077951874, 7.420752052242063),
              "ceiling": (1.0, 1.0, 0.982057108338589, 0.9679064707872809),
              "seed_sd": 0.011584172631463831, "checkpoint_sd": 0.020001845152980507},
    "measured_curvature": 0.06485936623651985,
    "seed_noise_dof": 8,
    "sizes_measured": 4,
}
"""The truth measured on the real cpu-scaling sweep of 2026-12-03 (``measured_truth`` of its
folder: the straight law, per-size logistic slopes and ceilings, the seed noise of its 8 seed
pairs, the last checkpoints' sd, and the bend of its four f* in log10 P), which ``bench sizing``
simulates when no ``--from`` is given."""


def _part(args):
    return coverage_part(*args)


BENCH_METHODS = ("new", "no-bend", "new-t", "legacy")
"""What ``bench sizing`` compares: the shipped interval (the model average); the straight law
alone (``without_bend``, the interval of stops 26-27); the shipped fit with a t(n-2)
quantile; the method before issue 21."""


def bench_sizing(truth: Truth, shape: SweepShape, curvature: float, sweeps: int = 200, seed: int = 0,
                 n_boot: int = 200, workers: int = 1, progress=None) -> dict:
    """Coverage of ``BENCH_METHODS`` for a straight law and a law bent by ``curvature``, over
    ``sweeps`` simulated sweeps each; returns the table and the checks."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    if sweeps < 1 or n_boot < 20 or workers < 1:
        raise ConfigError("sweeps", f"sweeps {sweeps}, n_boot {n_boot}, workers {workers}",
                          "sweeps >= 1, n_boot >= 20, workers >= 1")
    rows, checks = [], []
    for law in (truth, Truth(**{**asdict(truth), "curvature": curvature})):
        size = max(1, sweeps // (4 * workers))  # about four chunks per worker
        chunks = [range(i, min(sweeps, i + size)) for i in range(0, sweeps, size)]
        args = [(shape, law, c, seed, n_boot, BENCH_METHODS) for c in chunks]
        if workers == 1:
            parts = [coverage_part(*a, progress=progress) for a in args]
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                parts = []
                for part in pool.map(_part, args):
                    parts.append(part)
                    if progress:
                        progress(part["_meta"]["sweeps"])
        for cov in merge(parts):
            chk = check_calibration(cov)
            checks.append(chk)
            rows.append({**asdict(cov), "coverage": cov.rate, "verdict": chk.verdict})
    return {"truth": asdict(truth), "bent_curvature": curvature, "shape": asdict(shape), "sweeps": sweeps,
            "n_boot": n_boot, "seed": seed, "rows": rows, "checks": [c.to_dict() for c in checks]}


def _vals(v, fmt: str) -> str:
    return "/".join(fmt.format(x) for x in v) if isinstance(v, (list, tuple)) else fmt.format(v)


def format_bench_sizing(res: dict) -> str:
    t = res["truth"]
    lines = [f"simulated sweeps shaped like cpu-scaling: {len(res['shape']['params'])} sizes x "
             f"{len(res['shape']['rates'])} rates, {res['shape']['boundary_seeds']} boundary seed(s); "
             f"{res['sweeps']} sweeps per law, {res['n_boot']} bootstrap draws per size, seed {res['seed']}",
             f"truth: f* exponent {t['exponent']:+.3f}, logistic slope {_vals(t['slope'], '{:.2f}')}/decade, "
             f"ceiling {_vals(t['ceiling'], '{:.3f}')}, seed noise sd {t['seed_sd']:.4f}, checkpoint sd "
             f"{t['checkpoint_sd']:.4f}; "
             f"bent law: curvature {res['bent_curvature']:+.3f}",
             "held out: the largest size; covered: its measured f* inside the nominal 95% interval",
             f"  {'law':<46} {'method':<8} {'coverage':>9} {'counted':>8} {'median width':>13}  calibrated "
             f"({CALIBRATED[0]:.0%}-{CALIBRATED[1]:.0%})"]
    for r in res["rows"]:
        lines.append(f"  {r['law']:<46} {r['method']:<8} {r['coverage']:>9.1%} {r['counted']:>8} "
                     f"{r['median_width_decades']:>10.2f} dec  {r['verdict']}"
                     + (f"  (not counted: {r['reasons']})" if r["reasons"] else ""))
    return "\n".join(lines)
