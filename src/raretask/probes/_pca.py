"""PCA regression (SPEC B5): how linearly the residual stream encodes v(token)."""

from __future__ import annotations

import numpy as np


def pca_r2(acts: np.ndarray, values: np.ndarray, k: int = 8) -> float:
    """R^2 of a least-squares fit of ``values`` on the top-``k`` principal components.

    Args: acts (N, H) one residual vector per value token, values (N,) their v(token).
    Returns: R^2 in [0, 1] (in-sample; with N = 100 tokens, k components give about k / N
    by chance)."""
    X = np.asarray(acts, np.float64)
    y = np.asarray(values, np.float64)
    X = X - X.mean(0)
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    Z = X @ Vt[: min(k, Vt.shape[0])].T
    A = np.c_[Z, np.ones(len(Z))]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    return float(1.0 - resid @ resid / ((y - y.mean()) @ (y - y.mean())))
