"""Matplotlib helpers shared by the studies and the LM reports (Agg backend). Every figure is
drawn at its print width in the one style of ``report.style`` and saved as PNG with a PDF beside it."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..runfolder import atomic_figure  # noqa: E402
from . import style  # noqa: E402

style.apply()


def new_figure(ncols: int = 1, nrows: int = 1, height: float = 2.4, page: bool = False, **kw):
    """A figure of ``nrows`` x ``ncols`` panels at its print width (a column for one panel
    across, the page for more or when ``page``; ``style.print_width``), each panel ``height``
    inches tall. Returns (fig, axes) with axes indexed ``axes[row][col]``."""
    width = style.PAGE_IN if (page or ncols > 1) else style.COLUMN_IN
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False, **kw)
    fig._raretask_print_width = width
    return fig, axes


def save(fig, path: Path) -> Path:
    """Lay ``fig`` out and write it at ``path`` (a .png), atomically, and beside it in every
    other format of ``style.figure_formats`` (a PDF by default); a ``style.FigureRuleWarning``
    names every rule it breaks."""
    path = Path(path)
    formats = style.figure_formats()
    path.parent.mkdir(parents=True, exist_ok=True)
    style.tidy_log_axes(fig)
    fig.tight_layout(rect=getattr(fig, "_raretask_rect", None))
    try:
        fig.canvas.draw()  # lay out at screen resolution, where the rules measure positions
        broken = style.violations(fig)
        atomic_figure(fig, path, dpi=style.DPI)
        if path.suffix.lower() == ".png":
            for fmt in formats[1:] if formats[0] == "png" else [f for f in formats if f != "png"]:
                atomic_figure(fig, path.with_suffix(f".{fmt}"), dpi=style.DPI)
    finally:
        plt.close(fig)
    if broken:
        warnings.warn(style.FigureRuleWarning(f"figure {path.name}: " + "; ".join(broken)), stacklevel=2)
    return path


def legend_below(fig, ax, ncol: int = 2, line_in: float = 0.16) -> None:
    """One legend for the whole figure (``ax``'s entries) in a band below the panels: the figure
    grows by the band, and ``save`` lays the panels out above it. For more entries than fit
    inside a panel (``style.violations`` refuses a legend larger than its panel)."""
    handles, labels = ax.get_legend_handles_labels()
    band = line_in * math.ceil(len(labels) / ncol) + 0.15
    h = fig.get_figheight()
    fig.set_figheight(h + band)
    fig._raretask_rect = (0, band / (h + band), 1, 1)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)


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
    every = max(1, math.ceil(len(grid) / 12))  # at most about 12 labels: more collide at print width
    ax.set_xticks(range(0, len(grid), every))
    ax.set_xticklabels([str(g) for g in grid[::every]], rotation=45)
    ax.set_xlabel("width N")
    ax.set_ylabel("task k (1 = most frequent)")
    styles = [("white", "-"), (style.OKABE_ITO["vermillion"], "--"), (style.OKABE_ITO["sky blue"], ":")]
    for (label, crit), (colour, ls) in zip(staircase.items(), styles):
        x = grid_position(grid, crit) - 0.5  # the boundary just before the critical width
        ks = np.arange(1, K + 1)
        ax.step(np.repeat(x, 2)[:], np.column_stack([ks - 0.5, ks + 0.5]).reshape(-1), color=colour, ls=ls, lw=1.6,
                label=label, where="post")
    ax.set_xlim(-0.5, len(grid) - 0.5)  # staircases below the first grid width would widen the axis
    # a mid-grey legend: the white staircase shows on it (on white it would be invisible)
    ax.legend(loc="lower left", facecolor="0.55", framealpha=0.9, labelcolor="white")
    ax.set_title(title)
    if fig is not None:
        fig.colorbar(im, ax=ax, label=cbar_label)
    return im
