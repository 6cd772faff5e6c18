"""Calibration of lm sizing's prediction interval by simulation (issue 21), in a small version:
the full one is `raretask bench sizing` (200 sweeps per law)."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from raretask.lm import sizing_sim as sim

# the order of what cpu-scaling measures: f* ~ P^-0.27, slope 3/decade, seed noise 0.06
TRUTH = sim.Truth(intercept=-0.93, exponent=-0.27, curvature=0.0, slope=3.0, ceiling=0.97, seed_sd=0.06,
                  checkpoint_sd=0.015)


def test_simulated_sweep_has_the_shape_of_cpu_scaling():
    df = sim.simulate_sweep(sim.SweepShape(), TRUTH, np.random.default_rng(0))
    assert df["preset"].nunique() == 4 and df["per_token_frequency"].nunique() == 5
    runs = df.groupby("run").first()
    assert (runs["kind"] == "grid").sum() == 20 and (runs["kind"] == "seed").sum() == 8  # 2 boundary rates x 4
    assert (df.groupby("run").size() == 3).all()  # the last 3 checkpoints of each run
    # boundary seeds sit at the two grid rates whose final accuracy is nearest the learned level
    for preset, g in runs.groupby("preset"):
        grid = g[g["kind"] == "grid"]
        last = df[(df["preset"] == preset) & (df["step"] == 2) & (df["kind"] == "grid")]
        near = last.assign(d=(last["test_accuracy"] - 0.75).abs()).nsmallest(2, "d")["per_token_frequency"]
        assert set(g[g["kind"] == "seed"]["per_token_frequency"]) == set(near)
        assert len(grid) == 5


def test_simulated_truth_is_what_the_method_measures_without_noise():
    quiet = sim.Truth(**{**TRUTH.__dict__, "seed_sd": 1e-4, "checkpoint_sd": 0.0})
    shape = sim.SweepShape()
    df = sim.simulate_sweep(shape, quiet, np.random.default_rng(1))
    from raretask.lm.sizing import critical_table

    crit = critical_table(df, 0.5, final_checkpoints=3, n_boot=50)
    want = 10 ** quiet.log_f_star(shape.params, shape.middle)
    assert np.allclose(crit["f_star"], want, rtol=0.02)


def test_the_calibration_check_answers_no_outside_90_to_98_percent():
    def cov(covered, counted=200):
        return sim.Coverage("new", "straight", 200, counted, covered, 0.8)

    assert sim.check_calibration(cov(190)).verdict == "yes"  # 95%
    assert sim.check_calibration(cov(170)).verdict == "no"  # 85%: too narrow
    assert sim.check_calibration(cov(199)).verdict == "no"  # 99.5%: too wide to be worth its width
    assert sim.check_calibration(cov(0, counted=0)).verdict == "n/a"


@pytest.mark.slow
def test_new_interval_covers_a_held_out_size_and_a_shrunk_one_fails_the_check():
    part = sim.coverage_part(sim.SweepShape(), TRUTH, range(24), 3, 100, ("new", "legacy"))
    new, legacy = sim.merge([part])
    assert new.counted >= 20 and new.rate >= 0.85  # 24 sweeps: the band is wide; bench sizing runs 200
    assert legacy.rate < new.rate and legacy.median_width_decades < new.median_width_decades
    # the same sweeps with the interval shrunk to a third: the calibration check says no
    shrunk = sim.rescaled(part, "new", 0.3)
    assert shrunk.counted == new.counted and shrunk.rate < 0.9 and sim.check_calibration(shrunk).verdict == "no"
    assert sim.rescaled(part, "new", 1.0).covered == new.covered  # the rescaling is exact at 1


def test_coverage_does_not_depend_on_how_sweeps_are_split():
    shape = sim.SweepShape(params=(1e4, 4e4, 1.6e5))
    t = sim.Truth(**{**TRUTH.__dict__, "intercept": -1.5})
    whole = sim.coverage_part(shape, t, range(4), 9, 40, ("new",))
    parts = [sim.coverage_part(shape, t, range(0, 2), 9, 40, ("new",)),
             sim.coverage_part(shape, t, range(2, 4), 9, 40, ("new",))]
    a, b = sim.merge([whole])[0], sim.merge(parts)[0]
    assert (a.counted, a.covered, a.median_width_decades) == (b.counted, b.covered, b.median_width_decades)


def test_bench_sizing_refuses_what_it_cannot_do(tmp_path):
    def run(*a):
        return subprocess.run([sys.executable, "-m", "raretask.cli", "bench", "sizing", *a], capture_output=True,
                              text=True)

    r = run("--sweeps", "0")
    assert r.returncode == 2 and r.stderr.count("raretask: error:") == 1
    r = run("--from", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    with pytest.raises(Exception, match="at least 3"):
        sim.SweepShape(params=(1, 2))
    bad = sim.Truth(**{**TRUTH.__dict__, "slope": (3.0, 2.0)})  # two slopes for four sizes
    with pytest.raises(Exception, match="one value, or one per size"):
        sim.simulate_sweep(sim.SweepShape(), bad, np.random.default_rng(0))
    low = sim.Truth(**{**TRUTH.__dict__, "ceiling": 0.7})  # never reaches the learned level
    with pytest.raises(Exception, match="above the learned level"):
        sim.simulate_sweep(sim.SweepShape(), low, np.random.default_rng(0))


def _sweep_folder(tmp_path, shape):
    """A sweep folder (eval table, run configs, sweep.json) written from a simulated sweep of TRUTH."""
    import json

    df = sim.simulate_sweep(shape, TRUTH, np.random.default_rng(5))
    d = tmp_path / "sweep"
    (d / "report").mkdir(parents=True)
    rows = []
    for run, g in df.groupby("run"):
        (d / run).mkdir()
        r = g.iloc[0]
        preset = {18432: "w24", 73728: "w48", 294912: "w96", 1179648: "w192"}[int(r["non_embedding_params"])]
        (d / run / "run_config.json").write_text(json.dumps({"config": {
            "preset": preset, "seed": int(r["seed"]), "rate": float(r["per_token_frequency"] * 1024)}}))
        rows.append(g.assign(run=str(d / run), preset=preset))
    pd.concat(rows).drop(columns=["seed", "kind", "non_embedding_params"]).to_parquet(d / "report" / "eval.parquet")
    (d / "sweep.json").write_text(json.dumps({"sweep": {"task": "cmp", "rates": list(shape.rates),
                                                        "final_checkpoints": 3, "boundary_seeds": [1],
                                                        "train": {"batch_size": 16, "seq_len": 64, "seed": 0}}}))
    return d


def test_measured_truth_reads_a_sweep(tmp_path):
    """measured_truth on a sweep folder written from a simulated sweep with a known truth."""
    import json

    shape = sim.SweepShape()
    d = _sweep_folder(tmp_path, shape)
    truth, got_shape, prov = sim.measured_truth(d)
    assert got_shape.params == shape.params and got_shape.batch_tokens == 1024
    assert truth.exponent == pytest.approx(TRUTH.exponent, abs=0.15)
    assert truth.seed_sd == pytest.approx(TRUTH.seed_sd, rel=0.6) and prov["seed_noise_dof"] == 8
    assert truth.checkpoint_sd == pytest.approx(TRUTH.checkpoint_sd, rel=0.5)
    # the bend fitted to the measured f* (never exactly 0 on noisy sizes; it was overwritten by the
    # straight truth's 0, so bench sizing --from refused every real sweep), beside a straight truth
    assert math.isfinite(prov["measured_curvature"]) and prov["measured_curvature"] != 0 and truth.curvature == 0


@pytest.mark.slow
def test_bench_sizing_prints_the_coverage_table_of_every_method(tmp_path):
    """A tiny run of the command end to end: its table names each law and method with a verdict."""
    import json

    shape = sim.SweepShape()
    d = _sweep_folder(tmp_path, shape)
    r = subprocess.run([sys.executable, "-m", "raretask.cli", "bench", "sizing", "--from", str(d), "--sweeps", "2",
                        "--n-boot", "30", "--seed-sd", "0.05", "--curvature", "0.1", "--json", str(tmp_path / "b.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for law in ("straight", "bent (+0.100"):
        for method in ("new ", "no-bend", "new-t", "legacy"):
            assert any(law in line and method in line for line in r.stdout.splitlines()), r.stdout
    assert "seed noise sd 0.0500" in r.stdout
    saved = json.loads((tmp_path / "b.json").read_text())
    assert len(saved["rows"]) == 8 and saved["provenance"]["seed_sd_given"] == 0.05
    bad = subprocess.run([sys.executable, "-m", "raretask.cli", "bench", "sizing", "--from", str(d), "--seed-sd", "nan"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "seed_sd" in bad.stderr


def test_the_embedded_truth_is_the_measured_sweep_s():
    """bench sizing without --from simulates the real sweep's measured truth: a straight law and
    the bend its four f* show, on the cpu-scaling shape."""
    t = sim.Truth(**sim.MEASURED["truth"])
    assert t.curvature == 0 and sim.MEASURED["measured_curvature"] > 0  # the fall slowed at w192
    assert len(t.per_size("slope", len(sim.SweepShape().params))) == 4 and 0 < t.seed_sd < 0.1
    assert -0.4 < t.exponent < -0.2
