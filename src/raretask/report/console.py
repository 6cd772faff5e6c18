"""Rich console rendering of planner output."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_plan(plan: dict[str, Any], console: Console | None = None) -> None:
    """Print a plan (``raretask.plan.build_plan`` output) as readable tables."""
    console = console or Console()
    mix = plan["mixture"]
    console.print(
        f"[bold]Mixture[/bold] K={mix['n_tasks']} d={mix['block_dim']} D={mix['D']} "
        + ("explicit prior" if mix["prior"] else f"beta={mix['beta']}")
        + (f" alpha in {mix['alpha_range']}" if mix["alpha_range"] else f" alpha={mix['alpha']}")
        + (" rank-1" if mix["rank1"] else "")
        + f"  frequent set F = tasks {_ranges(plan['frequent_set'])} (rho={mix['frequent_mass']})"
    )
    widths = plan["widths"]
    t = Table(title="Per task: critical widths (Theorem 3) and retained features n_k(N) / predicted loss L*_k(N)")
    for col in ("task", "prior", "m90", "N*_1", "N*_all"):
        t.add_column(col, justify="right")
    for w in widths:
        t.add_column(f"N={w['width']}", justify="right")
    for i, task in enumerate(plan["tasks"]):
        cells = [
            str(task["task"]),
            f"{task['prior']:.4g}",
            str(task["complexity_m90"]),
            str(task["critical_width"]),
            str(task["critical_width_all"]),
        ]
        for w in widths:
            n = w["retained"][i]
            style = "green" if n == mix["block_dim"] else ("yellow" if n > 0 else "dim")
            cells.append(f"[{style}]{n}[/{style}] / {w['predicted_loss'][i]:.3g}")
        t.add_row(*cells)
    console.print(t)
    s = Table(title="Per width (Theorem 3)")
    for col in ("width N", "tasks learned", "predicted total loss"):
        s.add_column(col, justify="right")
    for w in widths:
        s.add_row(str(w["width"]), str(len(w["tasks_learned"])), f"{w['predicted_total_loss']:.5g}")
    console.print(s)
    if plan["rare"]:
        r = plan["rare"]
        console.print(
            f"Rare task {r['task']} (utility {r['utility']:.3g}): Proposition 6 critical width "
            f"N*_r = {r['critical_width_prop6']}, residual threshold delta*_r = {r['delta_star']:.4g}"
        )
        console.print(two_widths_line(r, plan["frequent_set"]))


def two_widths_line(rare: dict[str, Any], frequent_set: list[int]) -> str:
    """Why the plan shows two critical widths for the rare task, from the plan's own counts."""
    t3, p6, n = rare["critical_width_theorem3"], rare["critical_width_prop6"], rare["outside_f_features_above"]
    if t3 == p6:
        return (f"Theorem 3 and Proposition 6 agree on N = {t3} for task {rare['task']}: no feature of another task "
                f"outside F outranks it.")
    return (f"Why two widths for task {rare['task']}: Theorem 3's N*_(k,1) = {t3} counts every feature whose utility "
            f"is at least task {rare['task']}'s; Proposition 6's N*_r = {p6} counts only the frequent set's "
            f"(tasks {_ranges(frequent_set)}) and asks when the rare task can displace the weakest common direction. "
            f"The {n} feature(s) of other tasks outside F that outrank it are why the full model needs the larger width.")


def _ranges(ks: list[int]) -> str:
    if not ks:
        return "{}"
    out, start, prev = [], ks[0], ks[0]
    for k in ks[1:] + [None]:  # type: ignore[list-item]
        if k is not None and k == prev + 1:
            prev = k
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if k is not None:
            start = prev = k
    return "{" + ",".join(out) + "}"


def print_target(target: dict[str, Any], console: Console | None = None) -> None:
    """Print the planner's inverse answers for one task."""
    console = console or Console()
    console.print(f"\n[bold]Target task {target['task']}[/bold] (frequency {target['frequency']:.4g}): "
                  f"learning its first {target['features']} feature(s) needs width "
                  f"[bold]{target['min_width_at_current_frequency']}[/bold] at the current frequency.")
    t = Table(title="Or up-weight it (the other tasks scaled down in proportion)")
    for col in ("width N", "frequency needed", "up-weighting", "learned now?"):
        t.add_column(col, justify="right")
    for r in target["per_width"]:
        p = r["min_frequency"]
        t.add_row(str(r["width"]), "impossible (N < M)" if p is None else f"{p:.4g}",
                  "" if p is None else f"{r['upweight']:.3g}x", "yes" if r["learned_at_current_frequency"] else "no")
    console.print(t)
    if target.get("tradeoff"):
        f = Table(title="Trade-off frontier: frequency vs width, and the cost to the other tasks")
        for col in ("width N", "frequency", "up-weighting", "params vs reference", "other-task loss",
                    "other-task loss without up-weighting"):
            f.add_column(col, justify="right")
        rows = target["tradeoff"]
        step = max(1, len(rows) // 24)
        for r in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
            f.add_row(str(r["width"]), f"{r['frequency']:.4g}", f"{r['upweight']:.3g}x", f"{r['params_ratio']:.3g}x",
                      f"{r['other_loss']:.4g}", f"{r['other_loss_at_original']:.4g}")
        console.print(f)
