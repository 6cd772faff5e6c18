"""The engine's Gaussian sampler: threefry bits identical to JAX's, normals that are normal."""

import jax.extend.random as jrandom
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from raretask.sim._rng import derive_key, normal, threefry2x32


def test_threefry_matches_jax():
    key = jnp.asarray([123, 456], jnp.uint32)
    count = jnp.arange(64, dtype=jnp.uint32)
    ours = jnp.concatenate(threefry2x32(key[0], key[1], count[:32], count[32:]))
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(jrandom.threefry_2x32(key, count)))


@pytest.mark.slow
def test_normal_is_standard_normal_and_keys_differ():
    k = (jnp.uint32(7), jnp.uint32(9))
    x = np.asarray(normal(derive_key(k, 0, 0), (1024, 512))).ravel()
    y = np.asarray(normal(derive_key(k, 1, 0), (1024, 512))).ravel()
    z = np.asarray(normal(derive_key(k, 0, 1), (1024, 512))).ravel()
    assert stats.kstest(x, "norm").pvalue > 1e-3
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.01 and abs(np.corrcoef(x, z)[0, 1]) < 0.01
    # 23-bit uniforms (as in jax.random.normal): ~3% birthday collisions among 524k draws
    assert len(np.unique(x)) > 0.95 * len(x)
    odd = np.asarray(normal(derive_key(k, 0, 0), (3, 5)))
    assert odd.shape == (3, 5) and np.all(np.isfinite(odd))
