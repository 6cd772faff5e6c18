"""The engine against the plain per-sample PyTorch trainer (SPEC A2 exactness)."""

import numpy as np
import pytest

from raretask.errors import ConfigError
from raretask.mixture import MixtureSpec
from raretask.sim import (Engine, FunctionSampler, ReferenceTrainer, RetentionSampler,
                          TrainConfig, init_params)

pytest.importorskip("torch")

SPEC = MixtureSpec(n_tasks=8, block_dim=4)  # D = 32
CFG = TrainConfig(batch_size=64, warmup=3, lr=1e-2)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def compare_on_batches(spec, cfg, widths, batches, engine_kwargs=None):
    eng = Engine(spec, cfg, widths, **(engine_kwargs or {}))
    refs = [ReferenceTrainer(spec, cfg, w) for w in widths]
    x, t, noise = batches[0]
    for r, (gE, gD) in zip(refs, eng.gradients_on_batch(x, t, noise)):
        rE, rD = r.gradients(x, t, noise)
        assert rel(gE, rE) <= 1e-4 and rel(gD, rD) <= 1e-4
    for x, t, noise in batches:
        eng.step_on_batch(x, t, noise)
        for r in refs:
            r.step(x, t, noise)
    for r, m in zip(refs, eng.members):
        E, Dec = r.params()
        assert rel(m.E, E) <= 1e-4
        assert rel(m.decoders(spec), Dec) <= 1e-4
        # the run actually moved the parameters (otherwise the check is vacuous)
        E0, _ = init_params(spec, E.shape[0], cfg.seed)
        assert rel(E, E0) > 1e-3


def scan_matches_reference(eng, batches, **ref_kwargs):
    """Advance the engine's compiled scan over ``batches`` (its own, from batch_at) and check a
    single-member engine against the reference trained on the same batches."""
    eng.advance(len(batches))
    r = ReferenceTrainer(eng.spec, eng.cfg, eng.widths[0], **ref_kwargs)
    for x, t, n in batches:
        r.step(x, t, n)
    E, Dec = r.params()
    assert rel(eng.members[0].E, E) <= 1e-4 and rel(eng.members[0].decoders(eng.spec), Dec) <= 1e-4


def random_batches(spec, n, size, rng, probs=None, noise=False):
    out = []
    for _ in range(n):
        t = rng.choice(spec.K, size=size, p=spec.pi if probs is None else probs)
        x = rng.standard_normal((size, spec.D)).astype(np.float32)
        e = rng.standard_normal((size, spec.d)).astype(np.float32) if noise else None
        out.append((x, t, e))
    return out


@pytest.mark.parametrize("widths", [[2, 8, 32], [16]])
@pytest.mark.slow
def test_engine_matches_reference_on_identical_batches(widths):
    compare_on_batches(SPEC, CFG, widths, random_batches(SPEC, 6, 64, np.random.default_rng(0)))


@pytest.mark.slow
def test_engine_matches_reference_with_target_noise():
    spec = MixtureSpec(n_tasks=8, block_dim=4, noise=0.3)
    compare_on_batches(spec, CFG, [4, 12], random_batches(spec, 5, 64, np.random.default_rng(1), noise=True))


@pytest.mark.slow
def test_engine_matches_reference_on_retention_schedule():
    sampler = RetentionSampler(SPEC.pi, 64, seed=3, rare_task=8, gap=4)
    rng = np.random.default_rng(2)
    batches = []
    for step in range(8):
        c = sampler.counts(np.asarray([step]))[0]
        t = np.repeat(np.arange(SPEC.K), c)
        batches.append((rng.standard_normal((len(t), SPEC.D)).astype(np.float32), t, None))
    assert {len(b[1]) for b in batches} == {64, 64 + int(sampler.injection_sizes(0))}
    compare_on_batches(SPEC, CFG, [4, 16], batches)


@pytest.mark.slow
def test_engine_matches_reference_when_one_task_dominates():
    # 60 of 64 samples from the rarest task: far beyond its window, so capacity must grow.
    probs = np.full(SPEC.K, 0.04 / 7)
    probs[7] = 0.96
    eng_probe = Engine(SPEC, CFG, [4])
    cap_before = int(eng_probe.capacity[7])
    batches = random_batches(SPEC, 5, 64, np.random.default_rng(4), probs=probs)
    assert max(int((b[1] == 7).sum()) for b in batches) > cap_before
    compare_on_batches(SPEC, CFG, [4, 16], batches)


def test_compiled_scan_matches_reference_on_the_batches_it_drew():
    eng = Engine(SPEC, CFG, [3, 10], chunk=4)
    batches = [eng.batch_at(s) for s in range(7)]
    eng.advance(7)  # two compiled chunks, the second partly inactive
    refs = [ReferenceTrainer(SPEC, CFG, w) for w in (3, 10)]
    for x, t, n in batches:
        for r in refs:
            r.step(x, t, n)
    for r, m in zip(refs, eng.members):
        E, Dec = r.params()
        assert rel(m.E, E) <= 1e-4 and rel(m.decoders(SPEC), Dec) <= 1e-4


@pytest.mark.slow
def test_compiled_scan_retention_with_noise_matches_reference():
    spec = MixtureSpec(n_tasks=8, block_dim=4, noise=0.5)
    sampler = RetentionSampler(spec.pi, 64, seed=0, rare_task=8, gap=3)
    eng = Engine(spec, CFG, [6], sampler=sampler, chunk=8)
    batches = [eng.batch_at(s) for s in range(6)]
    assert batches[2][1].tolist().count(7) == sampler.injection_sizes(0) > 0
    scan_matches_reference(eng, batches)


def test_custom_sampler_exceeding_its_bound_grows_instead_of_dropping():
    def fn(steps):
        c = np.zeros((len(steps), SPEC.K), np.int64)
        c[:, 0] = 8
        c[:, 5] = 100  # far above max_batch
        return c

    eng2 = Engine(SPEC, CFG, [4], sampler=FunctionSampler(fn, max_batch=16))
    eng2.advance(1)
    x, t, _ = eng2.batch_at(0)
    assert len(t) == 108
    r = ReferenceTrainer(SPEC, CFG, 4)
    r.step(x, t)
    E, _ = r.params()
    assert rel(eng2.members[0].E, E) <= 1e-4


def retention_batches(spec, sampler, steps, rng, noise=False):
    out = []
    for step in range(steps):
        t = np.repeat(np.arange(spec.K), sampler.counts(np.asarray([step]))[0])
        e = rng.standard_normal((len(t), spec.d)).astype(np.float32) if noise else None
        out.append((rng.standard_normal((len(t), spec.D)).astype(np.float32), t, e))
    return out


@pytest.mark.slow
def test_replay_presents_the_injected_samples_again():
    spec = MixtureSpec(n_tasks=8, block_dim=4, noise=0.5)
    sampler = RetentionSampler(spec.pi, 64, seed=0, rare_task=4, gap=4, replay_every=2)
    assert sampler.replay_source(np.arange(9)).tolist() == [-1, -1, -1, 3, -1, 3, -1, 7, -1]
    eng = Engine(spec, CFG, [6], sampler=sampler, chunk=8)
    batches = [eng.batch_at(s) for s in range(9)]
    inj, rep = batches[3], batches[5]
    assert (inj[1] == 3).sum() == (rep[1] == 3).sum() == sampler.injection_sizes(0) > 0
    assert np.array_equal(inj[0][inj[1] == 3], rep[0][rep[1] == 3])  # same x ...
    assert np.array_equal(inj[2][inj[1] == 3], rep[2][rep[1] == 3])  # ... and same target noise
    assert not np.array_equal(batches[7][0][batches[7][1] == 3], inj[0][inj[1] == 3])  # fresh at the next
    # the other tasks' samples are fresh at every step
    assert not np.array_equal(inj[0][inj[1] == 0][:1], rep[0][rep[1] == 0][:1])
    scan_matches_reference(eng, batches)


def test_conflict_removal_matches_reference():
    sampler = RetentionSampler(SPEC.pi, 64, seed=3, rare_task=8, gap=3)
    batches = retention_batches(SPEC, sampler, 20, np.random.default_rng(5))  # conflicts from ~step 10
    widths = [4, 16]
    eng = Engine(SPEC, CFG, widths, conflict_removal=8)
    plain = Engine(SPEC, CFG, widths)
    refs = [ReferenceTrainer(SPEC, CFG, w, conflict_removal=8) for w in widths]
    for x, t, n in batches:
        eng.step_on_batch(x, t, n)
        plain.step_on_batch(x, t, n)
        for r in refs:
            r.step(x, t, n)
    for r, m, p in zip(refs, eng.members, plain.members):
        E, Dec = r.params()
        assert rel(m.E, E) <= 1e-4 and rel(m.decoders(SPEC), Dec) <= 1e-4
        assert rel(m.E, p.E) > 1e-5  # the projection changed the run
    # resuming carries the memory
    state = eng.state_dict()
    assert "m0_mem" in state
    other = Engine(SPEC, CFG, widths, conflict_removal=8)
    other.load_state_dict(state)
    assert np.array_equal(other.members[0].mem, eng.members[0].mem)


@pytest.mark.slow
def test_compiled_scan_with_replay_and_conflict_removal_matches_reference():
    sampler = RetentionSampler(SPEC.pi, 64, seed=1, rare_task=6, gap=4, replay_every=2)
    eng = Engine(SPEC, CFG, [5], sampler=sampler, chunk=4, conflict_removal=6)
    batches = [eng.batch_at(s) for s in range(10)]
    scan_matches_reference(eng, batches, conflict_removal=6)


def test_replay_setting_is_validated():
    with pytest.raises(ConfigError, match="replay_every"):
        RetentionSampler(SPEC.pi, 64, seed=0, rare_task=8, gap=4, replay_every=4)
    with pytest.raises(ConfigError, match="conflict_removal"):
        Engine(SPEC, CFG, [4], conflict_removal=9)
