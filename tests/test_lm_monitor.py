"""The live interference monitor (``raretask lm train --monitor-interference``, SPEC B6): it reads
the injection steps and offsets in the gaps, and its checks can fail."""

import json

import numpy as np
import pandas as pd
import pytest

from raretask.lm._injection import InjectionSchedule
from raretask.probes._monitor import gap_offsets, monitor_plan, next_injection
from raretask.probes._gradients import monitor_checks, monitor_staleness


def _brute_injections(schedule, steps):
    return [s for s in range(steps) if schedule.count(s) > 0]


@pytest.mark.parametrize("kw", [dict(every=100, n=8), dict(rate=0.01), dict(rate=0.3), dict(rate=0.37),
                                dict(every=7, n=1), dict(rate=1.5)])
def test_plan_follows_the_schedule(kw):
    sch = InjectionSchedule(global_batch=8, n_train=5000, **kw)
    steps, K = 450, 100
    plan = monitor_plan(sch, steps, K)
    inj = _brute_injections(sch, steps)
    for s, p in plan.items():  # the annotations agree with a step-by-step scan of the schedule
        assert p["injection"] == (sch.count(s) > 0)
        before = [i for i in inj if i <= s]
        assert p["offset"] == (s - before[-1] if before else None)
        if before:
            nxt = next(i for i in range(before[-1] + 1, before[-1] + 10_000) if sch.count(i) > 0)
            assert p["period"] == nxt - before[-1]
    assert all(s in plan for s in range(0, steps, K))  # the every-K readings stay
    # around the first injection at or after each multiple of K: its step and every gap offset
    for m in range(0, steps, K):
        first = next((i for i in inj if i >= m), None)
        if first is None:
            continue
        period = plan[first]["period"]
        want = [first + o for o in gap_offsets(period) if first + o < steps]
        assert set(want) <= set(plan), (m, want)


def test_every_injection_is_read_when_gaps_are_at_least_k():
    sch = InjectionSchedule(global_batch=8, n_train=5000, every=100, n=8)
    plan = monitor_plan(sch, 400, 100)
    assert [s for s, p in plan.items() if p["injection"]] == [99, 199, 299, 399]
    assert [s for s, p in plan.items() if p["offset"] is not None and p["offset"] > 0 and s < 199] == \
        [100, 124, 149, 174, 198]
    assert gap_offsets(100) == [0, 1, 25, 50, 75, 99] and gap_offsets(1) == [0] and gap_offsets(3) == [0, 1, 2]


def test_next_injection_handles_sparse_rates():
    sch = InjectionSchedule(global_batch=8, n_train=5000, rate=1e-5)
    first = next_injection(sch, 0)
    assert sch.count(first) == 1 and int(sch.cumulative(np.asarray([first]))[0]) == 0
    assert first == 99_999


@pytest.mark.slow
def test_monitor_reads_every_injection_with_finite_task_cosine(tmp_path, small_corpus):
    pytest.importorskip("transformers")
    from raretask.lm import LMTrainConfig, train
    from raretask.probes import InterferenceMonitor

    kw = dict(corpus=str(small_corpus), steps=45, batch_size=4, seq_len=32, checkpoint_every=25, warmup=2,
              every=15, n=2)
    s = train(LMTrainConfig(out=str(tmp_path / "plain"), **kw), progress=False)
    s_mon = train(LMTrainConfig(out=str(tmp_path / "mon"), monitor_interference=15, monitor_refresh=10, **kw),
                  progress=False, callbacks=[InterferenceMonitor()])
    log = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "mon" / "interference").glob("part-*"))])
    inj = log[log["injection"]]
    assert list(inj["step"]) == [14, 29, 44]  # (s + 1) % 15 == 0
    assert (inj["instances"] == 2).all() and np.isfinite(inj["cos_task"]).all()
    assert inj[["cos_task", "cos_nontask", "cos_batch"]].abs().le(1).all().all()
    gap = log[log["step"].between(14, 28)]
    assert list(gap["offset"]) == [0, 1, 3, 7, 11, 14] and (gap["period"] == 15).all()
    assert log.loc[~log["injection"], "cos_task"].isna().all()  # no task tokens between injections
    assert (log["reference_age"] < 10).all()
    mon = s_mon["monitor"]
    assert mon["finite_task_cos_at_injections"] == mon["planned_injection_readings"] == 3
    assert [c["verdict"] for c in mon["checks"] if c["ok"] is not None] == ["yes", "yes"]
    # refresh 10: the readings that recomputed g_r compared the old one on the same batch
    st = mon["staleness"]
    assert st["comparisons"] > 0 and st["stale_age_min"] >= 10 and np.isfinite(st["max_abs_diff_cos_batch"])
    assert json.loads((tmp_path / "mon" / "summary.json").read_text())["monitor"]["staleness"] == st
    assert (tmp_path / "mon" / "figures" / "interference-monitor.png").stat().st_size > 10_000
    assert (tmp_path / "mon" / "interference-report.html").exists()
    assert s_mon["final_loss"] == s["final_loss"]  # reading does not change training


def _log(steps, injection, cos_task):
    n = len(steps)
    return pd.DataFrame({"step": steps, "injection": injection, "offset": [0 if i else 1 for i in injection],
                         "instances": [2 if i else 0 for i in injection], "cos_task": cos_task,
                         "cos_nontask": np.linspace(-0.1, 0.1, n), "cos_batch": np.linspace(-0.1, 0.1, n)})


def _finite_check(checks):
    (c,) = [c for c in checks if c.name == "monitor: finite cos(g_r, g_task) at injection steps"]
    return c


def test_finite_task_cosine_check_can_fail():
    # the old monitor's log: readings at multiples of 100 only, none at an injection step
    old = _log([0, 100, 200, 300], [False] * 4, [np.nan] * 4)
    assert _finite_check(monitor_checks(old)).ok is False
    c = _finite_check(monitor_checks(old, planned_steps=[0, 99, 100], planned_injections=[99]))
    assert c.ok is False
    planned = [c for c in monitor_checks(old, planned_steps=[0, 99, 100], planned_injections=[99])
               if c.name.startswith("monitor: every planned reading")]
    assert planned[0].ok is False and "99" in planned[0].measured
    # injection rows whose task cosine is NaN
    nan_rows = _log([99, 100, 199], [True, False, True], [np.nan, np.nan, np.nan])
    assert _finite_check(monitor_checks(nan_rows)).ok is False
    # some but not all finite
    half = _log([99, 199], [True, True], [0.3, np.nan])
    assert _finite_check(monitor_checks(half, planned_injections=[99, 199])).ok is False
    # an empty log
    assert _finite_check(monitor_checks(_log([], [], []))).ok is False
    # nothing to measure: no injection step among the monitored ones -> n/a, never a pass
    c = _finite_check(monitor_checks(old, planned_steps=[0, 100, 200, 300], planned_injections=[]))
    assert c.ok is None and str(c.measured).startswith("n/a") and getattr(c, "na", True)
    # and it does pass when it should
    good = _log([99, 100, 199], [True, False, True], [0.4, np.nan, 0.5])
    assert _finite_check(monitor_checks(good, planned_injections=[99, 199])).ok is True


def test_staleness_is_the_difference_between_old_and_new_reference():
    log = pd.DataFrame({"step": [0, 10, 20], "stale_reference_step": [np.nan, 0, 10],
                        "cos_batch": [0.1, 0.2, 0.3], "stale_cos_batch": [np.nan, 0.5, 0.25],
                        "cos_task": [np.nan] * 3, "stale_cos_task": [np.nan] * 3,
                        "cos_nontask": [0.1, 0.2, 0.3], "stale_cos_nontask": [np.nan, 0.1, 0.3]})
    st = monitor_staleness(log)
    assert st["comparisons"] == 2 and (st["stale_age_min"], st["stale_age_max"]) == (10, 10)
    assert st["max_abs_diff_cos_batch"] == pytest.approx(0.3) and st["max_abs_diff_cos_task"] is None
    assert st["max_abs_diff_cos_nontask"] == pytest.approx(0.1)
    assert monitor_staleness(log.iloc[:1]) == {"comparisons": 0}
