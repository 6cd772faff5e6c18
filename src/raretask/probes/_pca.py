"""PCA regression (SPEC B5): how linearly the residual stream encodes v(token)."""

from __future__ import annotations

import numpy as np

from ._registry import Probe, Setting, register_probe


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


def measure(model, ctx, cfg) -> list[dict]:
    """The ``pca`` probe: R^2 of v(token) on the top-k PCs of each layer's residual at the token."""
    from ._activations import residuals

    L = model.config.num_hidden_layers
    acts = residuals(model, ctx.tasks.value_tokens[:, None])[:, :, 0]  # (L+1, 100, H)
    return [{"layer": layer, "k": cfg.pca_k, "r2": pca_r2(acts[layer], np.arange(100), cfg.pca_k)}
            for layer in range(L + 1)]


def report(d, out, cfg):
    """R^2 over layers per checkpoint (a figure) and the best R^2 per checkpoint (check rows)."""
    from ..report.html import Check, Figure
    from ..report.plots import new_figure, save
    from ..report.style import integer_axis

    fig, axes = new_figure(1, 1)
    for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
        axes[0, 0].plot(g["layer"], g["r2"], marker="o", color=f"C{i}", label=ck)
    axes[0, 0].axhline(cfg.pca_k / 100, color="k", lw=0.8, label=f"chance (k / N = {cfg.pca_k / 100:.2f})")
    axes[0, 0].set(xlabel="layer", ylabel=f"R^2 of v(token) on top-{cfg.pca_k} PCs", ylim=(0, 1.02))
    integer_axis(axes[0, 0], "x")  # layers are whole numbers
    axes[0, 0].legend()
    figures = [Figure(save(fig, out / "figures" / "pca.png"), "PCA regression of the value v(token).")]
    checks = [Check(f"PCA {ck}: best R^2 over layers", round(float(g["r2"].max()), 3),
                    f"chance about {cfg.pca_k / 100:.2f}", None) for ck, g in d.groupby("checkpoint", sort=False)]
    return checks, figures


def check(cfg, preset) -> None:
    """k components need k <= the model's width and k < the 100 value tokens (the fit would
    otherwise use fewer than asked while the table recorded k)."""
    from ..errors import ConfigError

    most = min(preset.hidden, 99)
    if cfg.pca_k > most:
        raise ConfigError("pca_k", f"{cfg.pca_k} principal components of a width-{preset.hidden} model's residual "
                          "over 100 value tokens", f"1..{most}")


register_probe(Probe("pca", "PCA regression of v(token)", measure, report, tasks=("cmp",), settings=(
    Setting("pca_k", int, 8, "principal components for the PCA regression"),), check=check))
