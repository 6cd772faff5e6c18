"""Theory curves evaluated on a study's grid (SPEC A4), shared by several studies."""

from __future__ import annotations

import numpy as np

from ..mixture import MixtureSpec, feature_ranks, predicted_task_loss, predicted_total_loss


def predicted_corrected_signal(spec: MixtureSpec, width: int) -> np.ndarray:
    """s~_k of the Theorem-3 minimiser at width N (it retains the top-N features), (K,)."""
    keep = feature_ranks(spec) <= width
    lam = spec.spectra
    s = (np.where(keep, lam, 0.0)).sum(1) / lam.sum(1)
    base = width / spec.D
    return (s - base) / (1 - base) if base < 1 else np.ones(spec.K)


def first_grid_index(mask: np.ndarray) -> np.ndarray:
    """For a (K, G) boolean matrix: index of the first True per row, G where none."""
    mask = np.asarray(mask, bool)
    return np.where(mask.any(1), mask.argmax(1), mask.shape[1])


def theory_grid_tables(spec: MixtureSpec, grid: list[int]) -> dict[str, np.ndarray]:
    """Per-task theory on the grid: norm_loss (K, G), corrected signal (K, G), total loss (G,)."""
    norm = np.stack([predicted_task_loss(spec, w) / spec.trace_C for w in grid], 1)
    sig = np.stack([predicted_corrected_signal(spec, w) for w in grid], 1)
    total = np.array([predicted_total_loss(spec, w) for w in grid])
    return {"norm_loss": norm, "corrected_signal": sig, "total_loss": total}
