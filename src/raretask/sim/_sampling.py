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

    The rare task is left out of ordinary batches (the B samples of every step come from the
    other tasks in their relative priors); at every step t with (t + 1) % gap == 0 the batch
    is enlarged by rare samples. Injection j (0-based) carries
    ``floor((j + 1) G q) - floor(j G q)`` of them (cumulative rounding), with
    ``q = pi_r B / (1 - pi_r)`` rare samples per step on average. Then the rare task's share of
    all samples is q / (B + q) = pi_r and every other task keeps its prior, at every G.

    Why q and not the SPEC's ``pi_r B``: B ordinary samples plus pi_r B rare ones make the rare
    share pi_r / (1 + pi_r), 2.4% low for a task with pi_r = 0.025, which breaks the 1% match
    that the study records. A plain ``round(G q)`` per injection would change the frequency
    with G when G q is small (1.59 x pi_r at G=1 for q = 0.63); cumulative rounding keeps the
    count over any run within one sample of J G q after J injections.
    """

    prior: np.ndarray
    batch_size: int
    seed: int
    rare_task: int
    """The rare task (1-based, as the paper numbers it)."""
    gap: int
    """G >= 1, steps between injections."""
    replay_every: int = 0
    """Replay remedy (SPEC Part C): every this many steps between injections, the samples
    of the latest injection are presented again (no new rare data). 0: no replay."""

    def __post_init__(self) -> None:
        if isinstance(self.rare_task, bool) or not 1 <= int(self.rare_task) <= len(self.prior):
            raise ConfigError("rare_task", f"{self.rare_task!r}", f"a task number 1..{len(self.prior)}")
        if self.gap < 1:
            raise ConfigError("gap", f"{self.gap}", "integer >= 1")
        if not 0 < float(self.prior[self.rare]) < 1:
            raise ConfigError("rare_task", f"prior {float(self.prior[self.rare])!r}", "a prior in (0, 1)")
        if self.replay_every and not 1 <= self.replay_every < self.gap:
            raise ConfigError("replay_every", f"{self.replay_every} with gap {self.gap}",
                              "0 (off) or 1 <= replay_every < gap")

    @property
    def rare(self) -> int:
        """0-based row of the rare task (internal index)."""
        return int(self.rare_task) - 1

    @property
    def rate(self) -> float:
        """q: rare samples per step on average, pi_r B / (1 - pi_r)."""
        p = float(self.prior[self.rare])
        return p * self.batch_size / (1.0 - p)

    def injection_sizes(self, j: np.ndarray) -> np.ndarray:
        """Rare samples carried by 0-based injections j: int64, same shape as j."""
        j = np.asarray(j, np.int64)
        per = self.gap * self.rate
        return (np.floor((j + 1) * per) - np.floor(j * per)).astype(np.int64)

    @property
    def injection_size(self) -> int:
        """The largest injection, ceil(G q) (sizes are this or one less)."""
        return int(np.ceil(self.gap * self.rate))

    def injected(self, steps: int) -> int:
        """Fresh rare samples over steps 0..steps-1: floor(J G q), J = steps // G injections."""
        return int(np.floor(steps // self.gap * self.gap * self.rate))

    def frequency_ratio(self, steps: int) -> float:
        """Realised share of fresh rare samples among all fresh samples over ``steps`` steps, / pi_r.

        Exact: ordinary batches always hold B samples of the other tasks."""
        rare = self.injected(steps)
        return rare / (rare + steps * self.batch_size) / float(self.prior[self.rare])

    @property
    def max_batch(self) -> int:
        return self.batch_size + self.injection_size

    def counts(self, steps: np.ndarray) -> np.ndarray:
        p = np.asarray(self.prior, np.float64).copy()
        p[self.rare] = 0.0
        p /= p.sum()
        c = _block_draws(self.seed, 2, steps, lambda rng, n: rng.multinomial(self.batch_size, p, size=n))
        src = self.replay_source(steps)
        has = src >= 0
        c[has, self.rare] += self.injection_sizes((src[has] + 1) // self.gap - 1)
        return c

    @property
    def replay_task(self) -> int | None:
        """0-based row of the task whose samples the engine draws by source step (replay on),
        else None (an internal index for the engine)."""
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
        out = {"kind": "retention", "batch_size": self.batch_size, "rare_task": int(self.rare_task),
               "gap": self.gap, "injection": "cumulative", "rare_per_step": self.rate}
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
