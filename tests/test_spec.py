import numpy as np
import pytest

from raretask import ConfigError, MixtureSpec


def test_defaults_match_spec():
    s = MixtureSpec()
    assert (s.K, s.d, s.D) == (32, 16, 512)
    assert s.pi.sum() == pytest.approx(1.0)
    assert np.all(np.diff(s.pi) < 0)
    assert s.spectra[0, 0] == 1.0 and s.spectra[0, 1] == pytest.approx(0.5)
    # C_k and W_k agree: W_k^T W_k = C_k
    W, C = s.teacher(3), s.covariance(3)
    np.testing.assert_allclose(W.T @ W, C)
    assert s.covariance(0).trace() == pytest.approx(s.trace_C[0])


def test_frequent_set_is_smallest_prefix_with_mass_rho():
    s = MixtureSpec(n_tasks=4, block_dim=2, prior=(0.5, 0.3, 0.15, 0.05), frequent_mass=0.8)
    assert s.frequent_set.tolist() == [0, 1]
    s = MixtureSpec(n_tasks=4, block_dim=2, prior=(0.05, 0.15, 0.3, 0.5), frequent_mass=0.8)
    assert s.frequent_set.tolist() == [2, 3]


def test_alpha_range_gives_rarest_task_slowest_decay():
    s = MixtureSpec(n_tasks=4, block_dim=8, alpha_range=(0.5, 2.0))
    np.testing.assert_allclose(s.alphas, [2.0, 1.5, 1.0, 0.5])
    m = s.complexity_m90()
    assert m[0] < m[-1]
    # m90 by definition: the first m reaching 90% of the trace
    lam = s.spectra[2]
    k = m[2]
    assert lam[:k].sum() >= 0.9 * lam.sum() > lam[: k - 1].sum()


def test_rank1_has_unit_spectrum():
    s = MixtureSpec(n_tasks=5, block_dim=1, rank1=True)
    np.testing.assert_array_equal(s.spectra, np.ones((5, 1)))
    np.testing.assert_allclose(s.utilities[:, 0], s.pi)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(block_dim=0), "block_dim"),
        (dict(n_tasks=0), "n_tasks"),
        (dict(beta=float("nan")), "beta"),
        (dict(beta=-1.0), "beta"),
        (dict(n_tasks=2, block_dim=2, prior=(0.5, float("nan"))), "prior"),
        (dict(n_tasks=2, block_dim=2, prior=(1.2, -0.2)), "prior"),
        (dict(n_tasks=2, block_dim=2, prior=(0.5, 0.6)), "prior"),
        (dict(n_tasks=3, block_dim=2, prior=(0.5, 0.5)), "prior"),
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha_range=(2.0, 1.0)), "alpha_range"),
        (dict(noise=-1.0), "noise"),
        (dict(frequent_mass=0.0), "frequent_mass"),
        (dict(feature_threshold=1.5), "feature_threshold"),
        (dict(rank1=True, block_dim=4), "block_dim"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"invalid {field}") as e:
        MixtureSpec(**kwargs)
    assert e.value.field == field
    assert "allowed" in str(e.value)


def test_prior_within_tolerance_accepted():
    MixtureSpec(n_tasks=2, block_dim=1, prior=(0.5, 0.5 + 5e-7))


def test_width_checks():
    s = MixtureSpec(n_tasks=4, block_dim=4)
    assert s.check_width(16) == 16
    with pytest.raises(ConfigError, match=r"invalid width: N = 17 outside 1..D"):
        s.check_width(17)
    with pytest.raises(ConfigError, match="invalid width"):
        s.check_width(0)


def test_from_dict_rejects_unknown_option():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['gamma'\]"):
        MixtureSpec.from_dict({"n_tasks": 4, "gamma": 2})
    s = MixtureSpec(n_tasks=3, block_dim=2, prior=(0.5, 0.3, 0.2))
    assert MixtureSpec.from_dict(s.to_dict()) == s


def test_typed_takes_numpy_values_as_plain_ones_and_refuses_objects():
    """numpy scalars and arrays are checked like the plain values they stand for (they used to
    bypass the JSON-strict check); anything else is one ConfigError naming the table."""
    import numpy as np

    from raretask.validate import typed

    spec = typed(MixtureSpec, {"n_tasks": np.int64(4), "block_dim": 2, "beta": np.float32(1.5),
                               "prior": np.array([0.4, 0.3, 0.2, 0.1])}, "mixture")
    assert spec.K == 4 and spec.pi.tolist() == [0.4, 0.3, 0.2, 0.1]
    with pytest.raises(ConfigError, match="invalid mixture.n_tasks"):
        typed(MixtureSpec, {"n_tasks": np.bool_(True)}, "mixture")  # a boolean is not a count
    with pytest.raises(ConfigError, match="invalid mixture: a value that is not plain data"):
        typed(MixtureSpec, {"n_tasks": object()}, "mixture")
