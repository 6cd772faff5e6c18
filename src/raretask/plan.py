"""The planner: closed-form answers about a mixture (SPEC A4, Part C).

``build_plan`` turns a mixture and a list of widths into one JSON-ready dict; the CLI renders
it as a table or prints it as JSON. Tasks are 1-based in everything returned here.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import __version__
from .errors import ConfigError
from .mixture._theory import count_at_least
from .mixture import (
    MixtureSpec,
    feature_ranks,
    min_frequency,
    critical_widths,
    predicted_task_loss,
    predicted_total_loss,
    proposition6,
    retained_features,
    validate_widths,
)


def build_plan(spec: MixtureSpec, widths: Sequence[int]) -> dict[str, Any]:
    """Predict, for each width, which features of which tasks a trained model retains.

    Returns a dict with keys ``mixture``, ``tasks`` (prior, complexity m_k(0.9), critical
    widths N*_{k,1} and N*_{k,d}), ``widths`` (retained n_k(N), predicted losses),
    ``frequent_set`` (1-based) and ``rare`` (Proposition 6 for the rarest task outside F,
    or None when every task is frequent).
    """
    widths = validate_widths(spec, widths)
    crit = critical_widths(spec)
    m90 = spec.complexity_m90()
    pi, alphas = spec.pi, spec.alphas  # computed properties: once, not once per task
    tasks = [
        {
            "task": k + 1,
            "prior": float(pi[k]),
            "alpha": float(alphas[k]) if not spec.rank1 else None,
            "complexity_m90": int(m90[k]),
            "critical_width": int(crit[k, 0]),
            "critical_width_all": int(crit[k, -1]),
        }
        for k in range(spec.K)
    ]
    rows = []
    for N in widths:
        n = retained_features(spec, N)
        rows.append(
            {
                "width": N,
                "retained": [int(x) for x in n],
                "tasks_learned": [k + 1 for k in range(spec.K) if n[k] > 0],
                "predicted_loss": [float(x) for x in predicted_task_loss(spec, N)],
                "predicted_total_loss": predicted_total_loss(spec, N),
            }
        )
    p6 = proposition6(spec)
    rare = None
    if p6 is not None:
        r = p6.task - 1
        in_f = set(spec.frequent_set.tolist())
        outside = [k for k in range(spec.K) if k not in in_f]
        # features of tasks outside F that rank at or above u_r (task r's own first one excluded):
        # Theorem 3 counts them as competitors for width, Proposition 6 does not
        rivals = int(count_at_least(spec.utilities[outside], p6.utility)) - 1
        rare = {
            "task": p6.task,
            "utility": p6.utility,
            "critical_width_prop6": p6.critical_width,
            "critical_width_theorem3": int(crit[r, 0]),
            "outside_f_features_above": rivals,
            "delta_star": p6.delta_star,
        }
    return {
        "raretask_version": __version__,
        "mixture": spec.to_dict(),
        "tasks": tasks,
        "widths": rows,
        "frequent_set": [int(k) + 1 for k in spec.frequent_set],
        "rare": rare,
    }


def build_target(spec: MixtureSpec, task: int, widths: Sequence[int], features: int = 1,
                 tradeoff: bool = False) -> dict[str, Any]:
    """Inverse questions for one task (1-based ``task``): per width, the smallest frequency
    that makes a width-N model learn its first ``features`` features, and the smallest width
    at its current frequency; with ``tradeoff`` the whole frontier of routes (SPEC Part C)."""
    from .mixture import tradeoff as frontier

    widths = validate_widths(spec, widths)
    k = spec.task_index(task, "target_task")
    if not 1 <= features <= spec.d:
        raise ConfigError("features", f"{features}", f"1..{spec.d}")
    pi_k = float(spec.pi[k])
    per_width = []
    for N in widths:
        p = min_frequency(spec, task, N, features)
        per_width.append({"width": N, "min_frequency": p,
                          "upweight": None if p is None else p / pi_k,
                          "learned_at_current_frequency": p is not None and p <= pi_k})
    out = {
        "task": task, "features": features, "frequency": pi_k,
        "min_width_at_current_frequency": int(feature_ranks(spec)[k, features - 1]),
        "per_width": per_width,
    }
    if tradeoff:
        out["tradeoff"] = [r.__dict__ for r in frontier(spec, task, widths[0], features)]
    return out
