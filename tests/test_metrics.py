import numpy as np
import pytest

from raretask.mixture import MixtureSpec, row_space_alignment, task_metrics


def random_student(rng, spec, N):
    q, _ = np.linalg.qr(rng.standard_normal((spec.D, N)))
    return q.T, rng.standard_normal((spec.K, spec.d, N))


def test_random_orthonormal_encoder_has_signal_near_N_over_D():
    spec = MixtureSpec(n_tasks=16, block_dim=8)
    rng = np.random.default_rng(1)
    N = 32
    vals = [task_metrics(spec, *random_student(rng, spec, N)).signal.mean() for _ in range(20)]
    assert np.mean(vals) == pytest.approx(N / spec.D, rel=0.05)
    m = task_metrics(spec, *random_student(rng, spec, N))
    assert abs(m.corrected_signal.mean()) < 0.05


def test_encoder_spanning_block_k_captures_task_k():
    spec = MixtureSpec(n_tasks=8, block_dim=4)
    k = 5
    E = np.eye(spec.D)[k * spec.d:(k + 1) * spec.d]
    Dec = np.stack([spec.teacher(j) @ E.T for j in range(spec.K)])
    m = task_metrics(spec, E, Dec)
    assert m.signal[k] == pytest.approx(1.0)
    assert m.corrected_signal[k] == pytest.approx(1.0)
    assert m.n_features[k] == spec.d
    assert m.loss[k] == pytest.approx(0.0, abs=1e-12)
    others = np.delete(np.arange(spec.K), k)
    np.testing.assert_allclose(m.signal[others], 0.0)
    np.testing.assert_allclose(m.norm_loss[others], 1.0)


def test_metrics_are_gauge_invariant():
    spec = MixtureSpec(n_tasks=8, block_dim=4)
    rng = np.random.default_rng(2)
    E, Dec = random_student(rng, spec, 10)
    E = E * rng.uniform(0.5, 2, size=(10, 1))
    A = rng.standard_normal((10, 10))  # invertible almost surely
    m1 = task_metrics(spec, E, Dec)
    # E -> A E with Dec -> Dec A^-1 leaves the function, hence every metric, unchanged;
    # the alignment metrics are invariant even without the decoder change.
    m2 = task_metrics(spec, A @ E, Dec @ np.linalg.inv(A))
    m3 = task_metrics(spec, A @ E, Dec)
    for m in (m2, m3):
        np.testing.assert_allclose(m.signal, m1.signal, atol=1e-10)
        np.testing.assert_allclose(m.corrected_signal, m1.corrected_signal, atol=1e-10)
        np.testing.assert_array_equal(m.n_features, m1.n_features)
        assert m.residual == pytest.approx(m1.residual, abs=1e-10)
    np.testing.assert_allclose(m2.loss, m1.loss, rtol=1e-8)


def test_alignment_handles_rank_deficient_encoder():
    E = np.zeros((3, 6))
    E[0, 0] = 2.0
    E[1, 0] = 1.0  # rank 1
    a = row_space_alignment(E)
    np.testing.assert_allclose(a, [1, 0, 0, 0, 0, 0], atol=1e-12)


def test_residual_counts_unexplained_frequent_mass():
    spec = MixtureSpec(n_tasks=4, block_dim=2, prior=(0.6, 0.25, 0.1, 0.05), frequent_mass=0.8)
    E = np.eye(spec.D)[:2]  # explains task 1 fully
    Dec = np.zeros((spec.K, spec.d, 2))
    m = task_metrics(spec, E, Dec)
    assert m.residual == pytest.approx(spec.utilities[1].sum())
