"""Fourier modes of modular addition (SPEC B5)."""

from __future__ import annotations

import numpy as np


def dft_basis(P: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal real DFT basis over c = 0..P-1 without the constant.

    Returns: basis (P - 1, P) rows (cos f, sin f for f = 1..floor(P/2), the sine of f = P/2
    omitted for even P), freq (P - 1,) the frequency of each row."""
    c = np.arange(P)
    rows, freq = [], []
    for f in range(1, P // 2 + 1):
        for fn in (np.cos, np.sin):
            v = fn(2 * np.pi * f * c / P)
            if np.linalg.norm(v) < 1e-9:
                continue
            rows.append(v / np.linalg.norm(v))
            freq.append(f)
    return np.asarray(rows), np.asarray(freq)


def class_share(acts: np.ndarray, c: np.ndarray, P: int = 100) -> float:
    """Share of the activations' variance carried by the class means (between-class / total)."""
    acts = np.asarray(acts, np.float64)
    means = np.stack([acts[c == k].mean(0) for k in range(P)])
    total = acts.var(0).sum()
    return float(means.var(0).sum() / total) if total > 0 else 0.0


def fourier_fractions(acts: np.ndarray, c: np.ndarray, P: int = 100, min_share: float = 1e-6) -> np.ndarray:
    """Fraction of variance per frequency of class-mean residuals.

    Args: acts (N, H) residual vectors, c (N,) classes (a + b) mod P; min_share: below this
        between-class share of the variance the class means carry no structure (e.g. the
        embedding of b alone, whose class means are all equal) and all fractions are 0.
    Returns: (P // 2,) fractions for f = 1..P/2 (sum 1, or all 0)."""
    acts = np.asarray(acts, np.float64)
    if class_share(acts, c, P) < min_share:  # rounding noise would otherwise look like modes
        return np.zeros(P // 2)
    means = np.stack([acts[c == k].mean(0) for k in range(P)])  # (P, H)
    means -= means.mean(0, keepdims=True)  # centre over classes: the constant carries nothing
    basis, freq = dft_basis(P)
    power = ((basis @ means) ** 2).sum(1)
    per_f = np.bincount(freq - 1, weights=power, minlength=P // 2)
    return per_f / per_f.sum()


def fourier_modes(fractions: np.ndarray, tau: float = 3.0) -> np.ndarray:
    """Frequencies (1-based) whose fraction exceeds tau x the uniform 1 / (P/2)."""
    fractions = np.asarray(fractions)
    return np.flatnonzero(fractions > tau / len(fractions)) + 1
