"""Inverse planning (SPEC Part C) checked against the forward theory (Theorem 3)."""

import json

import numpy as np
import pytest

from raretask import ConfigError
from raretask.cli import main
from raretask.mixture import (MixtureSpec, feature_ranks, min_frequency, retained_features, reweighted,
                              tradeoff)
from raretask.mixture.frequencies import read_frequencies

SPECS = [MixtureSpec(n_tasks=8, block_dim=4, beta=1.5), MixtureSpec(n_tasks=6, block_dim=3, alpha_range=(0.5, 2))]


@pytest.mark.parametrize("spec", SPECS)
def test_min_frequency_is_the_exact_threshold(spec):
    for task in (spec.K, spec.K // 2 + 1):  # 1-based task numbers
        for m in (1, 2):
            for N in range(m, spec.D, 3):
                p = min_frequency(spec, task, N, m)
                if p == 0.0:
                    continue
                above = reweighted(spec, task, p * (1 + 1e-6))
                below = reweighted(spec, task, p * (1 - 1e-6))
                assert retained_features(above, N)[task - 1] >= m
                assert retained_features(below, N)[task - 1] < m
    assert min_frequency(spec, 1, 1, features=2) is None  # width below the feature count


def test_reweighting_keeps_the_others_relative_frequencies():
    spec = SPECS[0]
    r = reweighted(spec, 8, 0.3)  # task 8 (row 7)
    assert r.pi[7] == pytest.approx(0.3) and r.pi.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(r.pi[:7] / r.pi[:7].sum(), spec.pi[:7] / spec.pi[:7].sum())


def test_tradeoff_frontier_ends_at_the_critical_width():
    spec = SPECS[0]
    routes = tradeoff(spec, 8, 4, 1)
    n_star = int(feature_ranks(spec)[7, 0])
    assert routes[-1].width == n_star and routes[-1].frequency == pytest.approx(spec.pi[7])
    freqs = [r.frequency for r in routes]
    assert all(a >= b - 1e-15 for a, b in zip(freqs, freqs[1:]))  # wider needs no more frequency
    assert all(r.other_loss >= r.other_loss_at_original - 1e-12 for r in routes)  # up-weighting costs


def test_frequencies_csv(tmp_path):
    f = tmp_path / "freq.csv"
    f.write_text("task,frequency,spectrum\n2,10,1;0.5\n1,30,0.5;1\n3,10,1;0.25\n")
    prior, spectra = read_frequencies(f)
    np.testing.assert_allclose(prior, [0.6, 0.2, 0.2])
    assert spectra == ((1.0, 0.5), (1.0, 0.5), (1.0, 0.25))
    bad = tmp_path / "bad.csv"
    bad.write_text("task,frequency\n1,0.5\n3,0.5\n")
    with pytest.raises(ConfigError, match="invalid frequencies"):
        read_frequencies(bad)


def test_cli_target_json(tmp_path, capsys):
    f = tmp_path / "freq.csv"
    f.write_text("task,frequency\n" + "".join(f"{k},{1 / k}\n" for k in range(1, 9)))
    assert main(["plan", "--frequencies", str(f), "--block-dim", "2", "--width", "4", "--target-task", "8",
                 "--tradeoff", "--json", "--plot", str(tmp_path / "t.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    t = out["target"]
    assert t["task"] == 8 and t["per_width"][0]["width"] == 4
    assert t["per_width"][0]["min_frequency"] > t["frequency"]
    assert t["tradeoff"][-1]["width"] == t["min_width_at_current_frequency"]
    assert (tmp_path / "t.png").stat().st_size > 5000
    assert out["mixture"]["n_tasks"] == 8


def test_cli_tradeoff_needs_target():
    assert main(["plan", "--tradeoff"]) == 2


def test_task_numbers_round_trip_between_results_and_theory(tmp_path):
    """A results row's task number feeds the theory unchanged (the public API is 1-based)."""
    from raretask.mixture import critical_widths, proposition6
    from raretask.studies import build_config, run_study

    cfg = build_config("phase", "quick", ['mixture={"n_tasks": 6, "block_dim": 2, "beta": 1.5}', "train.steps=50",
                                          "widths=[2]", "seeds=[0]", "record_points=2"])
    run_study(cfg, tmp_path / "p")
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "p" / "results.parquet")
    spec = cfg.spec()
    rare = int(rows["task"].max())
    assert rare == spec.K
    p6 = proposition6(spec, rare)
    assert p6.task == rare and proposition6(spec).task == rare  # default: the rarest, as a task number
    assert min_frequency(spec, rare, 2) == min_frequency(reweighted(spec, rare, spec.pi[rare - 1]), rare, 2)
    assert reweighted(spec, rare, 0.5).pi[rare - 1] == pytest.approx(0.5)
    assert int(critical_widths(spec)[rare - 1, 0]) >= int(critical_widths(spec)[0, 0])
    for bad in (0, spec.K + 1):
        with pytest.raises(ConfigError, match="task number"):
            min_frequency(spec, bad, 2)
        with pytest.raises(ConfigError, match="task number"):
            proposition6(spec, bad)



def test_the_default_frontier_is_bounded_and_keeps_its_ends():
    """plan --tasks 20000 --tradeoff was quadratic (every width up to N*, one sort each; killed at
    120 s). The default frontier now has at most MAX_ROUTES widths, log-spaced, with both ends."""
    from raretask.mixture._inverse import MAX_ROUTES, route_widths

    assert route_widths(1, 50) == list(range(1, 51))
    g = route_widths(1, 320_000)
    assert len(g) <= MAX_ROUTES and g[0] == 1 and g[-1] == 320_000 and g == sorted(set(g))
    spec = MixtureSpec(n_tasks=20000, block_dim=1, beta=1.1, rank1=True)
    routes = tradeoff(spec, 20000, 16, 1)
    assert len(routes) <= MAX_ROUTES and routes[-1].width == int(feature_ranks(spec)[19999, 0])
