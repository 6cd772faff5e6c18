"""Distributed alignment search for T_CMP (SPEC B5), with pyvene.

A learned 1-D rotated subspace of the residual stream (block output of one layer, at one
position) is trained with interchange interventions: run the base input (a, b) with the
subspace's coordinate taken from a source input (a', b'); the counterfactual label is
[v(a') > v(b)]. Interchange-intervention accuracy (IIA) is measured on held-out pairs
built from test-split instances.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._registry import Probe, Setting, register_probe


def _pyvene():
    import contextlib
    import io

    try:
        # pyvene prints a line about an optional backend (nnsight) on import; it is not ours to show
        with contextlib.redirect_stdout(io.StringIO()):
            import pyvene
    except ImportError as e:
        raise ConfigError("probe", "DAS needs pyvene", "pip install 'raretask[probe]'") from e
    return pyvene


def counterfactual_pairs(tasks, split: np.ndarray, n: int, rng) -> dict[str, np.ndarray]:
    """Base/source pairs for an intervention on a's position.

    Returns: base (n, 2) and source (n, 2) token ids, target (n,) 0 = True / 1 = False index
    into the label tokens for [v(a_src) > v(b_base)], and base_target (n,) the base's label."""
    b = rng.choice(split, n)
    s = rng.choice(split, n)
    cf = tasks.values[s, 0] > tasks.values[b, 1]
    orig = tasks.values[b, 0] > tasks.values[b, 1]
    return {"base": tasks.instances[b, :2], "source": tasks.instances[s, :2],
            "target": np.where(cf, 0, 1), "base_target": np.where(orig, 0, 1)}


def site(layer: int) -> tuple[str, int]:
    """pyvene component and block index of residual-stream layer ``layer`` (the indexing of
    HF ``hidden_states``): 0 is the embedding output (block 0's input), l >= 1 the output of
    block l - 1."""
    return ("block_input", 0) if layer == 0 else ("block_output", layer - 1)


def das(model, tasks, layer: int, position: int = 0, n_train: int = 4000, n_test: int = 1000, epochs: int = 3,
        batch: int = 64, lr: float = 1e-2, seed: int = 0) -> dict:
    """Train and test a 1-D DAS intervention at (layer, position) of a T_CMP model.

    Args: model (HF causal LM, frozen), tasks (a cmp TaskSet), layer 0..L (residual stream
        after ``layer`` blocks; 0 = embeddings), position 0 (token a) or 1 (token b).
    Returns: {"layer", "position", "iia" (held-out), "chance" (majority counterfactual
    label), "no_intervention" (agreement of the base label with the counterfactual one),
    "train_iia"}.
    """
    import torch

    if tasks.task != "cmp":
        raise ConfigError("task", f"DAS is defined for cmp, not {tasks.task}", "cmp")
    pv = _pyvene()
    rng = np.random.default_rng([seed, layer, position])
    torch.manual_seed(seed)
    tr = counterfactual_pairs(tasks, tasks.train, n_train, rng)
    te = counterfactual_pairs(tasks, tasks.test, n_test, rng)
    cand = torch.as_tensor(tasks.label_tokens)
    component, block = site(layer)
    config = pv.IntervenableConfig(
        representations=[pv.RepresentationConfig(layer=block, component=component, unit="pos",
                                                 low_rank_dimension=1)],
        intervention_types=pv.LowRankRotatedSpaceIntervention)
    model.eval()
    grad_state = [p.requires_grad for p in model.parameters()]  # pyvene freezes the model; restored below
    im = pv.IntervenableModel(config, model)
    im.disable_model_gradients()
    params = [p for v in im.interventions.values() for p in (v[0] if isinstance(v, tuple) else v).parameters()]
    opt = torch.optim.Adam(params, lr=lr)

    def run(base, src):
        n = len(base)
        loc = {"sources->base": ([[[position]] * n], [[[position]] * n])}
        _, out = im({"input_ids": torch.as_tensor(base)}, [{"input_ids": torch.as_tensor(src)}], unit_locations=loc)
        return out.logits[:, 1][:, cand]

    for _ in range(epochs):
        order = rng.permutation(n_train)
        for i in range(0, n_train, batch):
            j = order[i:i + batch]
            loss = torch.nn.functional.cross_entropy(run(tr["base"][j], tr["source"][j]),
                                                     torch.as_tensor(tr["target"][j]))
            opt.zero_grad()
            loss.backward()
            opt.step()

    def accuracy(d):
        with torch.no_grad():
            pred = torch.cat([run(d["base"][i:i + 500], d["source"][i:i + 500]).argmax(1)
                              for i in range(0, len(d["base"]), 500)]).numpy()
        return float((pred == d["target"]).mean())

    counts = np.bincount(te["target"], minlength=2)
    iia, train_iia = accuracy(te), accuracy(tr)
    for p, g in zip(model.parameters(), grad_state):
        p.requires_grad_(g)
    return {"layer": layer, "position": position, "iia": iia, "train_iia": train_iia,
            "chance": float(counts.max() / counts.sum()),
            "no_intervention": float((te["base_target"] == te["target"]).mean())}


def measure(model, ctx, cfg) -> list[dict]:
    """The ``das`` probe: a 1-D DAS per residual-stream layer (0..L) and position (a, b)."""
    L = model.config.num_hidden_layers
    return [das(model, ctx.tasks, layer, pos, n_train=cfg.das_pairs, epochs=cfg.das_epochs)
            for layer in range(L + 1) for pos in (0, 1)]


def report(d, out, cfg):
    """Per checkpoint the best held-out IIA (a check row) and the IIA over layers (a figure)."""
    from ..report.html import Check, Figure
    from ..report.plots import new_figure, save
    from ..report.style import integer_axis

    checks = []
    best = d.loc[d.groupby("checkpoint")["iia"].idxmax()]
    for r in best.itertuples():
        checks.append(Check(f"DAS {r.checkpoint}: best held-out IIA (layer {r.layer}, position {r.position})",
                            round(r.iia, 3), f"chance {r.chance:.3f}, no intervention {r.no_intervention:.3f}",
                            None))
    fig, axes = new_figure(1, 1)
    ax = axes[0, 0]
    for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
        for pos, ls in ((0, "-"), (1, "--")):
            s = g[g["position"] == pos].sort_values("layer")
            ax.plot(s["layer"], s["iia"], ls, marker="o", color=f"C{i}", label=f"{ck}, position {pos}")
    ax.axhline(float(d["chance"].mean()), color="k", lw=0.8, label="chance")
    ax.set(xlabel="residual-stream layer (0 = embeddings)", ylabel="held-out IIA", ylim=(0, 1.02))
    integer_axis(ax, "x")  # layers are whole numbers
    ax.legend()
    return checks, [Figure(save(fig, out / "figures" / "das.png"),
                           "DAS: interchange-intervention accuracy of a 1-D subspace per layer and position.")]


register_probe(Probe("das", "1-D DAS per layer and position", measure, report, tasks=("cmp",), settings=(
    Setting("das_pairs", int, 4000, "DAS training pairs (held-out pairs: 1000)"),
    Setting("das_epochs", int, 3, "DAS training epochs"))))
