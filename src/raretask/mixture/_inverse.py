"""Inverse planning questions (SPEC Part C): how much up-weighting, or how much width, makes
a model learn a given task? Closed form from Theorem 3 (SPEC A4).

Up-weighting task k to frequency p scales every other task by c(p) = (1 - p) / (1 - pi_k),
so the other tasks keep their relative frequencies. Feature (k, m) is retained at width N
iff at most N - m features of other tasks have a larger utility (task k's own first m - 1
features always rank above it). With v the (N - m + 1)-th largest other-task utility at the
original prior, that is p lambda_{k,m} >= c(p) v, i.e.

    p*(N) = v / (lambda_{k,m} (1 - pi_k) + v).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._spec import MixtureSpec
from ._theory import feature_ranks, predicted_task_loss


def reweighted(spec: MixtureSpec, task: int, frequency: float) -> MixtureSpec:
    """The mixture with task ``task`` (1-based) at ``frequency`` and the others scaled down
    in proportion."""
    k = spec.task_index(task)
    if not 0 < frequency < 1:
        raise ConfigError("frequency", f"{frequency}", "0 < p < 1")
    pi = spec.pi.copy()
    pi *= (1 - frequency) / (1 - pi[k])
    pi[k] = frequency
    pi /= pi.sum()  # exact up to rounding already; keeps the 1e-6 check happy
    return MixtureSpec(**{**spec.to_dict_fields(), "prior": tuple(pi)})


def _check_target(spec: MixtureSpec, task: int, features: int) -> int:
    """The target's 0-based index, after checking the question can be asked."""
    k = spec.task_index(task, "target_task")
    if not 1 <= features <= spec.d:
        raise ConfigError("features", f"{features}", f"1..{spec.d}")
    if spec.K < 2:
        raise ConfigError("target_task", "up-weighting needs at least two tasks", "K >= 2")
    return k


def min_frequency(spec: MixtureSpec, task: int, width: int, features: int = 1) -> float | None:
    """Smallest frequency p* of task ``task`` (1-based) at which a width-N minimiser retains
    its first ``features`` features (Theorem 3). 0.0 when any frequency works; None when no
    frequency does (N < features)."""
    k = _check_target(spec, task, features)
    N = spec.check_width(width)
    if N < features:
        return None
    lam = float(spec.spectra[k, features - 1])
    others = np.delete(spec.utilities, k, axis=0).ravel()
    slots = N - features  # other-task features allowed above (k, m)
    if slots >= others.size:
        return 0.0
    v = float(np.sort(others)[::-1][slots])
    return v / (lam * (1.0 - float(spec.pi[k])) + v)


@dataclass(frozen=True)
class Route:
    """One way to make a model learn the target task, and what it costs the other tasks."""

    width: int
    """Model width N."""
    frequency: float
    """Frequency of the target task in the mixture."""
    upweight: float
    """frequency / original frequency."""
    params_ratio: float
    """Encoder+decoder parameters relative to the reference width (proportional to N)."""
    other_loss: float
    """Predicted loss of the other tasks, averaged over their original relative frequencies."""
    other_loss_at_original: float
    """The same at this width without up-weighting."""


def _other_loss(spec: MixtureSpec, base: MixtureSpec, k: int, width: int) -> float:
    """Loss of every task but the 0-based ``k``, weighted by their relative prior in ``base``."""
    w = np.delete(base.pi, k)
    w = w / w.sum()
    return float(w @ np.delete(predicted_task_loss(spec, width), k))


MAX_ROUTES = 200
"""The default frontier has at most this many widths: every width up to the critical one when
that is few enough, else this many spaced evenly in log width (endpoints kept). Each route costs
one sort of the K*d utilities, so the whole frontier stays near linear in K*d."""


def route_widths(lo: int, hi: int, most: int = MAX_ROUTES) -> list[int]:
    """Widths lo..hi, all of them or ``most`` log-spaced ones with both ends."""
    if hi - lo + 1 <= most:
        return list(range(lo, hi + 1))
    return [int(w) for w in np.unique(np.round(np.geomspace(lo, hi, most)).astype(int))]


def tradeoff(spec: MixtureSpec, task: int, width: int, features: int = 1,
             widths: list[int] | None = None) -> list[Route]:
    """The frontier of (width, frequency) pairs that learn the first ``features`` features
    of ``task`` (1-based), from the frequency needed at each width down to the width needed at the
    original frequency. ``width`` is the reference for ``params_ratio``.

    Returns one Route per width in ``widths`` (default: ``route_widths`` from ``features`` to
    the critical width N*_{k,m}, at most ``MAX_ROUTES``), skipping widths where no frequency
    suffices."""
    k = _check_target(spec, task, features)
    N0 = spec.check_width(width)
    n_star = int(feature_ranks(spec)[k, features - 1])
    grid = widths if widths is not None else route_widths(max(1, features), n_star)
    out = []
    for N in grid:
        N = spec.check_width(N)
        p = min_frequency(spec, task, N, features)
        if p is None:
            continue
        p = max(p, float(spec.pi[k])) if N >= n_star else p
        # p* is where the target ties the feature it displaces; cost it just above the tie
        s2 = reweighted(spec, task, min(p * (1 + 1e-9) + 1e-15, 1 - 1e-12)) if p > spec.pi[k] else spec
        out.append(Route(width=N, frequency=p, upweight=p / float(spec.pi[k]), params_ratio=N / N0,
                         other_loss=_other_loss(s2, spec, k, N),
                         other_loss_at_original=_other_loss(spec, spec, k, N)))
    return out
