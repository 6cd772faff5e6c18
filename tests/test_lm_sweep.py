"""Named LM sweeps: a grid of runs and one report, resumable."""

import pandas as pd
import pytest

pytest.importorskip("transformers")

from raretask import ConfigError  # noqa: E402
from raretask.lm._sweep import run_sweep, sweep_configs  # noqa: E402

SMALL = ["train.steps=4", "train.checkpoint_every=2", "train.seq_len=32", "train.batch_size=8", "train.warmup=1"]


@pytest.mark.slow
def test_sweep_trains_every_cell_and_reports(tmp_path, small_corpus):
    res = run_sweep("cpu-rates-quick", str(small_corpus), str(tmp_path / "sw"), SMALL, progress=False)
    df = pd.read_parquet(tmp_path / "sw" / "report" / "eval.parquet")
    assert sorted(df["schedule"].unique()) == ["rate 0.5/batch", "rate 8/batch"]
    assert len(df) == 4 and res["checkpoints"] == 4  # 2 runs x 2 checkpoints
    again = run_sweep("cpu-rates-quick", str(small_corpus), str(tmp_path / "sw"), SMALL, progress=False)
    pd.testing.assert_frame_equal(again["table"], res["table"])  # resumed: nothing retrained
    # more steps on the same sweep: the refusal names what lm sweep has (it suggested --extend, a
    # flag lm sweep does not have)
    more = [s if not s.startswith("train.steps=") else f"train.steps={int(s.split('=')[1]) * 2}" for s in SMALL]
    with pytest.raises(ConfigError, match=r"--set train.steps=\d+ to resume the sweep, or another --out") as e:
        run_sweep("cpu-rates-quick", str(small_corpus), str(tmp_path / "sw"), more, progress=False)
    assert "lm train --out" in str(e.value) and "--extend to continue it" not in str(e.value)


def test_every_named_sweep_is_valid(small_corpus, tmp_path):
    for name in ("cpu-rates", "cpu-rates-quick", "paper-frequencies"):
        assert len(sweep_configs(name, str(small_corpus), str(tmp_path))) >= 2
    with pytest.raises(ConfigError, match="invalid sweep"):
        sweep_configs("nope", str(small_corpus), str(tmp_path))
    with pytest.raises(ConfigError, match="invalid rate"):
        sweep_configs("cpu-rates", str(small_corpus), str(tmp_path), ["rates=[0]"])
