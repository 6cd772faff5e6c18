"""Packs (issue 31): runs of one shape trained together in one process give each run's own
training, resume bit for bit after a kill, and refuse what they cannot do with one line."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from test_lm_robustness import ckpt, parts  # noqa: E402
from test_robustness import digest, refused  # noqa: E402

from raretask import ConfigError  # noqa: E402
from raretask.lm import LMTrainConfig, train, train_pack  # noqa: E402
from raretask.lm import _packed  # noqa: E402

STEPS = 200


def cfgs(corpus, root: Path, **kw) -> list:
    """Three runs of one shape that differ in everything a run owns: rate, seed, clipping (0.05:
    clipped at most steps), learning rate, warm-up, step count, checkpoint interval."""
    base = dict(corpus=str(corpus), preset="w24", batch_size=4, seq_len=16, **kw)
    return [LMTrainConfig(out=str(root / "a"), rate=1.5, seed=0, steps=STEPS, checkpoint_every=50, warmup=10,
                          lr=1e-3, **base),
            LMTrainConfig(out=str(root / "b"), rate=0.5, seed=1, steps=STEPS, checkpoint_every=40, warmup=20,
                          lr=2e-3, clip=0.05, **base),
            LMTrainConfig(out=str(root / "c"), every=4, n=2, seed=2, steps=STEPS - 60, checkpoint_every=70,
                          warmup=5, lr=5e-4, **base)]


@pytest.fixture(scope="module")
def pack_and_alone(tmp_path_factory, small_corpus):
    root = tmp_path_factory.mktemp("packs")
    for c in cfgs(small_corpus, root / "alone"):
        train(c, progress=False)
    summaries = train_pack(cfgs(small_corpus, root / "pack"), progress=False)
    return root, summaries


@pytest.mark.slow(seconds=30)
def test_a_run_in_a_pack_trains_as_it_does_alone(pack_and_alone):
    """Step by step for 200 steps: the same losses (float32 rounding: other kernels sum in another
    order), gradient norms (clipping is per run: run b is clipped at nearly every step and the
    others are not), learning rates and data; the checkpoints are ordinary HF folders of the
    same weights, and a run that ends earlier leaves the pack without disturbing the others."""
    root, summaries = pack_and_alone
    for name, s in zip("abc", summaries):
        alone, packed = root / "alone" / name, root / "pack" / name
        ma, mp = parts(alone), parts(packed)
        assert list(mp["step"]) == list(ma["step"]) == list(range(1, len(ma) + 1))
        assert len(ma) == (STEPS if name != "c" else STEPS - 60)
        for col, rtol in (("loss", 1e-5), ("task_loss", 1e-5), ("grad_norm", 1e-4), ("lr", 1e-12)):
            np.testing.assert_allclose(mp[col], ma[col], rtol=rtol, err_msg=f"{name} {col}")
        pd.testing.assert_frame_equal(parts(packed, "data_order"), parts(alone, "data_order"))
        assert sorted(p.name for p in (packed / "checkpoints").glob("step-*")) == \
            sorted(p.name for p in (alone / "checkpoints").glob("step-*"))
        assert s["pack"] == {"size": 3, "runs": ["a", "b", "c"]} and s["steps"] == len(ma)
    clipped = parts(root / "alone" / "b")["grad_norm"] > 0.05
    assert clipped.mean() > 0.5 and (parts(root / "alone" / "a")["grad_norm"] < 1.0).mean() > 0.5

    from safetensors.torch import load_file

    from raretask.lm._runs import load_model

    last = ckpt(root / "pack" / "b", STEPS)
    model = load_model(last)  # loadable alone, as lm eval and lm probe load it
    assert type(model).__name__ == "OlmoForCausalLM"
    wa, wp = load_file(ckpt(root / "alone" / "b", STEPS) / "model.safetensors"), load_file(last / "model.safetensors")
    assert wa.keys() == wp.keys()
    for k in wa:
        np.testing.assert_allclose(wp[k].numpy(), wa[k].numpy(), atol=1e-4 * float(wa[k].abs().max()), err_msg=k)


@pytest.mark.slow(seconds=15)
def test_lm_train_resumes_and_extends_a_packed_run(pack_and_alone, small_corpus, tmp_path):
    """A packed run is an lm train run: asked again it is complete; --extend continues it alone
    from the pack's checkpoint (its AdamW state included) and trains what the run trained alone
    and extended would."""
    import shutil

    root, _ = pack_and_alone
    for src in ("alone", "pack"):
        shutil.copytree(root / src / "a", tmp_path / src)
    again = train(LMTrainConfig(**{**cfgs(small_corpus, tmp_path)[0].to_dict(), "out": str(tmp_path / "pack")}),
                  progress=False)
    assert again.get("already_complete")
    for src in ("alone", "pack"):
        c = cfgs(small_corpus, tmp_path)[0]
        train(LMTrainConfig(**{**c.to_dict(), "out": str(tmp_path / src), "steps": STEPS + 30}), progress=False,
              extend=True)
    ma, mp = parts(tmp_path / "alone"), parts(tmp_path / "pack")
    assert list(mp["step"]) == list(range(1, STEPS + 31))
    np.testing.assert_allclose(mp["loss"], ma["loss"], rtol=1e-5)


def test_packs_refuse_what_they_cannot_train(small_corpus, tmp_path, capsys, monkeypatch):
    """One line, nothing written: --pack 0; runs of different shapes; a run with callbacks; two runs
    in one folder; a pack larger than the memory available (estimated before anything is built)."""
    base = ["lm", "sweep", "cpu-rates-quick", "--corpus", small_corpus, "--out", tmp_path / "sw", "--no-progress"]
    refused(capsys, [*base, "--pack", "0"], 2, "invalid pack: 0", keep=tmp_path / "sw")
    refused(capsys, [*base, "--pack", "-2", "--dry-run"], 2, "invalid pack: -2", keep=tmp_path / "sw")
    assert not (tmp_path / "sw").exists()
    c = cfgs(small_corpus, tmp_path)
    with pytest.raises(ConfigError, match=r"runs of different shapes \(w24 batch 4 x 16 tokens; w48 batch 4"):
        train_pack([c[0], LMTrainConfig(**{**c[1].to_dict(), "preset": "w48"})], progress=False)
    with pytest.raises(ConfigError, match=r"runs of different shapes .*w24 batch 4 x 32 tokens"):
        train_pack([c[0], LMTrainConfig(**{**c[1].to_dict(), "seq_len": 32})], progress=False)
    with pytest.raises(ConfigError, match="b cannot be packed: it has training callbacks"):
        train_pack([c[0], LMTrainConfig(**{**c[1].to_dict(), "monitor_interference": 5})], progress=False)
    with pytest.raises(ConfigError, match="two runs write to"):
        train_pack([c[0], c[0]], progress=False)
    with pytest.raises(ConfigError, match="no runs"):
        train_pack([], progress=False)
    assert not any((tmp_path / n).exists() for n in "abc")
    # memory: 3 w24 runs need about pack_memory(...); with less than that available, refused up front
    need = _packed.pack_memory("w24", 1200, 4, 16, 3)
    monkeypatch.setattr(_packed, "available_memory", lambda: need)
    with pytest.raises(ConfigError, match=r"3 w24 runs need about .* GiB.*--pack 2 or fewer"):
        train_pack(c, progress=False)
    assert not any((tmp_path / n).exists() for n in "abc")
    line = refused(capsys, [*base, "--set", 'presets=["w24"]', "--set", "rates=[4,1,0.25]", "--set",
                            "train.batch_size=4", "--set", "train.seq_len=16", "--pack", "3"], 2, "invalid pack",
                   keep=tmp_path / "sw")
    assert "GiB" in line and not (tmp_path / "sw").exists()


def test_plan_packs_groups_by_shape_and_spreads_over_workers(small_corpus, tmp_path, monkeypatch):
    from raretask.lm._sweep import plan_packs

    c = [LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / f"r{i}"), preset=p, rate=r, batch_size=4,
                       seq_len=16) for i, (p, r) in enumerate([("w24", 1), ("w24", 2), ("w24", 4), ("w48", 1),
                                                               ("w24", 8), ("w48", 2)])]
    names = lambda units: sorted(sorted(Path(x.out).name for x in u) for u in units)  # noqa: E731
    assert names(plan_packs(c, None, 1)) == [["r0", "r1", "r2", "r4"], ["r3", "r5"]]
    assert names(plan_packs(c, None, 2)) == [["r0", "r2"], ["r1", "r4"], ["r3"], ["r5"]]
    assert names(plan_packs(c, 3, 1)) == [["r0", "r2"], ["r1", "r4"], ["r3", "r5"]]
    assert names(plan_packs(c, 1, 1)) == [[f"r{i}"] for i in range(6)]
    mon = [LMTrainConfig(**{**x.to_dict(), "monitor_interference": 5}) if i == 0 else x for i, x in enumerate(c)]
    assert ["r0"] in names(plan_packs(mon, None, 1))  # the monitor's run trains alone
    # by default only shapes whose run-step is under PACK_BELOW_GFLOP are packed: the ladder's w96 at
    # 16 x 64 tokens (3.2 GFLOP) trains alone unless --pack asks
    big = [LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / f"b{i}"), preset="w96", rate=r,
                         batch_size=16, seq_len=64) for i, r in enumerate((1, 2))]
    assert names(plan_packs(big, None, 1, vocab=2048)) == [["b0"], ["b1"]]
    assert names(plan_packs(big, 2, 1, vocab=2048)) == [["b0", "b1"]]
    monkeypatch.setattr(_packed, "PACK_BELOW_GFLOP", 4.0)
    assert names(plan_packs(big, None, 1, vocab=2048)) == [["b0", "b1"]]
    assert digest(tmp_path) == {}  # planning writes nothing


def test_a_run_that_would_train_on_the_gpu_is_not_packed(small_corpus, tmp_path, monkeypatch):
    c = LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / "r"), preset="w24")
    assert _packed.packable(c) is None
    monkeypatch.setattr(_packed, "_cuda", lambda: True)  # device auto on a machine with a GPU
    assert "trains on the GPU" in _packed.packable(c)
    assert "trains on the GPU" in _packed.packable(LMTrainConfig(**{**c.to_dict(), "device": "cuda"}))
    assert "bfloat16" in _packed.packable(LMTrainConfig(**{**c.to_dict(), "device": "cpu", "dtype": "bfloat16"}))
