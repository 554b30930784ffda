"""Kenward–Roger inference for a linear mixed model, as pbkrtest computes it for ``lmer`` fits.

The marginal covariance is written linearly in the variance components,
V = Σ_r φ_r G_r + σ² I, with φ the variances and covariances of each random-effect term (lower
triangle, lme4's VarCorr) and G_r = Z_r E_r Z_rᵀ per level (Halekoh & Højsgaard 2014, *J. Stat.
Softw.* 59(9), section 3). Being linear, V has no second-derivative (R) term; W is the inverse
of the expected REML information in φ (Kenward & Roger 1997, eq. 5). V is block-diagonal over
the connected components of the grouping factors (the groups of a single factor; the outer
groups of a nested design; one block for a crossed design), so everything is computed block by
block with the shared algebra of :mod:`mesostats.mixed.kenward_roger`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.contrast_df import VarianceGradientDF
from mesostats.mixed.design import MixedDesign, lower_triangle_indices
from mesostats.mixed.kenward_roger import (
    BlockGroup,
    expected_reml_information,
    kenward_roger_pieces,
    kenward_roger_vcov,
)

__all__ = ["lmm_kenward_roger"]

#: refuse when the dense blocks of ∂V/∂φ would need more memory than this (bytes)
_MAX_BLOCK_BYTES = 1.5e9
_EIGEN_TOL = 1e-10


def _components(design: MixedDesign) -> np.ndarray:
    """Component label of every row: rows sharing a level of any grouping factor are joined."""
    n = design.n
    offsets = [n]
    for term in design.terms:
        offsets.append(offsets[-1] + term.n_levels)
    rows = np.concatenate([np.arange(n)] * len(design.terms))
    cols = np.concatenate([off + t.codes for off, t in zip(offsets, design.terms, strict=False)])
    size = offsets[-1]
    graph = scipy.sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels[:n])


def _block_groups(design: MixedDesign, theta: np.ndarray, sigma: float) -> list[BlockGroup]:
    labels = _components(design)
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    row_size = sizes[labels[order]]
    lams = design.lambda_blocks(theta)
    k = sum(t.n_theta for t in design.terms) + 1
    need = float(np.sum(sizes.astype(float) ** 2)) * k * 8.0
    if need > _MAX_BLOCK_BYTES:
        raise ModelSpecError(
            f"Kenward-Roger needs the marginal covariance in blocks; here the grouping factors "
            f"connect {sizes.max()} rows in one block ({need / 1e9:.1f} GB for {k} variance "
            "parameters), too large to hold densely. Use df='satterthwaite' for this design."
        )
    groups = []
    for m in np.unique(sizes):
        rows = order[row_size == m].reshape(-1, m)  # (s, m), components stay contiguous
        s = rows.shape[0]
        d_sigma = []
        values = []
        for term, lam in zip(design.terms, lams, strict=True):
            Z = term.Z[rows]  # (s, m, q)
            codes = term.codes[rows]
            same = codes[:, :, None] == codes[:, None, :]
            D = sigma**2 * (lam @ lam.T)
            r_idx, c_idx = lower_triangle_indices(term.q)
            for a, b in zip(r_idx, c_idx, strict=True):
                G = Z[:, :, a, None] * Z[:, None, :, b]
                if a != b:
                    G = G + np.swapaxes(G, 1, 2)
                d_sigma.append(np.where(same, G, 0.0))
                values.append(D[a, b])
        d_sigma.append(np.broadcast_to(np.eye(m), (s, m, m)))
        values.append(sigma**2)
        dS = np.stack(d_sigma, axis=1)  # (s, k, m, m)
        Sig = np.einsum("k,skab->sab", np.asarray(values), dS)
        groups.append(BlockGroup(X=design.X[rows], sigma=Sig, d_sigma=dS))
    return groups


def lmm_kenward_roger(
    design: MixedDesign, theta: np.ndarray, sigma: float
) -> tuple[np.ndarray, VarianceGradientDF]:
    """Kenward–Roger covariance of β̂ and the df function of a REML ``lmer``-type fit.

    Parameters
    ----------
    design : MixedDesign
        The fitted design.
    theta, sigma : REML estimates (lme4's relative Cholesky θ, residual SD).

    Returns
    -------
    vcov : (p, p) adjusted covariance Φ_A.
    df_for : callable L (m, p) → (m,) Kenward–Roger df of each row (a single contrast's KR df
        are Satterthwaite's with the unadjusted Φ and W, as pbkrtest's ``Lb_ddf``).

    References
    ----------
    Kenward, M. G., Roger, J. H. (1997). Small sample inference for fixed effects from restricted
    maximum likelihood. *Biometrics* 53, 983–997. Halekoh, U., Højsgaard, S. (2014). A
    Kenward-Roger approximation and parametric bootstrap methods for tests in linear mixed
    models – the R package pbkrtest. *J. Stat. Softw.* 59(9).
    """
    groups = _block_groups(design, np.asarray(theta, dtype=float), float(sigma))
    pieces = kenward_roger_pieces(groups)
    info = expected_reml_information(groups, pieces)
    evals = np.linalg.eigvalsh(info)
    if np.min(np.abs(evals)) > _EIGEN_TOL:
        W = np.linalg.inv(info)
    else:  # pbkrtest: generalised inverse when the information is (nearly) singular
        W = np.linalg.pinv(info)
    W = 0.5 * (W + W.T)
    vcov = kenward_roger_vcov(groups, pieces, W)
    return vcov, VarianceGradientDF(pieces.phi, pieces.jacobian, W)
