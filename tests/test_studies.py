"""Studies end to end on tiny configurations: outputs, resume, bad input."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from raretask import ConfigError
from raretask.studies import STUDIES, build_config, load_preset, run_study

TINY = {
    "phase": ["mixture={\"n_tasks\": 6, \"block_dim\": 2, \"beta\": 1.5}", "train.steps=300",
              "train.batch_size=64", "train.warmup=20", "train.lr=0.01", "widths=[1,2,4,8]", "seeds=[0]",
              "record_points=5"],
    "retention": ["mixture={\"n_tasks\": 8, \"block_dim\": 2, \"beta\": 1.5}", "train.steps=256",
                  "train.batch_size=64", "train.warmup=20", "train.lr=0.01", "widths=[2,8]", "gaps=[1,4,16]",
                  "rare_task=3", "record_points=5"],
}


def test_every_study_has_quick_and_paper_presets():
    for name in STUDIES:
        for preset in ("quick", "paper"):
            cfg = build_config(name, preset)
            assert cfg.study == name and cfg.preset == preset


def test_paper_presets_use_spec_defaults():
    p = load_preset("phase", "paper")
    assert p["train"]["steps"] == 100_000 and p["train"]["batch_size"] == 1024
    assert p["widths"] == [4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
    r = load_preset("retention", "paper")
    assert r["train"]["batch_size"] == 256 and r["gaps"] == [1, 4, 16, 64, 256, 1024]
    assert r["widths"] == [32, 64, 128, 256]


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["widths=[0]"], "widths"),
        (["mixture.block_dim=0"], "block_dim"),
        (["train.steps=-1"], "steps"),
        (["gaps=[0]"], "gaps"),
        (["nonsense=1"], "set"),
        (["train.bogus=1"], "train"),
        (["rare_task=99"], "rare_task"),
    ],
)
def test_bad_overrides_raise_config_error(overrides, field):
    with pytest.raises(ConfigError, match=f"invalid {field}"):
        build_config("phase" if field != "rare_task" else "retention", "quick", overrides)


def test_phase_study_outputs_and_resume(tmp_path):
    cfg = build_config("phase", "quick", TINY["phase"])
    out = tmp_path / "phase"
    s1 = run_study(cfg, out)
    for name in ("config.json", "results.parquet", "summary.json", "report.html", "timing.json"):
        assert (out / name).exists(), name
    df = pd.read_parquet(out / "results.parquet")
    assert {"study", "width", "seed", "task", "step", "loss", "norm_loss", "signal", "corrected_signal",
            "n_features", "residual"} <= set(df.columns)
    assert sorted(df["width"].unique()) == [1, 2, 4, 8] and df["step"].max() == 300
    conf = json.loads((out / "config.json").read_text())
    assert conf["raretask_version"] and conf["config"]["seeds"] == [0]
    assert s1["figures"] and all((out / f).exists() for f in s1["figures"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(s1["figures"])
    assert "Theory vs measurement" in html
    # re-running the same command resumes (nothing to train) and gives identical results
    s2 = run_study(cfg, out)
    pd.testing.assert_frame_equal(df, pd.read_parquet(out / "results.parquet"))
    assert [c["measured"] for c in s1["checks"]] == [c["measured"] for c in s2["checks"]]
    # a different configuration in the same directory is refused
    other = build_config("phase", "quick", TINY["phase"] + ["train.steps=301"])
    with pytest.raises(ConfigError, match="different configuration"):
        run_study(other, out)


def test_retention_study_traces_rare_task(tmp_path):
    cfg = build_config("retention", "quick", TINY["retention"])
    s = run_study(cfg, tmp_path / "ret")
    tr = pd.read_parquet(tmp_path / "ret" / "trace.parquet")
    assert set(tr["task"]) == {3} and set(tr["gap"]) == {1, 4, 16}
    assert len(tr) == 3 * 2 * 256  # gaps x widths x steps
    assert set(s["final_signal"]) == {"2", "8"}


def test_interrupted_study_resumes_to_identical_results(tmp_path):
    import time

    import numpy as np

    args = [sys.executable, "-m", "raretask.cli", "study", "phase", "--preset", "quick"]
    sets = sum((["--set", o] for o in TINY["phase"] + ["train.steps=4000", "record_points=40",
                                                       "checkpoint_seconds=0"]), [])
    full = tmp_path / "a" / "full"
    subprocess.run(args + sets + ["--out", str(full)], check=True, capture_output=True)
    part = tmp_path / "b" / "part"
    proc = subprocess.Popen(args + sets + ["--out", str(part)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_at = None
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None and killed_at is None:
        for ck in (tmp_path / "b" / ".cells").glob("*/checkpoint.npz"):
            try:
                with np.load(ck) as z:
                    step = int(z["step"])
            except Exception:  # being replaced right now
                continue
            if step >= 50:
                proc.kill()  # like kill -9: no clean-up of any kind
                killed_at = step
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None and killed_at < 4000
    r = subprocess.run(args + sets + ["--out", str(part)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a = pd.read_parquet(full / "results.parquet").drop(columns=["cell"])
    b = pd.read_parquet(part / "results.parquet").drop(columns=["cell"])
    pd.testing.assert_frame_equal(a, b)


def test_one_neuron_study_matches_decay_law(tmp_path):
    s = run_study(build_config("one-neuron", "quick"), tmp_path / "on")
    assert s["all_checks_ok"]


def test_cli_study_bad_input_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "study", "phase", "--set", "widths=[9999]",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "invalid widths" in r.stderr


def test_upweight_study_trains_at_multiples_of_the_plan(tmp_path):
    from raretask.mixture import min_frequency

    cfg = build_config("upweight", "quick", ["mixture={\"n_tasks\": 6, \"block_dim\": 2, \"beta\": 1.5}",
                                             "train.steps=200", "train.batch_size=64", "widths=[3]",
                                             "record_points=4"])
    s = run_study(cfg, tmp_path / "up")
    p = min_frequency(cfg.spec(), 6, 3, 1)
    assert s["planned"] == {"3": pytest.approx(p)}
    df = pd.read_parquet(tmp_path / "up" / "results.parquet")
    assert sorted(df["multiplier"].unique()) == [0.5, 1.5]
    assert len(s["checks"]) == 2


REMEDIES_TINY = ["mixture={\"n_tasks\": 8, \"block_dim\": 2, \"beta\": 1.5}", "train.steps=256",
                 "train.batch_size=64", "train.warmup=20", "train.lr=0.01", "widths=[3]", "rare_task=6",
                 "remedy_gap=16", "short_gap=2", "replay_every=4", "record_points=5"]


def test_remedies_study_compares_each_remedy_with_its_cost(tmp_path):
    from raretask.mixture import min_frequency

    cfg = build_config("remedies", "quick", REMEDIES_TINY)
    s = run_study(cfg, tmp_path / "rem")
    t = pd.DataFrame(s["table"]).set_index("remedy")
    assert list(t.index) == ["baseline", "shorter-gaps", "replay", "upweight", "conflict-removal", "double-width"]
    assert t.loc["double-width", "width"] == 6 and t.loc["double-width", "compute_ratio"] == pytest.approx(2.0)
    assert t.loc["baseline", "compute_ratio"] == 1.0 and t.loc["baseline", "common_loss_change"] == 0.0
    # replay shows the rare samples 4x as often without new ones
    assert t.loc["replay", "rare_fresh_samples"] == t.loc["baseline", "rare_fresh_samples"]
    assert t.loc["replay", "rare_presentations"] > 3 * t.loc["baseline", "rare_presentations"]
    assert t.loc["replay", "compute_ratio"] > 1.0
    assert t.loc["upweight", "rare_frequency"] == pytest.approx(1.5 * min_frequency(cfg.spec(), 6, 3, 1))
    assert 1.0 < t.loc["conflict-removal", "compute_ratio"] < 1.1
    assert s["verdict"][0].startswith("N = 3, task 6: learned with ")
    assert (tmp_path / "rem" / "figures" / "remedies.png").exists()
    tr = pd.read_parquet(tmp_path / "rem" / "trace.parquet")
    assert set(tr["remedy"]) == set(t.index) - {"double-width"}


@pytest.mark.parametrize("override, field", [("replay_every=16", "replay_every"), ("short_gap=16", "short_gap"),
                                             ("widths=[9]", "widths")])
def test_remedies_settings_are_validated(override, field):
    from raretask.studies.remedies import cells

    cfg = build_config("remedies", "quick", REMEDIES_TINY + [override])
    with pytest.raises(ConfigError, match=f"invalid {field}"):
        cells(cfg)
