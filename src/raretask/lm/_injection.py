"""Injection schedule (SPEC B2): which sequences of which step carry which train instance.

Everything is a pure function of (seed, step), never of the rank or of how the run was
resumed: rank r of W takes the sequences of its slice of the global batch, so placement is
identical for any number of ranks and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class InjectionSchedule:
    """Instances per batch at a (possibly fractional) ``rate``, or ``n`` every ``every`` batches.

    Attributes:
        global_batch: sequences per optimiser step (all ranks together).
        n_train: number of train instances to draw from (cycled in seeded permutations).
        rate: instances per batch (> 0; 0.1 = one every 10 batches); or None.
        n, every: n instances every G batches (the matched-frequency form); or None.
    """

    global_batch: int
    n_train: int
    seed: int = 0
    rate: float | None = None
    n: int | None = None
    every: int | None = None

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.every is None):
            raise ConfigError("rate", "give either rate, or n and every", "--rate R or --every G --n N")
        if self.rate is not None and not (np.isfinite(self.rate) and self.rate > 0):
            raise ConfigError("rate", f"{self.rate}", "instances per batch > 0")
        if self.rate is not None and self.rate > self.global_batch:
            raise ConfigError("rate", f"{self.rate} > batch size {self.global_batch}", "<= one per sequence")
        if self.every is not None:
            if not (isinstance(self.every, int) and self.every >= 1):
                raise ConfigError("every", f"{self.every}", "integer >= 1")
            if not (isinstance(self.n, int) and 1 <= self.n <= self.global_batch):
                raise ConfigError("n", f"{self.n}", f"1..{self.global_batch} instances")
        if self.n_train < 1:
            raise ConfigError("n_train", f"{self.n_train}", ">= 1")

    def _frac(self) -> Fraction:
        # exact rational rate, so floor((s+1) r) - floor(s r) realises it exactly over any window
        return Fraction(self.rate).limit_denominator(1_000_000)

    def cumulative(self, steps: np.ndarray) -> np.ndarray:
        """Instances injected in steps 0..s-1, for each s. int64 (len(steps),)."""
        s = np.asarray(steps, np.int64)
        if self.rate is not None:
            f = self._frac()
            return (s * f.numerator) // f.denominator
        return (s // self.every) * self.n

    def count(self, step: int) -> int:
        """Instances injected at ``step`` (0-based)."""
        c = self.cumulative(np.asarray([step, step + 1]))
        return int(c[1] - c[0])

    def per_token_frequency(self, seq_len: int) -> float:
        """Instances per training token: rate / (batch_size * seq_len) (SPEC B2)."""
        rate = float(self._frac()) if self.rate is not None else self.n / self.every
        return rate / (self.global_batch * seq_len)

    def instance_ids(self, first: int, n: int) -> np.ndarray:
        """Train-instance indices (0..n_train-1) of the injections numbered first..first+n-1:
        a fresh seeded permutation of the train split per pass. (n,)"""
        k = np.arange(first, first + n, dtype=np.int64)
        out = np.empty(n, np.int64)
        for epoch in np.unique(k // self.n_train):
            perm = _pass_order(self.seed, int(epoch), self.n_train)
            sel = k // self.n_train == epoch
            out[sel] = perm[k[sel] - epoch * self.n_train]
        return out

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The injections of ``step``: (sequence positions in the global batch (n,),
        train-instance indices (n,)), positions sorted."""
        n = self.count(step)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rng = np.random.default_rng([self.seed, 0x5E0, int(step)])
        pos = np.sort(rng.choice(self.global_batch, size=n, replace=False))
        first = int(self.cumulative(np.asarray([step]))[0])
        return pos, self.instance_ids(first, n)

    def describe(self) -> dict:
        d = {"global_batch": self.global_batch, "seed": self.seed}
        if self.rate is not None:
            d["rate"] = self.rate
        else:
            d.update(n=self.n, every=self.every)
        return d


@lru_cache(maxsize=4)
def _pass_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the train instances in one pass (cached: consecutive steps share it)."""
    return np.random.default_rng([seed, 0x1A7, epoch]).permutation(n)


def inject(tokens: np.ndarray, positions: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Replace the first 4 tokens of the sequences at ``positions`` by the instances.

    tokens (B, L) (a copy is returned), positions (n,) rows, instances (n, 4)."""
    if tokens.shape[1] < instances.shape[1]:
        raise ConfigError("seq_len", f"{tokens.shape[1]}", f">= {instances.shape[1]}")
    out = np.array(tokens, copy=True)
    out[positions, : instances.shape[1]] = instances
    return out
