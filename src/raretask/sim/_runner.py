"""Resumable runs of the engine with metrics streamed to disk.

Layout of a run directory::

    checkpoint.npz          engine state + how many result parts are complete (atomic)
    metrics/part-000000.parquet ...   tidy SPEC A3 metrics at the record steps
    trace/part-000000.parquet ...     per-step corrected signal of traced tasks

Parts are written with a temporary name and renamed when complete, then the checkpoint
is replaced atomically; a part newer than the checkpoint is an orphan of an interrupted
run and is deleted on resume. Re-running the same call therefore resumes and produces
identical results, and memory stays bounded however long the run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..mixture import MixtureSpec, task_metrics
from ._config import TrainConfig
from ._engine import Engine
from ._sampling import TaskSampler
from ._schedule import RecordSchedule


_SEGMENT_CHUNKS = 16  # chunks per segment between checkpoint opportunities
_MAX_BUFFERED_ROWS = 200_000  # flush earlier than the checkpoint clock when rows pile up


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


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


def drop_orphan_parts(folder: Path, parts: int) -> None:
    """Delete parts numbered ``parts`` or later and half-written ``.tmp`` files: what an
    interrupted run wrote after its last checkpoint."""
    for p in folder.glob("part-*"):
        if p.suffix == ".tmp" or int(p.name.split("-")[1].split(".")[0]) >= parts:
            p.unlink()


def read_parts(folder: Path) -> pd.DataFrame | None:
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return None
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def run_engine(spec: MixtureSpec, cfg: TrainConfig, widths: Sequence[int], out_dir: str | Path,
               sampler: TaskSampler | None = None, record: RecordSchedule | None = None,
               trace_tasks: Sequence[int] = (), trace_every: int = 1,
               checkpoint_seconds: float = 60.0, progress: Callable[[int, int], None] | None = None,
               chunk: int = 256, conflict_removal: int | None = None) -> dict:
    """Train ``widths`` for ``cfg.steps`` steps in ``out_dir``, resuming if it holds a run.

    Args:
        record: metric schedule (default 60 log-spaced steps).
        trace_tasks: 0-based tasks whose corrected signal is kept every ``trace_every`` steps.
        checkpoint_seconds: wall time between checkpoints (results are flushed with them).
        progress: called as progress(done_steps, total_steps) once at the start (done_steps
            is the resumed step) and after each segment.
        conflict_removal: 0-based task protected by gradient-conflict removal (see Engine).
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
    ckpt = out / "checkpoint.npz"
    parts = 0
    if ckpt.exists():
        with np.load(ckpt) as z:
            state = {k: z[k] for k in z.files}
        engine.load_state_dict(state)
        parts = int(state["parts"])
    for folder in ("metrics", "trace"):
        drop_orphan_parts(out / folder, parts)
    resumed_from = engine.step
    buf_m: list[pd.DataFrame] = []
    buf_t: list[pd.DataFrame] = []
    if engine.step == 0:
        buf_m.append(metric_rows(spec, engine, 0))

    def flush() -> None:
        nonlocal parts, buf_m, buf_t
        if buf_m or buf_t:
            if buf_m:
                atomic_parquet(pd.concat(buf_m, ignore_index=True), out / "metrics" / f"part-{parts:06d}.parquet")
            if buf_t:
                atomic_parquet(pd.concat(buf_t, ignore_index=True), out / "trace" / f"part-{parts:06d}.parquet")
            parts += 1
            buf_m, buf_t = [], []
        state = engine.state_dict()
        state["parts"] = np.asarray(parts)
        tmp = ckpt.with_name("checkpoint.tmp.npz")
        np.savez(tmp, **state)
        os.replace(tmp, ckpt)

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
            steps = np.arange(start + 1, target + 1)
            keep = steps % trace_every == 0
            if keep.any():
                s = sig[keep]  # (T, members, tasks)
                T, M, R = s.shape
                buf_t.append(pd.DataFrame({
                    "step": np.repeat(steps[keep], M * R),
                    "member": np.tile(np.repeat(np.arange(M), R), T),
                    "width": np.tile(np.repeat(np.asarray(engine.widths), R), T),
                    "task": np.tile(np.asarray(trace_tasks) + 1, T * M),
                    "corrected_signal": s.reshape(-1).astype(np.float64),
                }))
        if target in rec_steps:
            buf_m.append(metric_rows(spec, engine, target))
        if progress:
            progress(engine.step, cfg.steps)
        now = time.perf_counter()
        buffered = sum(len(f) for f in buf_m) + sum(len(f) for f in buf_t)
        if now - last_ckpt >= checkpoint_seconds or engine.step >= cfg.steps or buffered > _MAX_BUFFERED_ROWS:
            flush()
            last_ckpt = now
    if buf_m or buf_t or not ckpt.exists():
        flush()
    return {
        "metrics": read_parts(out / "metrics"),
        "trace": read_parts(out / "trace"),
        "seconds": time.perf_counter() - t0,
        "resumed_from": resumed_from,
        "recompilations": engine.recompilations,
        "final_state": engine.state_dict(),
    }
