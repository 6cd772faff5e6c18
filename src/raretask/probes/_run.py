"""``raretask lm probe RUN``: representation and interference probes over a run's checkpoints.

Tables go to ``RUN/probes/<probe>.parquet`` (one row per checkpoint x layer / position /
step), figures to ``RUN/probes/figures/``, the report to ``RUN/probes/report.html``.
Each (probe, checkpoint) result is cached as JSON, keyed by the probe's settings and the
checkpoint's model checksum, so re-running only adds what is new. ``RUN/probes`` is a
``RunFolder`` of kind "lm-probe" (locked while probing; atomic writes), and each checkpoint's
model files are checked against their recorded checksums before any probe reads them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..report.html import Check, Figure, write_report
from ..runfolder import atomic_parquet, atomic_write, read_cached, write_cached

PROBES = ("das", "pca", "fourier", "localize", "gradients")


@dataclass
class ProbeConfig:
    """What to probe and how."""

    probes: tuple = ()
    """Subset of das, pca, fourier, localize, gradients; empty: all that apply to the task."""
    checkpoints: str = "last"
    """last, all, or comma-separated steps."""
    init: bool = True
    """Also probe the untrained model (the run's preset and seed): the chance reference."""
    das_pairs: int = 4000
    """DAS training pairs (held-out pairs: 1000)."""
    das_epochs: int = 3
    """DAS training epochs."""
    pca_k: int = 8
    """Principal components for the PCA regression."""
    tau: float = 3.0
    """Fourier: a mode's variance fraction must exceed tau x uniform."""
    neurons: int = 32
    """Gradients: top-k task neurons of the first MLP."""
    grad_steps: int = 100
    """Gradients: training steps after the checkpoint whose batches are measured."""

    def __post_init__(self) -> None:
        bad = [p for p in self.probes if p not in PROBES]
        if bad:
            raise ConfigError("probe", ", ".join(bad), ", ".join(PROBES))
        for name in ("das_pairs", "das_epochs", "pca_k", "neurons", "grad_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(name, f"{v!r}", "a whole number >= 1")
            if v < 1:
                raise ConfigError(name, f"{v}", ">= 1")
        if not isinstance(self.tau, (int, float)) or isinstance(self.tau, bool) or not math.isfinite(self.tau) \
                or self.tau <= 0:
            raise ConfigError("tau", f"{self.tau}", "a finite number > 0")


def _select(run: Path, spec: str) -> list[Path]:
    from ..lm._train import list_checkpoints

    cks = list_checkpoints(run)
    if not cks:
        raise ConfigError("run", f"{run} has no checkpoints", "a run made by `raretask lm train`")
    if spec == "all":
        return cks
    if spec == "last":
        return cks[-1:]
    by_step = {int(c.name.split("-")[1]): c for c in cks}
    try:
        steps = [int(s) for s in spec.split(",")]
    except ValueError:
        raise ConfigError("checkpoints", spec, "last, all, or steps like 500,1000") from None
    missing = [s for s in steps if s not in by_step]
    if missing:
        raise ConfigError("checkpoints", f"no checkpoint at step(s) {missing}", f"one of {sorted(by_step)}")
    return [by_step[s] for s in steps]


_SETTINGS = {"das": ("das_pairs", "das_epochs"), "pca": ("pca_k",), "fourier": ("tau",), "localize": (),
             "gradients": ("neurons", "grad_steps")}
"""The ProbeConfig settings each probe's result depends on (its cache key)."""


def probe_run(run: str | Path, cfg: ProbeConfig) -> dict:
    """Run the probes on a run's checkpoints; returns {"tables": {probe: DataFrame}, "report"}."""
    import torch
    from transformers.utils import logging as hf_logging

    from ..lm._models import build_model
    from ..lm._runs import load_model, model_sha256, probe_folder, training_run, verify_checkpoint
    from ..lm._train import setup

    hf_logging.disable_progress_bar()
    run = Path(run)
    _, tcfg = training_run(run)
    corpus, tok, tasks, schedule, batches = setup(tcfg)
    probes = cfg.probes or (("das", "pca") if tasks.task == "cmp" else ("fourier",)) + ("localize", "gradients")
    if "das" in probes and tasks.task != "cmp":
        raise ConfigError("probe", "das needs the cmp task", "pca / fourier / localize / gradients")
    if "fourier" in probes and tasks.task != "add":
        raise ConfigError("probe", "fourier needs the add task", "das / pca / localize / gradients")
    models: list[tuple[str, int, str | None, object]] = []
    if cfg.init:
        models.append(("init", 0, None, lambda: build_model(tcfg.preset, tok.vocab_size, tcfg.seq_len, tok.eos_id,
                                                            tok.pad_id, seed=tcfg.seed).eval()))
    for ck in _select(run, cfg.checkpoints):  # every model checked before anything is written
        state = verify_checkpoint(ck)
        models.append((ck.name, int(ck.name.split("-")[1]), model_sha256(state), lambda ck=ck: load_model(ck)))
    out = run / "probes"
    with probe_folder(out) as folder:
        folder.open()
        (out / "cache").mkdir(exist_ok=True)
        for t in [*out.glob(".*.tmp"), *(out / "cache").glob(".*.tmp")]:  # a killed write's (we hold the lock)
            t.unlink()
        tables: dict[str, list] = {p: [] for p in probes}
        from rich.progress import Progress

        with Progress(transient=False) as bar:
            job = bar.add_task("lm probe", total=len(models) * len(probes))
            for name, step, sha, load in models:
                model = None
                for probe in probes:
                    cache = out / "cache" / f"{probe}-{name}.json"
                    key = {"model_sha256": sha, "step": step, **{k: getattr(cfg, k) for k in _SETTINGS[probe]}}
                    rows = read_cached(cache, key, list)
                    if rows is None:
                        model = model or load()
                        rows = _one(probe, model, tasks, batches, step, cfg, torch)
                        write_cached(cache, key, rows)
                    tables[probe] += [{"checkpoint": name, "step": step, **r} for r in rows]
                    bar.advance(job)
        frames = {p: pd.DataFrame(rows) for p, rows in tables.items()}
        for p, df in frames.items():
            atomic_parquet(df, out / f"{p}.parquet")
        checks, figures = _report_parts(frames, out, cfg)
        report = write_report(out / "report.html", f"raretask lm probe: {run.name} ({tasks.task})",
                              "Representations (SPEC B5) and gradient interference (SPEC B6) of the injected task, "
                              "per checkpoint; 'init' is the untrained model with the run's preset and seed.",
                              checks, figures, {"probe": cfg.__dict__, "run": str(run)}, {"checkpoints": len(models)})
        summary = {p: df.to_dict(orient="records") for p, df in frames.items()}
        atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return {"tables": frames, "report": str(report)}


def _one(probe, model, tasks, batches, step, cfg: ProbeConfig, torch) -> list[dict]:
    from . import _activations, _das, _fourier, _gradients, _localize, _pca

    L = model.config.num_hidden_layers
    if probe == "das":
        return [_das.das(model, tasks, layer, pos, n_train=cfg.das_pairs, epochs=cfg.das_epochs)
                for layer in range(L + 1) for pos in (0, 1)]
    if probe == "pca":
        acts = _activations.residuals(model, tasks.value_tokens[:, None])[:, :, 0]  # (L+1, 100, H)
        return [{"layer": layer, "k": cfg.pca_k, "r2": _pca.pca_r2(acts[layer], np.arange(100), cfg.pca_k)}
                for layer in range(L + 1)]
    if probe == "fourier":
        acts = _activations.residuals(model, tasks.instances[:, :2])[:, :, 1]  # label position
        c = (tasks.values[:, 0] + tasks.values[:, 1]) % 100
        rows = []
        for layer in range(L + 1):
            fr = _fourier.fourier_fractions(acts[layer], c, 100)
            modes = _fourier.fourier_modes(fr, cfg.tau)
            rows.append({"layer": layer, "n_modes": len(modes), "modes": modes.tolist(), "fractions": fr.tolist(),
                         "class_share": _fourier.class_share(acts[layer], c, 100)})
        return rows
    if probe == "localize":
        return _localize.ablate_mlps(model, tasks)
    if probe == "gradients":
        neurons, g_r = _gradients.reference(model, tasks, cfg.neurons)
        rows = []
        for s in range(step, step + cfg.grad_steps):
            toks, inst, _ = batches.local(s)
            rows.append({"batch_step": s, **_gradients.interference_row(model, toks, inst, neurons, g_r)})
        return rows
    raise ConfigError("probe", probe, ", ".join(PROBES))


def _report_parts(frames: dict, out: Path, cfg: ProbeConfig) -> tuple[list[Check], list[Figure]]:
    from ..report.plots import new_figure, save

    checks, figures = [], []
    if "das" in frames:
        d = frames["das"]
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
        ax.legend(fontsize=7)
        figures.append(Figure(save(fig, out / "figures" / "das.png"),
                              "DAS: interchange-intervention accuracy of a 1-D subspace per layer and position."))
    if "pca" in frames:
        d = frames["pca"]
        fig, axes = new_figure(1, 1)
        for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
            axes[0, 0].plot(g["layer"], g["r2"], marker="o", color=f"C{i}", label=ck)
        axes[0, 0].axhline(cfg.pca_k / 100, color="k", lw=0.8, label=f"chance (k / N = {cfg.pca_k / 100:.2f})")
        axes[0, 0].set(xlabel="layer", ylabel=f"R^2 of v(token) on top-{cfg.pca_k} PCs", ylim=(0, 1.02))
        axes[0, 0].legend(fontsize=7)
        figures.append(Figure(save(fig, out / "figures" / "pca.png"), "PCA regression of the value v(token)."))
        for ck, g in d.groupby("checkpoint", sort=False):
            checks.append(Check(f"PCA {ck}: best R^2 over layers", round(float(g["r2"].max()), 3),
                                f"chance about {cfg.pca_k / 100:.2f}", None))
    if "fourier" in frames:
        d = frames["fourier"]
        fig, axes = new_figure(1, 1)
        for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
            axes[0, 0].plot(g["layer"], g["n_modes"], marker="o", color=f"C{i}", label=ck)
            checks.append(Check(f"Fourier {ck}: modes summed over layers", int(g["n_modes"].sum()),
                                f"tau = {cfg.tau}", None))
        axes[0, 0].set(xlabel="layer", ylabel="Fourier modes")
        axes[0, 0].legend(fontsize=7)
        figures.append(Figure(save(fig, out / "figures" / "fourier.png"), "Fourier modes of (a + b) mod 100."))
    if "localize" in frames:
        d = frames["localize"]
        fig, axes = new_figure(1, 1)
        for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
            axes[0, 0].plot(g["layer"], g["zero_drop"], "-o", color=f"C{i}", label=f"{ck} zero")
            axes[0, 0].plot(g["layer"], g["mean_drop"], "--s", color=f"C{i}", label=f"{ck} mean")
            top = g.loc[g["zero_drop"].idxmax()]
            checks.append(Check(f"localisation {ck}: most causal MLP layer (zero-ablation drop)",
                                f"layer {int(top['layer'])}: {top['zero_drop']:+.3f}", "informative", None))
        axes[0, 0].set(xlabel="MLP layer", ylabel="drop in task accuracy")
        axes[0, 0].legend(fontsize=7)
        figures.append(Figure(save(fig, out / "figures" / "localize.png"), "MLP ablations: drop in test accuracy."))
    if "gradients" in frames:
        d = frames["gradients"]
        fig, axes = new_figure(1, 1, size=(9, 4.6))
        ax = axes[0, 0]
        for i, (ck, g) in enumerate(d.groupby("checkpoint", sort=False)):
            ax.plot(g["batch_step"] - g["step"], g["cos_nontask"], color=f"C{i}", lw=0.8, label=f"{ck} non-task")
            ax.plot(g["batch_step"] - g["step"], g["cos_task"], "o", ms=3, color=f"C{i}", label=f"{ck} task")
            checks.append(Check(f"gradients {ck}: median cos(g_r, non-task part)",
                                round(float(g["cos_nontask"].median()), 4), "interference < 0", None))
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="steps after the checkpoint", ylabel="cosine with g_r")
        ax.legend(fontsize=7)
        figures.append(Figure(save(fig, out / "figures" / "gradients.png"),
                              "Cosine of the task reference gradient g_r (task neurons of MLP 0) with the batch "
                              "gradient's task-token part (dots, steps with an instance) and other-token part."))
    return checks, figures
