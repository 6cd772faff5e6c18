"""Matplotlib helpers shared by the studies (Agg backend, PNG output)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..runfolder import atomic_figure  # noqa: E402


def new_figure(ncols: int = 1, nrows: int = 1, size=(6.4, 4.6), **kw):
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kw)
    return fig, axes


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        atomic_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path


def grid_position(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of ``values`` on a categorical axis whose ticks are ``grid`` (log-interpolated);
    values beyond the grid land half a step outside."""
    lg = np.log(np.asarray(grid, float))
    v = np.log(np.clip(np.asarray(values, float), 1e-9, None))
    pos = np.interp(v, lg, np.arange(len(grid)), left=-0.5, right=len(grid) - 0.5)
    return pos


def heatmap_with_staircase(ax, matrix: np.ndarray, grid, staircase: dict[str, np.ndarray], title: str,
                           cbar_label: str, fig=None, vmin=0.0, vmax=1.0, cmap="viridis"):
    """matrix (K, len(grid)) with task 1 at the top; staircase: label -> critical width per task."""
    K = matrix.shape[0]
    im = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, origin="upper",
                   extent=(-0.5, len(grid) - 0.5, K + 0.5, 0.5))
    ax.set_xticks(range(len(grid)))
    ax.set_xticklabels([str(g) for g in grid], rotation=45)
    ax.set_xlabel("width N")
    ax.set_ylabel("task k (1 = most frequent)")
    styles = ["w-", "r--", "c:"]
    for (label, crit), st in zip(staircase.items(), styles):
        x = grid_position(grid, crit) - 0.5  # the boundary just before the critical width
        ks = np.arange(1, K + 1)
        ax.step(np.repeat(x, 2)[:], np.column_stack([ks - 0.5, ks + 0.5]).reshape(-1), st, lw=2, label=label,
                where="post")
    ax.set_xlim(-0.5, len(grid) - 0.5)  # staircases below the first grid width would widen the axis
    ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_title(title)
    if fig is not None:
        fig.colorbar(im, ax=ax, label=cbar_label)
    return im
