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
(K = Σ_i X_i ⊗ X_i, Σ_i X_i ⊗ y_i, Σ_i y_i y_iᵀ): an evaluation costs one Cholesky per
pattern and no work per subject, whatever the number of subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from mesostats.mixed.mmrm.structures import Structure

__all__ = ["Evaluation", "PatternBlock", "evaluate", "pattern_block"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class PatternBlock:
    """Sufficient statistics of the subjects sharing one (group, visits) pattern.

    ``XX[a, b, x, y] = Σ_i X_i[a, x] X_i[b, y]``, ``Xy[a, b, x] = Σ_i X_i[a, x] y_i[b]``,
    ``yy = Σ_i y_i y_iᵀ`` over the subjects of the pattern, on the √w-scaled rows.
    """

    group: int
    coords: np.ndarray
    n_subjects: int
    XX: np.ndarray
    Xy: np.ndarray
    yy: np.ndarray

    @property
    def d(self) -> int:
        """Visits per subject in this pattern."""
        return int(self.coords.size)


def pattern_block(group: int, coords: np.ndarray, Xp: np.ndarray, yp: np.ndarray) -> PatternBlock:
    """Block of subjects with scaled rows ``Xp`` (n_sub, d, p) and ``yp`` (n_sub, d)."""
    n_sub, d, p = Xp.shape
    flat = np.ascontiguousarray(Xp.reshape(n_sub, d * p))
    # Σ_i vec(X_i) vec(X_i)ᵀ by a symmetric rank-k update (half the work of flatᵀ flat)
    upper = linalg.blas.dsyrk(1.0, flat, trans=1)
    full = np.triu(upper) + np.triu(upper, 1).T
    XX = full.reshape(d, p, d, p).transpose(0, 2, 1, 3)
    Xy = (flat.T @ yp).reshape(d, p, d).transpose(0, 2, 1)  # [a, b, x] = Σ_i X_i[a,x] y_i[b]
    yy = yp.T @ yp
    return PatternBlock(
        group, np.asarray(coords), n_sub, np.ascontiguousarray(XX), np.ascontiguousarray(Xy), yy
    )


@dataclass(frozen=True, eq=False)
class Evaluation:
    """−ℓ (RE)ML at θ, with β̂(θ), M = (XᵀV⁻¹X)⁻¹ and, on request, gradient and Hessian."""

    value: float
    beta: np.ndarray
    beta_cov: np.ndarray
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None


def _subset(
    full: tuple[np.ndarray, np.ndarray | None, np.ndarray | None], idx: np.ndarray, order: int
) -> tuple[np.ndarray, np.ndarray | None, None]:
    """Σ and ∂Σ on the visits ``idx`` from their values on all visits."""
    S, J, _ = full
    if idx.size == S.shape[0]:
        return S, J, None
    ix = np.ix_(idx, idx)
    return S[ix], (None if J is None or order < 1 else J[:, idx][:, :, idx]), None


def _infeasible(k: int, p: int) -> Evaluation:
    nan = np.full(p, np.nan)
    return Evaluation(np.inf, nan, np.full((p, p), np.nan), np.full(k, np.nan), None)


def evaluate(
    theta: np.ndarray,
    blocks: list[PatternBlock],
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
    p = blocks[0].XX.shape[2]
    XtWX = np.zeros((p, p))
    XtWy = np.zeros(p)
    yWy = 0.0
    logdet = 0.0
    parts = []
    # Σ on a subset of visits is the sub-matrix of Σ on all visits: derivatives once per group
    full: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
    for blk in blocks:
        th = theta[blk.group * kg : (blk.group + 1) * kg]
        if structure.spatial:
            S, J, H = structure.derivatives(th, blk.coords, order)
        else:
            if blk.group not in full:
                full[blk.group] = structure.derivatives(th, None, order)
            S, J, _ = _subset(full[blk.group], blk.coords.astype(np.intp), order)
            H = None
        try:
            cf = linalg.cho_factor(S, lower=True, check_finite=True)
        except (linalg.LinAlgError, ValueError):
            return _infeasible(k, p)
        Sinv = linalg.cho_solve(cf, np.eye(blk.d))
        logdet += blk.n_subjects * 2.0 * float(np.log(np.diag(cf[0])).sum())
        XtWX += np.tensordot(Sinv, blk.XX, axes=([0, 1], [0, 1]))
        XtWy += np.tensordot(Sinv, blk.Xy, axes=([0, 1], [0, 1]))
        yWy += float(np.sum(Sinv * blk.yy))
        parts.append((J, H, Sinv))
    try:
        cx = linalg.cho_factor(XtWX, lower=True)
    except linalg.LinAlgError:
        return _infeasible(k, p)
    M = linalg.cho_solve(cx, np.eye(p))
    M = 0.5 * (M + M.T)
    beta = M @ XtWy
    quad = yWy - float(beta @ XtWy)
    if reml:
        logdet_x = 2.0 * float(np.log(np.diag(cx[0])).sum())
        m2l = (n_obs - p) * _LOG_2PI + logdet + logdet_x + quad
    else:
        m2l = n_obs * _LOG_2PI + logdet + quad
    value = 0.5 * m2l - 0.5 * sum_log_weights
    if order == 0:
        return Evaluation(value, beta, M)

    grad = np.zeros(k)
    hess = np.zeros((k, k)) if order >= 2 else None
    h = np.zeros((k, p))
    G = np.zeros((k, p, p)) if (order >= 2 and reml) else None
    m = structure.n_visits
    # coefficient matrix W of the terms linear in ∂Σ and ∂²Σ, accumulated on all visits:
    # gradient Σ_k sum(∂Σ_k ∘ W) and Hessian sum(∂²Σ_kl ∘ W), W = nΣ⁻¹ − U − N per pattern
    W = np.zeros((n_groups, m, m))
    for blk, (J, H, Sinv) in zip(blocks, parts, strict=True):
        assert J is not None
        sl = slice(blk.group * kg, (blk.group + 1) * kg)
        d = blk.d
        XXb = np.tensordot(blk.XX, beta, axes=([3], [0]))  # (a, c, x): Σ_i X_i[a,x](X_iβ)[c]
        Xb_y = np.tensordot(blk.Xy, beta, axes=([2], [0]))  # (a, b): Σ_i (X_iβ)[a] y_i[b]
        bXXb = np.tensordot(XXb, beta, axes=([2], [0]))  # Σ_i (X_iβ)(X_iβ)ᵀ
        rr = blk.yy - Xb_y - Xb_y.T + bXXb  # Σ_i r_i r_iᵀ
        U = Sinv @ rr @ Sinv  # Σ_i u_i u_iᵀ with u_i = Σ⁻¹ r_i
        Wb = blk.n_subjects * Sinv - U
        N = None
        if reml:
            Sp = np.tensordot(blk.XX, M, axes=([2, 3], [0, 1]))  # Σ_i X_i M X_iᵀ
            N = Sinv @ Sp @ Sinv
            Wb = Wb - N
        if structure.spatial:
            grad[sl] += np.einsum("kab,ab->k", J, Wb)
            if hess is not None:
                assert H is not None
                hess[sl, sl] += np.einsum("klab,ab->kl", H, Wb)
        else:
            idx = blk.coords.astype(np.intp)
            W[blk.group][np.ix_(idx, idx)] += Wb
        if hess is None:
            continue
        # terms quadratic in ∂Σ: tr(C J_k Σ⁻¹ J_l) + tr(Σ⁻¹ J_k N J_l), C = −nΣ⁻¹ + 2U + N
        Z = Sinv @ J  # Σ⁻¹ ∂Σ_k
        C = 2.0 * U - blk.n_subjects * Sinv
        if N is not None:
            C = C + N
        Zt = Z.transpose(0, 2, 1).reshape(kg, d * d)
        part = (C @ J).reshape(kg, d * d) @ Zt.T
        if N is not None:
            part += Z.reshape(kg, d * d) @ (N @ J).transpose(0, 2, 1).reshape(kg, d * d).T
        hess[sl, sl] += part
        XR = blk.Xy - XXb  # Σ_i X_i[a,x] r_i[c]
        Jp = np.einsum("bc,acx->abx", Sinv, XR)  # Σ_i X_i[a,x] u_i[b]
        h[sl] += Z.reshape(kg, d * d) @ Jp.reshape(d * d, p)
        if G is not None:
            G[sl] += ((Z @ Sinv).reshape(kg, d * d) @ blk.XX.reshape(d * d, p * p)).reshape(
                kg, p, p
            )
    if not structure.spatial:
        for g, (_, Jf, Hf) in full.items():
            assert Jf is not None
            sl = slice(g * kg, (g + 1) * kg)
            grad[sl] += Jf.reshape(kg, m * m) @ W[g].reshape(m * m)
            if hess is not None:
                assert Hf is not None
                hess[sl, sl] += Hf.reshape(kg * kg, m * m).dot(W[g].reshape(m * m)).reshape(kg, kg)
    if hess is not None:
        MH = h @ M
        hess -= 2.0 * (MH @ h.T)
        if G is not None:
            MG = np.matmul(M, G)  # (k, p, p): M G_k
            flat = MG.reshape(k, p * p)
            hess -= flat @ MG.transpose(0, 2, 1).reshape(k, p * p).T  # tr(M G_k M G_l)
        hess = 0.25 * (hess + hess.T)
    return Evaluation(value, beta, M, 0.5 * grad, hess)
