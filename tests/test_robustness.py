"""A new user's worst cases: bad values, corrupt or missing files, concurrent writers, a full
disk, kills and Ctrl-C, for `raretask plan` and `raretask study` (the LM commands are in
test_lm_robustness.py).

Every case asserts the exit code, one line ``raretask: error: ...`` and no traceback, and that
the data present before the call is unchanged (digest before and after) or recomputed
identically.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import cell_steps, interruptible

from raretask import cli
from raretask.runfolder import LOCK, LOCK_INFO

TINY = ["--steps", "300", "--widths", "2", "4", "--seeds", "0", "--workers", "1",
        "--set", 'mixture={"n_tasks": 6, "block_dim": 2, "beta": 1.5}', "--set", "train.batch_size=64",
        "--set", "train.warmup=20", "--set", "record_points=5", "--set", "checkpoint_seconds=0"]
PHASE = ["study", "phase", "--preset", "quick"] + TINY
MODULE = [sys.executable, "-m", "raretask.cli"]


# ------------------------------------------------------------------ helpers
def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (the lock's own files aside)."""
    out = {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in (LOCK, LOCK_INFO):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error_line(err: str) -> str:
    """The single error line of a failed call (asserting there is exactly one, no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("raretask: error:")]
    assert len(lines) == 1, err
    return lines[0]


def run(capsys, args: list[str]) -> tuple[int, str]:
    """The CLI in this process (its error boundary is what is tested)."""
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    return rc, capsys.readouterr().err


def refused(capsys, args, code: int, match: str, keep: Path | None = None) -> str:
    before = digest(keep) if keep is not None and keep.exists() else None
    rc, err = run(capsys, args)
    assert rc == code, err
    line = error_line(err)
    assert match in line, line
    if keep is not None:
        assert (digest(keep) if keep.exists() else None) == before
    return line


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished tiny phase study (its run folder and the cells beside it) to copy from."""
    root = tmp_path_factory.mktemp("done")
    assert cli.main(PHASE + ["--out", str(root / "run")]) == 0
    return root


@pytest.fixture
def run_copy(done_run, tmp_path):
    shutil.copytree(done_run, tmp_path / "w")
    return tmp_path / "w"


def results(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "results.parquet")


# ------------------------------------------------------------------ bad values: plan
@pytest.mark.parametrize("args, match", [
    (["--width", "0"], "invalid width"),
    (["--width", "100000"], "invalid width"),
    (["--beta", "nan"], "invalid beta"),
    (["--beta", "-1"], "invalid beta"),
    (["--tasks", "0"], "invalid n_tasks"),
    (["--tasks", "100000000", "--block-dim", "100"], "K * d <="),
    (["--block-dim", "0"], "invalid block_dim"),
    (["--tasks", "2", "--prior", "0.5", "0.6"], "invalid prior"),
    (["--tasks", "2", "--prior", "-0.5", "1.5"], "invalid prior"),
    (["--alpha", "inf"], "invalid alpha"),
    (["--frequent-mass", "2"], "invalid"),
    (["--width", "16", "--target-task", "0"], "invalid"),
    (["--width", "16", "--target-task", "33"], "invalid"),
    (["--tradeoff"], "invalid tradeoff"),
    (["--width", "abc"], "invalid int value"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_plan_bad_values(capsys, args, match):
    refused(capsys, ["plan"] + args, 2, match)


def test_plan_frequencies_files(capsys, tmp_path):
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "noheader.csv").write_text("1,0.5\n2,0.5\n")
    (tmp_path / "bad.csv").write_text("task,frequency\n1,abc\n")
    (tmp_path / "gap.csv").write_text("task,frequency\n1,0.5\n3,0.5\n")
    (tmp_path / "dir").mkdir()
    for name, match in (("missing.csv", "does not exist"), ("bin.csv", "not a text CSV"),
                        ("noheader.csv", "needs a header"), ("bad.csv", "unreadable value"),
                        ("gap.csv", "invalid frequencies"), ("dir", "is a directory")):
        refused(capsys, ["plan", "--frequencies", tmp_path / name], 2, match, keep=tmp_path)


def test_plan_plot_into_a_folder_is_refused_and_leaves_no_temporary(capsys, tmp_path):
    (tmp_path / "figs").mkdir()
    refused(capsys, ["plan", "--width", "16", "--target-task", "32", "--tradeoff", "--plot", tmp_path / "figs"], 2,
            "is a directory", keep=tmp_path)
    assert list(tmp_path.rglob("*tmp*")) == []
    rc, _ = run(capsys, ["plan", "--width", "16", "--target-task", "32", "--tradeoff", "--plot", tmp_path / "f.png"])
    assert rc == 0 and (tmp_path / "f.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "figs"]


@pytest.mark.slow
def test_plan_plot_writes_the_format_its_suffix_names_and_says_where(capsys, tmp_path):
    """Before: --plot f.pdf wrote PNG bytes into a .pdf, and nothing said where the plot went."""
    plan = ["plan", "--width", "16", "--target-task", "32", "--tradeoff", "--plot"]
    for name, magic in (("f.pdf", b"%PDF"), ("f.svg", b"<?xml"), ("f.png", b"\x89PNG")):
        capsys.readouterr()
        assert cli.main([*plan, str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
        assert f"saved the frontier plot to {tmp_path / name}" in capsys.readouterr().err
    refused(capsys, [*plan, tmp_path / "f.jpg"], 2, "f.jpg: .jpg (allowed: a .png, .pdf or .svg path)", keep=tmp_path)
    assert not (tmp_path / "f.jpg").exists()


@pytest.mark.parametrize("value, code", [("0", 0), ("false", 0), ("FALSE", 0), ("no", 0), ("1", 0), ("true", 0),
                                         ("maybe", 2), ("2", 2)])
def test_raretask_debug_takes_0_1_true_false(capsys, monkeypatch, value, code):
    monkeypatch.setenv("RARETASK_DEBUG", value)
    assert cli.main(["plan", "--width", "16", "--json"]) == code
    err = capsys.readouterr().err
    assert ("invalid RARETASK_DEBUG" in err) == (code == 2)


def test_plan_tied_utilities_count_in_critical_widths(capsys):
    rc = cli.main(["plan", "--json", "--tasks", "40", "--block-dim", "4", "--beta", "0.9", "--alpha", "1.8"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["tasks"][7]["critical_width"] == 10


# ------------------------------------------------------------------ bad values: study (nothing written)
@pytest.mark.parametrize("extra, match", [
    (["--set", "train.batch_size=-5"], "invalid train.batch_size"),
    (["--set", "train.lr=nan"], "invalid train.lr"),
    (["--set", "mixture.n_tasks=1e9"], "invalid mixture.n_tasks"),
    (["--set", "mixture.n_tasks=1000000000"], "K * d <="),
    (["--set", "nonsense"], "invalid set"),
    (["--set", "bogus=1"], "invalid set"),
    (["--widths", "2", "2"], "repeats [2]"),
    (["--seeds", "0", "0"], "repeats [0]"),
    (["--widths", "99999"], "invalid widths"),
    (["--workers", "0"], "invalid workers"),
    (["--executor", "mpi"], "invalid choice"),
    (["--preset", "nope"], "invalid preset"),
])
def test_study_bad_values_write_nothing(capsys, tmp_path, extra, match):
    refused(capsys, PHASE + extra + ["--out", tmp_path / "r"], 2, match)
    assert not (tmp_path / "r").exists() and not (tmp_path / ".cells").exists()


@pytest.mark.parametrize("extra, match", [
    (["--set", "gaps=[512]", "--set", "train.steps=8000"], "0.961 x its prior"),
    (["--set", "rare_task=99"], "invalid rare_task"),
    (["--set", "gaps=[1, 1000]", "--set", "train.steps=1500"], "0.672 x its prior"),
])
def test_retention_schedules_that_cannot_match_the_frequency_are_refused(capsys, tmp_path, extra, match):
    args = ["study", "retention", "--preset", "quick", "--workers", "1", "--out", tmp_path / "r"] + extra
    refused(capsys, args, 2, match)
    assert not (tmp_path / "r").exists()


def test_one_neuron_bad_angle(capsys, tmp_path):
    refused(capsys, ["study", "one-neuron", "--set", "theta0=2", "--out", tmp_path / "o"], 2, "invalid theta0")


def test_unreachable_ray_cluster_fails_fast(capsys, tmp_path):
    t0 = time.time()
    refused(capsys, PHASE + ["--executor", "ray", "--ray-address", "127.0.0.1:1", "--out", tmp_path / "r"], 1,
            "cannot reach the Ray cluster")
    assert time.time() - t0 < 30 and not (tmp_path / "r").exists()
    refused(capsys, PHASE + ["--executor", "ray", "--ray-address", "nonsense", "--out", tmp_path / "r"], 2,
            "invalid ray_address")


def test_a_ray_address_without_the_ray_executor_is_refused(capsys, tmp_path):
    """Before: --executor local --ray-address auto ran locally and ignored the address."""
    line = refused(capsys, PHASE + ["--executor", "local", "--ray-address", "auto", "--out", tmp_path / "r"], 2,
                   "invalid ray_address")
    assert "--executor local" in line and "--ray-address auto" in line and not (tmp_path / "r").exists()


# ------------------------------------------------------------------ folders that are not runs
def test_restart_never_deletes_a_folder_that_is_not_a_run(capsys, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    refused(capsys, PHASE + ["--restart", "--out", notes], 1, "not a raretask run folder", keep=notes)
    refused(capsys, PHASE + ["--out", notes], 1, "not a raretask run folder", keep=notes)


def test_restart_with_out_dot_in_a_non_run_folder(capsys, tmp_path, monkeypatch):
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    refused(capsys, PHASE + ["--restart", "--out", "."], 1, "not a raretask run folder", keep=tmp_path)


def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("data")
    refused(capsys, PHASE + ["--out", f], 1, "is a file", keep=f)


def test_out_holds_another_kind_of_run(capsys, run_copy):
    cell = next((run_copy / ".cells").iterdir())
    refused(capsys, PHASE + ["--out", cell], 1, "holds a raretask cell run", keep=cell)


def test_restart_deletes_only_raretask_files(capsys, run_copy):
    out = run_copy / "run"
    (out / "my-notes.txt").write_text("mine")
    (out / "figures" / "mine.png").write_bytes(b"x")  # inside an owned folder: kept (it went before)
    theirs = sorted(p.name for p in (out / "figures").iterdir() if p.name != "mine.png")
    before = results(out)
    rc, err = run(capsys, PHASE + ["--restart", "--out", out])
    assert rc == 0 and (out / "my-notes.txt").read_text() == "mine"
    assert (out / "figures" / "mine.png").read_bytes() == b"x"
    assert "raretask: note: --restart kept 1 file(s)" in err and "figures/mine.png" in err
    assert sorted(p.name for p in (out / "figures").iterdir() if p.name != "mine.png") == theirs  # rewritten
    pd.testing.assert_frame_equal(results(out), before)


def test_changed_config_on_an_existing_run_is_refused(capsys, run_copy):
    out = run_copy / "run"
    refused(capsys, [a if a != "300" else "400" for a in PHASE] + ["--out", out], 2, "different configuration",
            keep=run_copy)


# ------------------------------------------------------------------ corrupt or missing files
@pytest.mark.parametrize("name, content, match", [
    ("config.json", b"{not json", "config.json is corrupt"),
    ("config.json", b"\x00\xff" * 10, "config.json is corrupt"),
    ("timing.json", b"[{", "timing.json is corrupt"),
    (".raretask-run.json", b"garbage", "run marker is corrupt"),
])
def test_corrupt_run_files_are_one_line(capsys, run_copy, name, content, match):
    out = run_copy / "run"
    (out / name).write_bytes(content)
    refused(capsys, PHASE + ["--out", out], 1, match, keep=run_copy)


def cell_dir(root: Path) -> Path:
    return next((root / ".cells").iterdir())


@pytest.mark.parametrize("damage", ["truncate-checkpoint", "garbage-checkpoint", "both-checkpoints",
                                    "delete-part", "truncate-part", "flip-part", "delete-trace-part",
                                    "stray-temporaries"])
def test_damaged_cells_are_repaired_to_identical_results(capsys, run_copy, damage):
    out, cell = run_copy / "run", cell_dir(run_copy)
    before = results(out)
    part = sorted((cell / "metrics").glob("part-*.parquet"))[0]
    if damage == "truncate-checkpoint":
        with open(cell / "checkpoint.npz", "r+b") as f:
            f.truncate(100)
    elif damage == "garbage-checkpoint":
        (cell / "checkpoint.npz").write_bytes(os.urandom(5000))
    elif damage == "both-checkpoints":
        (cell / "checkpoint.npz").write_bytes(b"")
        (cell / "checkpoint.prev.npz").write_bytes(b"PK")
    elif damage == "delete-part":
        part.unlink()
    elif damage == "truncate-part":
        part.write_bytes(part.read_bytes()[:200])
    elif damage == "flip-part":
        b = bytearray(part.read_bytes())
        b[len(b) // 2] ^= 0xFF
        part.write_bytes(bytes(b))
    elif damage == "delete-trace-part":  # phase cells trace nothing: a stray part must not matter
        (cell / "trace" / "part-000009.parquet").write_bytes(b"junk")
    else:  # what a kill during each kind of write leaves behind
        (cell / "metrics" / ".part-000001.parquet.123.tmp").write_bytes(b"half")
        (cell / ".checkpoint.npz.123.tmp").write_bytes(b"half")
        (out / ".summary.json.123.tmp").write_bytes(b"half")
    rc, err = run(capsys, PHASE + ["--out", out])
    assert rc == 0, err
    pd.testing.assert_frame_equal(results(out), before)
    summary = json.loads((out / "summary.json").read_text())
    if damage in ("truncate-checkpoint", "garbage-checkpoint", "both-checkpoints", "delete-part", "truncate-part",
                  "flip-part"):
        assert summary["repairs"], damage
        assert "repaired cell" in err
    assert not list((cell / "metrics").glob("*.tmp")) and not list((cell / "trace").glob("part-000009*"))


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    from raretask.mixture import MixtureSpec
    from raretask.sim import TrainConfig, run_engine

    spec, cfg = MixtureSpec(n_tasks=4, block_dim=2), TrainConfig(batch_size=32, warmup=10, steps=400)
    full = run_engine(spec, cfg, [2], tmp_path / "a", checkpoint_seconds=0, chunk=64)
    run_engine(spec, cfg, [2], tmp_path / "b", checkpoint_seconds=0, chunk=64)
    (tmp_path / "b" / "checkpoint.npz").write_bytes(b"PK\x03\x04")
    again = run_engine(spec, cfg, [2], tmp_path / "b", checkpoint_seconds=0, chunk=64)
    assert again["repairs"] == ["checkpoint.npz unreadable (BadZipFile)"]
    assert again["resumed_from"] > 0  # from checkpoint.prev.npz, not step 0
    pd.testing.assert_frame_equal(again["metrics"], full["metrics"])


# ------------------------------------------------------------------ full disk, read-only, unexpected errors
def test_full_disk_is_one_line_and_keeps_the_run(capsys, run_copy, monkeypatch):
    import raretask.runfolder as rf

    out = run_copy / "run"
    (out / "summary.json").unlink()  # so the rerun has something to write
    before = digest(run_copy)
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rf.os, "fsync", full)
    line = refused(capsys, PHASE + ["--out", out], 1, "no space left on device")
    assert str(out) in line
    monkeypatch.setattr(rf.os, "fsync", real)
    assert digest(run_copy) == before and not list(run_copy.rglob("*.tmp"))


@pytest.mark.slow
def test_full_disk_on_a_real_small_filesystem(capsys, tmp_path):
    """A 1 MiB tmpfs where the test may mount one (root, mount allowed); skipped elsewhere."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC case covers this")
    try:
        rc, err = run(capsys, ["study", "phase", "--preset", "quick", "--workers", "1", "--steps", "200",
                               "--out", mnt / "run"])
        assert rc == 1 and "no space left on device" in error_line(err)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_read_only_output_is_one_line(capsys, run_copy, monkeypatch):
    import raretask.runfolder as rf

    out = run_copy / "run"
    before = digest(run_copy)

    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(out / "x"))

    monkeypatch.setattr(rf, "open", ro, raising=False)
    refused(capsys, PHASE + ["--out", out], 1, "read-only file system")
    monkeypatch.undo()
    assert digest(run_copy) == before


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    import raretask.studies._main as m

    def boom(*a, **k):
        raise AttributeError("something deep\nwent wrong")

    monkeypatch.setattr(m, "run_cells", boom)
    line = refused(capsys, PHASE + ["--out", tmp_path / "r"], 1, "AttributeError: something deep went wrong")
    assert "--debug" in line
    rc = cli.main(PHASE + ["--out", str(tmp_path / "r"), "--debug"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("raretask: error:")


# ------------------------------------------------------------------ concurrent writers, kills, Ctrl-C
def slow_phase(out: Path) -> list[str]:
    return MODULE + [a if a != "300" else "20000" for a in PHASE] + ["--out", str(out)]


def wait_for(path: Path, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path):
    out = tmp_path / "r"
    first = subprocess.Popen(slow_phase(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(out / LOCK_INFO)
    second = subprocess.run(slow_phase(out), capture_output=True, text=True)
    assert second.returncode == 1
    assert f"pid {first.pid}" in error_line(second.stderr) and "in use" in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    final = results(out)
    final = final[final["step"] == 20000]
    assert len(final) == 2 * 6  # every width and task at the last step, written once
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_two_studies_sharing_a_cell_run_it_once_and_agree(tmp_path):
    a = subprocess.Popen(slow_phase(tmp_path / "a"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "a" / LOCK_INFO)
    b = subprocess.run(slow_phase(tmp_path / "b"), capture_output=True, text=True)  # waits for the cell, resumes
    assert b.returncode == 0, b.stderr
    assert a.wait(timeout=300) == 0
    pd.testing.assert_frame_equal(results(tmp_path / "a"), results(tmp_path / "b"))
    assert len(list((tmp_path / ".cells").iterdir())) == 1


@pytest.mark.slow
def test_repeated_ctrl_c_then_rerun_give_identical_results(tmp_path):
    """Ctrl-C up to three times, each once a cell has checkpointed further than before (mid-cell):
    never a crash (exit 139) or a traceback, always exit 130 and the line that says how to resume;
    the rerun's results equal an uninterrupted run's, cell column included. At least one Ctrl-C
    must land before the end (a sleep-then-signal version of this test interrupted nothing: the
    compiled study ended first). kill -9 mid-cell: test_studies' interrupted-study test."""
    phase = [a if a != "record_points=5" else "record_points=40" for a in slow_phase(tmp_path / "ref")]
    subprocess.run(phase, check=True, capture_output=True)
    out = tmp_path / "x" / "r"
    args = phase[:-1] + [str(out)]
    interrupted, last = 0, 0
    for _ in range(3):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=interruptible)
        t0 = time.time()
        while p.poll() is None and max(cell_steps(out.parent), default=0) <= last:
            assert time.time() - t0 < 120, "no cell checkpointed"
            time.sleep(0.01)
        last = max(cell_steps(out.parent), default=0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        if p.returncode == 0:  # finished before the signal
            break
        assert p.returncode == 130, err
        assert "Traceback" not in err and "re-run the same command to resume" in err
        interrupted += 1
    assert interrupted, "the study finished before the first Ctrl-C: nothing was interrupted"
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(results(out), results(tmp_path / "ref"))
