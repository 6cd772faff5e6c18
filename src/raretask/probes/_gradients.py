"""Gradient interference (SPEC B6).

Task neurons: the top-k hidden units of the first MLP by the task-loss gradient's magnitude
(a unit's parameters: its row of each input projection, gate_proj and up_proj for SwiGLU, and
its column of the output projection, down_proj; the model family names the parts). The
reference direction g_r is the task-loss gradient over all 10,000 instances restricted to
those parameters. For a training batch, the gradient restricted to the same parameters is
split into the part from task-token positions (the predictions of b, LABEL and EOS in rows
carrying an instance) and the part from every other token; the two sum to the full one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._registry import Probe, Setting, register_probe


def _params(model):
    """The first MLP's part weights (its family's ``mlp_weights``): input projections, then output."""
    from ..lm._families import family_of, mlps

    params = family_of(model).mlp_weights(mlps(model)[0])
    for p in params:  # a frozen model (e.g. after pyvene) still has gradients here
        p.requires_grad_(True)
    return params


def restrict(grads, neurons: np.ndarray):
    """Flatten (each input projection's rows, the output projection's columns) of ``neurons``:
    torch ((n_in + 1) k H,) (SwiGLU: gate rows, up rows, down columns)."""
    import torch

    *ins, d = grads
    idx = torch.as_tensor(neurons, device=d.device)
    return torch.cat([*(g[idx].reshape(-1) for g in ins), d[:, idx].T.reshape(-1)])


def task_loss(model, tasks, which: np.ndarray | None = None):
    """Mean LABEL cross-entropy over instances (default all 10,000), torch scalar."""
    import torch

    which = np.arange(len(tasks.instances)) if which is None else which
    dev = next(model.parameters()).device
    ids = torch.as_tensor(tasks.instances[which, :2], device=dev)
    # only the LABEL prediction's logits (position 1): the full (N, 2, V) logits cost 10x the time
    logits = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
    return torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(tasks.instances[which, 2], device=dev))


def reference(model, tasks, k: int = 32):
    """Task neurons (top-k of the first MLP) and g_r. Returns (neurons (k,), g_r torch ((n_in + 1) k H,))."""
    import torch

    params = _params(model)
    grads = torch.autograd.grad(task_loss(model, tasks), params)
    *ins, d = grads
    score = sum(g.pow(2).sum(1) for g in ins) + d.pow(2).sum(0)
    neurons = torch.topk(score, min(k, len(score))).indices.sort().values.cpu().numpy()
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


def part_gradients(model, tok_loss, mask: np.ndarray, retain: bool = False):
    """Gradients of the batch loss (mean over all positions) on the first MLP's parameters,
    split into the task-token and other-token parts: (task, nontask), each a list of 3 tensors
    (restrict them to any neuron set with ``restrict``)."""
    import torch

    params = _params(model)
    m = torch.as_tensor(mask, device=tok_loss.device)
    n = tok_loss.numel()
    task_part = (tok_loss * m).sum() / n
    other_part = (tok_loss * ~m).sum() / n
    gt = torch.autograd.grad(task_part, params, retain_graph=True, allow_unused=True)
    go = torch.autograd.grad(other_part, params, retain_graph=retain, allow_unused=True)
    gt = [torch.zeros_like(p) if g is None else g for g, p in zip(gt, params)]
    go = [torch.zeros_like(p) if g is None else g for g, p in zip(go, params)]
    return gt, go


def split_gradient(model, tok_loss, mask: np.ndarray, neurons: np.ndarray, retain: bool = False):
    """Gradient of the batch loss (mean over all positions) restricted to the task neurons,
    and its task-token and other-token parts: (full, task, nontask) torch vectors."""
    gt, go = part_gradients(model, tok_loss, mask, retain=retain)
    t, o = restrict(gt, neurons), restrict(go, neurons)
    return t + o, t, o


def cosines(gt, go, neurons: np.ndarray, g_r) -> dict:
    """cos(g_r, batch), cos(g_r, task part), cos(g_r, non-task part) and the parts' norms, from
    ``part_gradients`` restricted to ``neurons`` (the neuron set g_r was taken on)."""
    t, o = restrict(gt, neurons), restrict(go, neurons)
    return {"cos_batch": cosine(g_r, t + o), "cos_task": cosine(g_r, t), "cos_nontask": cosine(g_r, o),
            "norm_task": float(t.norm()), "norm_nontask": float(o.norm())}


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

    if tok_loss is None:
        tl = token_losses(model, torch.as_tensor(toks, device=next(model.parameters()).device))
    else:
        tl = tok_loss
    gt, go = part_gradients(model, tl, task_mask(inst, tl.shape[1] + 1), retain=retain)
    return {"instances": int((inst >= 0).sum()), **cosines(gt, go, neurons, g_r)}


# --- the live monitor's log (``raretask lm train --monitor-interference``): checks and figure ---

COSINES = (("cos_task", "task", "C1"), ("cos_nontask", "non-task", "C0"), ("cos_batch", "batch", "0.45"))
"""The monitor's cosines with g_r: column, legend name (the axis says "cosine with g_r"), colour."""
SHORT = {c: name for c, name, _ in COSINES}
COLOUR = {c: colour for c, _, colour in COSINES}


def _injection_rows(log) -> np.ndarray:
    """Which rows of a monitor log are injection steps (the ``injection`` column; for logs
    without it, rows whose batch carried an instance)."""
    if len(log) == 0:
        return np.zeros(0, bool)
    if "injection" in log:
        return log["injection"].fillna(False).to_numpy(bool)
    return (log["instances"] > 0).to_numpy() if "instances" in log else np.zeros(len(log), bool)


def _na(name: str, expected, why: str):
    from ..report.html import Check

    c = Check(name, f"n/a: {why}", expected, None)
    if hasattr(c, "na"):  # report.html's Check knows "not measurable" (never a pass)
        c.na = True
    return c


def _quartiles(x) -> str:
    q = np.nanpercentile(np.asarray(x, float), [25, 50, 75])
    return f"{q[1]:+.3f} [{q[0]:+.3f}, {q[2]:+.3f}]"


def monitor_staleness(log) -> dict:
    """What refreshing g_r less often costs: at each reading that recomputed the reference while an
    older one existed, both were applied to the same batch gradient. Returns the max |difference|
    per cosine, the ages (steps) of the old references, and how many comparisons there were."""
    if len(log) == 0 or "stale_reference_step" not in log:
        return {"comparisons": 0}
    c = log[log["stale_reference_step"].notna()]
    if c.empty:
        return {"comparisons": 0}
    age = (c["step"] - c["stale_reference_step"]).astype(int)
    out = {"comparisons": int(len(c)), "stale_age_min": int(age.min()), "stale_age_max": int(age.max())}
    diffs = pd.concat([(c[col] - c["stale_" + col]).abs().rename(col)
                       for col in ("cos_batch", "cos_task", "cos_nontask")], axis=1)
    for col in diffs:
        out[f"max_abs_diff_{col}"] = float(diffs[col].max()) if diffs[col].notna().any() else None
    worst = diffs.max(axis=1)
    if worst.notna().any():
        i = int(np.nanargmax(worst.to_numpy(float)))
        out.update(worst_step=int(c["step"].iloc[i]), worst_age=int(age.iloc[i]))
    if "neuron_overlap" in c:
        out["min_neuron_overlap"] = float(c["neuron_overlap"].min())
    return out


def monitor_checks(log, planned_steps=None, planned_injections=None) -> list:
    """Checks of a monitor log (a DataFrame of ``raretask lm train`` interference rows).

    ``planned_steps`` / ``planned_injections``: the steps the monitor was to read / the injection
    steps among them (None: unknown). The finiteness check answers no when the log has no
    injection row unless the plan says no injection step was to be read (then n/a)."""
    from ..report.html import Check

    checks = []
    logged = set() if len(log) == 0 else set(int(s) for s in log["step"])
    if planned_steps is not None:
        missing = sorted(set(int(s) for s in planned_steps) - logged)
        name = "monitor: every planned reading logged (injection steps, offsets in the gap, every-K steps)"
        if not len(planned_steps):
            checks.append(_na(name, "all planned steps", "no reading was planned"))
        else:
            checks.append(Check(name, f"{len(planned_steps) - len(missing)}/{len(planned_steps)}"
                                + (f" (missing e.g. {missing[:5]})" if missing else ""), "all", not missing))
    inj = _injection_rows(log)
    name = "monitor: finite cos(g_r, g_task) at injection steps"
    if planned_injections is not None and len(planned_injections) == 0:
        checks.append(_na(name, "finite at every injection reading", "no injection step in the monitored steps"))
    else:
        n = int(inj.sum())
        fin = int(np.isfinite(log.loc[inj, "cos_task"].to_numpy(float)).sum()) if n else 0
        want = len(planned_injections) if planned_injections is not None else n
        measured = f"{fin}/{n} injection readings finite" + (f" ({want} planned)" if planned_injections is not None
                                                              else "")
        checks.append(Check(name, measured, "finite at every injection reading (at least one)",
                            bool(n > 0 and fin == n and n >= want)))
    if inj.any() and np.isfinite(log.loc[inj, "cos_task"].to_numpy(float)).any():
        checks.append(Check("monitor: cos(g_r, g_task) at injection steps, median [IQR]",
                            _quartiles(log.loc[inj, "cos_task"]), "> 0: the task tokens pull along g_r", None))
    if len(log) and (~inj).any():
        checks.append(Check("monitor: cos(g_r, g_nontask) between injections, median [IQR]",
                            _quartiles(log.loc[~inj, "cos_nontask"]), "< 0: interference (paper Fig. 9)", None))
    st = monitor_staleness(log)
    if "worst_step" in st:
        worst = max(v for k, v in st.items() if k.startswith("max_abs_diff_") and v is not None)
        checks.append(Check(f"monitor: max |cos with stale g_r - cos with fresh g_r| ({st['comparisons']} "
                            f"comparisons, g_r {st['stale_age_min']}-{st['stale_age_max']} steps old)",
                            f"{worst:.4f} (step {st['worst_step']}, g_r {st['worst_age']} steps old)",
                            "the error of refreshing g_r that rarely", None))
    return checks


def monitor_figure(log, path):
    """Paper Fig. 9 analog from a monitor log: left, the cosines against the offset (steps since the
    latest injection), median and IQR over injections; right, the cosines over training."""
    from ..report.plots import new_figure, save
    from ..report.style import integer_axis

    fig, axes = new_figure(2, 1, height=2.6)
    ax, bx = axes[0, 0], axes[0, 1]
    g = log[log["offset"].notna()] if "offset" in log else log.iloc[:0]
    periods = sorted(set(int(p) for p in g["period"].dropna())) if len(g) else []
    styles = {"cos_nontask": dict(ls="-", marker="o", ms=4, lw=1.6, band=True),
              "cos_batch": dict(ls="--", marker="s", ms=3, lw=1.0, band=False)}
    offsets = sorted(set(int(o) for o in g["offset"])) if len(g) else []
    # few distinct offsets (one period: 0, 1, G/4, G/2, 3G/4, G-1): evenly spaced, labelled by offset
    categorical = 0 < len(offsets) <= 16
    pos = dict(zip(offsets, range(len(offsets)))) if categorical else {o: o for o in offsets}
    for col, _, color in COSINES:
        if g.empty:
            break
        q = g.groupby(g["offset"].astype(int))[col].quantile([0.25, 0.5, 0.75]).unstack().dropna()
        if q.empty:
            continue
        x = [pos[int(o)] for o in q.index]
        if col == "cos_task":  # only injection steps carry task tokens
            ax.errorbar(x, q[0.5], yerr=[q[0.5] - q[0.25], q[0.75] - q[0.5]], fmt="o", ms=5, capsize=3,
                        color=color, label=f"{SHORT[col]}: median, IQR", zorder=3)
        else:
            st = styles[col]
            ax.plot(x, q[0.5], ls=st["ls"], marker=st["marker"], ms=st["ms"], lw=st["lw"], color=color,
                    label=f"{SHORT[col]}: median" + (", IQR" if st["band"] else ""))
            if st["band"]:
                ax.fill_between(x, q[0.25], q[0.75], color=color, alpha=0.2, lw=0)
    ax.axhline(0, color="k", lw=0.6)
    if categorical:
        ax.set_xticks(range(len(offsets)))
        ax.set_xticklabels([f"{o}\n(injection)" if o == 0 else str(o) for o in offsets])
    n_inj = int((g["offset"] == 0).sum()) if len(g) else 0
    span = f"period G = {periods[0]}" if len(periods) == 1 else (f"periods {periods[0]}-{periods[-1]}"
                                                                 if periods else "no injection read")
    ax.set(xlabel="steps since the latest injection" + (" (evenly spaced)" if categorical else ""),
           ylabel="cosine with g_r", title=f"across the gap ({span}; {n_inj} injections)")
    ax.legend()
    if len(log):
        s = log.sort_values("step")
        si = _injection_rows(s)
        bx.plot(s["step"], s["cos_nontask"], "-o", ms=2.5, lw=0.9, color=COLOUR["cos_nontask"], label=SHORT["cos_nontask"])
        bx.plot(s["step"], s["cos_batch"], "--", lw=0.9, color=COLOUR["cos_batch"], label=SHORT["cos_batch"])
        bx.plot(s.loc[si, "step"], s.loc[si, "cos_task"], "o", ms=5, color=COLOUR["cos_task"],
                label=SHORT["cos_task"] + " (injections)")
        if 0 < si.sum() <= 60:
            for x in s.loc[si, "step"]:
                bx.axvline(x, color=COLOUR["cos_task"], lw=0.6, alpha=0.4)
    bx.axhline(0, color="k", lw=0.6)
    bx.set(xlabel="training step", ylabel="cosine with g_r", title="over training (lines: injection steps)")
    integer_axis(bx, "x")
    bx.legend()
    return save(fig, path)


# --- the ``gradients`` probe of ``raretask lm probe`` ---

def measure(model, ctx, cfg) -> list[dict]:
    """The ``gradients`` probe: task neurons and g_r at the checkpoint, then the cosines of g_r
    with the gradients of the ``grad_steps`` training batches after it."""
    neurons, g_r = reference(model, ctx.tasks, cfg.neurons)
    rows = []
    for s in range(ctx.step, ctx.step + cfg.grad_steps):
        toks, inst, _ = ctx.batches.local(s)
        rows.append({"batch_step": s, **interference_row(model, toks, inst, neurons, g_r)})
    return rows


def report(d, out, cfg):
    """Cosines over the measured steps per checkpoint (a figure) and their median (check rows)."""
    from ..report.html import Check, Figure
    from ..report.plots import new_figure, save
    from ..report.style import integer_axis

    checks = []
    fig, axes = new_figure(1, 1, height=2.6)
    ax = axes[0, 0]
    for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
        ax.plot(g["batch_step"] - g["step"], g["cos_nontask"], color=f"C{i}", lw=0.8, label=f"{ck} non-task")
        ax.plot(g["batch_step"] - g["step"], g["cos_task"], "o", ms=3, color=f"C{i}", label=f"{ck} task")
        checks.append(Check(f"gradients {ck}: median cos(g_r, non-task part)",
                            round(float(g["cos_nontask"].median()), 4), "interference < 0", None))
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="steps after the checkpoint", ylabel="cosine with g_r")
    integer_axis(ax, "x")
    ax.legend()
    return checks, [Figure(save(fig, out / "figures" / "gradients.png"),
                           "Cosine of the task reference gradient g_r (task neurons of MLP 0) with the batch "
                           "gradient's task-token part (dots, steps with an instance) and other-token part.")]


register_probe(Probe("gradients", "task neurons, g_r and per-step cosines", measure, report, settings=(
    Setting("neurons", int, 32, "top-k task neurons of the first MLP"),
    Setting("grad_steps", int, 100, "training steps after the checkpoint whose batches are measured"))))
