"""When to record metrics during a run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class RecordSchedule:
    """Steps at which exact metrics (SPEC A3) are recorded.

    Step s means "after s optimiser steps"; step 0 (the initialisation) and the final step
    are always included.
    """

    kind: str = "log"
    """'log' (geometrically spaced, dense early) or 'linear' (evenly spaced)."""
    points: int = 60
    """Approximate number of recorded steps (>= 2)."""

    def __post_init__(self) -> None:
        if self.kind not in ("log", "linear"):
            raise ConfigError("record", f"kind {self.kind!r}", "'log' or 'linear'")
        if self.points < 2:
            raise ConfigError("record", f"points {self.points}", "integer >= 2")

    def steps(self, total: int) -> np.ndarray:
        """Sorted unique int64 record steps in 0..total."""
        if self.kind == "linear":
            s = np.linspace(0, total, self.points)
        else:
            s = np.concatenate([[0], np.geomspace(1, total, self.points - 1)])
        return np.unique(np.concatenate([np.round(s).astype(np.int64), [0, total]]))
