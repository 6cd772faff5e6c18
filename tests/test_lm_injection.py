"""Injection schedule (SPEC B2): exact rates, placement independent of ranks and resumes."""

import numpy as np
import pytest

from raretask import ConfigError
from raretask.lm import Corpus, InjectionSchedule, StepBatches, build_tasks, inject, ordinary_tokens


@pytest.mark.parametrize("rate, window", [(0.1, 10), (0.25, 4), (1.0, 1), (2.5, 2), (1 / 3, 3)])
def test_rate_is_realised_exactly_over_every_window(rate, window):
    s = InjectionSchedule(global_batch=16, n_train=5000, rate=rate)
    counts = np.array([s.count(t) for t in range(3000)])
    per_window = counts[: len(counts) // window * window].reshape(-1, window).sum(1)
    assert (per_window == round(rate * window)).all()
    assert counts.sum() == round(rate * 3000)


def test_period_form_and_per_token_frequency():
    s = InjectionSchedule(global_batch=8, n_train=5000, n=3, every=100)
    counts = np.array([s.count(t) for t in range(1000)])
    assert counts.sum() == 30 and set(np.flatnonzero(counts)) == set(range(99, 1000, 100))
    assert s.per_token_frequency(256) == pytest.approx(0.03 / (8 * 256))


def test_instances_cycle_through_the_train_split():
    s = InjectionSchedule(global_batch=16, n_train=5000, rate=4.0, seed=2)
    ids = np.concatenate([s.at(t)[1] for t in range(1250)])  # 5000 injections: one pass
    assert np.array_equal(np.sort(ids), np.arange(5000))
    pos = [s.at(t)[0] for t in range(50)]
    assert all(len(np.unique(p)) == len(p) and p.max() < 16 for p in pos)


def test_schedule_is_a_pure_function_of_seed_and_step():
    a = InjectionSchedule(global_batch=16, n_train=5000, rate=0.7, seed=5)
    b = InjectionSchedule(global_batch=16, n_train=5000, rate=0.7, seed=5)
    for t in [0, 3, 999, 12345, 7]:  # any order, as after a resume
        pa, ia = a.at(t)
        pb, ib = b.at(t)
        assert np.array_equal(pa, pb) and np.array_equal(ia, ib)


def test_placement_identical_for_one_and_two_ranks(small_corpus):
    corpus = Corpus(small_corpus)
    tok = corpus.tokenizer
    tasks = build_tasks("cmp", ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id)
    sched = InjectionSchedule(global_batch=8, n_train=5000, rate=1.5, seed=1)
    sb = StepBatches(corpus, tasks, sched, seq_len=32, seed=1)
    for step in range(12):
        one, inst1, _ = sb.local(step, 0, 1)
        parts = [sb.local(step, r, 2) for r in range(2)]
        assert np.array_equal(one, np.concatenate([p[0] for p in parts]))
        assert np.array_equal(inst1, np.concatenate([p[1] for p in parts]))
        rows = np.flatnonzero(inst1 >= 0)
        assert np.array_equal(one[rows, :4], tasks.instances[inst1[rows]])
        assert (inst1 >= 0).sum() == sched.count(step)


def test_inject_replaces_only_the_first_four_tokens():
    toks = np.arange(30).reshape(3, 10)
    out = inject(toks, np.array([1]), np.array([[90, 91, 92, 93]]))
    assert out[1].tolist() == [90, 91, 92, 93, 14, 15, 16, 17, 18, 19]
    assert np.array_equal(out[[0, 2]], toks[[0, 2]]) and toks[1, 0] == 10


@pytest.mark.parametrize("kw, field", [({"rate": 0}, "rate"), ({"rate": -1}, "rate"), ({"rate": 17}, "rate"),
                                       ({"every": 0, "n": 1}, "every"), ({"every": 5, "n": 0}, "n"), ({}, "rate")])
def test_bad_schedules(kw, field):
    with pytest.raises(ConfigError, match=f"invalid {field}"):
        InjectionSchedule(global_batch=16, n_train=5000, **kw)
