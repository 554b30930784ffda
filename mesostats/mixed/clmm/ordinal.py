"""Per-observation ordinal log-likelihood and its derivatives, for the Laplace/AGQ engines.

An observation in category y has probability D = F(a) − F(c) with a = θ_y − η (its upper
threshold, +∞ for the top category) and c = θ_{y−1} − η (its lower threshold, −∞ for the
bottom one). ℓ = log D is a function of (a, c); with D's partial derivatives (D_a = f(a),
D_c = −f(c), mixed ones zero) the chain rule gives

    ℓ_x = D_x / D,   ℓ_xy = D_xy / D − ℓ_x ℓ_y,
    ℓ_xyz = D_xyz / D − (D_xy ℓ_z + D_xz ℓ_y + D_yz ℓ_x) / D + 2 ℓ_x ℓ_y ℓ_z,

and derivatives in η are −(∂_a + ∂_c) applied repeatedly. The third order is what the exact
gradient of the Laplace approximation needs (its log-determinant depends on the weights
w = −∂²ℓ/∂η²). For log-concave F (logit, probit, cloglog) ℓ is concave in η (Pratt 1981,
*J. Amer. Statist. Assoc.* 76), so the conditional-mode problem has one solution.

D is computed as S(c) − S(a) when a + c > 0 (both ends in the upper tail) and F(a) − F(c)
otherwise, so no probability is lost to cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesostats.mixed.clmm.links import Link

__all__ = ["OrdinalTerms", "ordinal_terms", "threshold_sums"]

FloatArray = np.ndarray


@dataclass
class OrdinalTerms:
    """ℓ and its derivatives at each observation (arrays of the shape of a and c).

    ``l1, l2, l3``: ∂ℓ/∂η, ∂²ℓ/∂η², ∂³ℓ/∂η³. ``la, lc``: ∂ℓ/∂(upper, lower threshold).
    ``l1_a, l1_c, l2_a, l2_c``: ∂l1 and ∂l2 with respect to the upper / lower threshold.
    Entries not asked for (by ``order``) are ``None``.
    """

    loglik: FloatArray
    la: FloatArray
    lc: FloatArray
    l1: FloatArray
    l2: FloatArray | None = None
    l3: FloatArray | None = None
    l1_a: FloatArray | None = None
    l1_c: FloatArray | None = None
    l2_a: FloatArray | None = None
    l2_c: FloatArray | None = None


def ordinal_terms(link: Link, a: FloatArray, c: FloatArray, order: int) -> OrdinalTerms:
    """ℓ = log(F(a) − F(c)) and its derivatives up to ``order`` (1, 2 or 3).

    The outer thresholds must be given as ±:data:`~.links.INFINITY`, not ±∞.
    """
    va = link.values(a, order)
    vc = link.values(c, order)
    upper = (a + c) > 0
    D = np.where(upper, vc[1] - va[1], va[0] - vc[0])
    with np.errstate(divide="ignore"):
        loglik = np.log(D)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / D
    fa, fc = va[2:], vc[2:]
    la = fa[0] * inv
    lc = -fc[0] * inv
    out = OrdinalTerms(loglik=loglik, la=la, lc=lc, l1=-(la + lc))
    if order < 2:
        return out
    daa, dcc = fa[1], -fc[1]
    laa = daa * inv - la * la
    lcc = dcc * inv - lc * lc
    lac = -la * lc
    out.l2 = laa + 2.0 * lac + lcc
    out.l1_a = -(laa + lac)
    out.l1_c = -(lac + lcc)
    if order < 3:
        return out
    laaa = fa[2] * inv - 3.0 * daa * la * inv + 2.0 * la * la * la
    lccc = -fc[2] * inv - 3.0 * dcc * lc * inv + 2.0 * lc * lc * lc
    laac = -daa * lc * inv + 2.0 * la * la * lc
    lacc = -dcc * la * inv + 2.0 * la * lc * lc
    out.l3 = -(laaa + 3.0 * laac + 3.0 * lacc + lccc)
    out.l2_a = laaa + 2.0 * laac + lacc
    out.l2_c = laac + 2.0 * lacc + lccc
    return out


def threshold_sums(y: np.ndarray, upper: FloatArray, lower: FloatArray, n_thr: int) -> FloatArray:
    """Σ over observations of ``upper`` at threshold y_i and ``lower`` at threshold y_i − 1.

    ``y`` holds category codes 0 … n_thr; contributions at the infinite outer thresholds
    (top category's upper, bottom category's lower) are dropped.
    """
    k = n_thr + 2
    sums = np.bincount(y + 1, weights=upper, minlength=k) + np.bincount(
        y, weights=lower, minlength=k
    )
    return np.asarray(sums[1 : n_thr + 1])
