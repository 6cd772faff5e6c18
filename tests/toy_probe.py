"""A probe defined outside the package: the whole of what adding one takes (plus one
``register_probe(PROBE)`` line). It measures the mean L2 norm of the residual stream at the
label position per layer and checks that no layer's norm exceeds ``norm_limit`` (a model
whose residual stream blows up fails it)."""

import numpy as np

from raretask.probes import Probe, Setting, residuals
from raretask.report.html import Check, Figure
from raretask.report.plots import new_figure, save
from raretask.report.style import integer_axis


def measure(model, ctx, cfg):
    """Mean and max L2 norm of the residual at the label position over the test instances, per layer."""
    acts = residuals(model, ctx.tasks.instances[ctx.tasks.test, :2])[:, :, 1]  # (L + 1, N, H)
    norms = np.linalg.norm(acts.astype(np.float64), axis=-1)
    return [{"layer": layer, "mean_norm": float(norms[layer].mean()), "max_norm": float(norms[layer].max())}
            for layer in range(len(norms))]


def report(df, out, cfg):
    """Norm over layers per checkpoint (a figure) and, per checkpoint, whether every layer's
    mean norm is finite and at most ``norm_limit`` (a check)."""
    fig, axes = new_figure(1, 1)
    checks = []
    for i, (ck, g) in enumerate(df.groupby("checkpoint", sort=False)):
        axes[0, 0].plot(g["layer"], g["mean_norm"], "-o", color=f"C{i}", label=ck)
        worst = float(g["mean_norm"].max())
        checks.append(Check(f"resnorm {ck}: largest mean residual norm at the label position", round(worst, 3),
                            f"finite and <= {cfg.norm_limit:g}",
                            bool(np.isfinite(g["mean_norm"]).all() and worst <= cfg.norm_limit)))
    axes[0, 0].axhline(cfg.norm_limit, color="k", lw=0.8, label="limit")
    axes[0, 0].set(xlabel="residual-stream layer (0 = embeddings)", ylabel="mean L2 norm", yscale="log")
    integer_axis(axes[0, 0], "x")  # an outside figure meets the house rules too
    axes[0, 0].legend(fontsize=7)
    return checks, [Figure(save(fig, out / "figures" / "resnorm.png"),
                           "Mean L2 norm of the residual stream at the label position.")]


PROBE = Probe("resnorm", "mean residual-stream norm at the label position per layer", measure, report,
              settings=(Setting("norm_limit", float, 1e4, "largest allowed mean residual norm"),))
