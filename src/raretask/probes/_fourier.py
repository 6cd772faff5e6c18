"""Fourier modes of modular addition (SPEC B5)."""

from __future__ import annotations

import numpy as np

from ._registry import Probe, Setting, register_probe


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


def measure(model, ctx, cfg) -> list[dict]:
    """The ``fourier`` probe: per layer, the Fourier modes of (a + b) mod 100 at the label position."""
    from ._activations import residuals

    L = model.config.num_hidden_layers
    tasks = ctx.tasks
    acts = residuals(model, tasks.instances[:, :2])[:, :, 1]  # label position
    c = (tasks.values[:, 0] + tasks.values[:, 1]) % 100
    rows = []
    for layer in range(L + 1):
        fr = fourier_fractions(acts[layer], c, 100)
        modes = fourier_modes(fr, cfg.tau)
        rows.append({"layer": layer, "n_modes": len(modes), "modes": modes.tolist(), "fractions": fr.tolist(),
                     "class_share": class_share(acts[layer], c, 100)})
    return rows


def report(d, out, cfg):
    """Modes over layers per checkpoint (a figure) and their sum per checkpoint (check rows)."""
    from ..report.html import Check, Figure
    from ..report.plots import new_figure, save
    from ..report.style import integer_axis

    checks = []
    fig, axes = new_figure(1, 1)
    for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
        axes[0, 0].plot(g["layer"], g["n_modes"], marker="o", color=f"C{i}", label=ck)
        checks.append(Check(f"Fourier {ck}: modes summed over layers", int(g["n_modes"].sum()),
                            f"tau = {cfg.tau}", None))
    axes[0, 0].set(xlabel="layer", ylabel="Fourier modes")
    integer_axis(axes[0, 0], "x")  # layers are whole numbers
    axes[0, 0].legend()
    return checks, [Figure(save(fig, out / "figures" / "fourier.png"), "Fourier modes of (a + b) mod 100.")]


register_probe(Probe("fourier", "Fourier modes of (a+b) mod 100", measure, report, tasks=("add",), settings=(
    Setting("tau", float, 3.0, "a mode's variance fraction must exceed tau x uniform"),)))
