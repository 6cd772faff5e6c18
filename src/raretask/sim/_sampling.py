"""Which tasks appear in each step's batch.

A sampler maps 0-based step indices to per-task sample counts, shape (steps, K). It must be
a pure function of the step (never of how the run is chunked or resumed), which is what
makes runs resumable with identical results. Inputs x are drawn separately from a key
folded with the step, so counts plus that key fully determine a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..errors import ConfigError
from ..mixture import MixtureSpec

_BLOCK = 1024  # counts are drawn in blocks of steps, each block from its own seeded stream


class TaskSampler(Protocol):
    max_batch: int
    """An upper bound on the batch size of any step (used to size buffers; exceeding it
    only costs a recompilation, never a dropped sample)."""

    def counts(self, steps: np.ndarray) -> np.ndarray:
        """Per-task sample counts for the given 0-based steps: int64 (len(steps), K)."""
        ...

    def describe(self) -> dict: ...


def _block_draws(seed: int, tag: int, steps: np.ndarray, draw: Callable[[np.random.Generator, int], np.ndarray]):
    steps = np.asarray(steps, dtype=np.int64)
    out = None
    for b in np.unique(steps // _BLOCK):
        rng = np.random.default_rng([seed, tag, int(b)])
        block = draw(rng, _BLOCK)
        sel = steps // _BLOCK == b
        vals = block[steps[sel] - b * _BLOCK]
        if out is None:
            out = np.zeros((len(steps),) + vals.shape[1:], dtype=vals.dtype)
        out[sel] = vals
    return out


@dataclass(frozen=True)
class PriorSampler:
    """Ordinary batches: B samples, tasks i.i.d. from the prior (SPEC A1)."""

    prior: np.ndarray
    batch_size: int
    seed: int

    @property
    def max_batch(self) -> int:
        return self.batch_size

    def counts(self, steps: np.ndarray) -> np.ndarray:
        p = np.asarray(self.prior, np.float64)
        return _block_draws(self.seed, 1, steps, lambda rng, n: rng.multinomial(self.batch_size, p, size=n))

    def describe(self) -> dict:
        return {"kind": "prior", "batch_size": self.batch_size}


@dataclass(frozen=True)
class RetentionSampler:
    """Matched-frequency retention schedule (SPEC A5.3).

    The rare task is left out of ordinary batches (the others keep their relative priors);
    at every step t with (t + 1) % gap == 0 the batch is enlarged by round(gap * pi_r * B)
    rare samples, so the rare task's long-run frequency stays pi_r.
    """

    prior: np.ndarray
    batch_size: int
    seed: int
    rare: int
    """0-based rare task."""
    gap: int
    """G >= 1, steps between injections."""
    replay_every: int = 0
    """Replay remedy (SPEC Part C): every this many steps between injections, the samples
    of the latest injection are presented again (no new rare data). 0: no replay."""

    def __post_init__(self) -> None:
        if not 0 <= self.rare < len(self.prior):
            raise ConfigError("rare_task", f"{self.rare + 1}", f"1..{len(self.prior)}")
        if self.gap < 1:
            raise ConfigError("gap", f"{self.gap}", "integer >= 1")
        if self.injection_size < 1:
            raise ConfigError("gap", f"round(G*pi_r*B) = 0 for G={self.gap}", "G with G*pi_r*B >= 0.5")
        if self.replay_every and not 1 <= self.replay_every < self.gap:
            raise ConfigError("replay_every", f"{self.replay_every} with gap {self.gap}",
                              "0 (off) or 1 <= replay_every < gap")

    @property
    def injection_size(self) -> int:
        return int(round(self.gap * float(self.prior[self.rare]) * self.batch_size))

    @property
    def max_batch(self) -> int:
        return self.batch_size + self.injection_size

    def counts(self, steps: np.ndarray) -> np.ndarray:
        p = np.asarray(self.prior, np.float64).copy()
        p[self.rare] = 0.0
        p /= p.sum()
        c = _block_draws(self.seed, 2, steps, lambda rng, n: rng.multinomial(self.batch_size, p, size=n))
        c[self.replay_source(steps) >= 0, self.rare] += self.injection_size
        return c

    @property
    def replay_task(self) -> int | None:
        """0-based task whose samples the engine draws by source step (replay on), else None."""
        return self.rare if self.replay_every else None

    @property
    def replay_rows(self) -> int:
        return self.injection_size if self.replay_every else 0

    def replay_source(self, steps: np.ndarray) -> np.ndarray:
        """Per step, the step whose rare samples it holds: itself at an injection, the latest
        injection at a replay, -1 when the rare task is absent. int64 (len(steps),)."""
        t = np.asarray(steps, np.int64)
        src = np.where((t + 1) % self.gap == 0, t, -1)
        if self.replay_every:
            last = (t + 1) // self.gap * self.gap - 1  # latest injection at or before t
            replay = ((t + 1) % self.replay_every == 0) & (src < 0) & (last >= 0)
            src = np.where(replay, last, src)
        return src

    def describe(self) -> dict:
        out = {"kind": "retention", "batch_size": self.batch_size, "rare_task": self.rare + 1,
               "gap": self.gap, "injection_size": self.injection_size}
        if self.replay_every:  # absent when off, so earlier runs keep their cache keys
            out["replay_every"] = self.replay_every
        return out


@dataclass(frozen=True)
class FunctionSampler:
    """A user-supplied per-step sampler: ``fn(steps) -> counts (len(steps), K)``.

    ``fn`` must depend on the steps only (seed it yourself), or resumed runs will differ.
    """

    fn: Callable[[np.ndarray], np.ndarray]
    max_batch: int
    name: str = "custom"

    def counts(self, steps: np.ndarray) -> np.ndarray:
        c = np.asarray(self.fn(np.asarray(steps)), dtype=np.int64)
        if c.ndim != 2 or c.shape[0] != len(steps) or np.any(c < 0):
            raise ConfigError("sampler", "must return non-negative int counts of shape (steps, K)")
        return c

    def describe(self) -> dict:
        return {"kind": self.name, "max_batch": self.max_batch}


def default_sampler(spec: MixtureSpec, batch_size: int, seed: int) -> PriorSampler:
    return PriorSampler(prior=spec.pi, batch_size=batch_size, seed=seed)
