"""Closed-form theory of the mixture (SPEC A4).

Everything is exact float64 arithmetic on the utilities u_{k,j} = pi_k lambda_{k,j}; no
training is involved. Features are ordered by utility, descending, with a deterministic
tie-break (lower task index first, then lower feature index), so "the top-N eigenspace" is
always well defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._spec import MixtureSpec


def feature_order(spec: MixtureSpec) -> np.ndarray:
    """Features sorted by utility, descending, ties by (task, feature) ascending.

    Returns: int array (K*d, 2) of 0-based (task, feature) pairs; row i is the i-th
    eigenvector of M (SPEC A4, Theorem 3).
    """
    u = spec.utilities
    K, d = u.shape
    kk, jj = np.meshgrid(np.arange(K), np.arange(d), indexing="ij")
    order = np.lexsort((jj.ravel(), kk.ravel(), -u.ravel()))
    return np.stack([kk.ravel()[order], jj.ravel()[order]], axis=1)


def sorted_utilities(spec: MixtureSpec) -> np.ndarray:
    """mu: the eigenvalues of M = sum_k pi_k C_k sorted descending, shape (D,)."""
    o = feature_order(spec)
    return spec.utilities[o[:, 0], o[:, 1]]


def feature_ranks(spec: MixtureSpec) -> np.ndarray:
    """1-based rank of every feature in the utility order, shape (K, d) int.

    rank[k, m-1] is the critical width N*_{k,m} (SPEC A4, Theorem 3): a width-N minimiser
    retains feature (k, m) iff N >= N*_{k,m}. Without ties this equals
    #{(k', j') : u_{k',j'} >= u_{k,m}}.
    """
    o = feature_order(spec)
    rank = np.empty((spec.K, spec.d), dtype=np.int64)
    rank[o[:, 0], o[:, 1]] = np.arange(1, spec.D + 1)
    return rank


def retained_features(spec: MixtureSpec, width: int) -> np.ndarray:
    """n_k(N): features of each task in the top-N eigenspace of M (Theorem 3), shape (K,) int."""
    N = spec.check_width(width)
    return (feature_ranks(spec) <= N).sum(axis=1)


def predicted_task_loss(spec: MixtureSpec, width: int) -> np.ndarray:
    """L*_k(N) = sum_{j > n_k(N)} lambda_{k,j} (Theorem 3), shape (K,).

    Within a task the spectrum is non-increasing, so the retained features are its first n_k.
    """
    N = spec.check_width(width)
    keep = feature_ranks(spec) <= N
    return np.where(keep, 0.0, spec.spectra).sum(axis=1)


def predicted_total_loss(spec: MixtureSpec, width: int) -> float:
    """Optimal population loss sum_{i > N} mu_i = sum_k pi_k L*_k(N) (Theorem 3)."""
    N = spec.check_width(width)
    return float(sorted_utilities(spec)[N:].sum())


TIE_RTOL = 1e-12
"""Utilities within this relative distance are ties (SPEC A4): all count in #{u >= ...}."""


def count_at_least(values: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """#{v in values : v >= t} per threshold t, values within TIE_RTOL of t counted as equal."""
    v = np.sort(np.asarray(values, np.float64).ravel())
    t = np.asarray(thresholds, np.float64)
    return len(v) - np.searchsorted(v, t - TIE_RTOL * np.abs(t), side="left")


def critical_widths(spec: MixtureSpec) -> np.ndarray:
    """N*_{k,m} = #{(k', j') : u_{k',j'} >= u_{k,m}} for every task and feature, shape (K, d)
    int (SPEC A4, Theorem 3). Tied utilities (1e-12 relative) all count, so with beta = 0.9,
    alpha = 1.8 (u_{8,1} = u_{2,2}) N*_{8,1} = 10 whichever way rounding orders the two; the
    width-N optimum's own choice among ties (``feature_ranks``) is deterministic."""
    return count_at_least(spec.utilities, spec.utilities).astype(np.int64)


def min_width_for(spec: MixtureSpec, features: np.ndarray | int) -> int:
    """Smallest width that retains at least m_k features of every task (Theorem 3).

    Args:
        features: m_k per task, shape (K,) ints in 0..d, or one int for all tasks.
    Returns: #{u >= min_k u_{k,m_k}} (ties counted), i.e. max_k N*_{k,m_k}.
    """
    m = np.broadcast_to(np.asarray(features, dtype=np.int64), (spec.K,))
    if np.any(m < 0) or np.any(m > spec.d):
        raise ConfigError("features", f"m_k outside 0..{spec.d}", f"integers 0..{spec.d}")
    ranks = critical_widths(spec)
    need = [ranks[k, mk - 1] for k, mk in enumerate(m) if mk > 0]
    return int(max(need)) if need else 0


# ------------------------------------------------------------------ frequent set (Thm 4 - Prop 6)
def frequent_matrix_diag(spec: MixtureSpec) -> np.ndarray:
    """M_F = sum_{k in F} pi_k C_k is diagonal in the coordinate basis; its diagonal, shape (D,)."""
    diag = np.zeros((spec.K, spec.d))
    F = spec.frequent_set
    diag[F] = spec.utilities[F]
    return diag.reshape(-1)


def frequent_utilities(spec: MixtureSpec) -> np.ndarray:
    """mu^F: eigenvalues of M_F that belong to F's features, sorted descending."""
    F = spec.frequent_set
    return np.sort(spec.utilities[F].ravel())[::-1]


def riemannian_gradient(U: np.ndarray, M_F: np.ndarray) -> np.ndarray:
    """Riemannian gradient of f_F(U) = tr(M_F) - tr(U^T M_F U) on the Stiefel manifold
    (SPEC A4, Theorem 4): -2 (I - U U^T) M_F U.

    Args: U (D, N) with orthonormal columns; M_F (D, D) symmetric PSD.
    Returns: (D, N).
    """
    MU = M_F @ U
    return -2.0 * (MU - U @ (U.T @ MU))


def theorem4_bound(U: np.ndarray, M_F: np.ndarray) -> tuple[float, float]:
    """(||grad_F||_F, 2 sqrt(||M_F||_op * delta_F(U))) for orthonormal U (Theorem 4)."""
    g = np.linalg.norm(riemannian_gradient(U, M_F))
    delta = float(np.trace(M_F) - np.trace(U.T @ M_F @ U))
    op = float(np.linalg.eigvalsh(M_F)[-1])
    return float(g), 2.0 * math.sqrt(max(op, 0.0) * max(delta, 0.0))


@dataclass(frozen=True)
class Corollary5:
    """Result of Corollary 5 for one tolerance eps."""

    eps: float
    """The residual tolerance."""
    width: int
    """N_eps(F) = min{N : sum_{i>N} mu^F_i <= eps}."""
    gradient_bound: float
    """2 sqrt(||M_F||_op * eps): the common-task gradient bound at any N >= N_eps."""


def corollary5(spec: MixtureSpec, eps: float) -> Corollary5:
    """Width at which the frequent set's residual can be brought below eps (Corollary 5)."""
    if not (eps >= 0 and math.isfinite(eps)):
        raise ConfigError("eps", f"{eps}", "finite number >= 0")
    mu = frequent_utilities(spec)
    tails = np.concatenate([np.cumsum(mu[::-1])[::-1], [0.0]])  # tails[N] = sum_{i>N} mu_i
    N = int(np.argmax(tails <= eps * (1 + 1e-12)))
    return Corollary5(eps=float(eps), width=N, gradient_bound=2.0 * math.sqrt(float(mu[0]) * eps))


@dataclass(frozen=True)
class RareTaskThreshold:
    """Proposition 6 for one rare task."""

    task: int
    """The rare task r (1-based, not in F)."""
    utility: float
    """pi_r lambda_{r,1}, the utility of its leading feature."""
    critical_width: int
    """N*_r = #{i : mu^F_i >= pi_r lambda_{r,1}} + 1."""
    delta_star: float
    """delta*_r = sum{mu^F_i : mu^F_i < pi_r lambda_{r,1}} (Fig. 3 threshold)."""


def proposition6(spec: MixtureSpec, task: int | None = None) -> RareTaskThreshold | None:
    """Critical width and residual threshold of a rare rank-one task (SPEC A4, Proposition 6).

    Args:
        task: the rare task (1-based); default the rarest task outside F (lowest prior,
            then highest number). Returns None when every task is in F.
    """
    F = set(spec.frequent_set.tolist())
    if task is None:
        outside = [k for k in range(spec.K) if k not in F]
        if not outside:
            return None
        pi = spec.pi
        k = min(outside, key=lambda j: (pi[j], -j))
    else:
        k = spec.task_index(task)
    if k in F:
        raise ConfigError("task", f"task {k + 1} is in the frequent set", "a task outside F")
    u_r = float(spec.utilities[k, 0])
    mu = frequent_utilities(spec)  # descending
    above = int(count_at_least(mu, u_r))  # mu^F_i >= u_r, ties counted
    return RareTaskThreshold(
        task=k + 1,
        utility=u_r,
        critical_width=above + 1,
        delta_star=float(mu[above:].sum()),
    )


# ------------------------------------------------------------------ Example 7 (App. C.4)
def one_neuron_step(theta: float | np.ndarray, eta: float, lam: float, task: int) -> np.ndarray:
    """One gradient step of the one-neuron, two-task model (SPEC A4, Example 7).

    u = cos(theta) a + sin(theta) b; task 1 has loss lam sin^2 theta and pulls theta to 0,
    task 2 has loss lam cos^2 theta and pushes it to pi/2.
    Args: theta (any shape), eta step size, lam the stepped task's lambda, task 1 or 2.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if task == 1:
        return theta - eta * lam * np.sin(2 * theta)
    if task == 2:
        return theta + eta * lam * np.sin(2 * theta)
    raise ConfigError("task", f"{task}", "1 or 2")


def one_neuron_decay(eta: float, lam1: float, gap: np.ndarray | int) -> np.ndarray:
    """Predicted shrink factor of theta after G common updates: exp(-2 eta lambda_1 G)."""
    return np.exp(-2.0 * eta * lam1 * np.asarray(gap, dtype=np.float64))


def one_neuron_flow(theta: float | np.ndarray, eta: float, lam: float, steps: float | np.ndarray,
                    task: int = 1) -> np.ndarray:
    """Closed-form angle after ``steps`` steps of size eta on one task (SPEC A4 Example 7,
    App. C.4), from the gradient flow d theta / dt = -/+ lam sin 2 theta, solved exactly:
    tan theta(t) = tan theta(0) exp(-/+ 2 eta lam t) (task 1 pulls theta to 0, task 2 pushes it
    to pi/2). Valid at every angle in (0, pi/2), unlike the small-angle shrink
    exp(-2 eta lam G); it differs from the discrete steps by O((eta lam)^2) per step."""
    if task not in (1, 2):
        raise ConfigError("task", f"{task}", "1 or 2")
    sign = -1.0 if task == 1 else 1.0
    t = np.asarray(steps, dtype=np.float64)
    return np.arctan(np.tan(np.asarray(theta, dtype=np.float64)) * np.exp(sign * 2.0 * eta * lam * t))
