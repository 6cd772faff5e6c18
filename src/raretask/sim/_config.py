"""Training configuration of the synthetic student (SPEC A2)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..validate import STRICT, with_config

MODES = ("exact", "population")


@with_config(STRICT)
@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and run settings shared by the reference trainer and the engine (SPEC A2)."""

    steps: int = 100_000
    """Number of optimiser steps (>= 1)."""
    batch_size: int = 1024
    """Samples per ordinary batch B (>= 1); 1024 for phase diagrams, 256 for retention."""
    lr: float = 1e-3
    """Peak learning rate of AdamW (> 0)."""
    warmup: int = 1000
    """Linear warm-up steps; afterwards lr_t = lr * sqrt(warmup / t) (>= 1)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (PyTorch default, >= 0)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW moment coefficients, each in [0, 1)."""
    eps: float = 1e-8
    """AdamW epsilon (> 0)."""
    clip: float = 1.0
    """Gradient-norm clipping threshold per model (> 0; inf disables)."""
    mode: str = "exact"
    """'exact' (default: same trajectory distribution as the per-sample trainer) or
    'population' (X_k^T X_k replaced by n_k I; an approximation, never the default)."""
    seed: int = 0
    """Seed for data and initialisation (>= 0)."""

    def __post_init__(self) -> None:
        for name, lo in (("steps", 1), ("batch_size", 1), ("warmup", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(name, f"{v!r}", f"integer >= {lo}")
        for name in ("lr", "eps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(name, f"{v!r}", "finite number > 0")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < math.inf):
            raise ConfigError("weight_decay", f"{self.weight_decay!r}", "finite number >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", f"{self.betas!r}", "two numbers in [0, 1)")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not (isinstance(self.clip, (int, float)) and self.clip > 0):
            raise ConfigError("clip", f"{self.clip!r}", "number > 0 (inf disables clipping)")
        if self.mode not in MODES:
            raise ConfigError("mode", f"{self.mode!r}", " or ".join(MODES))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError("seed", f"{self.seed!r}", "integer >= 0")

    def lr_at(self, step: np.ndarray | int) -> np.ndarray:
        """Learning rate used at 0-based step ``step`` (SPEC A2: warm-up, then inverse sqrt).

        Step t (0-based) uses factor min((t+1)/warmup, sqrt(warmup/(t+1))).
        """
        t = np.asarray(step, dtype=np.float64) + 1.0
        return self.lr * np.minimum(t / self.warmup, np.sqrt(self.warmup / t))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out
