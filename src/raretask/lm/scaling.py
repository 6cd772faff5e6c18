"""Critical frequency per model size and the sizing answer (the paper's Sec. 4, Fig. 5).

Pure functions over tidy results, no training: what ``raretask lm sizing`` and the size-ladder
report stand on.

- ``critical_frequency``: the per-token frequency at which a size's test accuracy crosses
  the midpoint between chance and its ceiling, from a logistic fit in log-frequency, with a
  bootstrap interval over the points given (seeds and final checkpoints).
- ``fit_power_law``: log f* = c + b log P across sizes, by weighted least squares on log f*
  (weights from each size's interval), with a parametric bootstrap for intervals.
- ``smallest_params_for`` / ``lowest_frequency_for``: the two sizing questions, each with its
  interval and how far outside the fitted range it lies (never silently extrapolated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

Z95 = 1.959963984540054


@dataclass(frozen=True)
class CriticalFrequency:
    """Where one size's accuracy-vs-frequency curve crosses its midpoint."""

    f_star: float
    """Per-token frequency at the midpoint (nan when the curve never crosses it)."""
    lo: float
    """2.5% bootstrap quantile of f_star."""
    hi: float
    """97.5% bootstrap quantile of f_star."""
    slope: float
    """Logistic slope per decade of frequency (accuracy rises with frequency when > 0)."""
    ceiling: float
    """The accuracy the curve saturates at (fitted, at most 1)."""
    chance: float
    """Chance accuracy of the task."""
    points: int
    """Number of (frequency, accuracy) points fitted."""
    bracketed: bool
    """True when the midpoint lies inside the frequencies measured (not extrapolated)."""


def _logistic(x, x0, k, lo, hi):
    return lo + (hi - lo) / (1.0 + np.exp(-k * (x - x0)))


def _fit_one(x: np.ndarray, y: np.ndarray, chance: float) -> tuple[float, float, float] | None:
    """(x0, k, ceiling) of the logistic through (log10 f, acc); None when it cannot be fitted."""
    from scipy.optimize import curve_fit

    if len(np.unique(x)) < 3:
        return None
    ceil0 = float(max(np.max(y), chance + 1e-3))
    mid = chance + 0.5 * (ceil0 - chance)
    above = x[y >= mid]
    x0 = float(np.min(above)) if len(above) else float(np.max(x))
    try:
        (x0, k, ceil), _ = curve_fit(lambda t, a, b, c: _logistic(t, a, b, chance, c), x, y,
                                     p0=[x0, 3.0, ceil0], bounds=([x.min() - 3, 0.0, chance + 1e-3],
                                                                  [x.max() + 3, 50.0, 1.0]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return float(x0), float(k), float(ceil)


def critical_frequency(frequency, accuracy, chance: float, n_boot: int = 1000, seed: int = 0) -> CriticalFrequency:
    """Logistic fit of accuracy against log10(frequency) with chance fixed and the ceiling
    fitted; f* is where the fit crosses chance + (ceiling - chance) / 2.

    Args:
        frequency, accuracy: one point per run (every seed and final checkpoint of one size).
        chance: chance accuracy (0.5 for the comparison task).
        n_boot: bootstrap resamples of the points (percentile interval).
    """
    f = np.asarray(frequency, np.float64)
    y = np.asarray(accuracy, np.float64)
    if f.shape != y.shape or f.ndim != 1 or not len(f):
        raise ConfigError("frequency", "frequency and accuracy must be equal-length, non-empty lists")
    if np.any(~np.isfinite(f)) or np.any(f <= 0) or np.any(~np.isfinite(y)):
        raise ConfigError("frequency", "frequencies must be finite and > 0, accuracies finite")
    x = np.log10(f)
    fit = _fit_one(x, y, chance)
    if fit is None:
        return CriticalFrequency(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), chance,
                                 len(f), False)
    x0, k, ceil = fit
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        b = _fit_one(x[i], y[i], chance)
        if b is not None:
            boots.append(b[0])
    lo, hi = (np.quantile(boots, [0.025, 0.975]) if len(boots) >= 20 else (np.nan, np.nan))
    return CriticalFrequency(float(10**x0), float(10**lo), float(10**hi), k, ceil, chance, len(f),
                             bool(x.min() <= x0 <= x.max()))


@dataclass(frozen=True)
class PowerLaw:
    """log10 f* = intercept + exponent * log10 P, fitted across sizes."""

    exponent: float
    """b: f* scales as P^b (negative when larger models learn rarer tasks)."""
    exponent_lo: float
    exponent_hi: float
    intercept: float
    params: tuple
    """Sizes fitted (parameters), ascending."""
    f_star: tuple
    """Their f* values."""
    residuals: tuple
    """log10 f* - fitted, per size."""
    boot: np.ndarray
    """(n_boot, 2) bootstrap (intercept, exponent) draws."""

    @property
    def per_doubling(self) -> float:
        """Factor by which f* changes when parameters double: 2^b."""
        return float(2.0 ** self.exponent)

    @property
    def range(self) -> tuple[float, float]:
        return float(min(self.params)), float(max(self.params))


def fit_power_law(params, f_star, lo=None, hi=None, n_boot: int = 2000, seed: int = 0) -> PowerLaw:
    """Weighted least squares of log10 f* on log10 P; each size weighted by its interval
    (sd = log10(hi / lo) / (2 z95), equal weights when no intervals are given), and a
    parametric bootstrap (each log10 f* drawn from its normal) for the intervals.

    Needs at least two sizes with finite f*."""
    P = np.asarray(params, np.float64)
    F = np.asarray(f_star, np.float64)
    ok = np.isfinite(F) & (F > 0) & np.isfinite(P) & (P > 0)
    if ok.sum() < 2:
        raise ConfigError("sizes", f"{int(ok.sum())} size(s) with a measured f*", "at least two")
    if lo is not None and hi is not None:
        L, H = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        sd = np.log10(H / L) / (2 * Z95)
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.nan)
    else:
        sd = np.full(len(P), np.nan)
    P, F, sd = P[ok], F[ok], sd[ok]
    fill = np.nanmedian(sd) if np.isfinite(sd).any() else 0.1
    sd = np.where(np.isfinite(sd), sd, fill)
    order = np.argsort(P)
    P, F, sd = P[order], F[order], sd[order]
    x, y = np.log10(P), np.log10(F)

    def wls(yv):
        w = 1.0 / sd**2
        A = np.stack([np.ones_like(x), x], 1)
        coef, *_ = np.linalg.lstsq(A * np.sqrt(w)[:, None], yv * np.sqrt(w), rcond=None)
        return coef

    c, b = wls(y)
    rng = np.random.default_rng(seed)
    boot = np.asarray([wls(y + rng.normal(0.0, sd)) for _ in range(n_boot)])
    blo, bhi = np.quantile(boot[:, 1], [0.025, 0.975])
    return PowerLaw(float(b), float(blo), float(bhi), float(c), tuple(P.tolist()), tuple(F.tolist()),
                    tuple((y - (c + b * x)).tolist()), boot)


@dataclass(frozen=True)
class SizingAnswer:
    """One sizing prediction with its interval and how far it extrapolates."""

    value: float
    lo: float
    hi: float
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
    x = np.log10(params)
    draws = fit.boot[:, 0] + fit.boot[:, 1] * x
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return SizingAnswer(float(10 ** (fit.intercept + fit.exponent * x)), float(10**lo), float(10**hi),
                        float(_outside(fit, np.asarray(params, float))))


def smallest_params_for(fit: PowerLaw, frequency: float) -> SizingAnswer:
    """The smallest model (parameters) predicted to learn a task at ``frequency`` per token:
    P with f*(P) = frequency. Needs a falling f* (exponent < 0)."""
    if not 0 < frequency < 1:
        raise ConfigError("frequency", f"{frequency}", "a per-token frequency in (0, 1)")
    if not fit.exponent < 0:
        raise ConfigError("frequency", f"f* does not fall with size here (exponent {fit.exponent:.3g})",
                          "a sweep where larger models learn rarer tasks")
    y = np.log10(frequency)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = (y - fit.boot[:, 0]) / fit.boot[:, 1]
    draws = draws[np.isfinite(draws) & (fit.boot[:, 1] < 0)]
    lo, hi = np.quantile(draws, [0.025, 0.975]) if len(draws) else (np.nan, np.nan)
    P = 10 ** ((y - fit.intercept) / fit.exponent)
    return SizingAnswer(float(P), float(10**lo), float(10**hi), float(_outside(fit, np.asarray(P))))


def theory_exponent(spec, task: int, widths) -> tuple[np.ndarray, float]:
    """The synthetic theory's own curve: the planner's minimal frequency p*(N) of ``task``
    (1-based) per width, and the slope of log p* against log N over widths where it is > 0."""
    from ..mixture import min_frequency

    N = np.asarray(widths, int)
    p = np.asarray([min_frequency(spec, task, int(w)) or np.nan for w in N], float)
    ok = np.isfinite(p) & (p > 0)
    slope = float(np.polyfit(np.log10(N[ok]), np.log10(p[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
    return p, slope
