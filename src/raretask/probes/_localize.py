"""Localisation (SPEC B6): which MLP layer does the task need? Zero- and mean-ablate each
MLP's output and measure the drop in task accuracy."""

from __future__ import annotations

import numpy as np

from ._registry import Probe, register_probe


def task_accuracy(model, tasks, split: np.ndarray) -> float:
    """Accuracy over the task's label tokens at the LABEL position, on ``split`` instances."""
    import torch

    ids = torch.as_tensor(tasks.instances[split, :2])
    cand = torch.as_tensor(tasks.candidates)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, 1][:, cand]
    pred = cand[logits.argmax(1)].numpy()
    return float((pred == tasks.instances[split, 2]).mean())


def ablate_mlps(model, tasks, split: np.ndarray | None = None) -> list[dict]:
    """Per MLP layer: accuracy with its output zeroed and mean-ablated (the mean over the
    task inputs at each position), and the drops from the clean accuracy.

    Returns: rows {"layer", "clean", "zero", "mean", "zero_drop", "mean_drop"}."""
    import torch

    split = tasks.test if split is None else split
    clean = task_accuracy(model, tasks, split)
    ids = torch.as_tensor(tasks.instances[split, :2])
    rows = []
    from ..lm._families import mlps

    for i, mlp in enumerate(mlps(model)):
        store = {}
        h = mlp.register_forward_hook(lambda m, a, out: store.__setitem__("mean", out.mean(0, keepdim=True)))
        with torch.no_grad():
            model(input_ids=ids)
        h.remove()
        res = {}
        for kind in ("zero", "mean"):
            def hook(m, a, out, kind=kind):
                return torch.zeros_like(out) if kind == "zero" else store["mean"].expand_as(out)

            h = mlp.register_forward_hook(hook)
            res[kind] = task_accuracy(model, tasks, split)
            h.remove()
        rows.append({"layer": i, "clean": clean, "zero": res["zero"], "mean": res["mean"],
                     "zero_drop": clean - res["zero"], "mean_drop": clean - res["mean"]})
    return rows


def measure(model, ctx, cfg) -> list[dict]:
    """The ``localize`` probe: zero- and mean-ablation of every MLP (``ablate_mlps``)."""
    return ablate_mlps(model, ctx.tasks)


def report(d, out, cfg):
    """Drops over MLP layers per checkpoint (a figure) and the most causal layer (check rows)."""
    from ..report.html import Check, Figure
    from ..report.plots import new_figure, save
    from ..report.style import integer_axis

    checks = []
    fig, axes = new_figure(1, 1)
    for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
        axes[0, 0].plot(g["layer"], g["zero_drop"], "-o", color=f"C{i}", label=f"{ck} zero")
        axes[0, 0].plot(g["layer"], g["mean_drop"], "--s", color=f"C{i}", label=f"{ck} mean")
        top = g.loc[g["zero_drop"].idxmax()]
        checks.append(Check(f"localisation {ck}: most causal MLP layer (zero-ablation drop)",
                            f"layer {int(top['layer'])}: {top['zero_drop']:+.3f}", "informative", None))
    axes[0, 0].set(xlabel="MLP layer", ylabel="drop in task accuracy")
    integer_axis(axes[0, 0], "x")  # layers are whole numbers
    axes[0, 0].legend()
    return checks, [Figure(save(fig, out / "figures" / "localize.png"), "MLP ablations: drop in test accuracy.")]


register_probe(Probe("localize", "MLP ablations", measure, report))
