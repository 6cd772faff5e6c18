"""Theory (SPEC A4) checked against brute force on small mixtures."""

import numpy as np
import pytest

from raretask.mixture import (
    MixtureSpec,
    corollary5,
    critical_widths,
    frequent_matrix_diag,
    frequent_utilities,
    min_width_for,
    one_neuron_decay,
    one_neuron_step,
    predicted_task_loss,
    predicted_total_loss,
    proposition6,
    retained_features,
    riemannian_gradient,
    task_losses,
    theorem4_bound,
)

SMALL = [
    MixtureSpec(n_tasks=5, block_dim=3, beta=1.5),
    MixtureSpec(n_tasks=6, block_dim=4, beta=0.7, alpha_range=(0.3, 2.0)),
    MixtureSpec(n_tasks=4, block_dim=5, prior=(0.41, 0.29, 0.19, 0.11), alpha=0.5),
]


def M_matrix(spec):
    return sum(spec.pi[k] * spec.covariance(k) for k in range(spec.K))


def optimal_student(spec, P):
    """Given an orthonormal basis P (N, D) of a row space, the optimal decoders are
    Dec_k = W_k P^T, so Dec_k E = W_k P^T P."""
    Dec = np.stack([spec.teacher(k) @ P.T for k in range(spec.K)])
    return P, Dec


@pytest.mark.parametrize("spec", SMALL)
def test_top_N_eigenspace_matches_predicted_retained_set(spec):
    M = M_matrix(spec)
    evals, evecs = np.linalg.eigh(M)
    assert np.diff(np.sort(evals)).min() > 1e-9  # distinct: the top-N eigenspace is unique
    for N in range(1, spec.D + 1):
        top = evecs[:, np.argsort(evals)[::-1][:N]]
        # eigenvalues are distinct for these specs, so the eigenspace is unique
        a = (top**2).sum(1).reshape(spec.K, spec.d)
        np.testing.assert_array_equal((a > 0.5).sum(1), retained_features(spec, N))
        # predicted optimum loss equals the loss of that projector
        E, Dec = optimal_student(spec, top.T)
        L = task_losses(spec, E, Dec)
        np.testing.assert_allclose(L, predicted_task_loss(spec, N), atol=1e-12)
        assert spec.pi @ L == pytest.approx(predicted_total_loss(spec, N), abs=1e-12)
        assert predicted_total_loss(spec, N) == pytest.approx(np.sort(evals)[::-1][N:].sum(), abs=1e-12)


@pytest.mark.parametrize("spec", SMALL)
def test_critical_widths_are_counts_of_larger_utilities(spec):
    u = spec.utilities
    crit = critical_widths(spec)
    for k in range(spec.K):
        for m in range(spec.d):
            assert crit[k, m] == (u >= u[k, m]).sum()
            # learned iff N >= N*
            assert retained_features(spec, int(crit[k, m]))[k] >= m + 1
            if crit[k, m] > 1:
                assert retained_features(spec, int(crit[k, m]) - 1)[k] <= m
    # minimum width for m features of every task
    for m in range(1, spec.d + 1):
        N = min_width_for(spec, m)
        assert N == (u >= u[:, m - 1].min()).sum()
        assert np.all(retained_features(spec, N) >= m)
        if N > 1:
            assert np.any(retained_features(spec, N - 1) < m)


def test_rank1_staircase_is_linear():
    spec = MixtureSpec(n_tasks=10, block_dim=1, rank1=True, beta=1.0)
    np.testing.assert_array_equal(critical_widths(spec)[:, 0], np.arange(1, 11))


def test_tied_utilities_all_count_in_critical_widths():
    """SPEC A4: N*_(k,m) = #{u >= u_(k,m)} with ties counted; which of the tied features a
    width-N optimum keeps is still decided deterministically."""
    spec = MixtureSpec(n_tasks=3, block_dim=2, beta=0.0, alpha=0.0)  # all utilities equal
    np.testing.assert_array_equal(critical_widths(spec), np.full((3, 2), 6))
    np.testing.assert_array_equal(retained_features(spec, 3), [2, 1, 0])


def test_ties_within_rounding_count_as_ties():
    # beta = 0.9, alpha = 1.8: u_(8,1) = 8^-0.9 and u_(2,2) = 2^-0.9 2^-1.8 are equal in exact
    # arithmetic and differ in the last bits in floating point
    spec = MixtureSpec(n_tasks=40, block_dim=4, beta=0.9, alpha=1.8)
    u = spec.utilities
    assert u[7, 0] != u[1, 1] and abs(u[7, 0] - u[1, 1]) <= 1e-12 * u[7, 0]
    crit = critical_widths(spec)
    assert crit[7, 0] == crit[1, 1] == 10
    # brute force with exact rational utilities: k^-0.9 j^-1.8 = (k j^2)^-0.9 orders like 1/(k j^2)
    key = np.array([[(k + 1) * (j + 1) ** 2 for j in range(4)] for k in range(40)])
    brute = np.array([[(key <= key[k, j]).sum() for j in range(4)] for k in range(40)])
    np.testing.assert_array_equal(crit, brute)
    assert min_width_for(spec, 1) == brute[:, 0].max()


def random_orthonormal(rng, D, N):
    q, _ = np.linalg.qr(rng.standard_normal((D, N)))
    return q


@pytest.mark.parametrize("spec", SMALL)
def test_theorem4_bound_holds_and_is_nearly_tight(spec):
    rng = np.random.default_rng(0)
    MF = np.diag(frequent_matrix_diag(spec))
    ratios = []
    for _ in range(300):
        N = int(rng.integers(1, spec.D))
        U = random_orthonormal(rng, spec.D, N)
        g, bound = theorem4_bound(U, MF)
        assert g <= bound * (1 + 1e-10)
        ratios.append(g / bound)
    # tight within 2x somewhere: U near the top eigenspace with one rotated direction,
    # where the residual is concentrated in one eigen-pair.
    mu = np.diag(MF)
    order = np.argsort(mu)[::-1]
    D = spec.D
    for N in range(1, D):
        for t in np.linspace(0.05, 1.5, 30):
            U = np.eye(D)[:, order[:N]].copy()
            U[:, -1] = np.cos(t) * np.eye(D)[:, order[0]] * 0 + np.cos(t) * U[:, -1] + np.sin(t) * np.eye(D)[:, order[N]]
            g, bound = theorem4_bound(U, MF)
            if bound > 0:
                ratios.append(g / bound)
    assert max(ratios) >= 0.5
    # the gradient formula equals the numeric Riemannian gradient (projected Euclidean one)
    U = random_orthonormal(rng, spec.D, 3)
    G = -2 * MF @ U
    np.testing.assert_allclose(riemannian_gradient(U, MF), G - U @ (U.T @ G), atol=1e-12)


@pytest.mark.parametrize("spec", SMALL)
def test_corollary5_width_is_minimal(spec):
    mu = frequent_utilities(spec)
    for eps in [0.0, 1e-3, 0.01, 0.1, mu.sum()]:
        c = corollary5(spec, eps)
        assert mu[c.width:].sum() <= eps + 1e-15
        if c.width > 0:
            assert mu[c.width - 1:].sum() > eps
        # an encoder on the top-N_eps frequent eigenvectors realises residual <= eps and the bound
        MF = np.diag(frequent_matrix_diag(spec))
        if c.width > 0:
            order = np.argsort(np.diag(MF))[::-1][: c.width]
            U = np.eye(spec.D)[:, order]
            g, _ = theorem4_bound(U, MF)
            assert g <= c.gradient_bound + 1e-12


def _rotated_loss(M, U, v_idx, b, t):
    U2 = U.copy()
    U2[:, v_idx] = np.cos(t) * U[:, v_idx] + np.sin(t) * b
    return np.trace(M) - np.trace(U2.T @ M @ U2)


@pytest.mark.parametrize("spec", SMALL[:2])
def test_proposition6_matches_second_order_stability(spec):
    p6 = proposition6(spec)
    assert p6 is not None
    # mixture restricted to F plus the rare task's leading feature (rank one)
    MF = np.diag(frequent_matrix_diag(spec))
    b = np.zeros(spec.D)
    b[(p6.task - 1) * spec.d] = 1.0
    M = MF + p6.utility * np.outer(b, b)
    mu = np.diag(MF)
    order = np.argsort(mu)[::-1]
    nF = int((mu > 0).sum())
    for N in range(1, nF + 1):
        U = np.eye(spec.D)[:, order[:N]]  # common-task optimum at width N
        h = 1e-4
        f0 = _rotated_loss(M, U, N - 1, b, 0.0)
        second = (_rotated_loss(M, U, N - 1, b, h) - 2 * f0 + _rotated_loss(M, U, N - 1, b, -h)) / h**2
        unstable = second < 0  # rotating the weakest common direction toward b lowers the loss
        assert unstable == (N >= p6.critical_width), (N, second, p6)
    # the residual threshold is the frequent mass the rare feature can outbid
    assert p6.delta_star == pytest.approx(frequent_utilities(spec)[p6.critical_width - 1:].sum())
    assert p6.delta_star == pytest.approx(mu[mu < p6.utility].sum())


def test_proposition6_none_when_all_tasks_frequent():
    assert proposition6(MixtureSpec(n_tasks=3, block_dim=2, frequent_mass=1.0)) is None


def test_example7_one_neuron_decay_law():
    eta, lam1 = 1e-3, 1.0
    theta = 0.05
    for _ in range(200):
        theta = one_neuron_step(theta, eta, lam1, task=1)
    # small angle: sin 2theta ~ 2 theta, so theta shrinks by ~exp(-2 eta lam1 G)
    assert theta / 0.05 == pytest.approx(one_neuron_decay(eta, lam1, 200), rel=1e-3)
    assert one_neuron_step(0.3, 0.01, 1.0, task=2) > 0.3
