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


def _pyvene():
    try:
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
