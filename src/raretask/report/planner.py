"""Figure of the planner's trade-off frontier (up-weighting vs width)."""

from __future__ import annotations

from pathlib import Path

from .plots import new_figure, save


def plot_tradeoff(target: dict, path: str | Path) -> Path:
    """Two panels: the frequency needed at each width (with the current frequency), and the
    other tasks' predicted loss along that frontier vs without up-weighting."""
    routes = target.get("tradeoff") or []
    if not routes:
        from ..errors import ConfigError

        raise ConfigError("plot", "needs --tradeoff", "--tradeoff --plot FILE.png")
    N = [r["width"] for r in routes]
    fig, axes = new_figure(2, 1, height=2.6)
    ax = axes[0, 0]
    ax.plot(N, [max(r["frequency"], 1e-12) for r in routes], "-", color="C0", label="frequency needed (Theorem 3)")
    ax.axhline(target["frequency"], color="k", ls="--", label=f"current frequency {target['frequency']:.3g}")
    ax.axvline(target["min_width_at_current_frequency"], color="C3", ls=":",
               label=f"width needed at current frequency: {target['min_width_at_current_frequency']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width N")
    ax.set_ylabel(f"frequency of task {target['task']}")
    ax.legend()
    ax.set_title(f"learning task {target['task']} (first {target['features']} feature(s))")
    ax = axes[0, 1]
    ax.plot(N, [r["other_loss"] for r in routes], "-", color="C0", label="other tasks, up-weighted route")
    ax.plot(N, [r["other_loss_at_original"] for r in routes], "--", color="0.5", label="other tasks, no up-weighting")
    ax.set_xscale("log")
    ax.set_xlabel("width N")
    ax.set_ylabel("predicted loss of the other tasks")
    ax.legend()
    return save(fig, Path(path))
