"""The scaling sweep (issue 13): cpu-scaling-quick end to end (pipeline, not science), every
check of its report answering "no" on a result that violates it, the sizing answer on a
known power law, and the dry-run's cost arithmetic."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")

from raretask import ConfigError  # noqa: E402
from raretask.errors import RaretaskError  # noqa: E402
from raretask.lm import scaling  # noqa: E402
from raretask.lm import scaling_report as sr  # noqa: E402
from raretask.lm import sizing as sz  # noqa: E402
from raretask.lm._sweep import (boundary_rates, check_corpus_vocab, load_sweep, plan_sweep,  # noqa: E402
                                run_sweep, sweep_configs)


def _probe(run, settings):
    from raretask.probes import ProbeConfig, probe_run

    return probe_run(run, ProbeConfig(**settings))


@pytest.mark.slow(seconds=85)
def test_cpu_scaling_quick_runs_end_to_end_and_resumes(tmp_path, small_corpus):
    """With a grid seed other than 0 (it crashed the report before): seed 5's runs are the grid."""
    out = tmp_path / "sw"
    from raretask.probes import monitor_callbacks

    res = run_sweep("cpu-scaling-quick", str(small_corpus), str(out), ["train.seed=5"], progress=False, probe=_probe,
                    callbacks=monitor_callbacks)
    names = sorted(p.name for p in out.iterdir() if (p / "run_config.json").exists())
    grid = [f"{p}-cmp-rate{r:g}" for p in ("w24", "w48") for r in (8, 2, 0.5)]
    assert set(grid) <= set(names)
    assert {"w24-cmp-every4-n8", "w48-cmp-every4-n8"} <= set(names)
    seeds = [n for n in names if n.endswith("-seed1")]
    assert len(seeds) == 4  # two boundary rates per size
    stage = {"w24-cmp-interference-every4-n8", "w48-cmp-interference-every4-n8"}
    assert stage <= set(names)
    assert len(names) == 6 + 2 + 2 + 4
    summ = json.loads((out / "scaling" / "scaling-summary.json").read_text())
    assert {c["preset"] for c in summ["critical"]} == {"w24", "w48"}
    assert sum(summ["checks_count"].values()) == len(summ["checks"]) >= 8
    assert (out / "scaling" / "report.html").stat().st_size > 10_000
    for fig in ("fig5-accuracy-loss", "critical-frequency", "fig6a-learned-step", "fig6b-gap",
                "fig22-23-equal-budget", "probes-across-sizes", "fig9-interference"):
        assert (out / "scaling" / "figures" / f"{fig}.png").exists()
    probes = pd.read_parquet(out / "scaling" / "probes.parquet")
    assert set(probes["checkpoint"]) >= {"init"} and probes["trained"].any()
    # probe.checkpoints = all: every checkpoint of each probed run, with its step and accuracy (Fig. 7)
    trained = probes[probes["trained"]]
    assert (trained.groupby("run")["step"].apply(sorted).apply(list) == [[20, 40]] * 2).all()
    assert trained["test_accuracy"].notna().all()
    onsets = pd.read_parquet(out / "scaling" / "feature-onsets.parquet")
    assert set(onsets["metric"]) == {"pca_r2"} and (onsets["checkpoints"] == 2).all()
    assert (out / "scaling" / "figures" / "fig7-features-across-checkpoints.png").exists()
    claim7 = next(c for c in summ["claims"] if c["claim"] == "Fig. 7")
    assert "at 2 checkpoints per probed run" in claim7["raretask_regime"]
    assert json.loads((out / "sweep.json").read_text())["name"] == "cpu-scaling-quick"
    runs = pd.read_parquet(out / "scaling" / "runs.parquet")
    assert set(runs.loc[runs["kind"] == "grid", "seed"]) == {5} and set(runs.loc[runs["kind"] == "seed", "seed"]) == {1}
    assert set(runs.loc[runs["kind"] == "interference", "name"]) == stage  # in no f*, gap or seed analysis
    it = pd.read_parquet(out / "scaling" / "interference.parquet")
    assert list(it["preset"]) == ["w24", "w48"] and (it["injections"] > 0).all() and (it["dim"] > 0).all()
    assert np.isfinite(it[["inj_cos_batch", "gap_cos_nontask_iqr", "baseline"]].to_numpy(float)).all()
    fig9 = [c for c in summ["checks"] if c["name"].startswith(("(i)", "(ii)", "(iii)"))]
    assert len(fig9) == 7 and all(c["verdict"] in ("yes", "no") for c in fig9)
    claim9 = next(c for c in summ["claims"] if c["claim"] == "Fig. 9")
    assert "interference stage" in claim9["raretask_regime"] and "claim (i) holds raw" in claim9["checks"]
    crit = pd.read_parquet(out / "scaling" / "critical.parquet")
    assert set(crit["runs"]) == {5} and {"censored", "se_log10", "f_star_ceiling"} <= set(crit.columns)
    html = (out / "scaling" / "report.html").read_text()
    assert "lines: grid seed 5; crosses: seed 1 at the rates" in html and "seed 0" not in html
    # resumed: nothing retrained, same table, same seed choice
    again = run_sweep("cpu-scaling-quick", str(small_corpus), str(out), ["train.seed=5"], progress=False,
                      probe=_probe, callbacks=monitor_callbacks)
    pd.testing.assert_frame_equal(again["table"], res["table"])


def test_boundary_rates_are_the_two_nearest_the_midpoint():
    final = {("a", 8.0): 0.99, ("a", 2.0): 0.8, ("a", 0.5): 0.55, ("b", 8.0): 0.5, ("b", 2.0): 0.5, ("b", 0.5): 0.51}
    got = boundary_rates(final, ["a", "b"], [8, 2, 0.5], 0.5)
    assert got["a"] == [0.5, 2.0]  # 0.8 and 0.55 nearest 0.75
    assert got["b"] == [0.5, 2.0] or got["b"] == [0.5, 8.0]


def test_boundary_rates_match_rates_the_eval_labels_round():
    """Eval labels print a rate with %g (5.656854 -> 5.65685): it must still be a candidate
    (cpu-scaling's first run chose its seeds without 5.656854 before this)."""
    rates = [16, 5.656854, 2, 0.707107, 0.25]
    final = {("w", 16.0): 0.92, ("w", 5.65685): 0.74, ("w", 2.0): 0.54, ("w", 0.707107): 0.5, ("w", 0.25): 0.49}
    assert boundary_rates(final, ["w"], rates, 0.5)["w"] == [5.656854, 16.0]
    del final[("w", 2.0)]
    with pytest.raises(RaretaskError, match="0 final accuracies for w at rate 2"):
        boundary_rates(final, ["w"], rates, 0.5)


def test_sweep_options_are_checked(small_corpus, tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        load_sweep("cpu-scaling", ["nope=1"])
    with pytest.raises(ConfigError, match="unknown option 'interference.nope'"):
        load_sweep("cpu-scaling", ["interference.nope=1"])
    with pytest.raises(ConfigError, match="invalid interference.every: True"):
        load_sweep("cpu-scaling", ["interference.every=true"])
    with pytest.raises(ConfigError, match="not in the grid"):
        load_sweep("cpu-scaling", ["probe.rates=[3]"])
    with pytest.raises(ConfigError, match="at least 3"):
        load_sweep("cpu-scaling", ["rates=[1,2]"])
    with pytest.raises(ConfigError, match="whole number"):
        sweep_configs("cpu-scaling-quick", str(small_corpus), str(tmp_path), ["gaps.every=[3]", "gaps.rate=0.5"])
    sw = load_sweep("cpu-scaling")
    with pytest.raises(ConfigError, match="vocab-size 2048"):
        check_corpus_vocab(sw, "cpu-scaling", str(small_corpus))  # a 1200-token corpus


def test_cpu_scaling_spans_what_the_issue_asks():
    sw = load_sweep("cpu-scaling")
    from raretask.lm._models import non_embedding_params

    p = [non_embedding_params(x) for x in sw["presets"]]
    assert len(p) >= 4 and max(p) / min(p) >= 16 and p == sorted(p)
    st = sw["interference"]  # every size, one n-every-G schedule (equal per-token frequency), fixed here
    assert st["presets"] == sw["presets"] and 1 <= st["n"] <= sw["train"]["batch_size"] and st["every"] >= 2
    assert len(sw["rates"]) >= 5 and max(sw["rates"]) / min(sw["rates"]) >= 64 * 0.999
    assert len(sw["gaps"]["every"]) >= 3 and sw["boundary_seeds"]


@pytest.mark.slow
def test_dry_run_counts_tokens_flops_and_gpu_hours(tmp_path):
    plan = plan_sweep("paper-frequencies", str(tmp_path), mfu=0.5, peak_tflops=1000)
    first = plan[0]
    assert first.tokens == 50_000 * 1024 * 4096 and first.steps == 50_000
    assert first.params == 6_963_200  # the paper's 4M row
    assert first.flops == pytest.approx(6 * 6_963_200 * first.tokens)
    assert first.gpu_hours == pytest.approx(first.flops / (0.5 * 1000e12) / 3600)
    rates = sorted({p.schedule for p in plan})
    assert "rate 1024/batch" in rates and "rate 0.1/batch" in rates
    out = subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "sweep", "paper-frequencies", "--out",
                          str(tmp_path), "--dry-run"], capture_output=True, text=True)
    assert out.returncode == 0 and "GPU-hours at 40% MFU" in out.stdout and "4B-cmp-rate0.1" in out.stdout
    with pytest.raises(ConfigError, match="mfu"):
        plan_sweep("paper-frequencies", str(tmp_path), mfu=0)


@pytest.mark.parametrize("override, message", [
    ("train.steps=-5", "invalid train.steps: -5"),
    ("rates=[-1,0,1]", r"invalid rates\[0\]: -1: input should be greater than 0"),
    ("task=xyz", "invalid train.task: 'xyz'"),
    ('probe.probes=["nope"]', "invalid probe: nope"),
    ("gaps.every=[3,0,-4]", r"invalid gaps.every\[1\]: 0"),
    ("gaps.nope=1", "unknown option 'gaps.nope' \\(allowed: presets, rate, every\\)"),
    ("probe.nope=1", "nope"),
    ("interference.every=true", "invalid interference.every: True"),
    ("train.lr=true", "invalid train.lr: True: input should be a valid number"),
    ("boundary_seeds=[1.5]", r"invalid boundary_seeds\[0\]: 1.5"),
    ("probe.checkpoints=sometimes", "invalid checkpoints: 'sometimes' \\(allowed: last, all, or steps"),
])
def test_dry_run_validates_as_a_real_run(tmp_path, capsys, override, message):
    """--dry-run builds every run's config through the same strict layer as a real run: each
    bad value is one line, exit 2, nothing written (before, all of these printed a plan)."""
    from raretask import cli

    for extra in (["--dry-run"], ["--corpus", str(tmp_path / "no-corpus")]):
        capsys.readouterr()
        assert cli.main(["lm", "sweep", "cpu-scaling", "--out", str(tmp_path / "o"), "--set", override, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("raretask: error: ") and "\n" not in err and __import__("re").search(message, err), err
        assert not (tmp_path / "o").exists()


# ---- the report's checks: each answers "no" on a violating result -------------------------

def _law(exponent, lo, hi):
    return scaling.PowerLaw(exponent, lo, hi, 0.0, (1e4, 1e5), (1e-2, 1e-3), (0.05, 0.05), (0.0, 0.0),
                            np.eye(2) * 1e-3, float("nan"), 0.05, True)


def test_exponent_check_can_fail():
    assert sz.check_exponent(_law(-0.5, -0.7, -0.3)).verdict == "yes"
    assert sz.check_exponent(_law(0.2, 0.1, 0.3)).verdict == "no"
    assert sz.check_exponent(_law(-0.2, -0.5, 0.1)).verdict == "no"  # interval straddles 0
    assert sz.check_exponent(None, "no fit").verdict == "n/a"


def _crit(f, lo, hi, censored=None, P=None):
    n = len(f)
    return pd.DataFrame({"preset": [f"w{i}" for i in range(n)], "non_embedding_params": P or [10**(4 + i) for i in range(n)],
                         "params": [2 * 10**(4 + i) for i in range(n)], "f_star": f, "f_star_lo": lo, "f_star_hi": hi,
                         "se_log10": [0.05] * n, "censored": censored or [""] * n,
                         "bracketed": [not c for c in (censored or [""] * n)], "f_min": [2.4e-4] * n,
                         "f_max": [1.56e-2] * n, "f_star_ceiling": f, "ceiling": [0.97] * n, "level": [0.75] * n,
                         "runs": [7] * n, "noise_sd": [0.05] * n, "noise_dof": [8] * n})


def test_size_check_compares_every_adjacent_pair_and_overlap_is_not_resolved():
    apart = _crit([1e-2, 4e-3, 1e-3], [8e-3, 3e-3, 7e-4], [1.2e-2, 5e-3, 1.3e-3])
    v = [c.verdict for c in sz.check_falls_with_size(apart)]
    assert v == ["yes", "yes", "yes"]
    # the last pair falls by x0.9 inside overlapping intervals: not resolved, and the whole check is no "yes"
    close = _crit([1e-2, 4e-3, 3.6e-3], [8e-3, 3e-3, 2.5e-3], [1.2e-2, 5e-3, 5e-3])
    checks = sz.check_falls_with_size(close)
    assert [c.verdict for c in checks] == ["n/a", "yes", "n/a"] and "not resolved" in checks[2].measured
    assert "2 of 2" not in checks[0].measured and "1 of 2 pairs fall" in checks[0].measured
    rise = _crit([1e-2, 4e-3, 1e-2], [8e-3, 3e-3, 8e-3], [1.2e-2, 5e-3, 1.2e-2])
    assert [c.verdict for c in sz.check_falls_with_size(rise)] == ["no", "yes", "no"]
    # censoring orders a pair: never learned -> learned is a fall; learned everywhere -> never learned a rise
    nan = float("nan")
    cen = _crit([nan, 4e-3, nan], [nan, 3e-3, nan], [nan, 5e-3, nan], censored=["above", "", "below"])
    assert [c.verdict for c in sz.check_falls_with_size(cen)] == ["yes", "yes", "yes"]
    both = _crit([nan, nan], [nan, nan], [nan, nan], censored=["below", "below"])
    assert [c.verdict for c in sz.check_falls_with_size(both)] == ["n/a", "n/a"]
    wrong = _crit([nan, nan], [nan, nan], [nan, nan], censored=["below", "above"])
    assert [c.verdict for c in sz.check_falls_with_size(wrong)] == ["no", "no"]
    unfitted = _crit([nan, nan], [nan, nan], [nan, nan], censored=["", "above"])  # no f*, no bound: nothing to order
    checks = sz.check_falls_with_size(unfitted)
    assert [c.verdict for c in checks] == ["n/a", "n/a"] and "could not be fitted" in checks[1].measured


def test_fig5_caption_follows_the_sweeps_seeds():
    runs = pd.DataFrame({"kind": ["grid", "grid", "seed", "seed"], "seed": [7, 7, 8, 9]})
    assert sr.fig5_seeds_caption(runs) == "lines: grid seed 7; crosses: seeds 8, 9 at the rates nearest each size's " \
                                          "learned level"
    assert sr.fig5_seeds_caption(runs[runs["kind"] == "grid"]) == "lines: grid seed 7"


def test_bracketed_check_can_fail():
    nan = float("nan")
    crit = _crit([1e-3, nan, nan], [5e-4, nan, nan], [2e-3, nan, nan], censored=["", "below", ""])
    assert [c.verdict for c in sr.check_bracketed(crit)] == ["yes", "no", "n/a"]
    assert "below 0.00024/token" in sr.check_bracketed(crit)[1].measured


def _final(loss_small, loss_large, kinds=("grid", "grid")):
    rows = []
    for f, ls, ll in zip([1e-3, 1e-2], loss_small, loss_large):
        rows += [{"preset": "s", "non_embedding_params": 10, "per_token_frequency": f, "task_test_loss": ls,
                  "kind": "grid", "every": None},
                 {"preset": "l", "non_embedding_params": 100, "per_token_frequency": f, "task_test_loss": ll,
                  "kind": "grid", "every": None}]
    return pd.DataFrame(rows)


def test_loss_falls_with_size_check_can_fail():
    assert sr.check_loss_falls_with_size(_final([2.0, 1.0], [1.5, 0.5])).verdict == "yes"
    assert sr.check_loss_falls_with_size(_final([2.0, 1.0], [1.5, 1.2])).verdict == "no"


def test_gap_check_can_fail():
    base = _final([2.0, 1.0], [1.5, 0.5])
    gap = pd.DataFrame([{"preset": "s", "non_embedding_params": 10, "per_token_frequency": 1e-3,
                         "task_test_loss": 2.5, "kind": "gap", "every": 8}])
    assert [c.verdict for c in sr.check_gap(pd.concat([base, gap]))] == ["yes"]
    assert [c.verdict for c in sr.check_gap(pd.concat([base, gap.assign(task_test_loss=1.0)]))] == ["no"]


def test_all_pairs_equal_budget_count_is_informative():
    eq = pd.DataFrame({"small_task_loss_at_lm": [1.0, 2.0], "large_task_loss_at_lm": [0.5, 2.5]})
    c = sr.check_equal_budget(eq, "at_lm", "LM loss")
    assert c.verdict == "" and c.measured == "1/2 (pair, rate)"  # a count, not a claim


def _eq(acc_small, small, large, freqs=(1e-2, 1e-3)):
    return pd.DataFrame({"per_token_frequency": freqs, "small_final_accuracy": acc_small,
                         "small_task_loss_at_lm": small, "large_task_loss_at_lm": large,
                         "small_task_loss_at_compute": small, "large_task_loss_at_compute": large})


def test_same_trajectory_check_can_fail():
    spread = (0.1, 8)  # tolerance 2 x 0.1 in log task loss
    same = _eq([0.95, 0.6], [0.10, 0.69], [0.11, 0.5])  # the learned rate: log gap 0.095
    c = sr.check_same_trajectory(same, 0.75, spread)
    assert c.verdict == "yes" and "1/1 within 0.200" in c.measured and "rates 1.00e-02" in c.measured
    apart = _eq([0.95, 0.6], [0.10, 0.69], [0.05, 0.5])  # log gap 0.69
    assert sr.check_same_trajectory(apart, 0.75, spread).verdict == "no"
    assert sr.check_same_trajectory(same, 0.75, (float("nan"), 0)).verdict == "n/a"  # no seed pairs
    assert sr.check_same_trajectory(_eq([0.6, 0.6], [1, 1], [0.5, 0.5]), 0.75, spread).verdict == "n/a"


def test_larger_wins_where_the_smaller_does_not_learn_check_can_fail():
    wins = _eq([0.95, 0.6], [0.10, 0.69], [0.5, 0.4])  # the high rate does not count: the smaller learns it
    c = sr.check_larger_wins(wins, 0.75, "at_lm", "held-out LM loss")
    assert c.verdict == "yes" and c.measured == "1/1; rates 1.00e-03" and c.name.startswith("Fig. 22")
    assert sr.check_larger_wins(wins, 0.75, "at_compute", "compute 6ND").name.startswith("Fig. 23")
    loses = _eq([0.95, 0.6], [0.10, 0.69], [0.05, 0.8])
    assert sr.check_larger_wins(loses, 0.75, "at_lm", "held-out LM loss").verdict == "no"
    assert sr.check_larger_wins(_eq([0.9, 0.9], [1, 1], [0.5, 0.5]), 0.75, "at_lm", "LM").verdict == "n/a"


def test_seed_spread_of_log_task_loss_uses_seed_pairs_only():
    final = pd.DataFrame({"preset": ["a", "a", "a", "b"], "per_token_frequency": [1e-3, 1e-3, 1e-2, 1e-3],
                          "kind": ["grid", "seed", "grid", "grid"], "task_test_loss": [1.0, np.e, 5.0, 7.0]})
    sd, dof = sr.seed_spread_log_loss(final)
    assert dof == 1 and sd == pytest.approx(np.sqrt(0.5))


def test_equal_budget_interpolates_along_training():
    rows = []
    for preset, P, losses in (("s", 10, [5.0, 4.5, 4.0]), ("l", 100, [4.8, 4.2, 3.6])):
        for step, hl in zip([1, 2, 3], losses):
            rows.append({"run": preset, "preset": preset, "non_embedding_params": P, "kind": "grid",
                         "per_token_frequency": 1e-3, "step": step, "heldout_loss": hl,
                         "task_test_loss": hl / 2, "compute": 6.0 * P * step, "test_accuracy": 0.5 + step / 10})
    eq = sr.equal_budget(pd.DataFrame(rows))
    r = eq.iloc[0]
    assert r["heldout_loss_level"] == 4.0  # the worse final of the two
    assert r["small_final_accuracy"] == pytest.approx(0.8)  # what decides "learned" for the pair
    assert r["small_task_loss_at_lm"] == pytest.approx(2.0) and r["large_task_loss_at_lm"] == pytest.approx(2.0)
    # s ends at compute 180; l's curve spans 600..1800 and never passes through 180: not measurable
    assert r["small_task_loss_at_compute"] == pytest.approx(2.0) and np.isnan(r["large_task_loss_at_compute"])


def test_learned_order_check_can_fail():
    ok = pd.DataFrame({"preset": ["s"] * 3, "per_token_frequency": [1e-3, 1e-2, 1e-1], "learned_step": [900, 500, 100]})
    assert sr.check_learned_order(ok)[0].verdict == "yes"
    assert sr.check_learned_order(ok.assign(learned_step=[100, 500, 900]))[0].verdict == "no"
    assert sr.check_learned_order(ok.assign(learned_step=[np.nan, np.nan, 100]))[0].verdict == "n/a"


def test_probe_trend_check_can_fail():
    p = pd.DataFrame({"trained": [True, True], "per_token_frequency": [1e-2, 1e-2], "non_embedding_params": [10, 100],
                      "das_iia": [0.6, 0.9], "run": ["a", "b"], "step": [100, 100]})
    assert sr.check_probe_trend(p, "das_iia", "DAS", True)[0].verdict == "yes"
    assert sr.check_probe_trend(p.assign(das_iia=[0.9, 0.6]), "das_iia", "DAS", True)[0].verdict == "no"
    # across checkpoints, each run is judged at its last one
    more = pd.concat([p, p.assign(step=[200, 200], das_iia=[0.95, 0.7])], ignore_index=True)
    assert sr.check_probe_trend(more, "das_iia", "DAS", True)[0].verdict == "no"


def _probed(small, big, steps=(100, 200, 300), f=1e-2):
    """A probe table of two sizes at ``steps``: ``small`` and ``big`` give das_iia per step."""
    rows = []
    for run, P, vals in (("s", 10, small), ("b", 100, big)):
        rows.append({"run": run, "preset": run, "non_embedding_params": P, "per_token_frequency": f,
                     "checkpoint": "init", "trained": False, "step": 0, "test_accuracy": np.nan, "das_iia": 0.5})
        for st, v in zip(steps, vals):
            rows.append({"run": run, "preset": run, "non_embedding_params": P, "per_token_frequency": f,
                         "checkpoint": f"step-{st:06d}", "trained": True, "step": st, "test_accuracy": 0.5 + v / 3,
                         "das_iia": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("small, big, verdict", [
    ((0.5, 0.6, 0.8), (0.6, 0.8, 0.9), "yes"),   # the largest reaches 0.75 at step 200, the smallest at 300
    ((0.5, 0.5, 0.6), (0.5, 0.6, 0.8), "yes"),   # only the largest reaches it
    ((0.6, 0.8, 0.9), (0.5, 0.6, 0.8), "no"),    # the smallest first
    ((0.6, 0.8, 0.9), (0.5, 0.6, 0.7), "no"),    # only the smallest
    ((0.5, 0.8, 0.9), (0.5, 0.8, 0.9), "n/a"),   # the same checkpoint: not resolved
    ((0.5, 0.6, 0.7), (0.5, 0.6, 0.7), "n/a"),   # neither
])
def test_feature_onset_check_answers_each_way(small, big, verdict):
    on = sr.feature_onsets(_probed(small, big), "das_iia", 0.75)
    checks = sr.check_feature_onset(on, "das_iia")
    assert checks[0].verdict == verdict, checks[0]
    info = [c for c in checks[1:]]
    assert len(info) == 2 and all(c.verdict == "" for c in info)  # rank correlation with accuracy, per run
    assert "Spearman +1.00" in info[0].measured


def test_a_sweep_without_probes_has_no_feature_onsets():
    """The replicate sweep probes nothing: its (empty) probe table gives an empty onsets table
    and no Fig. 7 checks, not an error."""
    on = sr.feature_onsets(pd.DataFrame(), "das_iia", 0.75)
    assert on.empty and "onset_step" in on.columns
    assert sr.check_feature_onset(on, "das_iia") == []


def test_feature_onset_needs_checkpoints_across_training():
    last_only = _probed((0.8,), (0.9,), steps=(300,))
    assert sr.check_feature_onset(sr.feature_onsets(last_only, "das_iia", 0.75), "das_iia") == []


def _acc_curves(curves: dict, steps=(500, 1000, 1500, 2000, 2500, 3000)) -> pd.DataFrame:
    """A run table of grid runs: curves[(P, f)] = (train accuracies, test accuracies) per step."""
    rows = []
    for (P, f), (tr, te) in curves.items():
        for st, a, b in zip(steps, tr, te):
            rows.append({"run": f"/s/p{P}-f{f}", "preset": f"p{P}", "non_embedding_params": P, "per_token_frequency": f,
                         "kind": "grid", "step": st, "train_accuracy": a, "test_accuracy": b})
    return pd.DataFrame(rows)


NONE = ((0.01,) * 6, (0.01,) * 6)
GROK = ((0.2, 0.95, 1, 1, 1, 1), (0.01, 0.01, 0.02, 0.3, 0.8, 0.9))  # train at 1000, test at 2500: 2.5x
TOGETHER = ((0.3, 0.95, 1, 1, 1, 1), (0.2, 0.7, 0.9, 0.9, 0.9, 0.9))  # both at 1000
MEMO = ((0.3, 0.95, 1, 1, 1, 1), (0.01,) * 6)
LATE = ((0.1, 0.2, 0.5, 0.95, 1, 1), (0.01,) * 6)  # train fitted at 2000, the run ends at 3000 < 4000
SPACED = ((0.3, 0.95, 1, 1, 1, 1), (0.01, 0.01, 0.02, 0.8, 0.9, 0.9))  # risen between 1500 and 2000 = 2 x 1000
UNFIT = ((0.3, 0.6, 0.7, 0.8, 0.8, 0.8), (0.2, 0.6, 0.7, 0.7, 0.7, 0.7))


def test_grokking_table_names_each_outcome():
    t = sr.grokking_table(_acc_curves({(10, 1e-3): NONE, (10, 1e-2): GROK, (100, 1e-3): TOGETHER,
                                       (100, 1e-2): MEMO, (1000, 1e-3): LATE, (1000, 1e-2): SPACED,
                                       (1000, 1e-1): UNFIT}), 0.01).set_index("run")
    assert list(t["outcome"]) == ["not learned", "grokked", "learned together", "memorised only",
                                  "fitted too late to tell", "not resolved at this checkpoint spacing",
                                  "learned, train not fitted"]
    assert t.loc["p10-f0.01", "train_fit_step"] == 1000
    assert t.loc["p10-f0.01", "test_rise_step"] == 2500 and np.isnan(t.loc["p100-f0.01", "test_rise_step"])
    # the seed runs are not the grid
    seeded = _acc_curves({(10, 1e-2): GROK}).assign(kind="seed")
    assert sr.grokking_table(seeded, 0.01).empty


@pytest.mark.parametrize("curves, verdicts", [
    # only the largest at the highest rate groks: the paper's note
    ({(10, 1e-3): NONE, (10, 1e-2): MEMO, (100, 1e-3): MEMO, (100, 1e-2): GROK}, ["yes", "yes", "yes"]),
    # the largest at the highest rate does not grok
    ({(10, 1e-3): NONE, (10, 1e-2): MEMO, (100, 1e-3): MEMO, (100, 1e-2): TOGETHER}, ["no", "yes", "n/a"]),
    # the smallest at the lowest rate groks (and so do all): not "only larger"
    ({(10, 1e-3): GROK, (10, 1e-2): GROK, (100, 1e-3): GROK, (100, 1e-2): GROK}, ["yes", "no", "yes"]),
    # the smaller size groks where the larger at its rate does not
    ({(10, 1e-3): NONE, (10, 1e-2): GROK, (100, 1e-3): NONE, (100, 1e-2): TOGETHER}, ["no", "yes", "no"]),
    # nothing learned anywhere: grokking is not measurable (the CPU T_ADD outcome), never a pass
    ({(10, 1e-3): NONE, (10, 1e-2): NONE, (100, 1e-3): NONE, (100, 1e-2): NONE}, ["n/a", "n/a", "n/a"]),
    # the largest at the highest rate fitted its train split too late to tell, or between
    # checkpoints that cannot resolve 2x: n/a, not "no"; and it is left out of the order check
    ({(10, 1e-3): NONE, (10, 1e-2): GROK, (100, 1e-3): MEMO, (100, 1e-2): LATE}, ["n/a", "yes", "yes"]),
    ({(10, 1e-3): NONE, (10, 1e-2): GROK, (100, 1e-3): MEMO, (100, 1e-2): SPACED}, ["n/a", "yes", "yes"]),
])
def test_grokking_checks_answer_each_way(curves, verdicts):
    checks = sr.check_grokking(sr.grokking_table(_acc_curves(curves), 0.01))
    assert [c.verdict for c in checks] == verdicts, [c.measured for c in checks]
    if verdicts == ["n/a"] * 3:
        assert "no run learned T_ADD" in checks[0].measured
    elif verdicts[0] == "n/a":
        assert "too late to tell" in checks[0].measured or "checkpoint spacing" in checks[0].measured


def test_fourier_summary_takes_the_layer_whose_modes_carry_most_variance():
    flat = np.full(50, 1 / 50)
    peaked = np.full(50, 0.2 / 47)
    peaked[[0, 9, 29]] = [0.3, 0.3, 0.2]  # frequencies 1, 10, 30 carry 0.8 of the class means
    layers = pd.DataFrame({"layer": [0, 1, 2], "modes": [np.array([], int), np.array([1, 10, 30]), np.array([1, 10, 30])],
                           "fractions": [flat, peaked, peaked], "class_share": [0.9, 0.5, 0.002]})
    var, n = sr.fourier_summary(layers)
    assert n == 3 and var == pytest.approx(0.4)  # layer 1: 0.5 x 0.8
    assert sr.fourier_summary(layers.iloc[:1]) == (0.0, 0)  # no mode: no Fourier feature, whatever the class share
    var, _ = sr.fourier_summary(layers.iloc[[2]])  # modes of a negligible class structure: far below the level
    assert var == pytest.approx(0.0016) and var < sr.FEATURE_LEVELS["fourier_variance"]


def test_an_add_sweeps_probe_figures_draw_fourier_alone_and_say_so(tmp_path):
    """An add sweep's probe table holds only the Fourier summary: the across-sizes figure draws
    it (it crashed on 0 panels), and both captions name what is drawn; with no feature at all
    there is no Fig. 7 analog."""
    p = _probed((0.01, 0.05, 0.2), (0.02, 0.15, 0.4)).rename(columns={"das_iia": "fourier_variance"})
    fig = sr._fig_probes(p, tmp_path)
    assert fig is not None and "Fourier modes of (a + b) mod 100" in fig.caption and "DAS" not in fig.caption
    f7 = sr._fig_features(p, ["s", "b"], {"s": "C0", "b": "C1"}, 0.01, tmp_path)
    assert "Fourier modes of (a + b) mod 100" in f7.caption and "DAS" not in f7.caption
    bare = p.drop(columns=["fourier_variance"])
    assert sr._fig_probes(bare, tmp_path) is None and sr._fig_features(bare, ["s", "b"], {}, 0.01, tmp_path) is None


def test_claims_of_an_add_sweep_name_fourier_modes_and_judge_grokking():
    from raretask.report.html import Check

    sw = {"task": "add", "rates": [16, 8, 4], "train": {"batch_size": 16, "seq_len": 64, "steps": 2000}, "gaps": None}
    crit = pd.DataFrame({"non_embedding_params": [18432, 1179648]})
    na = Check.not_measurable("g", 1, "no run learned T_ADD")
    t = sr.claims_table({"Grokking": [na, na]}, sw, crit, pd.DataFrame()).set_index("claim")
    assert "T_ADD Fourier modes" in t.loc["Fig. 7", "raretask_regime"] and "no T_ADD" not in t.loc["Fig. 7", "raretask_regime"]
    assert "grokked when the rise comes at 2x" in t.loc["Grokking", "raretask_regime"]
    assert t.loc["Grokking", "verdict"] == "n/a" and t.loc["Grokking", "checks"] == "0 yes, 0 no, 2 n/a"
    yes, no = Check("a", 1, 1, True), Check("b", 1, 1, False)
    assert sr.claims_table({"Grokking": [yes, no]}, sw, crit, pd.DataFrame()).set_index("claim").loc[
        "Grokking", "verdict"] == "no"
    cmp_ = sr.claims_table({}, {**sw, "task": "cmp"}, crit, pd.DataFrame()).set_index("claim")
    assert cmp_.loc["Grokking", "raretask_regime"] == "not run: the sweep injects cmp only"


# ---- the sizing answer -----------------------------------------------------------------------

def _sweep_dir(tmp_path, exponent=-0.5, sizes=(2e4, 8e4, 3e5, 1.2e6), scatter=(0.0, 0.02, -0.02, 0.0), name="sweep",
               censored=None):
    d = tmp_path / name
    (d / "scaling").mkdir(parents=True)
    P = np.asarray(sizes)
    f = 10 ** (-1 + exponent * np.log10(P) + np.asarray(scatter))
    c = _crit(list(f), list(f / 1.3), list(f * 1.3), censored=censored, P=list(P.astype(int)))
    c["f_star"] = np.where(c["censored"] != "", np.nan, c["f_star"])
    c.to_parquet(d / "scaling" / "critical.parquet")
    return d


def test_sizing_recovers_a_known_power_law_and_flags_extrapolation(tmp_path):
    d = _sweep_dir(tmp_path)
    res = sz.sizing(d, frequency=10 ** (-1 - 0.5 * 5))  # P = 1e5: inside the range
    assert res["exponent"] == pytest.approx(-0.5, abs=0.05)
    a = res["answer"]
    assert a["value"] == pytest.approx(1e5, rel=0.25) and a["outside_range"] == 1.0
    assert a["prediction_interval"][0] < a["confidence_interval"][0] < 1e5 < a["confidence_interval"][1] < \
        a["prediction_interval"][1]
    far = sz.sizing(d, params=1.2e8)
    assert far["answer"]["outside_range"] == pytest.approx(100)
    text = sz.sizing_text(far)
    assert "EXTRAPOLATED: x100.00" in text and "95% prediction interval" in text and "interval to plan with" in text
    held = sz.sizing(d, exclude_largest=True)["held_out"]
    assert held["ratio_predicted_to_measured"] == pytest.approx(1.0, rel=0.2)
    assert held["measured_inside_prediction_interval"]
    assert held["outside_range"] == pytest.approx(1.2e6 / 3e5)


def test_sizing_says_when_the_held_out_size_is_mispredicted(tmp_path):
    d = _sweep_dir(tmp_path, scatter=(0.0, 0.01, -0.01, 1.0))  # the largest is 10x off the law
    held = sz.sizing(d, exclude_largest=True)["held_out"]
    assert held["measured_inside_prediction_interval"] is False and held["ratio_predicted_to_measured"] < 0.2
    assert "OUTSIDE the prediction interval" in sz.sizing_text(sz.sizing(d, exclude_largest=True))


def test_a_censored_held_out_size_is_never_compared_as_a_number(tmp_path):
    d = _sweep_dir(tmp_path, censored=["", "", "", "below"])
    res = sz.sizing(d, exclude_largest=True)
    assert res["held_out"]["measured_inside_prediction_interval"] is None
    assert "censored, so no number to compare" in sz.sizing_text(res) and res["left_out"] == ["w3"]


def test_rollout_predicts_each_next_size_and_reports_coverage(tmp_path):
    d = _sweep_dir(tmp_path, sizes=(2e4, 8e4, 3e5, 1.2e6, 4.8e6), scatter=(0, 0.01, -0.01, 0.0, 1.0))
    t = sz.rollout(sz.read_critical(d))
    assert list(t["predicted_size"]) == ["w2", "w3", "w4"]
    assert list(t["covered"]) == [True, True, False]  # the last is a decade off the law
    assert t.loc[0, "note"] == "scatter and bend not estimable from 2 sizes"
    assert list(t["params_covered"]) == list(t["covered"])  # the inverted band covers the size iff the band covers f*
    text = sz.rollout_text(t)
    assert "coverage: 2 of 3 predictions inside their interval" in text and "NO" in text


def test_replicates_are_compared_size_by_size(tmp_path):
    a = _sweep_dir(tmp_path, name="a")
    b = _sweep_dir(tmp_path, name="b", scatter=(0.0, 0.02, 0.5, 0.0))  # w2 3x higher in b
    res = sz.sizing(a, replicate=b)
    rows = {r["preset"]: r for r in res["replicate"]["sizes"]}
    assert rows["w0"]["a_in_b"] and rows["w0"]["b_in_a"]
    assert not rows["w2"]["a_in_b"] and not rows["w2"]["b_in_a"]
    assert "w2" in sz.sizing_text(res) and "NO" in sz.sizing_text(res)


def _cli(*a):
    return subprocess.run([sys.executable, "-m", "raretask.cli", "lm", "sizing", *a], capture_output=True, text=True)


def test_sizing_errors_are_one_line(tmp_path):
    r = _cli(str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("raretask: error:") == 1 and "Traceback" not in r.stderr
    d = _sweep_dir(tmp_path)
    r = _cli(str(d), "--frequency", "0.01", "--params", "1e5")
    assert r.returncode == 2
    c = pd.read_parquet(d / "scaling" / "critical.parquet")
    c.assign(bracketed=False, censored="above", f_star=np.nan).to_parquet(d / "scaling" / "critical.parquet")
    r = _cli(str(d), "--frequency", "0.001")
    assert r.returncode == 1 and "cannot fit f*(size)" in r.stderr and "above 0.0156/token" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(RaretaskError):
        sz.sizing(d)


def test_a_sweep_with_one_size_is_refused(tmp_path):
    d = _sweep_dir(tmp_path, sizes=(2e4,), scatter=(0.0,))
    r = _cli(str(d), "--validate")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "1 model size(s)" in r.stderr
    assert "at least two sizes" in r.stderr


def test_sizing_json_is_strict_json(tmp_path):
    d = _sweep_dir(tmp_path, censored=["", "", "", "above"])
    r = _cli(str(d), "--exclude-largest", "--validate", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert res["held_out"]["measured_f_star"] is None and res["rollout"][-1]["covered"] is None


def test_a_report_from_before_the_learned_level_is_refused_with_the_fix(tmp_path):
    d = _sweep_dir(tmp_path)
    pd.read_parquet(d / "scaling" / "critical.parquet").drop(columns=["censored"]).to_parquet(
        d / "scaling" / "critical.parquet")
    r = _cli(str(d))
    assert r.returncode == 2 and "re-run its `raretask lm sweep` command" in r.stderr


def test_claims_table_judges_each_claim_by_its_checks_and_never_off_its_regime():
    from raretask.report.html import Check

    sw = {"task": "cmp", "rates": [16, 2, 0.25], "train": {"batch_size": 16, "seq_len": 64, "steps": 2000},
          "gaps": None}
    crit = pd.DataFrame({"non_embedding_params": [18432, 1179648]})
    yes, no, na = Check("a", 1, 1, True), Check("b", 1, 1, False), Check.not_measurable("c", 1, "why")
    by = {"Fig. 5": [yes, yes], "Fig. 6a": [yes, na], "Fig. 6b": [], "Fig. 22": [yes, no],
          "Fig. 23": [Check("info", 1, 1, None)], "Fig. 9": [], "Fig. 9 (final checkpoints)": [no], "Fig. 7": [yes]}
    t = sr.claims_table(by, sw, crit, pd.DataFrame()).set_index("claim")
    assert list(t.index) == ["Fig. 5", "Fig. 6a", "Fig. 6b", "Fig. 7", "Fig. 9", "Fig. 22", "Fig. 23", "Grokking"]
    assert t.loc["Fig. 5", "verdict"] == "yes" and t.loc["Fig. 22", "verdict"] == "no"
    assert t.loc["Fig. 6a", "verdict"] == "n/a" and t.loc["Fig. 6b", "checks"] == "not measured"
    assert t.loc["Fig. 23", "verdict"] == "n/a"  # an informative row alone judges nothing
    # a "no" measured at final checkpoints is not the paper's during-training claim
    assert t.loc["Fig. 9", "verdict"] == "n/a" and "not during training" in t.loc["Fig. 9", "checks"]
    assert "18,432-1,179,648 non-embedding" in t.loc["Fig. 5", "raretask_regime"]
    assert "no gap runs" in t.loc["Fig. 6b", "raretask_regime"] and "1024 x 4096" in t.loc["Fig. 5", "paper_regime"]
    # with the interference stage, Fig. 9 is judged on the stage's during-training checks, with its note
    staged = {**sw, "interference": {"presets": ["w24", "w192"], "n": 16, "every": 4}}
    t = sr.claims_table({**by, "Fig. 9": [yes, no]}, staged, crit, pd.DataFrame(),
                        {"Fig. 9": "claim (i) holds raw: yes"}).set_index("claim")
    assert t.loc["Fig. 9", "verdict"] == "no" and t.loc["Fig. 9", "checks"] == "1 yes, 1 no, 0 n/a; claim (i) holds raw: yes"
    assert "interference stage: sizes w24, w192, 16 instances every 4 steps" in t.loc["Fig. 9", "raretask_regime"]
    t = sr.claims_table({**by, "Fig. 9": [yes, yes]}, staged, crit, pd.DataFrame()).set_index("claim")
    assert t.loc["Fig. 9", "verdict"] == "yes"


def test_a_censored_bound_is_said_per_token_and_per_batch():
    nan = float("nan")
    c = _crit([nan, nan], [nan, nan], [nan, nan], censored=["below", "above"]).assign(rate_min=0.25, rate_max=16.0)
    rows = list(c.itertuples())
    assert sz.describe_row(rows[0]) == "below 0.00024/token, 0.25 per batch (learned at every rate run)"
    assert sz.describe_row(rows[1]) == "above 0.0156/token, 16 per batch (not learned at any rate run)"
