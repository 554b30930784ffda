"""Empirical (cluster-robust sandwich) covariance of β̂ for an MMRM and its df, as R's mmrm.

With whitened subject blocks X̃_i = L_i⁻¹X_i, r̃_i = L_i⁻¹(y_i − X_iβ̂) (Σ_i = L_iL_iᵀ, weights
absorbed as √w-scaled rows), Φ = (Σ_i X̃_iᵀX̃_i)⁻¹ and the leverage block H_ii = X̃_iΦX̃_iᵀ:

    vcov = Φ (Σ_i X̃_iᵀ A_i r̃_i r̃_iᵀ A_iᵀ X̃_i) Φ,
    A_i = I (CR0, "empirical"; Liang & Zeger 1986),
          (I − H_ii)^{-1/2} (CR2, "empirical-bias-reduced"; Bell & McCaffrey 2002; symmetric
          pseudo-inverse square root with mmrm's cut-off ε·d·λ_max),
          (I − H_ii)^{-1}   (CR3, "empirical-jackknife"; without the (n−1)/n factor, as mmrm).

Degrees of freedom for a contrast l (mmrm's ``h_df_1d_sat_empirical``, the Bell–McCaffrey /
Pustejovsky–Tipton 2018 approximation): with v_i = A_iᵀX̃_iΦlᵀ placed in subject i's rows and
G = [(I − H)v_1, …, (I − H)v_n], M = GᵀG and df = tr(M)² / ‖M‖_F². Since H is the projection
on X̃, M = diag(‖v_i‖²) − BᵀΦB with b_i = X̃_iᵀv_i, so tr M and ‖M‖_F² need only
n-vectors and p×p matrices (tr(ΦSΦS) with S = Σ_i b_ib_iᵀ), never the N×N hat matrix.

Everything is batched over the subjects of a visit pattern (one Cholesky per pattern).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesostats.mixed.contrast_df import as_contrast_rows
from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = ["EMPIRICAL_KINDS", "EmpiricalDF", "empirical_vcov"]

EMPIRICAL_KINDS = ("empirical", "empirical-bias-reduced", "empirical-jackknife")


def _pattern_rows(problem: MMRMProblem) -> list[np.ndarray]:
    """(s, d) row indices of the subjects of each pattern."""
    subjects = [np.flatnonzero(problem.subject_pattern == b) for b in range(len(problem.blocks))]
    rows = []
    for b, idx in enumerate(subjects):
        d = problem.blocks[b].d
        rows.append(np.concatenate([problem.subject_rows[i] for i in idx]).reshape(idx.size, d))
    return rows


def _inverse_sqrt(A: np.ndarray) -> np.ndarray:
    """Symmetric pseudo-inverse square root of each (d, d) block (cut-off ε·d·max|λ|)."""
    lam, vec = np.linalg.eigh(A)
    d = A.shape[-1]
    tol = np.finfo(float).eps * d * np.max(np.abs(lam), axis=-1, keepdims=True)
    keep = np.abs(lam) > tol
    scale = np.where(keep, np.sign(lam) / np.sqrt(np.where(keep, np.abs(lam), 1.0)), 0.0)
    return np.einsum("sij,sj,skj->sik", vec, scale, vec)


@dataclass(frozen=True, eq=False)
class EmpiricalDF:
    """df of contrasts under an empirical covariance (see the module docstring).

    ``xw``: per pattern, whitened design (s, d, p); ``k``: per pattern A_iᵀX̃_iΦ (s, d, p).
    """

    phi: np.ndarray
    xw: tuple[np.ndarray, ...]
    k: tuple[np.ndarray, ...]

    def __call__(self, L: np.ndarray) -> np.ndarray:
        """df (m,) of each row of ``L`` (m, p)."""
        L = as_contrast_rows(L, self.phi.shape[0])
        phi = self.phi
        m = L.shape[0]
        trace = np.zeros(m)
        frob = np.zeros(m)
        S = np.zeros((m, *phi.shape))
        for xw, k in zip(self.xw, self.k, strict=True):
            V = np.einsum("sdp,mp->smd", k, L, optimize=True)  # v_i per contrast
            dvec = np.einsum("smd,smd->sm", V, V)
            B = np.einsum("sdp,smd->smp", xw, V, optimize=True)
            c = np.einsum("smp,pq,smq->sm", B, phi, B, optimize=True)
            trace += (dvec - c).sum(axis=0)
            frob += (dvec**2 - 2.0 * dvec * c).sum(axis=0)
            S += np.einsum("smp,smq->mpq", B, B, optimize=True)
        PS = np.einsum("pq,mqr->mpr", phi, S)
        frob += np.einsum("mpr,mrp->m", PS, PS)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = np.where(frob > 0, trace**2 / np.where(frob > 0, frob, 1.0), np.inf)
        return np.asarray(df, dtype=float)


def empirical_vcov(
    problem: MMRMProblem, theta: np.ndarray, beta: np.ndarray, kind: str
) -> tuple[np.ndarray, EmpiricalDF]:
    """Empirical covariance of β̂ and its df function.

    Parameters
    ----------
    problem : MMRMProblem
    theta, beta : the estimates.
    kind : ``"empirical"`` (CR0), ``"empirical-bias-reduced"`` (CR2) or
        ``"empirical-jackknife"`` (CR3).

    References
    ----------
    Liang, K.-Y., Zeger, S. L. (1986). *Biometrika* 73, 13–22. Bell, R. M., McCaffrey, D. F.
    (2002). *Survey Methodology* 28, 169–181. Pustejovsky, J. E., Tipton, E. (2018). *J. Bus.
    Econ. Stat.* 36, 672–683. R package mmrm, vignette "Details of the Model Robust Estimator".
    """
    if kind not in EMPIRICAL_KINDS:
        raise ValueError(f"kind must be one of {EMPIRICAL_KINDS}, got {kind!r}")
    theta = np.asarray(theta, dtype=float)
    sw = np.sqrt(problem.weights)
    Xs = problem.X * sw[:, None]
    rs = (problem.y - problem.X @ np.asarray(beta, dtype=float)) * sw
    whitened = []
    for b, rows in enumerate(_pattern_rows(problem)):
        S = problem.pattern_derivatives(theta, b, 0)[0]
        Linv = np.linalg.inv(np.linalg.cholesky(S))
        whitened.append((Linv @ Xs[rows], np.einsum("ij,sj->si", Linv, rs[rows])))
    info = sum(np.einsum("sdp,sdq->pq", xw, xw) for xw, _ in whitened)
    phi = np.linalg.inv(info)
    phi = 0.5 * (phi + phi.T)
    meat = np.zeros_like(phi)
    xws, ks = [], []
    for xw, rw in whitened:
        if kind == "empirical":
            A = np.broadcast_to(np.eye(xw.shape[1]), (xw.shape[0], xw.shape[1], xw.shape[1]))
        else:
            A = np.eye(xw.shape[1]) - np.einsum("sap,pq,sbq->sab", xw, phi, xw, optimize=True)
            A = np.linalg.inv(A) if kind == "empirical-jackknife" else _inverse_sqrt(A)
        z = np.einsum("sdp,sde,se->sp", xw, A, rw, optimize=True)
        meat += z.T @ z
        xws.append(xw)
        ks.append(np.einsum("sed,sep,pq->sdq", A, xw, phi, optimize=True))
    vcov = phi @ meat @ phi
    return 0.5 * (vcov + vcov.T), EmpiricalDF(phi, tuple(xws), tuple(ks))
