"""Gradient interference (SPEC B6).

Task neurons: the top-k hidden units of the first MLP by the task-loss gradient's magnitude
(a unit's parameters: its row of gate_proj and up_proj and its column of down_proj). The
reference direction g_r is the task-loss gradient over all 10,000 instances restricted to
those parameters. For a training batch, the gradient restricted to the same parameters is
split into the part from task-token positions (the predictions of b, LABEL and EOS in rows
carrying an instance) and the part from every other token; the two sum to the full one.
"""

from __future__ import annotations

import numpy as np


def _mlp0(model):
    inner = model.module if hasattr(model, "module") else model
    return inner.model.layers[0].mlp


def _params(model):
    mlp = _mlp0(model)
    params = [mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight]
    for p in params:  # a frozen model (e.g. after pyvene) still has gradients here
        p.requires_grad_(True)
    return params


def restrict(grads, neurons: np.ndarray):
    """Flatten (gate rows, up rows, down columns) of ``neurons``: torch (3 k H,)."""
    import torch

    idx = torch.as_tensor(neurons)
    g, u, d = grads
    return torch.cat([g[idx].reshape(-1), u[idx].reshape(-1), d[:, idx].T.reshape(-1)])


def task_loss(model, tasks, which: np.ndarray | None = None):
    """Mean LABEL cross-entropy over instances (default all 10,000), torch scalar."""
    import torch

    which = np.arange(len(tasks.instances)) if which is None else which
    ids = torch.as_tensor(tasks.instances[which, :2])
    logits = model(input_ids=ids).logits[:, 1]
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(tasks.instances[which, 2]))


def reference(model, tasks, k: int = 32):
    """Task neurons (top-k of the first MLP) and g_r. Returns (neurons (k,), g_r torch (3 k H,))."""
    import torch

    params = _params(model)
    grads = torch.autograd.grad(task_loss(model, tasks), params)
    g, u, d = grads
    score = g.pow(2).sum(1) + u.pow(2).sum(1) + d.pow(2).sum(0)
    neurons = torch.topk(score, min(k, len(score))).indices.sort().values.numpy()
    return neurons, restrict(grads, neurons).detach()


def token_losses(model, toks):
    """Per-position next-token cross-entropy (B, T - 1) of a batch (B, T)."""
    import torch

    logits = model(input_ids=toks).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             toks[:, 1:].reshape(-1), reduction="none").view(toks.shape[0], -1)


def task_mask(inst: np.ndarray, T: int) -> np.ndarray:
    """Positions whose targets are task tokens: predictions 0..2 of rows with an instance. (B, T-1)"""
    m = np.zeros((len(inst), T - 1), bool)
    m[inst >= 0, :3] = True
    return m


def split_gradient(model, tok_loss, mask: np.ndarray, neurons: np.ndarray, retain: bool = False):
    """Gradient of the batch loss (mean over all positions) restricted to the task neurons,
    and its task-token and other-token parts: (full, task, nontask) torch vectors."""
    import torch

    params = _params(model)
    m = torch.as_tensor(mask)
    n = tok_loss.numel()
    task_part = (tok_loss * m).sum() / n
    other_part = (tok_loss * ~m).sum() / n
    gt = torch.autograd.grad(task_part, params, retain_graph=True, allow_unused=True)
    go = torch.autograd.grad(other_part, params, retain_graph=retain, allow_unused=True)
    gt = [torch.zeros_like(p) if g is None else g for g, p in zip(gt, params)]
    go = [torch.zeros_like(p) if g is None else g for g, p in zip(go, params)]
    t, o = restrict(gt, neurons), restrict(go, neurons)
    return t + o, t, o


def cosine(a, b) -> float:
    import torch

    na, nb = float(a.norm()), float(b.norm())
    return float(torch.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else float("nan")


def interference_row(model, toks, inst, neurons, g_r, tok_loss=None, retain: bool = False) -> dict:
    """Cosines of g_r with the batch gradient and its task / non-task parts.

    Args: toks (B, T) the batch, or None when ``tok_loss`` (B, T - 1), the batch's
        per-position losses with their graph, is given (the training loop's own forward);
        inst (B,) instance per row (-1: none); retain: keep the graph for a later backward."""
    import torch

    tl = token_losses(model, torch.as_tensor(toks)) if tok_loss is None else tok_loss
    full, task, other = split_gradient(model, tl, task_mask(inst, tl.shape[1] + 1), neurons, retain=retain)
    return {"instances": int((inst >= 0).sum()), "cos_batch": cosine(g_r, full), "cos_task": cosine(g_r, task),
            "cos_nontask": cosine(g_r, other), "norm_task": float(task.norm()), "norm_nontask": float(other.norm())}
