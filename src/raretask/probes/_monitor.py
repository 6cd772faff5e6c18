"""The interference monitor of ``lm train --monitor-interference K`` (SPEC B6), as a training
callback: ``lm`` does not import ``probes``; the CLI passes ``InterferenceMonitor()`` to ``train``.

At the steps ``monitor_plan`` picks (every K-th step, and each injection read with offsets
1, G/4, G/2, 3G/4, G-1 after it), before the backward pass, the batch gradient is split into its
task-token and other-token parts and each is compared with the task reference gradient g_r on
the task neurons of MLP 0 (``_gradients``). Rows go to the run's ``interference/`` parts with
the checkpoints; the run's summary gets the checks, figure and report
(``interference-report.html``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..lm.callbacks import Batch, Callback, Trainer
from ..runfolder import read_parts

if TYPE_CHECKING:
    from ..lm._injection import InjectionSchedule
    from ..lm._config import LMTrainConfig


def gap_offsets(period: int) -> list[int]:
    """Offsets (steps after an injection) the monitor reads in a gap of ``period`` steps."""
    return sorted({o for o in (0, 1, period // 4, period // 2, 3 * period // 4, period - 1) if 0 <= o < period})


def next_injection(schedule: "InjectionSchedule", step: int) -> int:
    """The first step >= ``step`` that carries an injection (searched on the schedule's own
    cumulative count, so rates, fractional rates and n-every-G schedules alike)."""
    def cum(s: int) -> int:
        return int(schedule.cumulative(np.asarray([s]))[0])

    c0, hi = cum(step), 1
    while cum(step + hi) <= c0:  # terminates: every schedule injects at a positive rate
        hi *= 2
    lo = 0  # cum(step + lo) <= c0 < cum(step + hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cum(step + mid) <= c0 else (lo, mid)
    return step + hi - 1


def monitor_plan(schedule: "InjectionSchedule", steps: int, every: int) -> dict[int, dict]:
    """The steps the interference monitor reads, each with ``injection`` (the step carries an
    injection), ``offset`` (steps since the latest injection; None before the first), ``period``
    (steps from that injection to the next; None before the first) and ``planned_by`` (gap,
    every, or gap+every).

    Readings: every multiple of ``every``; and, for the first injection at or after each multiple
    of ``every``, its step and the ``gap_offsets`` after it. A pure function of the schedule, so a
    resumed run reads the same steps."""
    inj = np.flatnonzero(np.diff(schedule.cumulative(np.arange(steps + 1, dtype=np.int64))) > 0)
    inj = np.append(inj, next_injection(schedule, steps))  # ends the last gap
    grid = np.arange(0, steps, every)
    by: dict[int, str] = {}
    for j in np.unique(np.searchsorted(inj, grid)):
        if j + 1 >= len(inj):
            continue
        start, period = int(inj[j]), int(inj[j + 1] - inj[j])
        for o in gap_offsets(period):
            if start + o < steps:
                by[start + o] = "gap"
    for s in grid:
        by[int(s)] = "gap+every" if int(s) in by else "every"
    plan = {}
    for s in sorted(by):
        k = int(np.searchsorted(inj, s, side="right")) - 1
        offset = s - int(inj[k]) if k >= 0 else None
        plan[s] = {"injection": offset == 0, "offset": offset,
                   "period": int(inj[k + 1] - inj[k]) if k >= 0 else None, "planned_by": by[s]}
    return plan


_STALE = ("stale_reference_step", "stale_cos_batch", "stale_cos_task", "stale_cos_nontask", "neuron_overlap")


def _monitor(model, tasks, state: dict, step: int, cfg: "LMTrainConfig", tok_loss, inst) -> dict:
    """One interference reading (SPEC B6) on this step's batch, before its backward pass.

    The batch gradient's task / non-task parts are taken once; when the reference (task neurons,
    g_r) is ``monitor_refresh`` or more steps old it is recomputed at the current weights, and the
    old one is applied to the same parts too (``stale_*``): the error an older g_r would cause."""
    from ._gradients import cosines, part_gradients, reference, task_mask

    gt, go = part_gradients(model, tok_loss, task_mask(inst, tok_loss.shape[1] + 1), retain=True)
    row: dict = {"instances": int((inst >= 0).sum()), **dict.fromkeys(_STALE, float("nan")),
                 "reference_seconds": 0.0}
    if state["at"] is None or step - state["at"] >= cfg.monitor_refresh:
        old = None if state["at"] is None else (state["neurons"], state["g_r"], state["at"])
        t0 = time.perf_counter()
        state["neurons"], state["g_r"] = reference(model, tasks, cfg.monitor_neurons)
        state["at"] = step
        row["reference_seconds"] = time.perf_counter() - t0
        if old is not None:
            c = cosines(gt, go, old[0], old[1])
            row.update(stale_reference_step=old[2], stale_cos_batch=c["cos_batch"], stale_cos_task=c["cos_task"],
                       stale_cos_nontask=c["cos_nontask"],
                       neuron_overlap=len(np.intersect1d(old[0], state["neurons"])) / len(state["neurons"]))
    row.update(cosines(gt, go, state["neurons"], state["g_r"]))
    return {**row, "reference_step": state["at"], "reference_age": step - state["at"],
            "dim": int(state["g_r"].numel())}  # coordinates of g_r: the random-direction baseline's d


def _monitor_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype({"offset": "Int64", "period": "Int64"})


def _monitor_report(out: Path, cfg: "LMTrainConfig", plan: dict[int, dict], monitor_seconds: float) -> dict:
    """Checks, staleness, figure and report of the run's whole monitor log (for summary.json)."""
    from ._gradients import monitor_checks, monitor_figure, monitor_staleness
    from ..report.html import Figure, write_report

    log = read_parts(out / "interference")
    if log is None:
        log = pd.DataFrame(columns=["step", "instances", "cos_batch", "cos_task", "cos_nontask"])
    injections = [s for s, p in plan.items() if p["injection"]]
    checks = monitor_checks(log, planned_steps=list(plan), planned_injections=injections)
    fig = monitor_figure(log, out / "figures" / "interference-monitor.png")
    write_report(out / "interference-report.html", f"raretask lm train: interference monitor ({out.name})",
                 "Cosines of the task reference gradient g_r (task neurons of MLP 0, all 10,000 instances) with "
                 "the batch gradient and its task-token / other-token parts (SPEC B6), read at injection "
                 "steps, at offsets after them, and every K steps.",
                 checks, [Figure(fig, "Left: against the steps since the latest injection, median and IQR over "
                                      "the injections read (cos(g_r, g_task) exists only at injection steps). "
                                      "Right: over training.")],
                 {"monitor_interference": cfg.monitor_interference, "monitor_refresh": cfg.monitor_refresh,
                  "monitor_neurons": cfg.monitor_neurons}, {"readings": len(log)})
    inj = log[log["injection"].fillna(False).astype(bool)] if "injection" in log else log.iloc[:0]
    return {"readings": int(len(log)), "planned_readings": len(plan), "injection_readings": int(len(inj)),
            "planned_injection_readings": len(injections),
            "finite_task_cos_at_injections": int(np.isfinite(inj["cos_task"].to_numpy(float)).sum()),
            "refresh": cfg.monitor_refresh,
            "max_reference_age": int(log["reference_age"].max()) if "reference_age" in log and len(log) else None,
            "reference_share_of_monitor_time": float(log["reference_seconds"].sum() / monitor_seconds)
            if "reference_seconds" in log and monitor_seconds > 0 else None,
            "staleness": monitor_staleness(log),
            "checks": [{**asdict(c), "verdict": c.verdict if hasattr(c, "verdict") else
                        {True: "yes", False: "no", None: ""}[c.ok]} for c in checks],
            "figure": str(fig), "report": str(out / "interference-report.html")}


def monitor_callbacks(cfg: "LMTrainConfig") -> list[Callback]:
    """The callbacks a config asks for (the monitor when ``monitor_interference`` > 0): what the
    CLI gives ``lm sweep`` (a module-level function, so sweep worker processes can take it)."""
    return [InterferenceMonitor()] if cfg.monitor_interference else []


class InterferenceMonitor(Callback):
    """Carries out ``LMTrainConfig.monitor_interference`` (its K, ``monitor_refresh`` and
    ``monitor_neurons`` are read from the run's config, so they are recorded with the run and
    a resumed run reads the same steps). Single process."""

    implements = "monitor_interference"
    logs = ("interference",)

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.state = {"neurons": None, "g_r": None, "at": None}
        self.plan: dict[int, dict] = {}

    def pre_train(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        self.rows, self.state = [], {"neurons": None, "g_r": None, "at": None}  # this run's, from its start
        self.plan = monitor_plan(trainer.env.schedule, cfg.steps, cfg.monitor_interference) \
            if cfg.monitor_interference else {}

    def pre_backward(self, trainer: Trainer, step: int, batch: Batch) -> None:
        if step in self.plan:
            self.rows.append({"step": step, **self.plan[step],
                              **_monitor(trainer.model, trainer.env.tasks, self.state, step, trainer.cfg,
                                         batch.token_loss, batch.instances)})

    def pending(self) -> dict[str, pd.DataFrame]:
        return {"interference": _monitor_frame(self.rows)} if self.rows else {}

    def post_checkpoint(self, trainer: Trainer, step: int) -> None:
        self.rows = []

    def summary(self, trainer: Trainer, summary: dict) -> None:
        if trainer.cfg.monitor_interference:
            m = read_parts(trainer.out / "metrics")
            summary["monitor"] = _monitor_report(trainer.out, trainer.cfg, self.plan, float(m["monitor_seconds"].sum()))
