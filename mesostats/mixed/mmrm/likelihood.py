"""(RE)ML criterion of an MMRM with its exact gradient and Hessian in θ, batched by pattern.

Model (Christensen, *mmrm* TMB formulation; SAS PROC MIXED's REPEATED statement): subject i
has y_i ~ N(X_i β, Σ_i(θ)), independent across subjects; Σ_i is the structure's Σ(θ) on the
visits the subject has, scaled as W_i^{-1/2} Σ W_i^{-1/2} by the weights. β is profiled out
by generalised least squares. With V = diag(Σ_i), M = (XᵀV⁻¹X)⁻¹ and
P = V⁻¹ − V⁻¹XMXᵀV⁻¹ (Harville 1977; Jennrich & Schluchter 1986, *Biometrics* 42:805;
Wolfinger, Tobias & Sall 1994, *SIAM J. Sci. Comput.* 15:1294):

* −2ℓ_ML   = n log 2π + log|V| + yᵀPy,
* −2ℓ_REML = (n−p) log 2π + log|V| + log|XᵀV⁻¹X| + yᵀPy  (mmrm's constant),
* ∂(log|V| [+ log|XᵀV⁻¹X|])/∂θ_k = tr(Q V_k) with Q = V⁻¹ (ML) or P (REML), and
  ∂²/∂θ_k∂θ_l = tr(Q V_kl) − tr(Q V_k Q V_l);
* ∂(yᵀPy)/∂θ_k = −yᵀPV_kPy, ∂²/∂θ_k∂θ_l = 2 yᵀPV_kPV_lPy − yᵀPV_klPy.

Weights enter as √w scaling of the rows of X and y plus the constant −½ Σ log w, since
log|W^{-1/2}ΣW^{-1/2}| = log|Σ| − Σ log w.

Subjects with the same visits and group share Σ, so each term above reduces to sums of
d×d or p×p matrices over *patterns* using per-pattern sufficient statistics computed once
(K = Σ_i X_i ⊗ X_i, Σ_i X_i ⊗ y_i, Σ_i y_i y_iᵀ; :mod:`mesostats.mixed.mmrm.patterns`),
stacked by pattern size: an evaluation costs one batched Cholesky per size and no work per
subject, whatever the number of subjects. The terms linear in ∂Σ and ∂²Σ are collected as
one visits × visits coefficient matrix W = Σ_patterns (nΣ⁻¹ − U − N) (U = Σ_i u_i u_iᵀ,
u_i = Σ⁻¹r_i; N = Σ⁻¹(Σ_i X_i M X_iᵀ)Σ⁻¹ for REML) and contracted once with ∂Σ/∂θ and
∂²Σ/∂θ² on all visits (Σ on a subset of visits is the sub-matrix of Σ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from mesostats.mixed.mmrm.patterns import PatternBatch, PatternBlock, pattern_block
from mesostats.mixed.mmrm.structures import Structure

# PatternBlock and pattern_block are re-exported for their users
__all__ = ["Evaluation", "PatternBlock", "evaluate", "pattern_block"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class Evaluation:
    """−ℓ (RE)ML at θ, with β̂(θ), M = (XᵀV⁻¹X)⁻¹ and, on request, gradient and Hessian;
    with the Hessian also ``xvx_jacobian``, ∂(XᵀV⁻¹X)/∂θ_k = −Σ_i X_iᵀΣ_i⁻¹ ∂Σ_i/∂θ_k Σ_i⁻¹X_i
    (k, p, p), a by-product of the REML Hessian from which Satterthwaite's ∂M/∂θ_k =
    −M (∂XᵀV⁻¹X/∂θ_k) M follows without another pass over the patterns."""

    value: float
    beta: np.ndarray
    beta_cov: np.ndarray
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None
    xvx_jacobian: np.ndarray | None = None


Derivs = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]


def _infeasible(k: int, p: int) -> Evaluation:
    nan = np.full(p, np.nan)
    return Evaluation(np.inf, nan, np.full((p, p), np.nan), np.full(k, np.nan), None)


def _batch_sigma(
    bt: PatternBatch, theta_g: np.ndarray, structure: Structure, order: int, full: Derivs | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Σ (nb, d, d), ∂Σ (nb, k, d, d) and, for ``sp_exp`` only, ∂²Σ (nb, k, k, d, d)."""
    if structure.spatial:
        assert bt.dist is not None
        return structure.spatial_derivatives(theta_g, bt.dist, order)
    assert full is not None
    if bt.pair is not None:  # padded: all visits, the identity at the absent ones
        assert bt.absent is not None
        S = np.where(bt.pair, full[0], bt.absent)
        J = None
        if order >= 1:
            assert full[1] is not None
            J = np.broadcast_to(full[1], (bt.nb, *full[1].shape))
        return S, J, None
    idx = bt.coords.astype(np.intp)
    ia, ib = idx[:, :, None], idx[:, None, :]
    S = full[0][ia, ib]
    J = None
    if order >= 1:
        assert full[1] is not None
        J = full[1][:, ia, ib].transpose(1, 0, 2, 3)
    return S, J, None


_POTRF, _POTRS = linalg.get_lapack_funcs(("potrf", "potrs"), (np.zeros((1, 1)),))


def _cho_inverse(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factor (upper triangle not cleaned) and inverse of a p × p matrix: the
    LAPACK calls of scipy's ``cho_factor(A, lower=True)`` and ``cho_solve(·, I)`` with their
    checks, without their per-call dispatch (~40 µs, twice per evaluation)."""
    if not np.all(np.isfinite(A)):
        raise ValueError("array must not contain infs or NaNs")
    c, info = _POTRF(A, lower=True, overwrite_a=False, clean=False)
    if info > 0:
        raise linalg.LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    if info < 0:
        raise ValueError(f"LAPACK reported an illegal value in {-info}-th argument of POTRF")
    inv, info = _POTRS(c, np.eye(A.shape[0]), lower=True, overwrite_b=False)
    if info != 0:
        raise ValueError(f"illegal value in {-info}th argument of internal potrs")
    return c, inv


def _flat_k(A: np.ndarray) -> np.ndarray:
    """(nb, k, d, d) → (k, nb·d·d), so that Σ_patterns Σ_ab A_k B_l is one matrix product."""
    return A.transpose(1, 0, 2, 3).reshape(A.shape[1], -1)


def evaluate(
    theta: np.ndarray,
    batches: list[PatternBatch],
    structure: Structure,
    *,
    n_groups: int,
    reml: bool,
    n_obs: int,
    sum_log_weights: float,
    order: int = 0,
) -> Evaluation:
    """−ℓ(θ) (REML or ML) and, for ``order`` 1/2, its exact gradient/Hessian in θ.

    Returns ``value = inf`` when some Σ is not positive definite.
    """
    theta = np.asarray(theta, dtype=float)
    kg = structure.n_theta
    k = kg * n_groups
    p = batches[0].XX.shape[-1]
    m = structure.n_visits
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    yWy = 0.0
    logdet = 0.0
    full: dict[int, Derivs] = {}
    parts = []
    for bt in batches:
        th = theta[bt.group * kg : (bt.group + 1) * kg]
        if not structure.spatial and bt.group not in full:
            # ∂²Σ on all visits is only ever contracted with W: see hessian_contract below
            full[bt.group] = structure.derivatives(th, None, min(order, 1))
        S, J, H = _batch_sigma(bt, th, structure, order, full.get(bt.group))
        try:
            chol = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return _infeasible(k, p)
        diag = np.diagonal(chol, axis1=1, axis2=2)
        if not (diag > 0.0).all():  # also False for NaN
            return _infeasible(k, p)
        Linv = np.linalg.inv(chol)
        Sinv = np.matmul(Linv.transpose(0, 2, 1), Linv)
        if bt.absent is not None:
            Sinv -= bt.absent  # Σ_S⁻¹ at the pattern's visits, zero elsewhere
        logdet += 2.0 * float(bt.n_subjects @ np.log(diag).sum(axis=1))
        d = bt.d
        w = Sinv.reshape(-1)
        XtWX += (w @ bt.XX.reshape(bt.nb * d * d, p * p)).reshape(p, p)
        XtWy += w @ bt.Xy.reshape(bt.nb * d * d, p)
        yWy += float(w @ bt.yy.reshape(-1))
        parts.append((J, H, Sinv))
    try:
        chol_x, M = _cho_inverse(XtWX)
    except linalg.LinAlgError:
        return _infeasible(k, p)
    M = 0.5 * (M + M.T)
    beta = M @ XtWy
    quad = yWy - float(beta @ XtWy)
    if reml:
        logdet_x = 2.0 * float(np.log(np.diag(chol_x)).sum())
        m2l = (n_obs - p) * _LOG_2PI + logdet + logdet_x + quad
    else:
        m2l = n_obs * _LOG_2PI + logdet + quad
    value = 0.5 * m2l - 0.5 * sum_log_weights
    if order == 0:
        return Evaluation(value, beta, M)

    grad = np.zeros(k)
    hess = np.zeros((k, k)) if order >= 2 else None
    h = np.zeros((k, p))
    G = np.zeros((k, p * p)) if order >= 2 else None  # Σ_i X_iᵀΣ⁻¹ ∂Σ_k Σ⁻¹X_i
    W = np.zeros((n_groups, m * m))
    for bt, (J, H, Sinv) in zip(batches, parts, strict=True):
        assert J is not None
        sl = slice(bt.group * kg, (bt.group + 1) * kg)
        nb, d = bt.nb, bt.d
        # products with β as one matrix-vector product each (not nb·d·d small ones)
        XXb = (bt.XX.reshape(-1, p) @ beta).reshape(nb, d, d, p)  # Σ_i X_i[a,x](X_iβ)[c]
        Xb_y = (bt.Xy.reshape(-1, p) @ beta).reshape(nb, d, d)  # Σ_i (X_iβ)[a] y_i[b]
        bXXb = (XXb.reshape(-1, p) @ beta).reshape(nb, d, d)
        rr = bt.yy - Xb_y - Xb_y.transpose(0, 2, 1) + bXXb  # Σ_i r_i r_iᵀ
        U = Sinv @ rr @ Sinv  # Σ_i u_i u_iᵀ, u_i = Σ⁻¹ r_i
        nS = bt.n_subjects[:, None, None] * Sinv
        Wb = nS - U
        N = None
        if reml:
            Sp = (bt.XX.reshape(-1, p * p) @ M.reshape(p * p)).reshape(nb, d, d)  # Σ X_i M X_iᵀ
            N = Sinv @ Sp @ Sinv
            Wb = Wb - N
        if structure.spatial:
            grad[sl] += np.einsum("nkab,nab->k", J, Wb)
            if hess is not None:
                assert H is not None
                hess[sl, sl] += np.einsum("nklab,nab->kl", H, Wb)
        elif bt.pair is not None:  # padded: the patterns' cells are the visits' cells
            W[bt.group] += Wb.sum(axis=0).reshape(-1)
        else:
            idx = bt.coords.astype(np.intp)
            flat = (idx[:, :, None] * m + idx[:, None, :]).reshape(-1)
            W[bt.group] += np.bincount(flat, weights=Wb.reshape(-1), minlength=m * m)
        if hess is None:
            continue
        # terms quadratic in ∂Σ: tr(C J_k Σ⁻¹ J_l) + tr(Σ⁻¹ J_k N J_l), C = −nΣ⁻¹ + 2U + N
        Z = Sinv[:, None] @ J  # Σ⁻¹ ∂Σ_k
        C = 2.0 * U - nS if N is None else 2.0 * U - nS + N
        Zt = _flat_k(Z.transpose(0, 1, 3, 2))
        hess[sl, sl] += _flat_k(C[:, None] @ J) @ Zt.T
        if N is not None:
            hess[sl, sl] += _flat_k(Z) @ _flat_k((N[:, None] @ J).transpose(0, 1, 3, 2)).T
        Jp = Sinv[:, None] @ (bt.Xy - XXb)  # [n, a, b, x] = Σ_i X_i[a,x] u_i[b]
        h[sl] += _flat_k(Z) @ Jp.reshape(nb * d * d, p)
        if G is not None:
            G[sl] += _flat_k(Z @ Sinv[:, None]) @ bt.XX.reshape(nb * d * d, p * p)
    if not structure.spatial:
        for g, (_, Jf, _) in full.items():
            assert Jf is not None
            sl = slice(g * kg, (g + 1) * kg)
            grad[sl] += Jf.reshape(kg, m * m) @ W[g]
            if hess is not None:
                hess[sl, sl] += structure.hessian_contract(theta[sl], W[g].reshape(m, m))
    if hess is not None:
        hess -= 2.0 * ((h @ M) @ h.T)
        if G is not None and reml:
            MG = np.matmul(M, G.reshape(k, p, p))  # M G_k
            hess -= MG.reshape(k, p * p) @ MG.transpose(0, 2, 1).reshape(k, p * p).T
        hess = 0.25 * (hess + hess.T)
    xvx = None if G is None else -G.reshape(k, p, p)
    return Evaluation(value, beta, M, 0.5 * grad, hess, xvx)
