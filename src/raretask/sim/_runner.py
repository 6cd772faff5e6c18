"""Resumable runs of the engine with metrics streamed to disk.

Layout of a run directory::

    checkpoint.npz          engine state, how many result parts are complete, and their part
                            log (name, rows, sha256 of each part)
    checkpoint.prev.npz     the checkpoint before it, kept until the newer one is on disk
    metrics/part-000000.parquet ...   tidy SPEC A3 metrics at the record steps
    trace/part-000000.parquet ...     per-step corrected signal of traced tasks

Parts are written atomically, then the checkpoint is replaced atomically; a part newer than
the checkpoint is an orphan of an interrupted run and is deleted on resume. On resume the
newest checkpoint that loads and whose recorded parts are all present with their checksums
is used (a truncated checkpoint falls back to the previous one); when none is, the run starts
again from step 0, which the deterministic engine turns into the same results. Re-running the
same call therefore resumes and produces identical results, and memory stays bounded however
long the run. ``run_engine`` returns what it had to repair.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..mixture import MixtureSpec, task_metrics
from ..runfolder import PartLog, atomic_parquet, atomic_savez, atomic_write, drop_orphan_parts, read_parts
from ._config import TrainConfig
from ._engine import Engine
from ._sampling import TaskSampler
from ._schedule import RecordSchedule


_SEGMENT_CHUNKS = 16  # chunks per segment between checkpoint opportunities
_MAX_BUFFERED_ROWS = 200_000  # flush earlier than the checkpoint clock when rows pile up


__all__ = ["load_checkpoint", "metric_rows", "run_engine"]


def metric_rows(spec: MixtureSpec, engine: Engine, step: int) -> pd.DataFrame:
    """Tidy SPEC A3 metrics of every member at ``step``: one row per (member, task)."""
    frames = []
    for i, (w, m) in enumerate(zip(engine.widths, engine.members)):
        tm = task_metrics(spec, m.E, m.decoders(spec))
        frames.append(pd.DataFrame({
            "step": step, "member": i, "width": w, "task": np.arange(1, spec.K + 1),
            "loss": tm.loss, "norm_loss": tm.norm_loss, "signal": tm.signal,
            "corrected_signal": tm.corrected_signal, "n_features": tm.n_features,
            "residual": tm.residual, "total_loss": tm.total_loss,
        }))
    return pd.concat(frames, ignore_index=True)


def load_checkpoint(out: Path) -> tuple[dict | None, list[str]]:
    """The newest usable checkpoint of a run folder and what was wrong with newer ones.

    Usable: it loads, and every part its log records is present with its checksum. Tries
    checkpoint.npz, then checkpoint.prev.npz. Returns (state or None, problems)."""
    problems = []
    for name in ("checkpoint.npz", "checkpoint.prev.npz"):
        path = out / name
        if not path.exists():
            continue
        try:
            with np.load(path) as z:
                state = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            problems.append(f"{name} unreadable ({e.__class__.__name__})")
            continue
        if any(k not in state for k in ("step", "parts", "widths")):
            problems.append(f"{name} incomplete")
            continue
        log = PartLog.from_json(str(state["manifest"])) if "manifest" in state else None
        if log is not None:
            bad = log.problems(out)
            if bad:
                problems.append(f"{name}: result parts missing or corrupt: {', '.join(sorted(bad))}")
                continue
        return state, problems
    return None, problems


def _trace_rows(sig: np.ndarray, start: int, target: int, every: int, tasks: Sequence[int],
                widths: Sequence[int]) -> list[pd.DataFrame]:
    """The traced tasks' corrected signal of steps start+1 .. target kept every ``every`` steps:
    ``sig`` (steps, members, tasks) -> at most one long-format frame."""
    steps = np.arange(start + 1, target + 1)
    keep = steps % every == 0
    if not keep.any():
        return []
    s = sig[keep]  # (T, members, tasks)
    T, M, R = s.shape
    return [pd.DataFrame({
        "step": np.repeat(steps[keep], M * R),
        "member": np.tile(np.repeat(np.arange(M), R), T),
        "width": np.tile(np.repeat(np.asarray(widths), R), T),
        "task": np.tile(np.asarray(tasks), T * M),
        "corrected_signal": s.reshape(-1).astype(np.float64),
    })]


class _Buffers:
    """Metric and trace rows not yet on disk, and the checkpoint they are flushed with."""

    def __init__(self, out: Path, engine, log: PartLog, parts: int):
        self.out, self.engine, self.log, self.parts = out, engine, log, parts
        self.ckpt = out / "checkpoint.npz"
        self.metrics: list[pd.DataFrame] = []
        self.trace: list[pd.DataFrame] = []

    def rows(self) -> int:
        return sum(len(f) for f in self.metrics) + sum(len(f) for f in self.trace)

    def flush(self) -> None:
        """Write the buffered rows as the next part of each log, then a checkpoint that records
        them (the previous checkpoint is kept until the new one is complete on disk)."""
        if self.metrics or self.trace:
            for sub, buf in (("metrics", self.metrics), ("trace", self.trace)):
                if buf:
                    df = pd.concat(buf, ignore_index=True)
                    path = self.out / sub / f"part-{self.parts:06d}.parquet"
                    atomic_parquet(df, path)
                    self.log.add(self.out, path, len(df))
            self.parts += 1
            self.metrics, self.trace = [], []
        state = self.engine.state_dict()
        state["parts"] = np.asarray(self.parts)
        state["manifest"] = np.asarray(self.log.to_json())
        if self.ckpt.exists():
            atomic_write(self.out / "checkpoint.prev.npz", self.ckpt.read_bytes())
        atomic_savez(self.ckpt, **state)


def run_engine(spec: MixtureSpec, cfg: TrainConfig, widths: Sequence[int], out_dir: str | Path,
               sampler: TaskSampler | None = None, record: RecordSchedule | None = None,
               trace_tasks: Sequence[int] = (), trace_every: int = 1,
               checkpoint_seconds: float = 60.0, progress: Callable[[int, int], None] | None = None,
               chunk: int = 256, conflict_removal: int | None = None) -> dict:
    """Train ``widths`` for ``cfg.steps`` steps in ``out_dir``, resuming if it holds a run.

    Args:
        record: metric schedule (default 60 log-spaced steps).
        trace_tasks: tasks (1-based) whose corrected signal is kept every ``trace_every`` steps.
        checkpoint_seconds: wall time between checkpoints (results are flushed with them).
        progress: called as progress(done_steps, total_steps) once at the start (done_steps
            is the resumed step) and after each segment.
        conflict_removal: task (1-based) protected by gradient-conflict removal (see Engine).
    Returns: {"metrics": DataFrame, "trace": DataFrame | None, "seconds": float (this call's
    training time), "resumed_from": int, "recompilations": int}.
    """
    out = Path(out_dir)
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "trace").mkdir(parents=True, exist_ok=True)
    if trace_every < 1:
        raise ConfigError("trace_every", f"{trace_every}", "integer >= 1")
    record = record or RecordSchedule()
    engine = Engine(spec, cfg, widths, sampler=sampler, trace_tasks=trace_tasks, chunk=chunk,
                    conflict_removal=conflict_removal)
    rec_steps = record.steps(cfg.steps)
    parts = 0
    state, repairs = load_checkpoint(out)
    if state is not None:
        engine.load_state_dict(state)
        parts = int(state["parts"])
    elif repairs:  # nothing consistent to resume from: start again (same results, more time)
        repairs.append("restarted from step 0")
    log = PartLog.from_json(str(state["manifest"])) if state is not None and "manifest" in state else PartLog()
    for folder in ("metrics", "trace"):
        drop_orphan_parts(out / folder, parts)
    resumed_from = engine.step
    buf = _Buffers(out, engine, log, parts)
    if engine.step == 0:
        buf.metrics.append(metric_rows(spec, engine, 0))
    if progress:
        progress(engine.step, cfg.steps)  # where this call starts (after a resume: not 0)
    t0 = time.perf_counter()
    last_ckpt = t0
    while engine.step < cfg.steps:
        nxt = rec_steps[rec_steps > engine.step]
        # bounded segments, so the checkpoint clock is honoured between far-apart record steps
        target = min(int(nxt[0]) if len(nxt) else cfg.steps, engine.step + _SEGMENT_CHUNKS * chunk)
        start = engine.step
        sig = engine.advance(target - start)
        if len(trace_tasks):
            buf.trace += _trace_rows(sig, start, target, trace_every, trace_tasks, engine.widths)
        if target in rec_steps:
            buf.metrics.append(metric_rows(spec, engine, target))
        if progress:
            progress(engine.step, cfg.steps)
        now = time.perf_counter()
        if now - last_ckpt >= checkpoint_seconds or engine.step >= cfg.steps or buf.rows() > _MAX_BUFFERED_ROWS:
            buf.flush()
            last_ckpt = now
    if buf.metrics or buf.trace or not buf.ckpt.exists():
        buf.flush()
    return {
        "metrics": read_parts(out / "metrics"),
        "trace": read_parts(out / "trace"),
        "seconds": time.perf_counter() - t0,
        "resumed_from": resumed_from,
        "recompilations": engine.recompilations,
        "final_state": engine.state_dict(),
        "repairs": repairs,
    }
