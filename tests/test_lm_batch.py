"""`raretask lm batch`: the batch a step saw, rebuilt from the run's records, equals the one
training consumed (digest of the tokens the loss read)."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers")

from raretask import ConfigError  # noqa: E402
from raretask.lm import LMTrainConfig, train  # noqa: E402
from raretask.lm._batch import batch_digest, step_batch  # noqa: E402
from raretask.lm.callbacks import Callback  # noqa: E402


class Seen(Callback):
    """The digest of the tokens the loss read at each step (one rank: the global batch)."""

    def __init__(self):
        self.digests = {}

    def pre_backward(self, trainer, step, batch):
        self.digests[step + 1] = batch_digest(batch.tokens.cpu().numpy())


@pytest.mark.slow
def test_the_batch_rebuilt_from_the_log_is_the_one_training_consumed(tmp_path, small_corpus):
    run = tmp_path / "r"
    seen = Seen()
    train(LMTrainConfig(corpus=str(small_corpus), out=str(run), steps=6, batch_size=8, seq_len=32, checkpoint_every=3,
                        warmup=1, rate=3.0), progress=False, callbacks=[seen])
    for step in range(1, 7):
        b = step_batch(run, step)
        assert b.sha256 == seen.digests[step] and b.seeded_order_agrees
        assert b.tokens.shape == (8, 32) and (b.instances >= 0).sum() == 3  # 3 instances per batch
        assert set(b.split[i] for i in np.flatnonzero(b.instances >= 0)) == {"train"}
    # the command: the same digest, every token in --json, a one-line error past the last step
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "batch", str(run), "--step", "4", "--json",
                        "--decode"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["sha256"] == seen.digests[4] and len(rec["rows"]) == 8 and rec["injected"] == 3
    assert batch_digest([row["tokens"] for row in rec["rows"]]) == seen.digests[4]
    assert all(isinstance(row["text"], str) for row in rec["rows"])
    text = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "batch", str(run), "--step", "4"],
                          capture_output=True, text=True).stdout
    assert seen.digests[4] in text and text.count("injected #") == 3 and "agrees" in text
    bad = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "batch", str(run), "--step", "7"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "raretask: error: invalid step: 7 (allowed: 1..6 (the steps of r whose data order is on disk))")
    with pytest.raises(ConfigError, match="step"):
        step_batch(run, 0)
    # a damaged log is said, not hidden: a window changed in the log disagrees with the seeded order
    import pandas as pd

    part = sorted((run / "data_order").glob("part-*.parquet"))[0]
    log = pd.read_parquet(part)
    log.loc[(log["step"] == 0) & (log["seq"] == 0), "window"] += 1
    log.to_parquet(part)
    assert not step_batch(run, 1).seeded_order_agrees
