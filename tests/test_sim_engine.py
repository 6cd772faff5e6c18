"""Engine behaviour beyond exactness: distribution, approximate mode, samplers, resume."""

import numpy as np
import pandas as pd
import pytest

from raretask import ConfigError
from raretask.mixture import MixtureSpec, task_losses
from raretask.sim import (Engine, PriorSampler, RecordSchedule, ReferenceTrainer,
                          RetentionSampler, TrainConfig, run_engine)

SPEC = MixtureSpec(n_tasks=8, block_dim=4)
CFG = TrainConfig(batch_size=64, warmup=20, lr=1e-2, steps=300)


def final_losses_engine(seed, widths):
    cfg = TrainConfig(**{**CFG.to_dict(), "seed": seed, "betas": CFG.betas})
    eng = Engine(SPEC, cfg, widths, chunk=100)
    eng.advance(cfg.steps)
    return np.stack([task_losses(SPEC, m.E, m.decoders(SPEC)) for m in eng.members])


def final_losses_reference(seed, widths):
    cfg = TrainConfig(**{**CFG.to_dict(), "seed": seed, "betas": CFG.betas})
    out = []
    for w in widths:
        r = ReferenceTrainer(SPEC, cfg, w)
        r.train(cfg.steps, seed=1000 + seed)  # its own data stream (torch RNG)
        E, Dec = r.params()
        out.append(task_losses(SPEC, E, Dec))
    return np.stack(out)


@pytest.mark.slow
def test_engine_and_reference_agree_in_distribution():
    pytest.importorskip("torch")
    widths = [4, 12]
    seeds = range(5)
    e = np.stack([final_losses_engine(s, widths) for s in seeds])  # (seeds, widths, K)
    r = np.stack([final_losses_reference(s, widths) for s in seeds])
    pe, pr = e @ SPEC.pi, r @ SPEC.pi  # total population loss, (seeds, widths)
    spread = np.sqrt(pe.var(0, ddof=1) / len(seeds) + pr.var(0, ddof=1) / len(seeds))
    assert np.all(np.abs(pe.mean(0) - pr.mean(0)) <= 3 * spread + 1e-3 * pr.mean(0))
    # per task, averaged over seeds, within the seed spread too
    se = np.sqrt(e.var(0, ddof=1) / len(seeds) + r.var(0, ddof=1) / len(seeds))
    close = np.abs(e.mean(0) - r.mean(0)) <= 3 * se + 0.02 * SPEC.trace_C
    assert close.mean() >= 0.9
    # training did something: the wider model beats the narrow one
    assert pe.mean(0)[1] < pe.mean(0)[0]


def test_population_mode_is_opt_in_and_uses_expected_gradient():
    assert TrainConfig().mode == "exact"
    cfg = TrainConfig(batch_size=64, mode="population")
    eng = Engine(SPEC, cfg, [6])
    rng = np.random.default_rng(0)
    t = rng.choice(SPEC.K, size=64, p=SPEC.pi)
    x = rng.standard_normal((64, SPEC.D)).astype(np.float32)
    gE, gDec = eng.gradients_on_batch(x, t)[0]
    m = eng.members[0]
    n = np.bincount(t, minlength=SPEC.K)
    A = m.Dec.astype(np.float64) @ m.E - np.diag(SPEC.teacher_diag)
    G = (2 / 64) * np.repeat(n, SPEC.d)[:, None] * A  # X_k^T X_k replaced by n_k I
    np.testing.assert_allclose(gE, m.Dec.T @ G, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gDec.reshape(-1, 6), G @ m.E.T, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="invalid mode"):
        TrainConfig(mode="fast")


def test_samplers_are_pure_functions_of_the_step():
    s = PriorSampler(SPEC.pi, 64, seed=1)
    a = s.counts(np.arange(0, 3000))
    b = np.concatenate([s.counts(np.arange(0, 1500)), s.counts(np.arange(1500, 3000))])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s.counts(np.asarray([2047, 5])), a[[2047, 5]])
    assert np.all(a.sum(1) == 64)
    freq = a.sum(0) / a.sum()
    np.testing.assert_allclose(freq, SPEC.pi, atol=0.01)


def test_retention_sampler_matches_long_run_frequency():
    B, G, r = 256, 16, 7
    s = RetentionSampler(SPEC.pi, B, seed=0, rare_task=r + 1, gap=G)
    c = s.counts(np.arange(G * 200))
    injected = np.nonzero(c[:, r])[0]
    np.testing.assert_array_equal(injected, np.arange(G - 1, G * 200, G))
    # cumulative rounding: every injection is floor or ceil of G q, and the total is floor(J G q)
    q = SPEC.pi[r] * B / (1 - SPEC.pi[r])
    assert set(c[:, r][injected].tolist()) <= {int(np.floor(G * q)), int(np.ceil(G * q))}
    assert c[:, r].sum() == s.injected(len(c)) == int(np.floor(200 * G * q))
    share = c[:, r].sum() / c.sum()  # the rare task's share of every sample the engine sees
    assert share == pytest.approx(SPEC.pi[r], rel=1e-3)
    assert s.frequency_ratio(len(c)) == pytest.approx(share / SPEC.pi[r], rel=1e-12)
    # the other tasks keep their priors too
    np.testing.assert_allclose(np.delete(c.sum(0) / c.sum(), r), np.delete(SPEC.pi, r), rtol=0.05)
    with pytest.raises(ConfigError, match="invalid gap"):
        RetentionSampler(SPEC.pi, B, seed=0, rare_task=r + 1, gap=0)


@pytest.mark.parametrize("gap", [1, 2, 3, 4, 16, 64, 1024])
def test_retention_frequency_is_matched_at_every_gap(gap):
    """SPEC A5.3: with round(G pi_r B) per injection the rarest task of the SPEC mixture would
    be seen 1.59 x (G=1) or 1.20 x (G=4) as often as its prior; cumulative rounding matches it."""
    spec = MixtureSpec(n_tasks=32, block_dim=16, beta=1.5, alpha=1.0)
    r, B, steps = 31, 256, 1024 * 20
    s = RetentionSampler(spec.pi, B, seed=0, rare_task=r + 1, gap=gap)
    assert abs(s.frequency_ratio(steps) - 1) <= 0.001
    sizes = s.injection_sizes(np.arange(steps // gap))
    assert abs(sizes.sum() - steps // gap * gap * s.rate) <= 1  # within one sample of J G q
    c = s.counts(np.arange(steps))
    assert c[:, r].sum() == sizes.sum()
    # a pure function of the step: any chunking gives the same counts
    np.testing.assert_array_equal(np.concatenate([s.counts(np.arange(0, 777)), s.counts(np.arange(777, steps))]), c)


def test_retention_frequency_falls_short_when_steps_end_far_from_an_injection():
    spec = MixtureSpec(n_tasks=32, block_dim=16, beta=1.5, alpha=1.0)
    s = RetentionSampler(spec.pi, 256, seed=0, rare_task=32, gap=512)
    assert s.frequency_ratio(8000) == pytest.approx(7680 / 8000, rel=2e-3)  # 320 steps after the last injection


def test_run_engine_resumes_bit_identically(tmp_path):
    cfg = TrainConfig(batch_size=32, warmup=10, steps=400)
    kw = dict(record=RecordSchedule("linear", 9), trace_tasks=[8], chunk=50, checkpoint_seconds=0.0)
    full = run_engine(SPEC, cfg, [3, 9], tmp_path / "a", **kw)

    class Stop(Exception):
        pass

    def interrupt(done, total):
        if done >= 200:
            raise Stop

    with pytest.raises(Stop):
        run_engine(SPEC, cfg, [3, 9], tmp_path / "b", progress=interrupt, **kw)
    # a half-written part from the interruption must never be read as complete
    (tmp_path / "b" / "metrics" / "part-999999.parquet").write_bytes(b"garbage")
    resumed = run_engine(SPEC, cfg, [3, 9], tmp_path / "b", **kw)
    assert 0 < resumed["resumed_from"] < cfg.steps
    pd.testing.assert_frame_equal(full["metrics"], resumed["metrics"])
    pd.testing.assert_frame_equal(full["trace"], resumed["trace"])
    for k, v in full["final_state"].items():
        np.testing.assert_array_equal(v, resumed["final_state"][k])
    assert sorted(full["metrics"]["step"].unique()) == [0, 50, 100, 150, 200, 250, 300, 350, 400]
    assert len(full["trace"]) == 400 * 2  # every step, both widths, one task
    # a finished run re-run does no training
    again = run_engine(SPEC, cfg, [3, 9], tmp_path / "b", **kw)
    assert again["resumed_from"] == cfg.steps


def test_run_engine_learns_the_frequent_tasks(tmp_path):
    cfg = TrainConfig(batch_size=128, warmup=50, lr=1e-2, steps=1500)
    res = run_engine(SPEC, cfg, [4], tmp_path, record=RecordSchedule("log", 10), chunk=500)
    last = res["metrics"].query("step == 1500").set_index("task")
    first = res["metrics"].query("step == 0").set_index("task")
    assert last.loc[1, "corrected_signal"] > 0.8 > first.loc[1, "corrected_signal"]
    assert last["total_loss"].iloc[0] < first["total_loss"].iloc[0]


def test_engine_rejects_bad_input():
    with pytest.raises(ConfigError, match="invalid width"):
        Engine(SPEC, CFG, [33])
    with pytest.raises(ConfigError, match="invalid trace_tasks"):
        Engine(SPEC, CFG, [4], trace_tasks=[9])
    with pytest.raises(ConfigError, match="invalid steps"):
        TrainConfig(steps=0)
