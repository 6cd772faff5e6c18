"""Critical frequency per model size and the sizing answer (the paper's Sec. 4, Fig. 5).

Pure functions over tidy results, no training: what ``raretask lm sizing`` and the size-ladder
report stand on. Definitions (docs: the README's "Sizing" section):

- **f\\*** (``critical_frequency``): the per-token frequency at which a size's test accuracy
  crosses the *learned level*, the midpoint between chance and 1 (0.75 for ``cmp``), read off
  a logistic in log10 frequency (chance fixed, slope and ceiling fitted, many starts). One
  point per *run*: the mean test accuracy of its last checkpoints.
- **Censored**: a size whose crossing lies beyond the measured rates is not a number. It
  learned at every rate run ("below" the lowest frequency), or at none, or its fitted ceiling
  stays under the learned level ("above" the highest).
- **Its interval** resamples whole runs: every run is drawn again around the fitted curve
  with the seed-to-seed spread the sweep measured on its seed pairs (``seed_noise``), the
  curve refitted, and the 2.5/97.5% quantiles taken (censored draws count as beyond the
  range, so an interval may be open at one end).
- The midpoint between chance and the *fitted ceiling* is kept beside it as an informative
  number (``f_star_ceiling``): it was the definition before, and it moves with the ceiling.
- **The law** (``fit_power_law``): log10 f\\* = c + b log10 P, a Huber fit in log space (with
  4 or more sizes; with 3 a line has one residual degree of freedom and an outlier cannot be
  told from a bend), each size weighted by 1 / (s_i^2 + scatter2): s_i its own f\\* error,
  scatter2 the scatter of the sizes around the bent law below (DerSimonian-Laird, estimated
  from the data; 0 and said so when two or three sizes are fitted).
- **The bent law beside it**: with 3 or more sizes, a quadratic in log10 P is fitted too
  (``PowerLaw.curvature``: its term kappa (log10 P - middle)^2, decades per decade^2). The
  straight law stays the answer's value (monotone, the law people cite); where a new size's
  measurement lands is the model average of the two laws (Buckland et al. 1997): a mixture
  of their predictive normals weighted by Akaike weights, w_bent / w_straight =
  exp((chi2_straight - chi2_bent) / 2 - 1) (one parameter more costs a factor e). A bend the
  sizes clearly show moves the interval toward the bent law; none keeps it near the line,
  with the bent law's wider spread in its tails.
- **Two intervals**: the *confidence interval* says where the straight curve is (only the
  fit's error); the *prediction interval* says where a new size's measured f\\* will land:
  the 2.5% and 97.5% quantiles of the mixture, each law's predictive normal holding its
  curve's error, the scatter of sizes (``scatter2``) and a new measurement's own error. It
  widens with the distance of extrapolation, fastest where the bent law's weight is large.
  Sizing questions are answered with the prediction interval. The scatter is estimated
  around the quadratic (DerSimonian-Laird on n - 3 degrees of freedom); with exactly 3 sizes
  the one degree of freedom a line leaves is read as the bend, never counted twice.
- **Calibration**: ``raretask bench sizing`` simulates sweeps shaped like cpu-scaling with a
  known straight or bent law and measures how often the nominal 95% prediction interval
  covers the held-out largest size (``lm.sizing_sim``; results in docs/results.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

Z95 = 1.959963984540054
HUBER_C = 1.345
"""Huber's constant (95% efficiency under normal errors)."""


# ---- one size: the logistic in log frequency ------------------------------------------------

def _curve(x, x0, k, ceil, chance):
    return chance + (ceil - chance) / (1.0 + np.exp(-k * (x - x0)))


def _grid_fit(x: np.ndarray, Y: np.ndarray, chance: float, X0: np.ndarray, K: np.ndarray, W=None):
    """Least squares over a grid of (x0, k), the ceiling in closed form for each.

    Args:
        x: (n,) log10 frequencies; Y: (B, n) accuracies, one row per data set.
        X0, K: (B, G) candidate centres and slopes per data set.
        W: (B, n) point weights (a resample's multiplicities) or None.
    Returns (x0, k, ceil, sse), each (B,): the best grid cell of each row."""
    s = 1.0 / (1.0 + np.exp(-K[..., None] * (x[None, None, :] - X0[..., None])))  # (B, G, n)
    r = (Y - chance)[:, None, :]
    w = 1.0 if W is None else W[:, None, :]
    amp = np.clip((w * s * r).sum(-1) / np.maximum((w * s * s).sum(-1), 1e-300), 1e-3, 1.0 - chance)
    sse = (w * (r - amp[..., None] * s) ** 2).sum(-1)
    j = np.argmin(sse, axis=1)
    i = np.arange(len(j))
    return X0[i, j], K[i, j], chance + amp[i, j], sse[i, j]


K_RANGE = (0.3, 40.0)
"""Slopes searched (accuracy logits per decade of frequency)."""


def fit_logistic(x, Y, chance: float, margin: float = 1.5, W=None):
    """Fit ``Y`` (B, n) against ``x`` (n,) in two grid stages (coarse, then fine around each
    row's best): centres within ``margin`` decades of the measured range, slopes in
    ``K_RANGE``. Vectorised over the B data sets (the bootstrap's draws); ``W`` (B, n):
    optional point weights. Returns (x0, k, ceil, sse), each (B,)."""
    x = np.asarray(x, float)
    Y = np.atleast_2d(np.asarray(Y, float))
    W = None if W is None else np.atleast_2d(np.asarray(W, float))
    B = len(Y)
    lo, hi = x.min() - margin, x.max() + margin
    x0c, kc = np.meshgrid(np.linspace(lo, hi, 61), np.geomspace(*K_RANGE, 21), indexing="ij")
    x0c, kc = x0c.ravel(), kc.ravel()
    out = None
    for b0 in range(0, B, 256):  # bounded memory: 256 x 1281 x n
        Yb = Y[b0:b0 + 256]
        Wb = None if W is None else W[b0:b0 + 256]
        m = len(Yb)
        a0, k0, _, _ = _grid_fit(x, Yb, chance, np.broadcast_to(x0c, (m, len(x0c))),
                                 np.broadcast_to(kc, (m, len(kc))), Wb)
        dx, dk = (hi - lo) / 60, (np.log(K_RANGE[1]) - np.log(K_RANGE[0])) / 20
        fx, fk = np.meshgrid(np.linspace(-dx, dx, 21), np.linspace(-dk, dk, 11), indexing="ij")
        X0 = np.clip(a0[:, None] + fx.ravel()[None], lo, hi)
        K = np.clip(k0[:, None] * np.exp(fk.ravel())[None], *K_RANGE)
        res = _grid_fit(x, Yb, chance, X0, K, Wb)
        out = res if out is None else tuple(np.concatenate([o, r]) for o, r in zip(out, res))
    return out


def _polish(x, y, chance, start, margin):
    """A local least-squares fit from ``start`` = (x0, k, ceil); (params, sse, success)."""
    from scipy.optimize import least_squares

    lo, hi = x.min() - margin, x.max() + margin
    lb, ub = [lo, K_RANGE[0], chance + 1e-3], [hi, K_RANGE[1], 1.0]
    s0 = np.clip(np.asarray(start, float), np.asarray(lb) + 1e-9, np.asarray(ub) - 1e-9)
    try:
        r = least_squares(lambda p: _curve(x, *p, chance) - y, s0, bounds=(lb, ub), xtol=1e-12, ftol=1e-12)
    except ValueError:
        return s0, float("inf"), False
    return r.x, float(2 * r.cost), bool(r.success)


def crossing(x0, k, ceil, chance: float, level: float):
    """log10 frequency where the logistic reaches ``level`` (nan where its ceiling is below)."""
    x0, k, ceil = np.asarray(x0, float), np.asarray(k, float), np.asarray(ceil, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = x0 + np.log((level - chance) / (ceil - level)) / k
    return np.where(ceil > level, x, np.nan)


@dataclass(frozen=True)
class CriticalFrequency:
    """Where one size's accuracy-vs-frequency curve crosses the learned level."""

    f_star: float
    """Per-token frequency at the learned level; nan when censored or not fitted."""
    lo: float
    """2.5% quantile of the run bootstrap (0.0: open below, the draws left the range)."""
    hi: float
    """97.5% quantile (inf: open above)."""
    censored: str
    """'' (measured), 'below' (learned at every rate run: f* < f_min) or 'above' (learned at
    none within the run, or the ceiling stays below the level: f* > f_max)."""
    level: float
    """The learned level: chance + (1 - chance) / 2."""
    f_star_ceiling: float
    """Informative: where the curve crosses the midpoint between chance and its fitted ceiling."""
    slope: float
    """Logistic slope per decade of frequency."""
    ceiling: float
    """The accuracy the fitted curve saturates at (at most 1)."""
    chance: float
    runs: int
    """Runs fitted (one point each)."""
    rates: int
    """Distinct frequencies among them."""
    f_min: float
    f_max: float
    """The measured frequency range."""
    se_log10: float
    """Standard error of log10 f* from the bootstrap ((q84 - q16) / 2; the sd of a uniform over
    the measured range when more than 16% of draws leave it on a side; nan when censored)."""
    noise_sd: float
    """The per-run accuracy spread the bootstrap drew runs with."""
    converged: bool
    """True when the best of several local fits was reached from at least two starts."""
    censored_draws: float
    """Share of bootstrap draws that crossed outside the measured range."""

    @property
    def bracketed(self) -> bool:
        """True when f* is a number measured inside the rates run."""
        return not self.censored and math.isfinite(self.f_star)

    def describe(self, batch_tokens: int | None = None) -> str:
        """f* as a reader should see it (``f_star_text``); ``batch_tokens`` adds the bounds per batch."""
        per_batch = (lambda f: f * batch_tokens) if batch_tokens else (lambda f: None)
        return f_star_text(self.f_star, self.lo, self.hi, self.censored, self.f_min, self.f_max,
                           per_batch(self.f_min), per_batch(self.f_max), self.converged)


def interval_text(lo: float, hi: float, fmt: str = "{:.3g}") -> str:
    """[lo, hi], an end the bootstrap left open (0 or inf) written "open"."""
    def end(v):
        return "open" if v == 0 or not math.isfinite(v) else fmt.format(v)
    return f"[{end(lo)}, {end(hi)}]"


def f_star_text(f_star, lo, hi, censored, f_min, f_max, rate_min=None, rate_max=None, converged=True) -> str:
    """One size's f* as text: the number with its interval, or the censored bound (per token,
    and per batch when the rates are given); never a censored size as a number."""
    def batch(v):
        return f", {v:g} per batch" if v is not None and math.isfinite(v) else ""
    if censored == "below":
        return f"below {f_min:.3g}/token{batch(rate_min)} (learned at every rate run)"
    if censored == "above":
        return f"above {f_max:.3g}/token{batch(rate_max)} (not learned at any rate run)"
    if not math.isfinite(f_star):
        return "not measurable: the curve could not be fitted"
    warn = "" if converged else " (the fit's starts disagree: not converged)"
    return f"{f_star:.3g} {interval_text(lo, hi)}{warn}"


def learned_level(chance: float) -> float:
    """The 'learned' accuracy: midpoint between chance and 1 (Figs. 5, 6a and f* alike)."""
    return chance + (1.0 - chance) / 2.0


def seed_noise(groups) -> tuple[float, int]:
    """Seed-to-seed sd of a run's accuracy, pooled over groups of runs that differ only in
    seed (same size and rate): sqrt(sum of squared deviations / sum of (n - 1)). Returns
    (sd, degrees of freedom); (nan, 0) with no group of two."""
    ss, dof = 0.0, 0
    for g in groups:
        g = np.asarray(g, float)
        if len(g) >= 2:
            ss += float(((g - g.mean()) ** 2).sum())
            dof += len(g) - 1
    return (math.sqrt(ss / dof), dof) if dof else (float("nan"), 0)


def critical_frequency(frequency, accuracy, chance: float, noise_sd: float | None = None, n_boot: int = 1000,
                       seed: int = 0, margin: float = 1.5) -> CriticalFrequency:
    """f* of one size from one point per run (see the module docstring).

    Args:
        frequency, accuracy: (runs,) per-token frequency and final test accuracy of each run.
        chance: chance accuracy (0.5 for cmp).
        noise_sd: seed-to-seed sd of a run's accuracy (``seed_noise`` over the sweep's seed
            pairs); None: the fit's residual sd (needs more runs than 3).
        n_boot: bootstrap draws of new runs.
    """
    f = np.asarray(frequency, np.float64)
    y = np.asarray(accuracy, np.float64)
    if f.shape != y.shape or f.ndim != 1 or not len(f):
        raise ConfigError("frequency", "frequency and accuracy must be equal-length, non-empty lists")
    if np.any(~np.isfinite(f)) or np.any(f <= 0) or np.any(~np.isfinite(y)):
        raise ConfigError("frequency", "frequencies must be finite and > 0, accuracies finite")
    x = np.log10(f)
    level = learned_level(chance)
    nrates = len(np.unique(x))
    base = dict(level=level, chance=chance, runs=len(f), rates=nrates, f_min=float(f.min()), f_max=float(f.max()))
    if nrates < 3:
        return CriticalFrequency(float("nan"), float("nan"), float("nan"), "", f_star_ceiling=float("nan"),
                                 slope=float("nan"), ceiling=float("nan"), se_log10=float("nan"),
                                 noise_sd=float("nan"), converged=False, censored_draws=float("nan"), **base)
    # several starts: the best grid cells far apart, each polished; converged when two agree
    gx0, gk, gc, _ = fit_logistic(x, y[None], chance, margin)
    starts = [(gx0[0], gk[0], gc[0]), (x.mean(), 3.0, max(y.max(), chance + 0.01)),
              (x.min(), 10.0, 1.0), (x.max(), 1.0, 1.0)]
    fits = [_polish(x, y, chance, s, margin) for s in starts]
    best = min(range(len(fits)), key=lambda i: fits[i][1])
    (x0, k, ceil), sse, _ = fits[best]
    tol = 1e-9 + 1e-6 * sse
    converged = sum(abs(s - sse) <= tol for _, s, ok in fits if ok) >= 2
    xs = float(crossing(x0, k, ceil, chance, level))
    censored = "above" if not math.isfinite(xs) or xs > x.max() else ("below" if xs < x.min() else "")
    fitted = _curve(x, x0, k, ceil, chance)
    if noise_sd is None or not math.isfinite(noise_sd):
        noise_sd = math.sqrt(sse / (len(x) - 3)) if len(x) > 3 else float("nan")
    draws = np.full(n_boot, np.nan)
    if math.isfinite(noise_sd) and n_boot:
        rng = np.random.default_rng(seed)
        Yb = np.clip(fitted[None] + rng.normal(0.0, noise_sd, (n_boot, len(x))), 0.0, 1.0)
        bx0, bk, bc, _ = fit_logistic(x, Yb, chance, margin)
        draws = crossing(bx0, bk, bc, chance, level)
        draws = np.where(np.isnan(draws) | (draws > x.max()), np.inf, np.where(draws < x.min(), -np.inf, draws))
    if np.isnan(draws).all():
        lo = hi = se = cshare = float("nan")
    else:
        q = np.quantile(draws, [0.025, 0.16, 0.84, 0.975], method="inverted_cdf")
        lo, hi = float(10 ** q[0]), float(10 ** q[3])
        # more than 16% of draws beyond the rates on a side: f* is known only to lie within them
        # (the sd of a uniform over the measured range)
        se = float((q[2] - q[1]) / 2) if np.isfinite(q[1:3]).all() else float((x.max() - x.min()) / math.sqrt(12))
        cshare = float(np.mean(~np.isfinite(draws)))
    return CriticalFrequency(float("nan") if censored else float(10**xs), lo, hi, censored,
                             f_star_ceiling=float(10**x0), slope=float(k), ceiling=float(ceil),
                             se_log10=float("nan") if censored else se, noise_sd=float(noise_sd),
                             converged=bool(converged), censored_draws=cshare, **base)


# ---- across sizes: the law and its two intervals ---------------------------------------------

@dataclass(frozen=True)
class PowerLaw:
    """log10 f* = intercept + exponent * log10 P, fitted across sizes."""

    exponent: float
    """b: f* scales as P^b (negative when larger models learn rarer tasks)."""
    exponent_lo: float
    exponent_hi: float
    """95% confidence interval of b."""
    intercept: float
    params: tuple
    """Sizes fitted (parameters), ascending."""
    f_star: tuple
    """Their f* values."""
    se_log10: tuple
    """Each size's own standard error of log10 f*."""
    residuals: tuple
    """log10 f* - fitted, per size."""
    cov: np.ndarray
    """(2, 2) covariance of (intercept, exponent), scatter included."""
    tau2: float
    """Scatter of the sizes around the straight law (decades^2) beyond their own errors; nan
    when not estimable (two sizes). Informative: a bend shows here too, so the fit's weights
    and both predictions use ``scatter2`` (around the bent law) instead."""
    new_se_log10: float
    """The error a new size's own measurement is expected to carry (median of se_log10)."""
    converged: bool
    """The robust fit's iterations settled."""
    curvature: float = float("nan")
    """kappa: the bent law's quadratic term in (log10 P - ``middle``), decades per decade^2
    (positive: the fall slows with size); nan with fewer than 3 sizes."""
    curvature_se: float = float("nan")
    """Standard error of ``curvature``."""
    scatter2: float = float("nan")
    """Scatter of the sizes around the bent law (decades^2), the scatter term of both laws'
    predictions: DerSimonian-Laird on n - 3 degrees of freedom with 4 or more sizes, 0 with 3
    (its one spare degree of freedom is the bend), nan with 2 (taken as 0)."""
    middle: float = float("nan")
    """Mean log10 P of the fitted sizes (the centre of the quadratic term)."""
    bent_coef: tuple = ()
    """(c0, c1, kappa) of the bent law in (log10 P - middle); empty with fewer than 3 sizes."""
    bent_cov: np.ndarray | None = None
    """(3, 3) covariance of ``bent_coef``."""
    straight_weight: float = 1.0
    """Akaike weight of the straight law in the model average (1 with fewer than 3 sizes)."""

    @property
    def per_doubling(self) -> float:
        """Factor by which f* changes when parameters double: 2^b."""
        return float(2.0 ** self.exponent)

    @property
    def range(self) -> tuple[float, float]:
        return float(min(self.params)), float(max(self.params))

    def predict(self, params, kind: str = "prediction") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log10 f* of the straight law at ``params`` with its 95% ``kind`` interval: (value, lo,
        hi) in log10. 'confidence': where the straight curve is; 'prediction': where a new
        size's measured f* lands (the model average of the straight and bent laws)."""
        if kind not in ("confidence", "prediction"):
            raise ConfigError("kind", f"{kind!r}", "confidence or prediction")
        x = np.log10(np.asarray(params, float))
        y = self.intercept + self.exponent * x
        var = self.cov[0, 0] + 2 * x * self.cov[0, 1] + x * x * self.cov[1, 1]
        if kind == "confidence":
            h = Z95 * np.sqrt(var)
            return y, y - h, y + h
        spread = (self.scatter2 if math.isfinite(self.scatter2) else 0.0) + self.new_se_log10**2
        sd = np.sqrt(var + spread)
        if not self.bent_coef:
            return y, y - Z95 * sd, y + Z95 * sd
        yb, sdb = self.bent(params)
        sdb = np.sqrt(sdb**2 + spread)
        w = self.straight_weight
        lo = _mixture_quantile(0.025, w, y, sd, yb, sdb)
        hi = _mixture_quantile(0.975, w, y, sd, yb, sdb)
        return y, lo, hi

    def bent(self, params) -> tuple[np.ndarray, np.ndarray]:
        """The bent law's log10 f* at ``params`` and the sd of its curve there."""
        u = np.log10(np.asarray(params, float)) - self.middle
        A = np.stack([np.ones_like(u), u, u * u], -1)
        return A @ np.asarray(self.bent_coef), np.sqrt(np.einsum("...i,ij,...j->...", A, self.bent_cov, A))


def _mixture_quantile(q: float, w, m1, s1, m2, s2) -> np.ndarray:
    """The q-quantile of w N(m1, s1^2) + (1 - w) N(m2, s2^2), elementwise (bisection)."""
    from scipy.special import ndtr

    lo = np.minimum(m1 - 8 * s1, m2 - 8 * s2)
    hi = np.maximum(m1 + 8 * s1, m2 + 8 * s2)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = w * ndtr((mid - m1) / s1) + (1 - w) * ndtr((mid - m2) / s2) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def _wls(x, y, w):
    return _wls_design(np.stack([np.ones_like(x), x], 1), y, w)


def _wls_design(A, y, w):
    AtW = A.T * w
    cov = np.linalg.inv(AtW @ A)
    return cov @ (AtW @ y), cov


def _dl_tau2(x, y, s2, degree: int = 1) -> float:
    """DerSimonian-Laird scatter of points around a weighted polynomial of ``degree`` in x
    beyond their own variances; nan when no degree of freedom is left."""
    n, k = len(x), degree + 1
    if n <= k:
        return float("nan")
    w = 1.0 / s2
    A = np.stack([x**d for d in range(k)], 1)
    coef, cov = _wls_design(A, y, w)
    r = y - A @ coef
    Q = float((w * r * r).sum())
    denom = float(w.sum() - np.trace(cov @ ((A.T * w**2) @ A)))
    return max(0.0, (Q - (n - k)) / denom) if denom > 0 else 0.0


def _bent_law(x, y, s2, scatter2: float) -> dict:
    """The bent law beside the straight one and the straight law's Akaike weight (see the
    module docstring); only ``scatter2`` with fewer than 3 sizes."""
    n = len(x)
    if n < 3:
        return {"scatter2": float(scatter2)}
    mid = float(x.mean())
    u = x - mid
    v = s2 + scatter2
    A2 = np.stack([np.ones_like(u), u, u * u], 1)
    coef, cov = _wls_design(A2, y, 1.0 / v)
    chi_bent = float((((y - A2 @ coef) ** 2) / v).sum())
    line, _ = _wls(x, y, 1.0 / v)
    chi_straight = float((((y - line[0] - line[1] * x) ** 2) / v).sum())
    log_ratio = min(50.0, (chi_straight - chi_bent) / 2 - 1)  # log(w_bent / w_straight)
    return {"curvature": float(coef[2]), "curvature_se": float(math.sqrt(cov[2, 2])), "scatter2": float(scatter2),
            "middle": mid, "bent_coef": tuple(float(c) for c in coef), "bent_cov": cov,
            "straight_weight": float(1.0 / (1.0 + math.exp(log_ratio)))}


def fit_power_law(params, f_star, se_log10=None) -> PowerLaw:
    """Huber fit of log10 f* on log10 P with weights 1 / (se^2 + scatter2), and the bent law
    beside it with 3 or more sizes (see the module docstring). ``se_log10``: each size's error of log10 f* (None: equal errors, estimated
    from the scatter alone). Needs at least two sizes with a finite f*; sizes with a censored
    or unmeasured f* are left to the caller to drop (they are bounds, not points)."""
    P = np.asarray(params, np.float64)
    F = np.asarray(f_star, np.float64)
    S = np.full(len(P), np.nan) if se_log10 is None else np.asarray(se_log10, np.float64)
    if not (P.shape == F.shape == S.shape):
        raise ConfigError("sizes", "params, f_star and se_log10 differ in length", "one value per size")
    ok = np.isfinite(F) & (F > 0) & np.isfinite(P) & (P > 0)
    if ok.sum() < 2:
        raise ConfigError("sizes", f"{int(ok.sum())} size(s) with a measured f*", "at least two")
    P, F, S = P[ok], F[ok], S[ok]
    if len(np.unique(P)) < 2:
        raise ConfigError("sizes", "every f* is of one size", "at least two distinct sizes")
    order = np.argsort(P)
    P, F, S = P[order], F[order], S[order]
    x, y = np.log10(P), np.log10(F)
    known = np.isfinite(S) & (S > 0)
    s2 = np.where(known, S, np.nanmedian(np.where(known, S, np.nan)) if known.any() else 0.0) ** 2
    errors_known = bool((s2 > 0).all())
    if not errors_known:  # no errors given: the scatter around the line carries everything
        s2 = np.full(len(x), 1e-12)
    tau2 = _dl_tau2(x, y, s2)
    # the scatter both laws carry: around the quadratic (a bend is not scatter), 0 with 3 sizes
    scatter2 = (tau2 if not errors_known or len(x) < 3 else
                _dl_tau2(x - x.mean(), y, s2, degree=2) if len(x) >= 4 else 0.0)
    t2 = 0.0 if not math.isfinite(scatter2) else scatter2
    hub = np.ones(len(x))
    converged = len(x) < 4
    # IRLS: Huber weights on residuals standardized by sqrt(s^2 + scatter2). With 3 sizes a
    # line has one residual degree of freedom, so an outlier and a bend cannot be told apart:
    # no size is down-weighted, and the bent law takes the bend
    for _ in range(50 if len(x) >= 4 else 0):
        w = hub / (s2 + t2)
        coef, _ = _wls(x, y, w)
        z = (y - coef[0] - coef[1] * x) / np.sqrt(s2 + t2)
        new = np.minimum(1.0, HUBER_C / np.maximum(np.abs(z), 1e-12))
        if np.allclose(new, hub, atol=1e-10):
            converged = True
            break
        hub = new
    w = hub / (s2 + t2)
    coef, cov = _wls(x, y, w)
    c, b = coef
    new_se = float(math.sqrt(np.median(s2))) if (s2 > 1e-12).any() else 0.0
    h = Z95 * math.sqrt(cov[1, 1])
    return PowerLaw(float(b), float(b - h), float(b + h), float(c), tuple(P.tolist()), tuple(F.tolist()),
                    tuple(np.sqrt(s2).tolist()), tuple((y - (c + b * x)).tolist()), cov, float(tau2), new_se,
                    bool(converged), **_bent_law(x, y, s2, scatter2))


# ---- the two sizing questions ---------------------------------------------------------------

@dataclass(frozen=True)
class SizingAnswer:
    """One sizing prediction with both intervals and how far it extrapolates."""

    value: float
    lo: float
    hi: float
    """95% prediction interval: where a new size's measurement is expected (the answer's interval)."""
    conf_lo: float
    conf_hi: float
    """95% confidence interval of the curve itself (narrower; not where one run lands)."""
    outside_range: float
    """How far the question lies outside the fitted parameter range, as a factor (1.0:
    inside; 4.0: four times beyond its nearer end)."""


def _outside(fit: PowerLaw, P: np.ndarray) -> np.ndarray:
    a, b = fit.range
    return np.where(P < a, a / P, np.where(P > b, P / b, 1.0))


def lowest_frequency_for(fit: PowerLaw, params: float) -> SizingAnswer:
    """The lowest per-token frequency a model of ``params`` parameters is predicted to learn."""
    if not params > 0:
        raise ConfigError("params", f"{params}", "> 0")
    y, plo, phi = fit.predict(params, "prediction")
    _, clo, chi = fit.predict(params, "confidence")
    return SizingAnswer(float(10**y), float(10**plo), float(10**phi), float(10**clo), float(10**chi),
                        float(_outside(fit, np.asarray(params, float))))


def smallest_params_for(fit: PowerLaw, frequency: float) -> SizingAnswer:
    """The smallest model (parameters) predicted to learn a task at ``frequency`` per token:
    P with f*(P) = frequency. Needs a falling f* (exponent < 0). The interval is the set of
    sizes around P whose interval of f* contains ``frequency`` (inverting the band, so both
    intervals widen with extrapolation as the f* bands do)."""
    if not 0 < frequency < 1:
        raise ConfigError("frequency", f"{frequency}", "a per-token frequency in (0, 1)")
    if not fit.exponent < 0:
        raise ConfigError("frequency", f"f* does not fall with size here (exponent {fit.exponent:.3g})",
                          "a sweep where larger models learn rarer tasks")
    t = math.log10(frequency)
    P = 10 ** ((t - fit.intercept) / fit.exponent)
    grid = np.linspace(math.log10(P) - 8, math.log10(P) + 8, 3201)
    bounds = []
    centre = int(np.argmin(np.abs(grid - math.log10(P))))
    for kind in ("prediction", "confidence"):
        _, lo, hi = fit.predict(10**grid, kind)
        inside = (lo <= t) & (t <= hi)
        # the connected run of sizes around P: far away the bend term widens the band until it
        # holds every frequency again, which is no answer about P
        a = centre
        while a > 0 and inside[a - 1]:
            a -= 1
        b = centre
        while b < len(grid) - 1 and inside[b + 1]:
            b += 1
        bounds.append((float(10 ** grid[a]) if a > 0 else 0.0, float(10 ** grid[b]) if b < len(grid) - 1 else float("inf")))
    return SizingAnswer(float(P), *bounds[0], *bounds[1], float(_outside(fit, np.asarray(P))))


def theory_exponent(spec, task: int, widths) -> tuple[np.ndarray, float]:
    """The synthetic theory's own curve: the planner's minimal frequency p*(N) of ``task``
    (1-based) per width, and the slope of log p* against log N over widths where it is > 0."""
    from ..mixture import min_frequency

    N = np.asarray(widths, int)
    p = np.asarray([min_frequency(spec, task, int(w)) or np.nan for w in N], float)
    ok = np.isfinite(p) & (p > 0)
    slope = float(np.polyfit(np.log10(N[ok]), np.log10(p[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
    return p, slope
