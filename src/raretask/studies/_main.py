"""Entry points: ``build_config`` (preset + overrides) and ``run_study`` (run, analyse, report)."""

from __future__ import annotations

import time
from pathlib import Path

from ._config import StudyConfig, apply_overrides, load_preset, split_flat
from ._registry import study_module
from ._run import finish, prepare_run_dir, run_cells, study_folder


def build_config(study: str, preset: str = "quick", overrides: list[str] | None = None) -> StudyConfig:
    """Resolve a study's preset and ``key=value`` overrides into a validated StudyConfig."""
    raw = apply_overrides(load_preset(study, preset), overrides or [], study)
    return StudyConfig(**split_flat({**raw, "study": study, "preset": preset}))


def run_study(cfg: StudyConfig, out: str | Path, restart: bool = False, console=None, executor: str = "local",
              workers: int | None = None, ray_address: str | None = None) -> dict:
    """Run (or resume) a study in ``out`` and write its results, figures and report.

    Args:
        executor: where cells run: "local" (a process pool of ``workers``; one worker runs
            in this process) or "ray" (a Ray cluster at ``ray_address``, or a local instance).
    Returns the summary dict (also written to ``out/summary.json``)."""
    out = Path(out)
    t0 = time.perf_counter()
    mod = study_module(cfg.study)
    cells = None if hasattr(mod, "run") else mod.cells(cfg)  # validates: a refused run writes nothing
    if cells is not None:
        from ._executors import check_executor

        check_executor(executor, workers, ray_address)
    with study_folder(out).open(restart=restart):
        prepare_run_dir(cfg, out)
        repairs = {}
        if cells is None:  # studies that are not engine runs (one-neuron)
            results, trace, train_s = mod.run(cfg, out)
        else:
            results, trace, train_s, repairs = _run_cells(cfg, cells, out, console, executor, workers, ray_address)
            if console is not None:
                for cid, what in repairs.items():
                    console.print(f"raretask: repaired cell {cid}: {'; '.join(what)}")
        analysis = mod.analyze(cfg, results, trace, out)
        return finish(cfg, out, analysis, results, trace, time.perf_counter() - t0, train_s, repairs)


def _run_cells(cfg: StudyConfig, cells: list, out: Path, console, executor: str, workers: int | None,
               ray_address: str | None):
    where = {"executor": executor, "workers": workers, "ray_address": ray_address}
    if console is None:
        return run_cells(cells, out, checkpoint_seconds=cfg.checkpoint_seconds, **where)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    total = sum(c.train.steps for c in cells)
    with Progress(TextColumn(f"[bold]{cfg.study}[/bold]"), BarColumn(),
                  TextColumn("{task.completed:,}/{task.total:,} steps"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task("train", total=total)
        return run_cells(cells, out, progress=lambda n: bar.advance(task, n),
                         checkpoint_seconds=cfg.checkpoint_seconds, **where)
