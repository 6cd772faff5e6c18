"""Training: checkpoints, the data-order log, DDP equivalence (exact resume after kill -9 and
Ctrl-C: test_lm_robustness)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from raretask.lm import LMTrainConfig, train  # noqa: E402
from raretask.probes import InterferenceMonitor  # noqa: E402

ARGS = ["--preset", "tiny", "--task", "cmp", "--rate", "1.5", "--batch-size", "8", "--seq-len", "32",
        "--lr", "1e-3", "--warmup", "5", "--no-progress"]


def cli(*args):
    return [sys.executable, "-m", "raretask.cli", "lm", "train", *args]


def read(run, sub):
    return pd.concat([pd.read_parquet(p) for p in sorted((run / sub).glob("part-*.parquet"))], ignore_index=True)


def test_checkpoints_are_hf_loadable(tmp_path, small_corpus):
    from transformers import OlmoForCausalLM

    s = train(LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / "r"), steps=6, batch_size=4, seq_len=32,
                            checkpoint_every=3, warmup=2), progress=False)
    assert s["checkpoints"] == ["step-000003", "step-000006"] and s["injected_instances"] == 6
    # a share of wall time, recorded (how small it is depends on the machine's load: a claim for
    # `bench lm`, not for a unit test, which saw 0.13 on a busy CI run)
    assert 0 <= s["injection_share_of_step_time"] <= 1
    m = OlmoForCausalLM.from_pretrained(tmp_path / "r" / "checkpoints" / "step-000006")
    assert sum(p.numel() for p in m.parameters()) == s["params"]
    assert len((tmp_path / "r" / "tasks.jsonl").read_text().splitlines()) == 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_matches_single_process_and_returns_the_summary_on_every_rank(tmp_path, small_corpus):
    """One torchrun launch of 2 ranks calling train(): the losses and data order equal the
    single-process command's, and every rank (not only rank 0) gets the run's summary back."""
    common = ["--corpus", str(small_corpus), "--steps", "6", "--checkpoint-every", "6", *ARGS]
    subprocess.run(cli("--out", str(tmp_path / "one"), *common), check=True, capture_output=True)
    script = tmp_path / "ranks.py"
    script.write_text(
        "import json, os\n"
        "from raretask.lm import LMTrainConfig, train\n"
        f"s = train(LMTrainConfig(corpus={str(small_corpus)!r}, out={str(tmp_path / 'two')!r}, preset='tiny', "
        "task='cmp', rate=1.5, batch_size=8, seq_len=32, lr=1e-3, warmup=5, steps=6, checkpoint_every=6), "
        "progress=False)\n"
        f"open(os.path.join({str(tmp_path)!r}, 'rank-' + os.environ['RANK'] + '.json'), 'w').write(json.dumps(s))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(script)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = read(tmp_path / "one", "metrics"), read(tmp_path / "two", "metrics")
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["task_loss"], one["task_loss"], rtol=1e-4)
    pd.testing.assert_frame_equal(read(tmp_path / "two", "data_order"), read(tmp_path / "one", "data_order"))
    s0, s1 = (json.loads((tmp_path / f"rank-{i}.json").read_text()) for i in (0, 1))
    assert isinstance(s0, dict) and s0 == s1 and s0["world_size"] == 2
    assert s0 == json.loads((tmp_path / "two" / "summary.json").read_text())


@pytest.mark.parametrize("args, msg", [
    (["--corpus", "/nonexistent", "--out", "X"], "invalid corpus"),
    (["--rate", "0"], "invalid rate"),
    (["--rate", "-2"], "invalid rate"),
    (["--preset", "9B"], "invalid preset"),
    (["--seq-len", "3"], "invalid seq_len"),
])
def test_bad_input_is_one_line(tmp_path, small_corpus, args, msg):
    base = {"--corpus": str(small_corpus), "--out": str(tmp_path / "x")}
    for k in ("--corpus", "--out"):
        if k not in args:
            args = args + [k, base[k]]
    r = subprocess.run(cli(*args), capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and msg in r.stderr, r.stderr


@pytest.mark.slow
def test_interference_monitor_logs_without_changing_training(tmp_path, small_corpus):
    kw = dict(corpus=str(small_corpus), steps=30, batch_size=4, seq_len=32, checkpoint_every=15, warmup=2, rate=1.0)
    train(LMTrainConfig(out=str(tmp_path / "plain"), **kw), progress=False)
    s = train(LMTrainConfig(out=str(tmp_path / "mon"), monitor_interference=10, monitor_refresh=20, **kw),
              progress=False, callbacks=[InterferenceMonitor()])
    mon = read(tmp_path / "mon", "interference")
    assert list(mon["step"]) == [0, 10, 20] and list(mon["reference_step"]) == [0, 0, 20]
    assert mon[["cos_batch", "cos_task", "cos_nontask"]].abs().le(1).all().all()
    np.testing.assert_array_equal(read(tmp_path / "mon", "metrics")["loss"], read(tmp_path / "plain", "metrics")["loss"])
    assert 0 < s["monitor_share_of_step_time"] < 1


@pytest.mark.slow
def test_a_warm_up_covering_the_whole_run_is_one_warning_line(tmp_path, small_corpus):
    """100-step run, default 100-step warm-up: trains, and says once that lr is never reached;
    a warm-up shorter than the run says nothing."""
    r = subprocess.run(cli("--out", str(tmp_path / "w"), "--corpus", str(small_corpus), "--steps", "6",
                           *[a if a != "5" else "6" for a in ARGS]), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "warm-up" in ln]
    assert lines == [ln for ln in lines if ln.startswith("raretask: warning: the warm-up (6 steps) covers the whole run "
                                                        "(6 steps)")] and len(lines) == 1, r.stderr
    r = subprocess.run(cli("--out", str(tmp_path / "ok"), "--corpus", str(small_corpus), "--steps", "6", *ARGS),
                       capture_output=True, text=True)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
