"""Metrics computed exactly from the parameters (SPEC A3).

Nothing is sampled: the population loss of task k is ||Dec_k E - W_k||_F^2 because the
inputs are isotropic. Alignment is measured with the orthogonal projector on the row space
of E from an SVD, so every metric except the loss is invariant to E -> A E.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._spec import MixtureSpec


def row_space_alignment(E: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """||P_E e_i||^2 for every coordinate vector e_i, P_E the projector on the row space of E.

    Args: E (N, D) or a stack (..., N, D).
    Returns: (D,) or (..., D), values in [0, 1], summing to rank(E).
    """
    E = np.asarray(E, dtype=np.float64)
    _, s, Vt = np.linalg.svd(E, full_matrices=False)
    keep = s > rtol * s[..., :1]
    return np.einsum("...r,...rd->...d", keep.astype(np.float64), Vt**2)


@dataclass(frozen=True)
class TaskMetrics:
    """SPEC A3 metrics of one (E, Dec) pair; arrays have shape (K,) unless stated."""

    loss: np.ndarray
    """L_k = ||Dec_k E - W_k||_F^2."""
    norm_loss: np.ndarray
    """L_k / tr(C_k)."""
    signal: np.ndarray
    """s_k = tr(P_E C_k) / tr(C_k)."""
    corrected_signal: np.ndarray
    """s~_k = (s_k - N/D) / (1 - N/D); 0 at random init, 1 at full capture."""
    n_features: np.ndarray
    """Number of directions of task k with alignment >= the feature threshold (int)."""
    alignment: np.ndarray
    """||P_E e_{k,j}||^2, shape (K, d)."""
    residual: float
    """delta_F(E) = tr((I - P_E) M_F)."""
    total_loss: float
    """Population loss sum_k pi_k L_k."""


def signals(spec: MixtureSpec, alignment: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(s_k, s~_k) from per-coordinate alignments (..., D); returns two (..., K) arrays."""
    a = np.asarray(alignment).reshape(*np.shape(alignment)[:-1], spec.K, spec.d)
    lam = spec.spectra
    s = (a * lam).sum(-1) / lam.sum(-1)
    base = width / spec.D
    corrected = (s - base) / (1 - base) if base < 1 else np.ones_like(s)
    return s, corrected


def residual_F(spec: MixtureSpec, alignment: np.ndarray) -> np.ndarray:
    """delta_F = tr((I - P_E) M_F) = sum_{k in F, j} pi_k lambda_{k,j} (1 - a_{k,j}); shape (...)."""
    a = np.asarray(alignment).reshape(*np.shape(alignment)[:-1], spec.K, spec.d)
    F = spec.frequent_set
    return ((1 - a[..., F, :]) * spec.utilities[F]).sum((-1, -2))


def task_losses(spec: MixtureSpec, E: np.ndarray, Dec: np.ndarray) -> np.ndarray:
    """L_k = ||Dec_k E - W_k||_F^2.

    Args: E (N, D); Dec (K, d, N). Returns (K,).
    """
    P = np.einsum("kdn,nm->kdm", np.asarray(Dec, np.float64), np.asarray(E, np.float64))
    P = P.reshape(spec.D, spec.D)
    P[np.arange(spec.D), np.arange(spec.D)] -= spec.teacher_diag
    return (P.reshape(spec.K, spec.d, spec.D) ** 2).sum((1, 2))


def task_metrics(spec: MixtureSpec, E: np.ndarray, Dec: np.ndarray) -> TaskMetrics:
    """All SPEC A3 metrics of one student.

    Args: E (N, D) encoder; Dec (K, d, N) decoders.
    """
    E = np.asarray(E, np.float64)
    N = E.shape[0]
    a = row_space_alignment(E)
    s, sc = signals(spec, a, N)
    loss = task_losses(spec, E, Dec)
    a2 = a.reshape(spec.K, spec.d)
    return TaskMetrics(
        loss=loss,
        norm_loss=loss / spec.trace_C,
        signal=s,
        corrected_signal=sc,
        n_features=(a2 >= spec.feature_threshold).sum(1),
        alignment=a2,
        residual=float(residual_F(spec, a)),
        total_loss=float(spec.pi @ loss),
    )
