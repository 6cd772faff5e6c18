"""The synthetic task mixture (SPEC A1).

``MixtureSpec`` describes K linear-regression tasks living in mutually orthogonal
d-dimensional coordinate blocks of R^D (D = K*d). Task k is drawn with prior pi_k and has
spectrum lambda_{k,j} = j^(-alpha_k). Everything downstream (theory, metrics, simulator)
reads these arrays from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..validate import STRICT, with_config


def _finite(name: str, value: float, allowed: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"{value!r} is not a number", allowed) from None
    if not math.isfinite(v):
        raise ConfigError(name, f"{value!r} is not finite", allowed)
    return v


MAX_DIM = 1 << 20
"""Largest ambient dimension D = K d: the theory sorts D utilities, the engine holds N x D
encoders; beyond this a run would exhaust memory long before it says anything."""


@with_config(STRICT)
@dataclass(frozen=True)
class MixtureSpec:
    """A mixture of K orthogonal linear-regression tasks (SPEC A1).

    All arrays below are float64 and indexed 0-based internally; user-facing output is
    1-based (task 1 is the most frequent under a power-law prior).
    """

    n_tasks: int = 32
    """K, the number of tasks (>= 1)."""
    block_dim: int = 16
    """d, the dimension of each task's coordinate block (>= 1); D = K*d."""
    beta: float = 1.5
    """Power-law exponent of the prior pi_k ~ k^(-beta) (finite, >= 0). Ignored when
    ``prior`` is given."""
    prior: tuple[float, ...] | None = None
    """Explicit task prior (K positive numbers summing to 1 within 1e-6), or None for the
    power law."""
    alpha: float = 1.0
    """Spectral decay lambda_{k,j} = j^(-alpha) shared by every task (finite, >= 0).
    Ignored when ``alpha_range`` is given."""
    alpha_range: tuple[float, float] | None = None
    """Complexity sweep (App. D): alpha_k linearly spaced over [lo, hi]; the most frequent
    task gets hi (simplest), the rarest lo. Both finite, 0 <= lo <= hi."""
    spectrum: tuple[tuple[float, ...], ...] | None = None
    """Explicit spectra lambda_{k,j}: K rows of d positive numbers, each non-increasing
    (e.g. measured); overrides ``alpha``/``alpha_range``."""
    rank1: bool = False
    """Rank-1 special case (App. E.1.2): forces d = 1 and lambda = 1, so utility = prior."""
    noise: float = 0.0
    """sigma, the standard deviation of additive target noise (finite, >= 0)."""
    frequent_mass: float = 0.8
    """rho: the frequent set F is the smallest set of top-prior tasks whose cumulative prior
    is >= rho (0 < rho <= 1)."""
    feature_threshold: float = 0.5
    """A feature (k, j) counts as learned when ||P_E e_{k,j}||^2 >= this (0 < t <= 1)."""

    def __post_init__(self) -> None:
        if isinstance(self.n_tasks, bool) or not isinstance(self.n_tasks, (int, np.integer)):
            raise ConfigError("n_tasks", f"{self.n_tasks!r} is not an integer", "integer >= 1")
        if self.n_tasks < 1:
            raise ConfigError("n_tasks", f"{self.n_tasks} < 1", "integer >= 1")
        if isinstance(self.block_dim, bool) or not isinstance(self.block_dim, (int, np.integer)):
            raise ConfigError("block_dim", f"{self.block_dim!r} is not an integer", "integer >= 1")
        if self.block_dim < 1:
            raise ConfigError("block_dim", f"d = {self.block_dim} < 1", "integer >= 1")
        if self.n_tasks * self.block_dim > MAX_DIM:
            raise ConfigError("n_tasks", f"D = K * d = {self.n_tasks} * {self.block_dim} = "
                              f"{self.n_tasks * self.block_dim:,} dimensions", f"K * d <= {MAX_DIM:,}")
        if self.rank1 and self.block_dim != 1:
            # Rank-1 means d = 1 by definition; silently changing d would surprise the user.
            raise ConfigError("block_dim", f"rank1 requires d = 1, got {self.block_dim}", "1 when rank1")
        beta = _finite("beta", self.beta, "finite number >= 0")
        if beta < 0:
            raise ConfigError("beta", f"{beta} < 0", "finite number >= 0")
        alpha = _finite("alpha", self.alpha, "finite number >= 0")
        if alpha < 0:
            raise ConfigError("alpha", f"{alpha} < 0", "finite number >= 0")
        if self.alpha_range is not None:
            if len(self.alpha_range) != 2:
                raise ConfigError("alpha_range", "needs exactly two values LO HI", "0 <= LO <= HI")
            lo = _finite("alpha_range", self.alpha_range[0], "0 <= LO <= HI")
            hi = _finite("alpha_range", self.alpha_range[1], "0 <= LO <= HI")
            if lo < 0 or hi < lo:
                raise ConfigError("alpha_range", f"[{lo}, {hi}]", "0 <= LO <= HI")
            object.__setattr__(self, "alpha_range", (lo, hi))
        if self.prior is not None:
            p = np.asarray(self.prior, dtype=np.float64)
            if p.ndim != 1 or p.shape[0] != self.n_tasks:
                raise ConfigError("prior", f"has {p.size} entries for K = {self.n_tasks} tasks",
                                  f"{self.n_tasks} positive numbers summing to 1")
            if not np.all(np.isfinite(p)):
                raise ConfigError("prior", "contains NaN or infinity", "positive numbers summing to 1")
            if np.any(p <= 0):
                raise ConfigError("prior", f"entry {int(np.argmin(p)) + 1} is {p.min():g} <= 0",
                                  "positive numbers summing to 1")
            if abs(p.sum() - 1.0) > 1e-6:
                raise ConfigError("prior", f"sums to {p.sum():.9g}", "positive numbers summing to 1 within 1e-6")
            object.__setattr__(self, "prior", tuple(float(x) for x in p))
        if self.spectrum is not None:
            lam = np.asarray(self.spectrum, dtype=np.float64)
            allowed = f"{self.n_tasks} rows of {self.block_dim} positive, non-increasing numbers"
            if lam.shape != (self.n_tasks, self.block_dim):
                raise ConfigError("spectrum", f"shape {lam.shape}", allowed)
            if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
                raise ConfigError("spectrum", "contains a non-positive or non-finite value", allowed)
            if np.any(np.diff(lam, axis=1) > 0):
                raise ConfigError("spectrum", "a row increases", allowed)
            object.__setattr__(self, "spectrum", tuple(tuple(float(x) for x in row) for row in lam))
        noise = _finite("noise", self.noise, "finite number >= 0")
        if noise < 0:
            raise ConfigError("noise", f"{noise} < 0", "finite number >= 0")
        rho = _finite("frequent_mass", self.frequent_mass, "0 < rho <= 1")
        if not 0 < rho <= 1:
            raise ConfigError("frequent_mass", f"{rho}", "0 < rho <= 1")
        thr = _finite("feature_threshold", self.feature_threshold, "0 < t <= 1")
        if not 0 < thr <= 1:
            raise ConfigError("feature_threshold", f"{thr}", "0 < t <= 1")

    # ------------------------------------------------------------------ derived quantities
    @property
    def K(self) -> int:
        return int(self.n_tasks)

    @property
    def d(self) -> int:
        return int(self.block_dim)

    @property
    def D(self) -> int:
        """Ambient dimension K*d."""
        return self.K * self.d

    @property
    def pi(self) -> np.ndarray:
        """Task prior, shape (K,), sums to 1."""
        if self.prior is not None:
            return np.asarray(self.prior, dtype=np.float64)
        w = np.arange(1, self.K + 1, dtype=np.float64) ** (-float(self.beta))
        return w / w.sum()

    @property
    def alphas(self) -> np.ndarray:
        """Per-task spectral decay alpha_k, shape (K,)."""
        if self.alpha_range is None:
            return np.full(self.K, float(self.alpha))
        lo, hi = self.alpha_range
        # Task 1 (most frequent) is the simplest: fastest decay hi; the rarest gets lo.
        return np.linspace(hi, lo, self.K) if self.K > 1 else np.array([hi])

    @property
    def spectra(self) -> np.ndarray:
        """lambda_{k,j} = j^(-alpha_k), shape (K, d); lambda_{k,1} = 1 (not normalised)."""
        if self.rank1:
            return np.ones((self.K, 1))
        if self.spectrum is not None:
            return np.asarray(self.spectrum, dtype=np.float64)
        j = np.arange(1, self.d + 1, dtype=np.float64)
        return j[None, :] ** (-self.alphas[:, None])

    @property
    def utilities(self) -> np.ndarray:
        """u_{k,j} = pi_k lambda_{k,j}, shape (K, d): the eigenvalues of M (SPEC A4)."""
        return self.pi[:, None] * self.spectra

    @property
    def trace_C(self) -> np.ndarray:
        """tr(C_k) = sum_j lambda_{k,j}, shape (K,): the mean-predictor MSE of task k."""
        return self.spectra.sum(axis=1)

    @property
    def teacher_diag(self) -> np.ndarray:
        """The stacked teacher [W_1; ...; W_K] is the D x D diagonal matrix diag(sqrt(lambda))
        because B_k selects coordinate block k. Shape (D,): sqrt(lambda) flattened task-major."""
        return np.sqrt(self.spectra).reshape(-1)

    def teacher(self, k: int) -> np.ndarray:
        """W_k = Lambda_k^(1/2) B_k^T, shape (d, D), for 0-based task index k."""
        W = np.zeros((self.d, self.D))
        W[np.arange(self.d), k * self.d + np.arange(self.d)] = np.sqrt(self.spectra[k])
        return W

    def covariance(self, k: int) -> np.ndarray:
        """C_k = B_k Lambda_k B_k^T, shape (D, D), for 0-based task index k."""
        C = np.zeros((self.D, self.D))
        idx = k * self.d + np.arange(self.d)
        C[idx, idx] = self.spectra[k]
        return C

    def complexity_m90(self, level: float = 0.9) -> np.ndarray:
        """m_k(level) = min{m : sum_{j<=m} lambda_{k,j} >= level * sum_j lambda_{k,j}}, shape (K,) int."""
        lam = self.spectra
        cum = np.cumsum(lam, axis=1)
        # Tolerance so that exact fractions (e.g. alpha = 0) are not lost to rounding.
        ok = cum >= level * cum[:, -1:] * (1 - 1e-12)
        return ok.argmax(axis=1) + 1

    @property
    def frequent_set(self) -> np.ndarray:
        """F (SPEC A3): 0-based indices of the smallest set of top-prior tasks with
        cumulative prior >= rho. Ties in prior are broken by lower task index."""
        order = np.lexsort((np.arange(self.K), -self.pi))
        cum = np.cumsum(self.pi[order])
        n = int(np.searchsorted(cum, self.frequent_mass * (1 - 1e-12), side="left")) + 1
        return np.sort(order[: min(n, self.K)])

    def task_index(self, task: int, name: str = "task") -> int:
        """The 0-based row of the paper's 1-based task number ``task`` (1..K): public
        functions take ``task`` as the paper numbers it, as results tables do."""
        if isinstance(task, bool) or not isinstance(task, (int, np.integer)) or not 1 <= task <= self.K:
            raise ConfigError(name, f"{task!r}", f"a task number 1..{self.K}")
        return int(task) - 1

    def check_width(self, width: int, name: str = "width") -> int:
        """Validate a student width N: an integer with 1 <= N <= D."""
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
            raise ConfigError(name, f"{width!r} is not an integer", f"integer 1..{self.D}")
        if not 1 <= width <= self.D:
            raise ConfigError(name, f"N = {width} outside 1..D", f"integer 1..{self.D} (D = K*d)")
        return int(width)

    def to_dict_fields(self) -> dict[str, Any]:
        """The constructor's keyword arguments (no derived keys)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prior"] = list(self.prior) if self.prior is not None else None
        out["alpha_range"] = list(self.alpha_range) if self.alpha_range is not None else None
        out["spectrum"] = [list(r) for r in self.spectrum] if self.spectrum is not None else None
        out["D"] = self.D
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MixtureSpec":
        """Build from a dict (e.g. a preset file); unknown keys raise ConfigError."""
        known = {f for f in cls.__dataclass_fields__}
        extra = set(data) - known - {"D"}
        if extra:
            raise ConfigError("mixture", f"unknown option(s) {sorted(extra)}", ", ".join(sorted(known)))
        kw = {k: v for k, v in data.items() if k in known}
        for key in ("prior", "alpha_range"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("spectrum") is not None:
            kw["spectrum"] = tuple(tuple(r) for r in kw["spectrum"])
        return cls(**kw)


def validate_widths(spec: MixtureSpec, widths: Sequence[int]) -> list[int]:
    """Check every width against ``spec`` and return them as ints, in the given order."""
    if len(widths) == 0:
        raise ConfigError("width", "no width given", f"integers 1..{spec.D}")
    return [spec.check_width(w) for w in widths]
