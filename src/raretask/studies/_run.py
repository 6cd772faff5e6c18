"""Running a study: cells of engine runs in one resumable run directory.

Run directory (a ``RunFolder`` of kind "study": marker, lock, atomic writes)::

    config.json        resolved StudyConfig + package version + seeds (written once)
    cells.json         cell id -> content key of its engine run
    ../.cells/<key>/   one engine run per cell (see raretask.sim._runner), resumable; keyed by
                       the cell's full content, so studies that need the same run (phase and
                       residual, say) share it instead of training twice
    results.parquet    tidy metrics of every cell
    trace.parquet      per-step traces (retention studies)
    summary.json       checks, headline numbers, timing
    figures/*.png      figures
    report.html        self-contained report
    timing.json        wall time of every invocation
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd

from .. import __version__
from ..errors import ConfigError
from ..mixture import MixtureSpec
from ..report.html import Check, Figure, all_passed, write_report
from ..sim import RecordSchedule, TaskSampler, TrainConfig
from ..runfolder import RunFolder, atomic_json, atomic_parquet, read_json, to_json
from ._config import StudyConfig, split_flat

_LATER_SPEC_OPTIONS = {"spectrum"}
ENGINE_FORMAT = 2  # bump when the engine's numerics change, so cached cells are not reused


@dataclass
class Cell:
    """One engine run of a study: all widths of one (beta, seed, gap, ...) setting."""

    id: str
    """Folder name under cells/ (unique within the study)."""
    labels: dict
    """Columns added to this cell's result rows (e.g. beta, seed, gap)."""
    spec: MixtureSpec
    train: TrainConfig
    widths: list
    sampler: TaskSampler | None = None
    trace_tasks: list = field(default_factory=list)
    """Tasks (1-based) whose corrected signal is traced every ``trace_every`` steps."""
    trace_every: int = 1
    record: RecordSchedule = field(default_factory=RecordSchedule)
    conflict_removal: int | None = None
    """Task (1-based) protected by gradient-conflict removal (remedies study), or None."""

    def key(self) -> str:
        """Content hash of everything that determines this cell's engine run."""
        # mixture options added after cells were first cached are left out at their defaults,
        # so existing cached runs keep their keys
        spec = {k: v for k, v in self.spec.to_dict().items() if not (k in _LATER_SPEC_OPTIONS and v is None)}
        content = {
            "spec": spec, "train": self.train.to_dict(), "widths": list(self.widths),
            "sampler": self.sampler.describe() if self.sampler is not None else None,
            # 0-based in the key, as cells were first cached
            "trace": [int(t) - 1 for t in self.trace_tasks], "trace_every": self.trace_every,
            "record": [self.record.kind, self.record.points], "engine": ENGINE_FORMAT,
        }
        if self.conflict_removal is not None:  # absent when off: earlier cells keep their keys
            content["conflict_removal"] = int(self.conflict_removal) - 1  # 0-based, as first cached
        blob = json.dumps(json.loads(to_json(content)), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Analysis:
    """What a study's analysis returns."""

    intro: str
    checks: list[Check]
    figures: list[Figure]
    summary: dict


def last_step(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of each cell's final recorded step."""
    return results[results["step"] == results.groupby("cell")["step"].transform("max")]


STUDY_FILES = ("config.json", "cells.json", "results.parquet", "trace.parquet", "summary.json", "figures",
               "report.html", "timing.json")
"""What a study's run folder holds: all that --restart deletes there."""


def study_folder(out: Path) -> RunFolder:
    return RunFolder(out, "study", owned=STUDY_FILES, legacy=_legacy_study)


def _legacy_study(p: Path) -> bool:
    """A study run written before run folders had markers: its config.json names raretask."""
    try:
        return "raretask_version" in json.loads((p / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def prepare_run_dir(cfg: StudyConfig, out: Path) -> dict:
    """Check ``out`` (an open study folder) belongs to this config, or record the provenance."""
    conf_path = out / "config.json"
    record = {"config": cfg.to_dict(), "raretask_version": __version__}
    if conf_path.exists():
        old = read_json(conf_path, "the run's config.json")
        new = json.loads(to_json(record["config"]))
        if old.get("config", {}).get("study") == cfg.study:  # an older layout reads as today's
            old_cfg = json.loads(to_json(split_flat(old["config"], legacy=True)))
        else:
            old_cfg = old.get("config", {})
        # options added after the run began are fine at their default values
        defaults = json.loads(to_json(StudyConfig(study=cfg.study).to_dict()))
        prev = _with_defaults(old_cfg, new, defaults)
        if prev != new:
            raise ConfigError("out", f"{out} holds a run with a different configuration",
                              "another --out, or --restart to discard it")
        return old
    record.update({"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
                   "machine": platform.machine(), "seeds": cfg.seeds})
    atomic_json(conf_path, record)
    return record


def _with_defaults(old: dict, new: dict, defaults: dict) -> dict:
    """``old`` completed by the keys of ``new`` it lacks where ``new`` holds their default (one
    level into ``settings``)."""
    prev = {**{k: v for k, v in new.items() if k not in old and v == defaults.get(k)}, **old}
    if isinstance(prev.get("settings"), dict) and isinstance(new.get("settings"), dict):
        prev["settings"] = _with_defaults(prev["settings"], new["settings"], defaults.get("settings", {}))
    return prev


def cell_root(out: Path) -> Path:
    """Where engine runs live: beside the run directory, shared by the studies there."""
    return out.resolve().parent / ".cells"


class CellRuns(NamedTuple):
    """What ``run_cells`` returns."""

    results: pd.DataFrame
    """Tidy metrics of every cell, with the cells' labels."""
    trace: pd.DataFrame | None
    """Per-step traces, or None when no cell traces."""
    seconds: float
    """Training time of this call."""
    repairs: dict
    """cell id -> what its run folder needed on resume (unreadable checkpoint, missing parts)."""


def run_cells(cells: list[Cell], out: Path, progress: Callable[[int], None] | None = None,
              checkpoint_seconds: float = 60.0, executor: str = "local", workers: int | None = None,
              ray_address: str | None = None, retries: int = 3):
    """Run (or resume) every cell; returns tidy metrics and trace tables with cell labels
    (``CellRuns``).

    Cells run on ``executor`` (see ``_executors.execute``); tables are merged in cell order."""
    from ._executors import execute

    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError("cells", "duplicate cell ids", "unique ids")
    atomic_json(out / "cells.json", {c.id: c.key() for c in cells})
    dirs = {c.id: cell_root(out) / c.key() for c in cells}
    done = execute(cells, dirs, executor=executor, workers=workers, progress=progress,
                   checkpoint_seconds=checkpoint_seconds, retries=retries, ray_address=ray_address)
    metrics, traces, seconds, repairs = [], [], 0.0, {}
    for cell in cells:
        res = done[cell.id]
        seconds += res["seconds"]
        if res.get("repairs"):
            repairs[cell.id] = res["repairs"]
        metrics.append(res["metrics"].assign(cell=cell.id, **cell.labels))
        if res["trace"] is not None:
            traces.append(res["trace"].assign(cell=cell.id, **cell.labels))
    results = pd.concat(metrics, ignore_index=True)
    trace = pd.concat(traces, ignore_index=True) if traces else None
    return CellRuns(results, trace, seconds, repairs)


def finish(cfg: StudyConfig, out: Path, analysis: Analysis, results: pd.DataFrame | None,
           trace: pd.DataFrame | None, wall: float, train_seconds: float, repairs: dict | None = None) -> dict:
    """Write results.parquet, trace.parquet, summary.json and report.html."""
    if results is not None:
        atomic_parquet(results.assign(study=cfg.study), out / "results.parquet")
    if trace is not None:
        atomic_parquet(trace.assign(study=cfg.study), out / "trace.parquet")
    timing_path = out / "timing.json"
    timing = read_json(timing_path, "the run's timing.json") if timing_path.exists() else []
    if not isinstance(timing, list):
        timing = []
    timing.append({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": wall,
                   "training_seconds_this_call": train_seconds})
    atomic_json(timing_path, timing)
    checks = analysis.checks + [c for f in analysis.figures for c in f.checks]
    summary = {
        "study": cfg.study, "preset": cfg.preset, "raretask_version": __version__, "seeds": cfg.seeds,
        "checks": [c.to_dict() for c in checks],
        "all_checks_ok": all_passed(checks),
        "checks_count": {v or "informative": sum(c.verdict == v for c in checks) for v in ("yes", "no", "n/a", "")},
        **analysis.summary,
        "timing": {"wall_seconds_total": sum(t["wall_seconds"] for t in timing), "invocations": len(timing)},
        "repairs": repairs or {},
        "figures": [str(Path(f.path).relative_to(out)) for f in analysis.figures],
    }
    atomic_json(out / "summary.json", summary)
    meta = {"study": cfg.study, "preset": cfg.preset, "raretask": __version__, "seeds": cfg.seeds,
            "wall time (s)": round(summary["timing"]["wall_seconds_total"], 1)}
    write_report(out / "report.html", f"raretask study: {cfg.study} ({cfg.preset})", analysis.intro,
                 checks, analysis.figures, cfg.to_dict(), meta)
    return summary
