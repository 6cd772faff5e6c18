"""Injected tasks (SPEC B1): counts, splits, labels, reproducibility."""

import json

import numpy as np
import pytest

from raretask import ConfigError
from raretask.lm import build_tasks, ordinary_tokens

ORDINARY = np.arange(1000, 1400)
EOS = 0


@pytest.mark.parametrize("task", ["cmp", "add"])
def test_instances_counts_and_splits(task):
    ts = build_tasks(task, ORDINARY, EOS, seed=3)
    assert ts.instances.shape == (10_000, 4)
    assert len(ts.train) == len(ts.test) == 5_000
    assert len(np.intersect1d(ts.train, ts.test)) == 0
    assert np.array_equal(np.sort(np.r_[ts.train, ts.test]), np.arange(10_000))
    assert (ts.instances[:, 3] == EOS).all()
    # every ordered pair of value tokens exactly once
    pairs = {(int(a), int(b)) for a, b in ts.instances[:, :2]}
    assert len(pairs) == 10_000
    assert len(set(ts.value_tokens.tolist())) == 100 and np.isin(ts.value_tokens, ORDINARY).all()


def test_comparison_labels_are_correct_for_every_instance():
    ts = build_tasks("cmp", ORDINARY, EOS)
    value = {int(t): v for v, t in enumerate(ts.value_tokens)}
    true_tok, false_tok = ts.label_tokens
    assert true_tok not in value and false_tok not in value
    for a, b, lab, _ in ts.instances:
        assert lab == (true_tok if value[int(a)] > value[int(b)] else false_tok)
    assert (ts.instances[:, 2] == true_tok).sum() == 100 * 99 // 2


def test_addition_labels_are_correct_for_every_instance():
    ts = build_tasks("add", ORDINARY, EOS)
    value = {int(t): v for v, t in enumerate(ts.value_tokens)}
    for a, b, lab, _ in ts.instances:
        assert value[int(lab)] == (value[int(a)] + value[int(b)]) % 100


def test_seeded_and_reproducible():
    a, b, c = (build_tasks("cmp", ORDINARY, EOS, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.instances, b.instances) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.value_tokens, c.value_tokens)
    assert not np.array_equal(a.train, c.train)


def test_export_writes_every_instance(tmp_path):
    ts = build_tasks("add", ORDINARY, EOS)
    rows = [json.loads(line) for line in ts.export(tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(rows) == 10_000 and sum(r["split"] == "train" for r in rows) == 5_000
    assert all((r["v_a"] + r["v_b"]) % 100 == int(np.flatnonzero(ts.value_tokens == r["label"])[0]) for r in rows[:500])


def test_bad_task_and_small_vocabulary():
    with pytest.raises(ConfigError, match="invalid task"):
        build_tasks("mul", ORDINARY, EOS)
    with pytest.raises(ConfigError, match="invalid tokenizer"):
        build_tasks("cmp", np.arange(50), EOS)


def test_ordinary_tokens_are_plain_words():
    vocab = {"\u0120the": 5, "\u0120a": 6, "\u0120x1": 7, "ing": 8, "\u0120word": 9, "<|endoftext|>": 0}
    assert ordinary_tokens(vocab, {0}).tolist() == [5, 9]
