"""Where a study's cells run: in this process, on a local process pool, or on a Ray cluster.

Every cell is one resumable engine run in its own folder (``.cells/<key>``), so a cell whose
worker dies is simply run again: it resumes from its last checkpoint and, the engine being
deterministic, ends with the same results. Results are collected per cell id, so a retried
cell is counted once, and merged in the study's cell order, whatever order they finish in.

On a Ray cluster the cell folders must be on storage every node sees (a shared file system)
for a retried cell to resume; otherwise it restarts from step 0 (same results, more time).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, RaretaskError
from ..runfolder import RunFolder, atomic_json

EXECUTORS = ("local", "ray")
# one XLA thread per worker process: on a shared machine, two-thread processes that compete for
# cores are slower than single-thread ones (and results are bit-identical either way)
WORKER_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "OMP_NUM_THREADS": "1"}


def _init_worker() -> None:
    from .._workers import worker_signals

    os.environ.update(WORKER_ENV)
    worker_signals()


def _cell_in_worker(*job):
    from .._workers import run_task

    return run_task(run_cell, *job)


CELL_FILES = ("checkpoint.npz", "checkpoint.prev.npz", "metrics", "trace", "progress.json")
"""What an engine cell's run folder holds (``RunFolder`` owned entries)."""


def cell_folder(path: str | Path) -> RunFolder:
    """The run folder of one engine cell. Another process computing the same cell (a study
    sharing it, a retried worker) holds its lock: this one waits, then resumes from it."""
    return RunFolder(path, "cell", owned=CELL_FILES, wait=-1,
                     legacy=lambda p: (p / "checkpoint.npz").exists())


def run_cell(cell, cell_dir: str, checkpoint_seconds: float, tick: Callable[[], None] | None = None) -> dict:
    """Run (or resume) one cell in ``cell_dir``; what a worker executes.

    Progress goes to ``cell_dir/progress.json`` ({"done", "total"}), which the driver polls
    (``tick`` is called after each write, for a driver that runs the cell in its own process).
    Returns {"metrics": DataFrame, "trace": DataFrame | None, "seconds": float, "repairs": [...]}."""
    from ..sim import run_engine

    with cell_folder(cell_dir).open() as folder:

        def report(done: int, total: int) -> None:
            atomic_json(folder.path / "progress.json", {"done": int(done), "total": int(total)})
            if tick is not None:
                tick()

        res = run_engine(cell.spec, cell.train, cell.widths, folder.path, sampler=cell.sampler, record=cell.record,
                         trace_tasks=cell.trace_tasks, trace_every=cell.trace_every, progress=report,
                         checkpoint_seconds=checkpoint_seconds, conflict_removal=cell.conflict_removal)
    return {"metrics": res["metrics"], "trace": res["trace"], "seconds": res["seconds"], "repairs": res["repairs"]}


class _ProgressPoller:
    """Turns the cells' progress files into step increments for one progress callback."""

    def __init__(self, dirs: dict[str, Path], progress: Callable[[int], None] | None):
        self.dirs, self.progress = dirs, progress
        self.seen = {cid: 0 for cid in dirs}
        for cid, d in dirs.items():  # a finished or resumed cell's earlier work counts as done
            self.seen[cid] = self._read(d)
            if progress and self.seen[cid]:
                progress(self.seen[cid])

    @staticmethod
    def _read(d: Path) -> int:
        try:
            return int(json.loads((d / "progress.json").read_text())["done"])
        except (OSError, ValueError, KeyError):
            return 0

    def poll(self) -> None:
        for cid, d in self.dirs.items():
            now = self._read(d)
            if now > self.seen[cid]:
                if self.progress:
                    self.progress(now - self.seen[cid])
                self.seen[cid] = now


def check_executor(executor: str, workers: int | None, ray_address: str | None) -> None:
    """Validate where cells will run (and that a named Ray cluster answers) before a run
    writes anything."""
    if executor not in EXECUTORS:
        raise ConfigError("executor", f"{executor!r}", ", ".join(EXECUTORS))
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError("workers", f"{workers!r}", "integer >= 1")
    if executor == "ray" and ray_address not in (None, "auto", "local"):
        _reachable(ray_address)


def execute(cells: list, dirs: dict[str, Path], executor: str = "local", workers: int | None = None,
            progress: Callable[[int], None] | None = None, checkpoint_seconds: float = 60.0,
            retries: int = 3, ray_address: str | None = None) -> dict[str, dict]:
    """Run every cell; returns {cell id: run_cell result}, each cell exactly once.

    Args:
        dirs: cell id -> its run folder.
        executor: "local" (this machine: in-process for one worker, else a process pool) or
            "ray" (a Ray cluster at ``ray_address``; None starts a local Ray instance).
        workers: parallel cells (default: the CPU count, at most the number of cells).
        retries: how many times a cell whose worker died is run again before giving up.
    """
    check_executor(executor, workers, ray_address)
    if retries < 0:
        raise ConfigError("retries", f"{retries}", "integer >= 0")
    workers = workers or max(1, min(os.cpu_count() or 1, len(cells)))
    poller = _ProgressPoller(dirs, progress)
    jobs = {c.id: (c, str(dirs[c.id]), checkpoint_seconds) for c in cells}
    if executor == "ray":
        return _ray(jobs, workers, poller, retries, ray_address)
    if workers == 1:
        out = {}
        for cid, job in jobs.items():
            out[cid] = run_cell(*job, tick=poller.poll)
            poller.poll()
        return out
    return _pool(jobs, workers, poller, retries)


def _pool(jobs: dict, workers: int, poller: _ProgressPoller, retries: int) -> dict[str, dict]:
    import multiprocessing as mp

    results: dict[str, dict] = {}
    deaths = {cid: 0 for cid in jobs}
    while len(results) < len(jobs):
        todo = [cid for cid in jobs if cid not in results]
        # spawn, not fork: the driver may hold JAX's threads, which fork does not survive
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker)
        try:
            futures = {pool.submit(_cell_in_worker, *jobs[cid]): cid for cid in todo}
            pending, lost = set(futures), []
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                poller.poll()
                for f in done:
                    try:
                        results[futures[f]] = f.result()
                    except BrokenProcessPool:  # a worker died (killed, out of memory): rerun its cells
                        lost.append(futures[f])
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: stop the workers now and wait for them
            procs = list((pool._processes or {}).values())
            for proc in procs:  # their cells resume from their last checkpoints
                proc.terminate()
            for proc in procs:
                proc.join()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        for cid in lost:
            deaths[cid] += 1
            if deaths[cid] > retries:
                raise RuntimeError(f"cell {cid}: its worker died {deaths[cid]} times; giving up "
                                   f"(its checkpoint is kept: run the same command again to resume)")
    return results


RAY_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a Ray cluster's address to answer before giving up."""


def _reachable(address: str) -> None:
    """Fail fast, with one line, when nothing listens at a Ray address (ray.init would wait)."""
    import socket

    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("ray_address", f"{address!r}", "auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as e:
        raise RaretaskError(f"cannot reach the Ray cluster at {address} ({e.strerror or e.__class__.__name__} "
                            f"within {RAY_CONNECT_TIMEOUT:g} s); check --ray-address and that the cluster is up") from None


def _ray(jobs: dict, workers: int, poller: _ProgressPoller, retries: int, address: str | None) -> dict[str, dict]:
    try:
        import ray
    except ImportError as e:
        raise ConfigError("executor", "ray is not installed", "pip install 'raretask[cluster]'") from e
    started = False
    if not ray.is_initialized():
        kw = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": dict(WORKER_ENV)})
        if address is None:  # a local instance just for this study
            kw.update(num_cpus=workers, object_store_memory=256 * 1024**2)
        ray.init(address=address, **kw)
        started = True
    try:
        # max_retries: Ray reruns a task whose worker process died (the cell then resumes)
        remote = ray.remote(num_cpus=1, max_retries=retries)(run_cell)
        refs = {remote.remote(*job): cid for cid, job in jobs.items()}
        results: dict[str, dict] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            poller.poll()
            for r in ready:
                results[refs[r]] = ray.get(r)
        return results
    finally:
        if started:
            ray.shutdown()
