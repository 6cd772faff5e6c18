"""Initial parameters (SPEC A2), generated once on the host so every trainer starts alike."""

from __future__ import annotations

import numpy as np

from ..mixture import MixtureSpec


def init_params(spec: MixtureSpec, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random orthonormal encoder rows and Kaiming-uniform decoders.

    The encoder's row space is a uniformly (Haar) random N-dim subspace (QR of a Gaussian
    with the sign fix); each decoder is drawn like PyTorch's nn.Linear(N, d) default,
    U(-1/sqrt(N), 1/sqrt(N)).

    Args: width N; seed - the (seed, width) pair determines the draw.
    Returns: E (N, D) float32, Dec (K, d, N) float32.
    """
    N = spec.check_width(width)
    rng = np.random.default_rng([seed, N, 0x5EED])
    q, r = np.linalg.qr(rng.standard_normal((spec.D, N)))
    q = q * np.sign(np.diag(r))[None, :]
    bound = 1.0 / np.sqrt(N)
    dec = rng.uniform(-bound, bound, size=(spec.K, spec.d, N))
    return q.T.astype(np.float32), dec.astype(np.float32)
