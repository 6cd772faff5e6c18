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
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..report.html import Check, Figure, write_report
from ..runfolder import atomic_parquet, atomic_write, read_cached, write_cached
from ._registry import BUILTIN_PROBES, Probe, ProbeContext, all_probes, all_settings, get_probe, probe_names

PROBES = BUILTIN_PROBES
"""The built-in probes (``probe_names()`` lists every registered one)."""


class ProbeConfig:
    """What to probe and how.

    Keywords: ``probes`` (registered probe names; empty: all that apply to the run's task),
    ``checkpoints`` ("last", "all", or comma-separated steps), ``init`` (also probe the
    untrained model with the run's preset and seed: the chance reference), and every
    registered probe's settings (``das_pairs``, ``das_epochs``, ``pca_k``, ``tau``,
    ``neurons``, ``grad_steps`` for the built-in probes), each validated as its ``Setting``
    says. An unknown probe or keyword is a ``ConfigError``."""

    def __init__(self, probes: tuple = (), checkpoints: str = "last", init: bool = True, **settings) -> None:
        self.probes = tuple(probes)
        if not isinstance(checkpoints, str) or not (
                checkpoints in ("last", "all") or all(p.strip().isdigit() for p in checkpoints.split(","))):
            raise ConfigError("checkpoints", f"{checkpoints!r}", "last, all, or steps like 500,1000")
        self.checkpoints = checkpoints
        self.init = init
        known = all_settings()
        unknown = sorted(set(settings) - {s.name for s in known})
        if unknown:
            raise ConfigError("probe setting", ", ".join(unknown),
                              ", ".join(["probes", "checkpoints", "init", *(s.name for s in known)]))
        bad = [p for p in self.probes if p not in probe_names()]
        if bad:
            raise ConfigError("probe", ", ".join(bad), ", ".join(probe_names()))
        for s in known:
            value = settings.get(s.name, s.default)
            s.validate(value)
            setattr(self, s.name, value)

    def to_dict(self) -> dict:
        """The probe selection and every setting, as plain JSON values."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"ProbeConfig({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProbeConfig) and self.__dict__ == other.__dict__


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


def _key(probe: Probe, sha: str | None, step: int, cfg: ProbeConfig) -> dict:
    """The cache key of one (probe, model) result: the model, its step and the probe's settings."""
    return {"model_sha256": sha, "step": step, **{s.name: getattr(cfg, s.name) for s in probe.settings}}


def probe_run(run: str | Path, cfg: ProbeConfig, progress: bool = True) -> dict:
    """Run the probes on a run's checkpoints; returns {"tables": {probe: DataFrame}, "report"}.
    ``progress``: a progress bar on the terminal."""
    from ..lm._runs import load_model, model_sha256, probe_folder, training_run, verify_checkpoint

    run = Path(run)
    _, tcfg = training_run(run)  # a folder that is no run is refused before torch is imported
    import torch
    from transformers.utils import logging as hf_logging

    from ..lm._models import build_model
    from ..lm._train import setup

    hf_logging.disable_progress_bar()
    env = setup(tcfg)
    tok, tasks = env.tokenizer, env.tasks
    probes = cfg.probes or tuple(p.name for p in all_probes() if p.applies_to(tasks.task))
    from ..lm._models import preset as model_preset

    for name in probes:
        if not get_probe(name).applies_to(tasks.task):
            raise ConfigError("probe", f"{name} needs the {' or '.join(get_probe(name).tasks)} task",
                              " / ".join(p.name for p in all_probes() if p.applies_to(tasks.task)))
        if get_probe(name).check is not None:  # refused, not silently capped, before anything is written
            get_probe(name).check(cfg, model_preset(tcfg.preset))
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
        from .._progress import progress_bar

        with progress_bar(progress, transient=False) as bar:
            job = bar.add_task("lm probe", total=len(models) * len(probes))
            for name, step, sha, load in models:
                model = None
                for probe in probes:
                    cache = out / "cache" / f"{probe}-{name}.json"
                    key = _key(get_probe(probe), sha, step, cfg)
                    rows = read_cached(cache, key, list)
                    if rows is None:
                        model = model or load()
                        rows = _one(probe, model, ProbeContext(tasks, env.batches, step, torch), cfg)
                        write_cached(cache, key, rows)
                    tables[probe] += [{"checkpoint": name, "step": step, **r} for r in rows]
                    bar.advance(job)
        frames = {p: pd.DataFrame(rows) for p, rows in tables.items()}
        for p, df in frames.items():
            atomic_parquet(df, out / f"{p}.parquet")
        settings = _probe_settings(out, frames, cfg)
        frames_all = _earlier_tables(out, settings, frames)  # the report keeps the probes run before
        atomic_write(out / "settings.json", json.dumps(settings, indent=2, default=str))
        checks, figures = _report_parts(frames_all, out, cfg)
        report = write_report(out / "report.html", f"raretask lm probe: {run.name} ({tasks.task})",
                              "Representations (SPEC B5) and gradient interference (SPEC B6) of the injected task, "
                              "per checkpoint; 'init' is the untrained model with the run's preset and seed. Each "
                              "probe's section is its latest run (settings per probe below).",
                              checks, figures, {"probes": settings, "run": str(run)},
                              {"probes": ", ".join(frames_all), "checkpoints this time": len(models)})
        summary = {p: df.to_dict(orient="records") for p, df in frames_all.items()}
        atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return {"tables": frames, "report": str(report)}


def _probe_settings(out: Path, frames: dict, cfg: ProbeConfig) -> dict:
    """settings.json: for every probe with a table here, the settings of its latest run (this
    run's for the probes it ran, the recorded ones for the others)."""
    path = out / "settings.json"
    try:
        kept = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    for p in frames:
        kept[p] = {"checkpoints": cfg.checkpoints, "init": cfg.init,
                   **{s.name: getattr(cfg, s.name) for s in get_probe(p).settings}}
    return kept


def _earlier_tables(out: Path, settings: dict, frames: dict) -> dict:
    """This run's tables, then every registered probe's table left by an earlier run in ``out``,
    in registry order."""
    merged = {}
    for probe in all_probes():
        if probe.name in frames:
            merged[probe.name] = frames[probe.name]
        elif (out / f"{probe.name}.parquet").exists():
            merged[probe.name] = pd.read_parquet(out / f"{probe.name}.parquet")
            settings.setdefault(probe.name, {"checkpoints": "unrecorded (an earlier version)"})
    return merged


def _one(probe: str, model, ctx: ProbeContext, cfg: ProbeConfig) -> list[dict]:
    """One probe's rows for one model."""
    return get_probe(probe).measure(model, ctx, cfg)


def _report_parts(frames: dict, out: Path, cfg: ProbeConfig) -> tuple[list[Check], list[Figure]]:
    """Every probed table's checks and figures, in registry order."""
    checks, figures = [], []
    for probe in all_probes():
        if probe.name in frames:
            c, f = probe.report(frames[probe.name], out, cfg)
            checks += c
            figures += f
    return checks, figures
