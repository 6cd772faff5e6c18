"""What each step trains on: corpus windows in a seeded order, with injected instances.

``StepBatches`` is a pure function of (seed, step): the global batch of a step is the same
whatever the number of ranks or however the run was interrupted; rank r of W takes rows
[r B/W, (r+1) B/W).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._corpus import Corpus
from ._injection import InjectionSchedule
from ._tasks import TaskSet


@dataclass
class StepBatches:
    corpus: Corpus
    tasks: TaskSet
    schedule: InjectionSchedule
    seq_len: int
    seed: int = 0
    inject_seconds: float = 0.0
    """Time spent choosing and writing injections in the last ``local`` call."""

    def __post_init__(self) -> None:
        if self.seq_len < 4:
            raise ConfigError("seq_len", f"{self.seq_len}", ">= 4 (an instance is 4 tokens)")
        self.n_windows = self.corpus.n_windows(self.seq_len)
        if self.n_windows < self.schedule.global_batch:
            raise ConfigError("corpus", f"{self.n_windows} windows of {self.seq_len} tokens",
                              f"at least one batch ({self.schedule.global_batch} windows)")

    def window_ids(self, step: int) -> np.ndarray:
        """Corpus windows of the global batch at ``step``: a fresh seeded permutation per pass
        over the corpus. (B,) int64."""
        B, n = self.schedule.global_batch, self.n_windows
        k = np.arange(step * B, (step + 1) * B, dtype=np.int64)
        out = np.empty(B, np.int64)
        for epoch in np.unique(k // n):
            perm = np.random.default_rng([self.seed, 0xDA7A, int(epoch)]).permutation(n)
            sel = k // n == epoch
            out[sel] = perm[k[sel] - epoch * n]
        return out

    def local(self, step: int, rank: int = 0, world: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
        """Rank ``rank``'s rows of the step: tokens (B/W, L) int64, instance ids (B/W,)
        (-1: none), and the global batch's bookkeeping {"windows" (B,), "instance" (B,)}."""
        B = self.schedule.global_batch
        if B % world:
            raise ConfigError("batch_size", f"{B} is not divisible by {world} ranks", "a multiple of the world size")
        lo, hi = rank * B // world, (rank + 1) * B // world
        t0 = time.perf_counter()
        pos, ids = self.schedule.at(step)
        t_sched = time.perf_counter() - t0
        windows = self.window_ids(step)
        toks = self.corpus.windows(windows[lo:hi], self.seq_len)
        t1 = time.perf_counter()
        inst = np.full(B, -1, np.int64)
        inst[pos] = self.tasks.train[ids]
        local = inst[lo:hi]
        rows = np.flatnonzero(local >= 0)
        if len(rows):
            toks[rows, :4] = self.tasks.instances[local[rows]]
        self.inject_seconds = t_sched + time.perf_counter() - t1
        return toks, local, {"windows": windows, "instance": inst}
