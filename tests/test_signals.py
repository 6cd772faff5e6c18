"""SIGTERM and SIGHUP act as Ctrl-C (issue 19 point 4): with 2 workers, a study and an LM sweep
stop their workers, release their locks, print one line and exit 128 + the signal; no process
of the run is left; the same command then resumes (a study: to the result an uninterrupted run gives)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import interruptible

STUDY = ["study", "retention", "--workers", "2", "--set", 'mixture={"n_tasks": 8, "block_dim": 2, "beta": 1.5}',
         "--set", "train.steps=2500", "--set", "train.batch_size=64", "--set", "widths=[2,8]",
         "--set", "gaps=[1,4,16]", "--set", "rare_task=3", "--set", "record_points=5",
         "--set", "checkpoint_seconds=0.5"]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kids.setdefault(int(fields[1]), []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stop_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 240.0) -> set[int]:
    """Send ``sig`` once ``ready()`` holds and the run has 2 worker processes; returns the
    run's processes at that moment."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        procs = _children(proc.pid)
        if ready() and len(procs) >= 2:
            proc.send_signal(sig)
            return procs
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the run never reached the point to stop it")


def _run(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raretask.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_stopped(proc: subprocess.Popen, procs: set[int], sig: int, code: int) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    name = signal.Signals(sig).name
    assert err.strip().splitlines()[-1] == f"raretask: interrupted by {name}; re-run the same command to resume", err
    assert "Traceback" not in err
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in procs if _alive(p)], "a process of the run outlived it"


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_study_with_two_workers_stops_on_a_signal_and_resumes_identically(tmp_path, sig, code):
    stopped, straight = tmp_path / "a", tmp_path / "b"  # apart: each its own cell cache
    stopped.mkdir()
    straight.mkdir()
    proc = _run([*STUDY, "--out", "run"], stopped)
    cells = stopped / ".cells"
    procs = _stop_when(proc, lambda: len(list(cells.glob("*/checkpoint.npz"))) >= 1, sig)
    _check_stopped(proc, procs, sig, code)
    assert not (stopped / "run" / "summary.json").exists()  # it stopped before the end
    assert not list(stopped.rglob(".lock.json"))  # every lock released
    if sig != signal.SIGTERM:
        return  # the resume is the same for every signal: checked once
    again = _run([*STUDY, "--out", "run"], stopped)
    assert again.wait(timeout=600) == 0, again.communicate()
    ref = _run([*STUDY, "--out", "run"], straight)
    assert ref.wait(timeout=600) == 0, ref.communicate()
    for name in ("results.parquet", "trace.parquet"):
        assert _sha(stopped / "run" / name) == _sha(straight / "run" / name), name


def _group_left(pgid: int) -> list[str]:
    """The processes still in process group ``pgid`` (a sweep's workers, multiprocessing's
    resource tracker), by command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == pgid:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-120:])
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            pass
    return found


@pytest.mark.slow(seconds=55)
def test_an_lm_sweep_with_two_workers_stops_on_ctrl_c_and_on_sigterm_and_resumes(tmp_path, small_corpus):
    """One LM sweep with 2 workers, stopped twice and finished by the third command:
    Ctrl-C (SIGINT to the whole process group, as a terminal sends it) gives one line, exit 130
    and no process of the group left; SIGTERM to the parent alone stops its workers too (exit
    143); the last rerun completes every run exactly once per step, resumed from its checkpoints
    (bit-identity with an uninterrupted run: test_lm_robustness's kill -9 and Ctrl-C tests)."""
    pytest.importorskip("transformers")
    import pandas as pd

    out = tmp_path / "sw"
    args = [sys.executable, "-m", "raretask.cli", "lm", "sweep", "cpu-rates-quick", "--corpus", str(small_corpus),
            "--out", str(out), "--workers", "2", "--no-progress", "--set", "train.steps=120",
            "--set", "train.checkpoint_every=20", "--set", "train.seq_len=32", "--set", "train.batch_size=8",
            "--set", "train.warmup=10"]
    # 1. Ctrl-C: SIGINT to the group (its own session, so the test's pytest is not in it)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=interruptible)
    t0 = time.time()
    while not list(out.glob("*/checkpoints/step-000020")):
        assert p.poll() is None and time.time() - t0 < 240, "no worker reached step 20"
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["raretask: interrupted; re-run the same command to resume"]
    t0 = time.time()
    while _group_left(p.pid) and time.time() - t0 < 10:
        time.sleep(0.1)
    assert not _group_left(p.pid), _group_left(p.pid)
    assert not list(out.rglob(".lock.json"))
    # 2. SIGTERM to the parent only, once a run has passed step 40
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = _stop_when(proc, lambda: len(list(out.glob("*/checkpoints/step-000040"))) >= 1, signal.SIGTERM)
    _check_stopped(proc, procs, signal.SIGTERM, 143)
    assert not list(out.rglob(".lock.json"))
    runs = sorted(p for p in out.iterdir() if (p / "run_config.json").exists())
    assert len(runs) == 2 and not all((r / "summary.json").exists() for r in runs)  # stopped before the end
    # 3. the same command finishes
    r = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    assert all(s["steps"] == 120 for s in summaries)
    assert max(s["resumed_from"] for s in summaries) >= 40  # resumed from a checkpoint, not trained again
    for run in runs:
        m = pd.concat(pd.read_parquet(p) for p in sorted((run / "metrics").glob("part-*.parquet")))
        assert sorted(m["step"]) == list(range(1, 121)), run.name  # every step once (1-based, steps done): resumed, not repeated
