"""Studies end to end on tiny configurations: outputs, resume, bad input."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import cell_steps

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
        (["mixture.block_dim=0"], "mixture.block_dim"),
        (["train.steps=-1"], "train.steps"),
        (["train.lr=true"], "train.lr: True: input should be a valid number"),
        (["mixture.rank1=\"no\""], "mixture.rank1: 'no': input should be a valid boolean"),
        (["train.betas=[0.9]"], r"train.betas: too few values"),
        (["gaps=[0]"], r"gaps\[0\]: 0: input should be greater than or equal to 1"),
        (["nonsense=1"], "set"),
        (["train.bogus=1"], "set: unknown option 'train.bogus'"),
        (["rare_task=99"], "rare_task"),
        (["gaps=[1, true]"], r"gaps\[1\]: True: input should be a valid integer"),
        (["gaps=[4, 4]"], r"gaps: \[4, 4\] repeats \[4\]"),
        (["trace_every=2.5"], "trace_every"),
        (["conflict_removal=\"no\""], "conflict_removal: 'no': input should be a valid boolean"),
        (["conflict_removal=1"], "conflict_removal"),
        (["settings.nope=1"], "set: unknown option 'nope' for study 'retention'"),
        (["settings=[1]"], "set"),
    ],
)
def test_bad_overrides_raise_config_error(overrides, field):
    with pytest.raises(ConfigError, match=f"invalid {field}"):
        build_config("phase" if field.split(":")[0].split(".")[0] in ("widths", "mixture", "train", "set: unknown option "
                                                                         "'train") else "retention",
                     "quick", overrides)


@pytest.mark.parametrize("study, key", [("phase", "gaps=[1]"), ("retention", "eta=0.1"), ("one-neuron", "rare_task=2"),
                                        ("rank1", "betas=[1.0]")])
def test_a_setting_of_another_study_is_refused(study, key):
    """Each study takes only its own settings: another study's key is one line naming the
    study and the keys it has (before per-study settings, every study took all 25)."""
    with pytest.raises(ConfigError, match=f"unknown option '{key.split('=')[0]}' for study '{study}'"):
        build_config(study, "quick", [key])


def test_settings_reach_the_study_flat_or_nested():
    a = build_config("retention", "quick", ["gaps=[2, 4]"]).settings
    b = build_config("retention", "quick", ["settings.gaps=[2, 4]"]).settings
    c = build_config("retention", "quick", ['settings={"gaps": [2, 4]}']).settings
    assert a == b == c and a.gaps == [2, 4] and a.rare_task == 7  # the preset's other values kept


@pytest.mark.slow
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


OLD_DEFAULTS = {"betas": None, "alpha_ranges": None, "gaps": [1, 4, 16, 64, 256, 1024], "rare_task": None,
                "multipliers": [0.5, 1.5], "features": 1, "retention_widths": None, "gaps_enabled": True,
                "checkpoint_seconds": 60.0, "record_points": 60, "trace_every": 1, "eta": 0.01, "lambdas": [1.0, 1.0],
                "theta0": 0.3, "replay_every": 0, "conflict_removal": False, "remedy_gap": 64, "short_gap": 1,
                "upweight_margin": 1.5}
"""Every study's settings as one flat StudyConfig held them before per-study settings."""


def _old_layout(conf: dict) -> dict:
    """A config.json as raretask wrote it before per-study settings: flat, all 25 fields."""
    c = dict(conf["config"])
    return {**conf, "config": {**OLD_DEFAULTS, **{k: v for k, v in c.items() if k != "settings"}, **c["settings"]}}


def test_a_run_folder_of_the_old_flat_layout_still_resumes(tmp_path):
    cfg = build_config("residual", "quick", TINY["phase"] + ["betas=[1.5]", "rare_task=5"])
    out = tmp_path / "res"
    s1 = run_study(cfg, out)
    conf = json.loads((out / "config.json").read_text())
    assert conf["config"]["settings"] == {"betas": [1.5], "rare_task": 5}
    (out / "config.json").write_text(json.dumps(_old_layout(conf)))
    assert run_study(cfg, out)["checks"] == s1["checks"]  # read as today's layout: resumes
    # the old layout's own setting still decides: another rare task is another configuration
    with pytest.raises(ConfigError, match="different configuration"):
        run_study(build_config("residual", "quick", TINY["phase"] + ["betas=[1.5]", "rare_task=6"]), out)


@pytest.mark.slow
def test_retention_study_traces_rare_task(tmp_path):
    cfg = build_config("retention", "quick", TINY["retention"])
    s = run_study(cfg, tmp_path / "ret")
    tr = pd.read_parquet(tmp_path / "ret" / "trace.parquet")
    assert set(tr["task"]) == {3} and set(tr["gap"]) == {1, 4, 16}
    assert len(tr) == 3 * 2 * 256  # gaps x widths x steps
    assert set(s["final_signal"]) == {"2", "8"}


@pytest.mark.slow
def test_interrupted_study_resumes_to_identical_results(tmp_path):
    """kill -9 (no clean-up of any kind) once a cell has checkpointed past step 50, mid-cell; the
    rerun resumes it and the results equal an uninterrupted run's."""
    import time

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
        step = max(cell_steps(tmp_path / "b"), default=0)
        if step >= 50:
            proc.kill()  # like kill -9: no clean-up of any kind
            killed_at = step
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None and killed_at < 4000
    r = subprocess.run(args + sets + ["--out", str(part)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(part / "results.parquet"), pd.read_parquet(full / "results.parquet"))


def test_one_neuron_study_matches_decay_law(tmp_path):
    s = run_study(build_config("one-neuron", "quick"), tmp_path / "on")
    assert s["all_checks_ok"]


def test_cli_study_bad_input_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "study", "phase", "--set", "widths=[9999]",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "invalid widths" in r.stderr


@pytest.mark.slow
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


@pytest.mark.slow
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
    """Refused when the config is built (before any run folder), except the width, which the
    cells check (doubling it must fit in D)."""
    from raretask.studies.remedies import cells

    with pytest.raises(ConfigError, match=f"invalid {field}"):
        cells(build_config("remedies", "quick", REMEDIES_TINY + [override]))


@pytest.mark.slow
def test_complexity_runs_its_phase_and_retention_parts_from_its_own_settings(tmp_path):
    """Complexity hands its alpha range to the phase part and its gaps, retention widths and
    followed task to a retention config of its own (``retention.Settings``)."""
    cfg = build_config("complexity", "quick", ['mixture={"n_tasks": 6, "block_dim": 2, "beta": 1.5}',
                                               "train.steps=100", "train.batch_size=64", "widths=[2,4]",
                                               "retention_widths=[4]", "gaps=[1,4]", "record_points=5"])
    s = run_study(cfg, tmp_path / "cx")
    res = pd.read_parquet(tmp_path / "cx" / "results.parquet")
    assert {c.split("-seed")[0] for c in res["cell"]} == {"alpha0.5-2", "retention-gap1", "retention-gap4"}
    followed = s["retention"]["task_choice"]["followed"]["task"]
    assert set(pd.read_parquet(tmp_path / "cx" / "trace.parquet")["task"]) == {followed}
