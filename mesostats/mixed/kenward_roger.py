"""Kenward–Roger adjusted covariance of the fixed effects for block-diagonal marginal models.

**Kenward & Roger (1997)**, *Biometrics* 53:983–997. For y ~ N(Xβ, Ω(φ)) with Ω block-diagonal
(independent subjects, or the connected components of a random-effects design),
Φ = (XᵀΩ⁻¹X)⁻¹ and W the asymptotic covariance of φ̂, the small-sample adjusted covariance is

    Φ_A = Φ + 2 Φ { Σ_hj W_hj (Q_hj − P_h Φ P_j − ¼ R_hj) } Φ,
    P_h = Xᵀ ∂Ω⁻¹/∂φ_h X,   Q_hj = Xᵀ ∂Ω⁻¹/∂φ_h Ω ∂Ω⁻¹/∂φ_j X,
    R_hj = Xᵀ Ω⁻¹ ∂²Ω/∂φ_h∂φ_j Ω⁻¹ X,

each a sum over blocks. Dropping R (exact when Ω is linear in φ) is the "linear" variant
(SAS's and pbkrtest's choice; R's mmrm calls it Kenward-Roger-Linear). The df of a single
contrast are Satterthwaite's with ∂Φ/∂φ_h = −Φ P_h Φ (see :mod:`mesostats.mixed.contrast_df`).

W is supplied by the caller: R's mmrm uses the inverse observed Hessian of the REML criterion in
its own θ; pbkrtest (for ``lmer`` fits) the inverse *expected* REML information in the variance
components, :func:`expected_reml_information` (equation (5) of Kenward & Roger).

Blocks of equal size are stacked and handled together (no loop over subjects). A
:class:`BlockGroup` holds either one covariance per block (random-effects designs: design rows
X) or covariances shared by many blocks (MMRM visit patterns: then Σ_i X_iᵀ A X_i is a product
with the pattern's (m, m, p, p) cross-product tensor, whatever the number of subjects).
Written by hand: no Python library computes the KR adjustment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BlockGroup",
    "KRPieces",
    "expected_reml_information",
    "kenward_roger_pieces",
    "kenward_roger_vcov",
]


@dataclass(frozen=True, eq=False)
class BlockGroup:
    """Blocks of one size m: design rows, covariance and its derivatives in φ.

    Attributes
    ----------
    X : (s, m, p) or None
        Design rows of each block (weights already absorbed: √w · X); None when ``cross``
        is given.
    sigma : (b, m, m)
        The b distinct covariance matrices: b = 1 (shared by all s blocks), b = s (one per
        block), or one per visit pattern when ``cross`` is given.
    d_sigma : (b, k, m, m)
        ∂Σ/∂φ_h.
    d2_sigma : (b, k, k, m, m) or None
        ∂²Σ/∂φ_h∂φ_j (None: Σ is linear in φ, or given through ``d2_full``).
    cross : (b, m, m, p, p) or None
        Per covariance, Σ_i X_i[a, x] X_i[b, y] over the blocks that have it.
    d2_full, index : (k, k, M, M) and (b, m), optional
        Alternatively, ∂²Σ on all M visits and each covariance's visits: ∂²Σ of covariance z
        is ``d2_full[:, :, index[z]][..., index[z]]`` (saves b·k²·m² memory).
    """

    X: np.ndarray | None
    sigma: np.ndarray
    d_sigma: np.ndarray
    d2_sigma: np.ndarray | None = None
    cross: np.ndarray | None = None
    d2_full: np.ndarray | None = None
    index: np.ndarray | None = None

    @property
    def shared(self) -> bool:
        """Whether all blocks share one covariance matrix."""
        return self.sigma.shape[0] == 1


@dataclass(frozen=True, eq=False)
class KRPieces:
    """Per-group inverses and the P matrices, reused by the adjustment and the information."""

    phi: np.ndarray  # (p, p) unadjusted covariance (XᵀΩ⁻¹X)⁻¹
    P: np.ndarray  # (k, p, p)
    sigma_inv: tuple[np.ndarray, ...]  # per group (b, m, m)
    d_inv: tuple[np.ndarray, ...]  # per group (b, k, m, m): ∂Σ⁻¹/∂φ_h
    cross: tuple[np.ndarray | None, ...]  # per group (b, m, m, p, p) or None (X path)

    @property
    def jacobian(self) -> np.ndarray:
        """∂Φ/∂φ_h = −Φ P_h Φ, (k, p, p)."""
        return -np.matmul(np.matmul(self.phi, self.P), self.phi)


def _cross(group: BlockGroup) -> np.ndarray | None:
    if group.cross is not None:
        return group.cross
    if group.shared and group.X is not None:
        return np.einsum("sap,sbq->abpq", group.X, group.X, optimize=True)[None]
    return None


def _sum_xtax(
    groups: Sequence[BlockGroup], crosses: Sequence[np.ndarray | None], mats: Sequence[np.ndarray]
) -> np.ndarray:
    """Σ over groups and blocks of X_iᵀ A X_i, ``mats[g]`` of shape (b, E, m, m) → (E, p, p).

    With cross-product tensors this is one matrix product per group, (E, b·m²) @ (b·m², p²).
    """
    n_extra = mats[0].shape[1]
    out: np.ndarray | None = None
    for g, cross, A in zip(groups, crosses, mats, strict=True):
        if cross is not None:
            p = cross.shape[-1]
            left = np.ascontiguousarray(A.transpose(1, 0, 2, 3)).reshape(n_extra, -1)
            part = (left @ cross.reshape(-1, p * p)).reshape(n_extra, p, p)
        else:
            if g.X is None:
                raise ValueError("a block group needs its design rows X or cross-products")
            T = np.einsum("seab,sbq->seaq", A, g.X, optimize=True)
            part = np.einsum("sap,seaq->epq", g.X, T, optimize=True)
        out = part if out is None else out + part
    assert out is not None
    return out


def kenward_roger_pieces(groups: Sequence[BlockGroup]) -> KRPieces:
    """Φ and P_h (and the per-group inverses they come from)."""
    sig_inv, d_inv = [], []
    for g in groups:
        s_inv = np.linalg.inv(g.sigma)
        s_inv = 0.5 * (s_inv + np.swapaxes(s_inv, -1, -2))
        sig_inv.append(s_inv)
        d_inv.append(-np.matmul(np.matmul(s_inv[:, None], g.d_sigma), s_inv[:, None]))
    crosses = [_cross(g) for g in groups]
    info = _sum_xtax(groups, crosses, [si[:, None] for si in sig_inv])[0]
    P = _sum_xtax(groups, crosses, d_inv)
    info = 0.5 * (info + info.T)
    phi = np.linalg.inv(info)
    phi = 0.5 * (phi + phi.T)
    return KRPieces(phi, P, tuple(sig_inv), tuple(d_inv), tuple(crosses))


def _weighted_d2(group: BlockGroup, W: np.ndarray) -> np.ndarray | None:
    """Σ_hj W_hj ∂²Σ/∂φ_h∂φ_j per covariance, (b, m, m), or None without second derivatives."""
    if group.d2_sigma is not None:
        return np.tensordot(W, group.d2_sigma, axes=([0, 1], [1, 2]))
    if group.d2_full is not None and group.index is not None:
        full = np.tensordot(W, group.d2_full, axes=([0, 1], [0, 1]))
        idx = group.index
        return full[idx[:, :, None], idx[:, None, :]]
    return None


def kenward_roger_vcov(
    groups: Sequence[BlockGroup], pieces: KRPieces, W: np.ndarray, *, linear: bool = False
) -> np.ndarray:
    """Kenward–Roger adjusted covariance Φ_A of β̂ (``linear`` drops the R term)."""
    phi, P = pieces.phi, pieces.P
    # −Σ_hj W_hj P_h Φ P_j, as matrix products (Σ_j W_hj P_j first)
    PW = np.tensordot(W, P, axes=([1], [0]))  # (h, p, p)
    U = -np.matmul(np.matmul(P, phi), PW).sum(axis=0)
    mats = []
    for g, s_inv in zip(groups, pieces.sigma_inv, strict=True):
        # Σ_hj W_hj (∂Σ⁻¹_h Σ ∂Σ⁻¹_j − ¼ Σ⁻¹ ∂²Σ_hj Σ⁻¹) per covariance, then Xᵀ(·)X
        E = np.matmul(s_inv[:, None], g.d_sigma)  # Σ⁻¹ ∂Σ_h, (z, h, a, c)
        Ew = np.moveaxis(np.tensordot(E, W, axes=([1], [1])), -1, 1)  # Σ_j W_hj E_j
        mbar = np.matmul(np.matmul(E, Ew).sum(axis=1), s_inv)
        r = None if linear else _weighted_d2(g, W)
        if r is not None:
            mbar = mbar - 0.25 * np.matmul(np.matmul(s_inv, r), s_inv)
        mats.append(mbar[:, None])
    U += _sum_xtax(groups, pieces.cross, mats)[0]
    U = 0.5 * (U + U.T)
    adj = phi + 2.0 * phi @ U @ phi
    return 0.5 * (adj + adj.T)


def expected_reml_information(groups: Sequence[BlockGroup], pieces: KRPieces) -> np.ndarray:
    """Expected REML information in φ, ½ tr(Π ∂Ω_h Π ∂Ω_j) with Π = Ω⁻¹ − Ω⁻¹XΦXᵀΩ⁻¹.

    Expanded over blocks as in Kenward & Roger (1997, eq. 5) and pbkrtest:
    tr(Ω⁻¹Ω_hΩ⁻¹Ω_j) − 2 tr(Φ Q_hj) + tr(Φ P_h Φ P_j), halved.
    """
    phi, P = pieces.phi, pieces.P
    k = P.shape[0]
    total = np.einsum("hpq,qr,jrs,sp->hj", P, phi, P, phi, optimize=True)
    for g, s_inv in zip(groups, pieces.sigma_inv, strict=True):
        if g.X is None:
            raise ValueError("the expected information needs the design rows X of every block")
        E = np.einsum("bij,bhjl->bhil", s_inv, g.d_sigma, optimize=True)  # Σ⁻¹ ∂Σ_h
        nb = E.shape[0]
        mult = g.X.shape[0] if nb == 1 else 1
        total += mult * np.einsum("zhab,zjba->hj", E, E, optimize=True)
        # tr(Φ Q_hj) = Σ_i tr(F_i ∂Σ_h Σ⁻¹ ∂Σ_j), F_i = Σ⁻¹ X_i Φ X_iᵀ Σ⁻¹
        Hx = np.einsum("sap,pq,sbq->sab", g.X, phi, g.X, optimize=True)
        si = np.broadcast_to(s_inv, (g.X.shape[0], *s_inv.shape[1:]))
        F = np.einsum("sij,sjl,slm->sim", si, Hx, si, optimize=True)
        dS = np.broadcast_to(g.d_sigma, (g.X.shape[0], *g.d_sigma.shape[1:]))
        Eb = np.broadcast_to(E, (g.X.shape[0], *E.shape[1:]))
        T = np.einsum("sab,shbc->shac", F, dS, optimize=True)
        total -= 2.0 * np.einsum("shac,sjca->hj", T, Eb, optimize=True)
    info = 0.5 * total
    return 0.5 * (info + info.T) if k else info
