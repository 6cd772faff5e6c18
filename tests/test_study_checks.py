"""Every check a study report shows can answer "no" (or "n/a" where nothing is measurable).

Each test feeds a check the result it should accept (built from the theory, or a clean
trajectory) and then results that violate its claim: a staircase shifted by two grid steps,
total loss 20% off, flat retention curves, a width that never learns, a frequency ratio of
1.2, a wrong decay rate, a learned baseline. A check that no constructed result can fail
would be a defect (DEVELOPERS.md), so each one appears here.
"""

import numpy as np
import pandas as pd
import pytest

from raretask.mixture import MixtureSpec, critical_widths, retained_features
from raretask.report.html import Check, all_passed
from raretask.studies import build_config
from raretask.studies import long_horizon, one_neuron, phase, rank1, remedies, retention, upweight
from raretask.studies._theory_helpers import theory_grid_tables
from raretask.studies.residual import residual_checks


def verdicts(checks: list[Check]) -> list[str]:
    return [c.verdict for c in checks if c.verdict]


# ---------------------------------------------------------------- Check itself
def test_not_measurable_is_never_a_pass():
    na = Check.not_measurable("x", "y", "nothing learned")
    assert na.verdict == "n/a" and na.ok is None and na.measured.startswith("n/a")
    assert not all_passed([Check("a", 1, 1, True), na])
    assert all_passed([Check("a", 1, 1, True), Check("info", 1, "informative", None)])
    assert not all_passed([Check("a", 1, 1, False)])


# ---------------------------------------------------------------- phase (SPEC A5.1)
SPEC = MixtureSpec(n_tasks=16, block_dim=8, beta=1.5, alpha=1.0)
GRID = [2, 4, 8, 16, 24, 32, 48, 64, 96, 128]


def theory_results(spec, grid, shift: int = 0, total_scale: float = 1.0) -> pd.DataFrame:
    """A one-step results table that is Theorem 3 at each width, or at the width ``shift``
    grid steps narrower (a staircase shifted right), total loss x ``total_scale``."""
    th = theory_grid_tables(spec, grid)
    rows = []
    for i, w in enumerate(grid):
        j = i - shift
        feat = retained_features(spec, grid[j]) if j >= 0 else np.zeros(spec.K, int)
        sig = th["corrected_signal"][:, j] if j >= 0 else np.zeros(spec.K)
        for k in range(spec.K):
            rows.append({"cell": "s-seed0", "seed": 0, "step": 100, "width": w, "task": k + 1,
                         "corrected_signal": sig[k], "n_features": int(feat[k]),
                         "norm_loss": th["norm_loss"][k, max(j, 0)],
                         "total_loss": th["total_loss"][i] * total_scale})
    return pd.DataFrame(rows)


def test_phase_checks_accept_theory_and_reject_a_shifted_staircase_and_a_wrong_total():
    checks, _ = phase.agreement_checks(SPEC, GRID, theory_results(SPEC, GRID), "t")
    assert verdicts(checks) == ["yes", "yes", "yes"]  # the first row is information
    assert checks[0].ok is None and not checks[0].na
    shifted, _ = phase.agreement_checks(SPEC, GRID, theory_results(SPEC, GRID, shift=2), "t")
    assert verdicts(shifted)[:2] == ["no", "no"]
    off, _ = phase.agreement_checks(SPEC, GRID, theory_results(SPEC, GRID, total_scale=1.2), "t")
    assert verdicts(off) == ["yes", "yes", "no"]


# ---------------------------------------------------------------- residual (SPEC A5.2)
def residual_rows(widths, residual, signal):
    return pd.DataFrame({"width": widths, "residual": residual, "corrected_signal": signal})


def test_residual_checks_look_at_every_width_below_the_threshold():
    ok = residual_rows([8, 16, 32, 64], [1.0, 0.5, 0.05, 0.01], [0.0, 0.02, 0.4, 0.9])
    assert verdicts(residual_checks(ok, 0.1, 5, "t")) == ["yes", "yes", "yes"]
    # learned where delta_F is still above delta*_r
    assert verdicts(residual_checks(residual_rows([8, 16, 32], [1.0, 0.5, 0.05], [0.0, 0.5, 0.9]), 0.1, 5, "t"))[0] == "no"
    # one width below the threshold stays at the baseline although the widest rises: the old
    # check (widest width only) passed this
    bad = residual_rows([8, 32, 48, 64], [1.0, 0.05, 0.03, 0.01], [0.0, 0.02, 0.6, 0.9])
    assert verdicts(residual_checks(bad, 0.1, 5, "t")) == ["yes", "no", "yes"]
    # falls again as delta_F shrinks
    bad = residual_rows([8, 32, 48, 64], [1.0, 0.05, 0.03, 0.01], [0.0, 0.7, 0.3, 0.6])
    assert verdicts(residual_checks(bad, 0.1, 5, "t"))[2] == "no"
    # never below the threshold: nothing to measure, not a pass
    assert verdicts(residual_checks(residual_rows([8, 16], [1.0, 0.5], [0.0, 0.0]), 0.1, 5, "t")) == \
        ["yes", "n/a", "n/a"]


# ---------------------------------------------------------------- retention (SPEC A5.3)
GAPS = [1, 8, 64, 512]
KEPT_OK = {"measurable": True, "median": 0.2, "q25": 0.1, "q75": 0.3, "above_noise": 20}


def kept(median=None, why="not learned"):
    if median is None:
        return {"measurable": False, "why": why}
    return {**KEPT_OK, "median": median}


def fin_table(small, large):
    return pd.DataFrame({24: small, 128: large}, index=GAPS)


GOOD_FIN = fin_table([0.3, 0.0, -0.1, -0.1], [1.0, 0.99, 0.55, -0.9])
FLOOR = {24: 0.04, 128: 0.12}
RATIO = {g: 1.0 for g in GAPS}


def run_checks(fin=GOOD_FIN, ratio=RATIO, kept_small=kept(0.1), kept_large=kept(0.7), rise=0.5):
    c1, c2, _ = retention.retention_checks(fin, ratio, FLOOR, {24: kept_small, 128: kept_large}, rise, 64, 24, 128)
    return verdicts(c1), verdicts(c2)


def test_retention_checks_accept_the_paper_pattern():
    assert run_checks() == (["yes", "yes", "yes", "yes"], ["yes", "yes", "yes"])


def test_retention_frequency_ratio_of_1_2_is_a_no():
    c1, _ = run_checks(ratio={**RATIO, 8: 1.2})
    assert c1[0] == "no"


def test_retention_flat_curves_of_a_width_that_never_learns_are_not_a_pass():
    flat = fin_table([0.01, 0.01, 0.01, 0.01], [1.0, 0.99, 0.55, -0.9])
    c1, c2 = run_checks(fin=flat, kept_small=kept(None))
    assert c1 == ["yes", "n/a", "yes", "n/a"]  # non-increasing: n/a; half-signal gap: n/a
    assert c2 == ["n/a", "yes", "yes"]  # its retention: n/a, never "decays" by default
    nothing = fin_table([0.0] * 4, [0.0] * 4)
    c1, c2 = run_checks(fin=nothing, kept_small=kept(None), kept_large=kept(None), rise=0.0)
    assert c1 == ["yes", "n/a", "n/a", "n/a"] and c2 == ["n/a", "n/a", "no"]


def test_retention_checks_reject_violations():
    rising = fin_table([0.3, 0.0, -0.1, -0.1], [0.2, 0.5, 0.9, 1.0])  # learned better with larger gaps
    c1, _ = run_checks(fin=rising)
    assert c1[2] == "no"
    same = fin_table([1.0, 0.99, 0.55, -0.9], [1.0, 0.99, 0.55, -0.9])  # no width effect on the half gap
    assert run_checks(fin=same)[0][3] == "no"
    _, c2 = run_checks(kept_small=kept(0.8), kept_large=kept(0.2), rise=0.1)
    assert c2 == ["no", "no", "no"]


def sawtooth(gap: int, cycles: int, keep: float, gain: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """A trace whose every injection adds ``gain`` at its first update, of which ``keep``
    survives to the next injection (exponential decay in between), plus tiny noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, gap * (cycles + 1) + 1)
    s = np.zeros(len(steps))
    level = base = peak = 0.0
    for t in steps[1:]:
        if t % gap == 0:  # the update of the injection drawn at step t - 1
            base = level
            peak = level + gain
            level = peak
        else:
            level = base + (peak - base) * keep ** ((t % gap) / (gap - 1))
        s[t] = level
    s += 1e-6 * rng.standard_normal(len(s))
    return pd.DataFrame({"step": steps, "corrected_signal": s})


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_kept_share_measures_the_retained_part_of_each_gain(keep):
    tr = sawtooth(16, 40, keep)
    k = retention.kept_share([tr], 16, 16 * 4, floor=0.02)
    assert k["measurable"] and k["max"] <= 1.0 + 1e-9
    assert k["median"] == pytest.approx(keep, abs=0.01)


def test_kept_share_of_a_trace_that_never_moves_is_not_measurable():
    flat = pd.DataFrame({"step": np.arange(1000), "corrected_signal": 1e-4 * np.sin(np.arange(1000))})
    k = retention.kept_share([flat], 16, 64, floor=0.02)
    assert not k["measurable"] and k["why"].startswith("not learned")
    assert not retention.kept_share([sawtooth(16, 40, 0.5)], 1, 16, 0.02)["measurable"]  # G = 1


def test_retention_analysis_of_a_width_that_never_learns(tmp_path):
    """End to end through analyze: the narrow width's trace is flat, the wide one learns at
    small gaps and keeps 60% of each gain at G=8; no check passes on the narrow width."""
    cfg = build_config("retention", "quick", ["widths=[4, 128]", "gaps=[1, 8, 64]", "train.steps=2048"])
    rows = []
    for g in (1, 8, 64):
        wide = sawtooth(g if g > 1 else 8, 2048 // max(g, 8) - 1, 0.6 if g <= 8 else 0.0, gain=0.03)
        for w, tr in ((4, pd.DataFrame({"step": wide["step"], "corrected_signal": 0.0})), (128, wide)):
            rows.append(tr.assign(gap=g, width=w, seed=0))
    trace = pd.concat(rows, ignore_index=True)
    results = pd.DataFrame({"gap": [1, 8, 64], "rare_frequency_ratio": [1.0, 1.0, 1.0]})
    a = retention.analyze(cfg, results, trace, tmp_path)
    checks = [c for f in a.figures for c in f.checks]
    narrow = [c for c in checks if "N=4" in c.name]
    assert narrow and all(c.verdict == "n/a" for c in narrow)
    assert a.summary["kept_share"]["4"]["8"]["why"].startswith("not learned")
    assert a.summary["kept_share"]["128"]["8"]["median"] == pytest.approx(0.6, abs=0.01)
    assert not all_passed(checks)


# ---------------------------------------------------------------- long horizon (SPEC A5.4)
def horizon_results(spec, widths, final_above=0.0, late_gain=0.0):
    crit = critical_widths(spec)[:, 0]
    rows = []
    for w in widths:
        for step in (0, 1000, 100_000, 1_000_000):
            for k in range(1, spec.K + 1):
                if crit[k - 1] <= w:
                    v = 0.9
                else:
                    v = final_above - (late_gain if step < 1_000_000 else 0.0) if step >= 100_000 else 0.0
                rows.append({"cell": "c", "seed": 0, "step": step, "width": w, "task": k, "corrected_signal": v})
    return pd.DataFrame(rows)


def test_long_horizon_checks_reject_late_learning(tmp_path):
    cfg = build_config("long-horizon", "quick")
    spec = cfg.spec()
    ok = long_horizon.analyze(cfg, horizon_results(spec, cfg.widths), None, tmp_path)
    assert set(verdicts(ok.figures[0].checks)) == {"yes"}
    late = long_horizon.analyze(cfg, horizon_results(spec, cfg.widths, final_above=0.2, late_gain=0.1), None, tmp_path)
    assert verdicts(late.figures[0].checks)[:2] == ["no", "no"]


# ---------------------------------------------------------------- rank-1 (SPEC A5.6)
def rank1_results(spec, grid, shift: int):
    crit = critical_widths(spec)[:, 0]
    rows = []
    for i, w in enumerate(grid):
        wd = grid[i - shift] if i >= shift else 0
        for k in range(1, spec.K + 1):
            rows.append({"cell": "c", "seed": 0, "step": 1000, "width": w, "task": k,
                         "signal": 1.0 if wd >= crit[k - 1] else 0.0})
    return pd.DataFrame(rows)


def test_rank1_checks_reject_a_staircase_shifted_by_two_grid_steps(tmp_path):
    cfg = build_config("rank1", "quick")
    grid = sorted(cfg.widths)
    ok = rank1.analyze(cfg, rank1_results(cfg.spec(), grid, 0), None, tmp_path)
    assert verdicts(ok.figures[0].checks) == ["yes", "yes"]
    assert ok.summary["single_seed_resolution"][0]["resolved_at_step"] == 1000
    bad = rank1.analyze(cfg, rank1_results(cfg.spec(), grid, 2), None, tmp_path)
    assert verdicts(bad.figures[0].checks) == ["no", "no"]
    assert bad.summary["single_seed_resolution"][0]["resolved_at_step"] is None


# ---------------------------------------------------------------- one neuron (SPEC A5.7)
def test_one_neuron_checks_reject_a_wrong_decay_rate():
    cfg = build_config("one-neuron", "quick")
    lam1, lam2 = cfg.settings.lambdas
    good = [pd.DataFrame({"gap": g, "step": np.arange(one_neuron.CYCLES * (g + 1) + 1),
                          "theta": one_neuron.simulate(cfg.settings.theta0, cfg.settings.eta, lam1, lam2, g, one_neuron.CYCLES)})
            for g in cfg.settings.gaps]
    checks, detail = one_neuron.one_neuron_checks(cfg, pd.concat(good))
    assert set(verdicts(checks)) == {"yes"}
    assert max(detail["relative_error"]) <= 1.2 * max(detail["discretisation_bound"])
    # the common task pulling twice as hard (a factor-2 slip in its gradient)
    wrong = [pd.DataFrame({"gap": g, "step": np.arange(one_neuron.CYCLES * (g + 1) + 1),
                           "theta": one_neuron.simulate(cfg.settings.theta0, cfg.settings.eta, 2 * lam1, lam2, g, one_neuron.CYCLES)})
             for g in cfg.settings.gaps]
    checks, _ = one_neuron.one_neuron_checks(cfg, pd.concat(wrong))
    assert verdicts(checks)[0] == "no" and verdicts(checks)[-1] == "no"
    checks, _ = one_neuron.one_neuron_checks(cfg, pd.concat(good[:-1]))  # a gap missing
    assert verdicts(checks)[-1] == "no"


# ---------------------------------------------------------------- up-weighting (Part C)
def test_upweight_checks_reject_learning_below_the_plan(tmp_path):
    cfg = build_config("upweight", "quick")
    k = upweight.target_index(cfg) + 1

    def results(feats):
        return pd.DataFrame([{"cell": f"x{m}", "seed": 0, "step": 100, "width": cfg.widths[0], "task": k,
                              "multiplier": m, "n_features": f, "corrected_signal": 0.3 * f}
                             for m, f in zip(cfg.settings.multipliers, feats)])

    ok = upweight.analyze(cfg, results([0, 2]), None, tmp_path)
    assert verdicts(ok.figures[0].checks) == ["yes", "yes"]
    bad = upweight.analyze(cfg, results([2, 0]), None, tmp_path)
    assert verdicts(bad.figures[0].checks) == ["no", "no"]


# ---------------------------------------------------------------- remedies (Part C)
def test_remedies_premise_check_rejects_a_baseline_that_learns():
    def table(learned_baseline):
        rows = [{"small_width": 16, "remedy": name, "learned": (name != "baseline") or learned_baseline,
                 "rare_features": 1.0, "rare_signal": 0.4, "common_loss_change": 0.0, "compute_ratio": 1.0}
                for name in remedies.REMEDIES]
        return pd.DataFrame(rows)

    assert verdicts(remedies.remedy_checks(table(False), 64, 6)) == ["yes"]
    assert verdicts(remedies.remedy_checks(table(True), 64, 6)) == ["no"]


# ---------------------------------------------------------------- lm eval: template counts (SPEC B4)
def test_lm_template_count_checks_reject_a_count_off_the_brute_force_and_the_text():
    from raretask.lm._evaluate import frequency_checks

    base = {"template": "{x} + {y} =", "counted_as": " {x} + {y} =", "instantiations": 10_000,
            "instantiations_present": 3, "counted_with": "infini-gram", "count": 12, "per_token": 12 / 1e6,
            "corpus_tokens": 1_000_000, "brute_force_count": 12, "text_count": 12}
    assert verdicts(frequency_checks({"addition": base})) == ["yes", "yes"]
    assert verdicts(frequency_checks({"addition": {**base, "brute_force_count": 11}})) == ["no", "yes"]
    assert verdicts(frequency_checks({"addition": {**base, "text_count": 11}})) == ["yes", "no"]


def test_retention_dynamics_caption_follows_the_verdicts():
    """The caption under the dynamics figure says what its checks found, never the paper's story
    ahead of them (before: "the wide one keeps each gain" under a check answering no)."""
    def caption(**kw):
        _, c2, _ = retention.retention_checks(GOOD_FIN, RATIO, FLOOR, {24: kw.get("small", kept(0.1)),
                                                                     128: kw.get("large", kept(0.7))},
                                              kw.get("rise", 0.5), 64, 24, 128)
        return retention.dynamics_caption(c2, 24, 128)

    assert caption() == ("The narrow model (N = 24) decays back between injections; the wide one (N = 128) keeps "
                         "each gain and builds on it.")
    flipped = caption(small=kept(0.8), large=kept(0.389), rise=0.1)
    assert "keeps half or more of each gain" in flipped and "keeps less than half of each gain" in flipped
    assert "does not build up" in flipped and "keeps each gain" not in flipped
    assert "not measurable" in caption(small=kept(None))
