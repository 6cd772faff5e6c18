"""Critical frequency and the law across sizes on synthetic sweeps with a known truth (issue 21):
f* at the fixed learned level, censoring as a bound (never a number), run-level intervals with
seed noise, the Huber law with its confidence and prediction intervals."""

import math

import numpy as np
import pytest

from raretask import ConfigError
from raretask.lm.scaling import (critical_frequency, fit_power_law, learned_level, lowest_frequency_for, seed_noise,
                                 smallest_params_for, theory_exponent)

RATES = np.array([16, 5.656854, 2, 0.707107, 0.25]) / 1024  # cpu-scaling's per-token frequencies


def curve(f, f_star, chance=0.5, ceil=0.98, k=3.0):
    """Accuracy crossing the learned level 0.75 exactly at f_star."""
    level = learned_level(chance)
    x0 = np.log10(f_star) - math.log((level - chance) / (ceil - level)) / k
    return chance + (ceil - chance) / (1 + np.exp(-k * (np.log10(f) - x0)))


def sweep(f_star, noise=0.04, seed=0, ceil=0.98):
    rng = np.random.default_rng(seed)
    f = np.r_[RATES, RATES[1:3]]  # a grid seed and two boundary seeds
    return f, np.clip(curve(f, f_star, ceil=ceil) + rng.normal(0, noise, len(f)), 0, 1)


def test_f_star_is_where_accuracy_crosses_the_learned_level_not_the_ceilings_midpoint():
    f, acc = sweep(2e-3, noise=0.0, ceil=0.85)
    c = critical_frequency(f, acc, chance=0.5, noise_sd=0.03, n_boot=300)
    assert c.level == 0.75 and not c.censored and c.bracketed and c.converged
    assert c.f_star == pytest.approx(2e-3, rel=0.02)
    # the old definition (midpoint of chance and a 0.85 ceiling, 0.675) sits at a lower frequency
    assert c.f_star_ceiling < 0.8 * c.f_star and c.ceiling == pytest.approx(0.85, abs=0.01)
    assert c.lo < 2e-3 < c.hi and math.isfinite(c.se_log10) and c.se_log10 > 0


def test_run_intervals_grow_with_seed_noise_and_cover_the_truth():
    f, acc = sweep(2e-3, noise=0.04, seed=3)
    narrow = critical_frequency(f, acc, chance=0.5, noise_sd=0.01, n_boot=300)
    wide = critical_frequency(f, acc, chance=0.5, noise_sd=0.08, n_boot=300)
    assert wide.se_log10 > 2 * narrow.se_log10
    assert wide.lo < 2e-3 < wide.hi


def test_censoring_is_a_bound_never_a_number():
    low = critical_frequency(*sweep(1e-6), chance=0.5, noise_sd=0.04, n_boot=100)  # learned at every rate
    assert low.censored == "below" and math.isnan(low.f_star) and not low.bracketed
    assert low.describe(1024) == "below 0.000244/token, 0.25 per batch (learned at every rate run)"
    high = critical_frequency(*sweep(1.0), chance=0.5, noise_sd=0.04, n_boot=100)  # learned at none
    assert high.censored == "above" and math.isnan(high.f_star)
    assert "not learned at any rate run" in high.describe()
    # a ceiling below the learned level never crosses it: censored above, whatever its midpoint
    f = np.r_[RATES, RATES[1:3]]
    flat = critical_frequency(f, 0.5 + 0.2 / (1 + np.exp(-3 * (np.log10(f) + 2.5))), chance=0.5, noise_sd=0.02,
                              n_boot=100)
    assert flat.censored == "above" and math.isnan(flat.f_star) and flat.ceiling < 0.75


def test_bad_points_are_refused():
    with pytest.raises(ConfigError):
        critical_frequency([1e-3, -1], [0.5, 0.6], chance=0.5)
    with pytest.raises(ConfigError):
        critical_frequency([1e-3], [0.5, 0.6], chance=0.5)
    two = critical_frequency([1e-3, 1e-2, 1e-3], [0.5, 0.9, 0.55], chance=0.5)  # two rates: not fitted
    assert math.isnan(two.f_star) and not two.bracketed


def test_seed_noise_pools_groups_of_two_or_more():
    sd, dof = seed_noise([[0.6, 0.7], [0.8, 0.8], [0.9]])
    assert dof == 2 and sd == pytest.approx(math.sqrt(0.005 / 2))  # (0.6, 0.7): SS 0.005; (0.8, 0.8): 0
    assert seed_noise([[0.5], [0.6]]) == (pytest.approx(float("nan"), nan_ok=True), 0)


def test_law_recovers_the_exponent_and_keeps_two_intervals_apart():
    params = np.array([1e4, 4e4, 1.6e5, 6.4e5])
    f = 1e-1 * params**-0.4
    law = fit_power_law(params, f, [0.05] * 4)
    assert law.exponent == pytest.approx(-0.4, abs=1e-6) and law.exponent_lo < -0.4 < law.exponent_hi
    assert law.tau2 == 0.0 and law.converged
    near, far = lowest_frequency_for(law, 1.6e5), lowest_frequency_for(law, 1e8)
    for a in (near, far):  # the prediction interval holds the confidence interval
        assert a.lo < a.conf_lo < a.value < a.conf_hi < a.hi
    assert math.log10(far.hi / far.lo) > 1.5 * math.log10(near.hi / near.lo)  # widens with extrapolation
    assert far.outside_range == pytest.approx(1e8 / 6.4e5)
    # the prediction interval carries a new size's own error: at least +-1.96 x 0.05 decades
    assert math.log10(near.hi / near.value) >= 1.96 * 0.05


def test_scatter_around_the_law_widens_the_prediction_interval():
    params = np.array([1e4, 4e4, 1.6e5, 6.4e5, 2.56e6])
    clean = fit_power_law(params, 1e-1 * params**-0.4, [0.02] * 5)
    bumpy = fit_power_law(params, 1e-1 * params**-0.4 * 10 ** np.array([0.15, -0.15, 0.15, -0.15, 0.15]), [0.02] * 5)
    assert clean.tau2 == 0 and bumpy.tau2 > 0.01
    a, b = lowest_frequency_for(clean, 1e7), lowest_frequency_for(bumpy, 1e7)
    assert b.hi / b.lo > 3 * (a.hi / a.lo)


def test_two_sizes_fit_but_their_scatter_is_not_estimable():
    law = fit_power_law([1e4, 4e4], [1e-2, 5e-3], [0.05, 0.05])
    assert math.isnan(law.tau2) and law.exponent == pytest.approx(math.log10(0.5) / math.log10(4))


def test_a_law_needs_two_distinct_sizes():
    with pytest.raises(ConfigError, match="at least two"):
        fit_power_law([1e4], [1e-3], [0.1])
    with pytest.raises(ConfigError, match="distinct"):
        fit_power_law([1e4, 1e4], [1e-3, 2e-3], [0.1, 0.1])
    with pytest.raises(ConfigError, match="at least two"):
        fit_power_law([1e4, 4e4], [1e-3, float("nan")], [0.1, 0.1])  # a censored size is no point


def test_huber_fit_resists_one_wild_size():
    params = np.array([1e4, 4e4, 1.6e5, 6.4e5, 2.56e6, 1e7])
    f = 1e-1 * params**-0.4
    f[2] *= 10  # one size a decade off
    law = fit_power_law(params, f, [0.05] * 6)
    ols = np.polyfit(np.log10(params), np.log10(f), 1)[0]
    assert abs(law.exponent + 0.4) < abs(ols + 0.4)


def test_smallest_model_for_a_frequency_inverts_both_bands():
    params = np.array([1e4, 4e4, 1.6e5, 6.4e5])
    law = fit_power_law(params, 1e-1 * params**-0.4, [0.05] * 4)
    a = smallest_params_for(law, 1e-1 * 1e5**-0.4)
    assert a.value == pytest.approx(1e5, rel=1e-6) and a.outside_range == 1.0
    assert a.lo < a.conf_lo < 1e5 < a.conf_hi < a.hi
    with pytest.raises(ConfigError, match="does not fall"):
        smallest_params_for(fit_power_law([1e6, 4e6], [1e-4, 2e-4], [0.1, 0.1]), 1e-4)


def test_theory_curve_falls_with_width():
    from raretask.mixture import MixtureSpec

    p, slope = theory_exponent(MixtureSpec(n_tasks=32, block_dim=16), 32, [8, 16, 32, 64, 128])
    assert np.all(np.diff(p) < 0) and slope < 0


def test_a_bend_in_the_fitted_sizes_moves_the_prediction_toward_the_bent_truth():
    # log10 f* bends by +0.2 decades per decade^2: a line through the three smaller sizes
    # overshoots the fall at the fourth
    params = np.array([1e4, 4e4, 1.6e5, 6.4e5])
    x = np.log10(params)
    f = 10 ** (-1.0 - 0.4 * x + 0.2 * (x - x[:3].mean()) ** 2)
    bent = fit_power_law(params[:3], f[:3], [0.02] * 3)
    assert bent.curvature == pytest.approx(0.2, rel=1e-6) and bent.scatter2 == 0.0
    assert bent.straight_weight < 0.05  # the bend is 3 of its standard errors: the bent law carries the average
    y, lo, hi = bent.predict(params[3])
    assert 10**lo <= f[3] <= 10**hi and y < lo  # covered; the straight value itself lies outside
    from raretask.lm.sizing_sim import without_bend

    _, slo, shi = without_bend(bent).predict(params[3])
    assert not 10**slo <= f[3] <= 10**shi  # the straight law alone misses it
    # a straight law gives no curvature; the average keeps most weight on the line, and its
    # interval still holds the straight value
    straight = fit_power_law(params[:3], 10 ** (-1.0 - 0.4 * x[:3]), [0.02] * 3)
    assert straight.curvature == pytest.approx(0.0, abs=1e-9) and straight.straight_weight == pytest.approx(
        math.e / (1 + math.e))
    y, lo, hi = straight.predict(params[3])
    assert lo < y < hi and y == pytest.approx(-1.0 - 0.4 * x[3])
    # with two sizes there is no bent law
    two = fit_power_law(params[:2], f[:2], [0.02] * 2)
    assert math.isnan(two.curvature) and two.straight_weight == 1.0


def test_the_text_says_when_the_straight_value_lies_outside_its_prediction_interval():
    from raretask.lm.sizing import _outside_note

    assert _outside_note(1e-3, (2e-3, 4e-3)).startswith(" (the straight law's value lies outside it")
    assert _outside_note(3e-3, (2e-3, 4e-3)) == "" and _outside_note(3e-3, (None, 4e-3)) == ""
