"""Category probabilities of a fitted CLMM, marginal over or conditional on the random effects.

Given the fixed part η = xᵀβ and the random part zᵀb (b ~ N(0, Σ), terms independent), the
random part is normal with variance v = Σ_t z_tᵀ Σ_t z_t, so the marginal cumulative
probability is the one-dimensional integral

    P(Y ≤ j) = ∫ F(θ_j − η − √v s) φ(s) ds,

computed by Gauss–Hermite quadrature with 60 nodes (exact for probit: Φ((θ_j − η)/√(1 + v))).
``include_random=True`` adds a person's conditional mode b̂ to η instead, for the levels seen
in the fit; a level not seen in the fit is integrated over as above.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite import hermgauss

from mesostats.mixed.clmm.links import Link

__all__ = ["category_probabilities"]

_NODES = 60


def category_probabilities(
    link: Link, cuts: np.ndarray, eta: np.ndarray, var: np.ndarray
) -> np.ndarray:
    """(n, K) probabilities of the K categories at location η with random-part variance v."""
    x, w = hermgauss(_NODES)
    s = np.sqrt(2.0) * x
    weights = w / np.sqrt(np.pi)
    sd = np.sqrt(np.clip(var, 0.0, None))
    # (n, nodes, K-1) cumulative probabilities, averaged over the nodes
    loc = eta[:, None] + sd[:, None] * s[None, :]
    cum = link.cdf(cuts[None, None, :] - loc[:, :, None])
    cum = np.einsum("k,nkj->nj", weights, cum)
    full = np.concatenate([np.zeros((eta.size, 1)), cum, np.ones((eta.size, 1))], axis=1)
    return np.clip(np.diff(full, axis=1), 0.0, 1.0)
