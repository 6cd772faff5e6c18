"""Critical frequency and the sizing answer on synthetic sweeps with a known truth."""

import numpy as np
import pytest

from raretask import ConfigError
from raretask.lm.scaling import (critical_frequency, fit_power_law, lowest_frequency_for, smallest_params_for,
                                 theory_exponent)

RATES = np.geomspace(1e-5, 1e-2, 7)  # per-token frequencies of a sweep, 1000x


def curve(f, f_star, chance=0.5, ceil=0.98, k=2.5):
    return chance + (ceil - chance) / (1 + np.exp(-k * (np.log10(f) - np.log10(f_star))))


def sweep(f_star, seeds=2, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    f = np.repeat(RATES, seeds)
    return f, np.clip(curve(f, f_star) + rng.normal(0, noise, len(f)), 0, 1)


def test_critical_frequency_recovers_the_midpoint_with_an_interval():
    f, acc = sweep(3e-4)
    c = critical_frequency(f, acc, chance=0.5, n_boot=300)
    assert c.bracketed and c.lo < 3e-4 < c.hi and c.hi / c.lo < 10
    assert c.f_star == pytest.approx(3e-4, rel=0.3) and c.ceiling == pytest.approx(0.98, abs=0.03)


def test_a_size_that_learns_at_every_rate_is_not_bracketed():
    f, acc = sweep(1e-7)
    assert not critical_frequency(f, acc, chance=0.5, n_boot=100).bracketed


def test_bad_points_are_refused():
    with pytest.raises(ConfigError):
        critical_frequency([1e-3, -1], [0.5, 0.6], chance=0.5)
    with pytest.raises(ConfigError):
        critical_frequency([1e-3], [0.5, 0.6], chance=0.5)


def test_power_law_sizing_predicts_a_held_out_size():
    params = np.array([1e6, 2e6, 4e6, 8e6, 16e6])
    truth = 1e-1 * params ** -0.5  # f* halves every 4x parameters
    fits = [critical_frequency(*sweep(t, seed=i), chance=0.5, n_boot=200) for i, t in enumerate(truth)]
    fs = np.array([c.f_star for c in fits])
    law = fit_power_law(params, fs, [c.lo for c in fits], [c.hi for c in fits], n_boot=500)
    assert law.exponent_lo < -0.5 < law.exponent_hi and law.per_doubling == pytest.approx(2 ** -0.5, rel=0.15)
    # the way a user relies on it: fit without the largest, predict it
    held = fit_power_law(params[:-1], fs[:-1], [c.lo for c in fits[:-1]], [c.hi for c in fits[:-1]], n_boot=500)
    pred = lowest_frequency_for(held, params[-1])
    assert pred.outside_range == pytest.approx(2.0) and pred.lo < fs[-1] < pred.hi
    inside = smallest_params_for(law, float(truth[2]))
    assert inside.outside_range == 1.0 and inside.lo < 4e6 < inside.hi
    far = smallest_params_for(law, 1e-6)
    assert far.outside_range > 100  # said, never silent


def test_sizing_refuses_a_law_that_does_not_fall():
    law = fit_power_law([1e6, 4e6], [1e-4, 2e-4])
    with pytest.raises(ConfigError, match="does not fall"):
        smallest_params_for(law, 1e-4)


def test_theory_curve_falls_with_width():
    from raretask.mixture import MixtureSpec

    p, slope = theory_exponent(MixtureSpec(n_tasks=32, block_dim=16), 32, [8, 16, 32, 64, 128])
    assert np.all(np.diff(p) < 0) and slope < 0
