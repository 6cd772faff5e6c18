"""Named LM sweeps: a grid of runs and one report, resumable."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from raretask import ConfigError  # noqa: E402
from raretask.lm._sweep import run_sweep, sweep_configs  # noqa: E402

KILLED = ["train.steps=120", "train.checkpoint_every=40", "train.seq_len=16", "train.batch_size=8", "train.warmup=5",
          "rates=[8,2,0.5]"]


@pytest.mark.slow(seconds=45)
def test_sweep_trains_every_cell_and_reports(tmp_path, small_corpus):
    """The grid's runs train as one pack (the default); kill -9 in the middle of it and the same
    command gives every run exactly (bit for bit) the metrics, data order, weights and optimiser
    state of the pack never interrupted; then one report; asked again, nothing is retrained."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from conftest import interruptible
    from test_lm_robustness import ckpt, parts, same_optimizer

    from raretask.lm import train_pack

    out = tmp_path / "sw"
    ref = tmp_path / "ref"  # the pack uninterrupted (in this process, without the sweep's evaluation)
    train_pack(sweep_configs("cpu-rates-quick", str(small_corpus), str(ref), KILLED), progress=False)
    runs = [f"tiny-cmp-rate{r}" for r in ("8", "2", "0.5")]
    cmd = [sys.executable, "-m", "raretask.cli", "lm", "sweep", "cpu-rates-quick", "--corpus", str(small_corpus),
           "--out", str(out), "--no-progress"] + [a for s in KILLED for a in ("--set", s)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    t0 = time.time()
    while not all((ckpt(out / n, 40) / "trainer_state.json").exists() for n in runs):
        assert p.poll() is None and time.time() - t0 < 120, "the pack never reached step 40"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -9 and not any((out / n / "summary.json").exists() for n in runs)
    res = run_sweep("cpu-rates-quick", str(small_corpus), str(out), KILLED, progress=False)
    for n in runs:
        summary = json.loads((out / n / "summary.json").read_text())
        assert summary["resumed_from"] >= 40 and summary["pack"]["runs"] == runs
        ma, mb = parts(ref / n), parts(out / n)
        assert list(mb["step"]) == list(range(1, 121))
        for col in ("loss", "task_loss", "lr", "grad_norm"):
            np.testing.assert_array_equal(mb[col], ma[col], err_msg=f"{n} {col}")
        pd.testing.assert_frame_equal(parts(out / n, "data_order"), parts(ref / n, "data_order"))
        a, b = ckpt(ref / n, 120), ckpt(out / n, 120)
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(), n
        same_optimizer(a, b)
    df = pd.read_parquet(out / "report" / "eval.parquet")
    assert sorted(df["schedule"].unique()) == ["rate 0.5/batch", "rate 2/batch", "rate 8/batch"]
    assert len(df) == 9 and res["checkpoints"] == 9  # 3 runs x 3 checkpoints
    again = run_sweep("cpu-rates-quick", str(small_corpus), str(out), KILLED, progress=False)
    pd.testing.assert_frame_equal(again["table"], res["table"])  # resumed: nothing retrained
    # more steps on the same sweep: the refusal names what lm sweep has (it suggested --extend, a
    # flag lm sweep does not have)
    more = [s if not s.startswith("train.steps=") else f"train.steps={int(s.split('=')[1]) * 2}" for s in KILLED]
    with pytest.raises(ConfigError, match=r"--set train.steps=\d+ to resume the sweep, or another --out") as e:
        run_sweep("cpu-rates-quick", str(small_corpus), str(out), more, progress=False)
    assert "lm train --out" in str(e.value) and "--extend to continue it" not in str(e.value)


def test_every_named_sweep_is_valid(small_corpus, tmp_path):
    for name in ("cpu-rates", "cpu-rates-quick", "paper-frequencies"):
        assert len(sweep_configs(name, str(small_corpus), str(tmp_path))) >= 2
    with pytest.raises(ConfigError, match="invalid sweep"):
        sweep_configs("nope", str(small_corpus), str(tmp_path))
    with pytest.raises(ConfigError, match="invalid rate"):
        sweep_configs("cpu-rates", str(small_corpus), str(tmp_path), ["rates=[0]"])
