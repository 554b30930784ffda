"""Kenward–Roger and Satterthwaite inference for an MMRM, as R's mmrm computes them.

R mmrm (vignette "Kenward-Roger"; Kenward & Roger 1997, *Biometrics* 53:983) differentiates
Σ in mmrm's own θ (log-SDs, transformed correlations, Cholesky elements for ``us``), so Σ is
not linear in θ and the R_hj = Σ_i X_iᵀΣ_i⁻¹ ∂²Σ_i/∂θ_h∂θ_j Σ_i⁻¹X_i term is kept; the
"linear" variant (``kenward-roger-linear``, SAS's choice) drops it. W is mmrm's ``theta_vcov``:
the inverse of the exact Hessian of −ℓ_REML in θ. A contrast's df use the unadjusted Φ, P_h and
W, which for one row is Satterthwaite's formula (mmrm's ``h_kr_df`` with one row), so
``satterthwaite`` shares the same pieces (with the ML Hessian for an ML fit) and only keeps Φ.

The R term depends on the parameterisation (first-order terms do not): in mmrm's log-SD /
Cholesky θ it shrinks Φ_A, and with few subjects the default KR is liberal (measured in
tests/test_mmrm_inference.py, ``us`` with 24 subjects: 7.3 % rejections at α = 5 %, KR-linear
5.3 %; with 36 subjects 6.0 % and 4.9 %). KR-linear equals SAS's KR for ``un``, whose
parameters (the covariances) enter Σ linearly.

Subjects sharing a (group, visits) pattern share Σ; the sums over subjects are contractions of
the pattern's cross-product tensor Σ_i X_i ⊗ X_i (held by the problem's ``PatternBatch``, all
patterns with the same number of visits at once), so the cost does not grow with the number
of subjects and there is no Python loop over patterns. Weights: Σ_i = W^{-1/2} Σ W^{-1/2} is the
same as the unweighted Σ with √w-scaled rows of X, which is what the blocks hold.
"""

from __future__ import annotations

import numpy as np

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.contrast_df import VarianceGradientDF
from mesostats.mixed.kenward_roger import (
    BlockGroup,
    KRPieces,
    kenward_roger_pieces,
    kenward_roger_vcov,
)
from mesostats.mixed.mmrm.likelihood import Evaluation
from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = ["mmrm_kenward_roger", "mmrm_satterthwaite", "pattern_groups", "theta_covariance"]


def pattern_groups(problem: MMRMProblem, theta: np.ndarray, order: int) -> list[BlockGroup]:
    """One :class:`BlockGroup` per batch of visit patterns (same group and number of visits).

    Σ and ∂Σ of every pattern are sub-matrices of those on all visits (computed once per
    group); order 2 adds ∂²Σ on all visits with each pattern's visit indices. Spatial
    structures compute each pattern's matrices from its times.
    """
    theta = np.asarray(theta, dtype=float)
    k = problem.n_theta
    structure = problem.structure
    groups = []
    for batch in problem.batches:
        sl = problem.theta_slice(batch.group)
        th = theta[sl]
        nb, d = batch.nb, batch.d
        J = np.zeros((nb, k, d, d))
        d2_sigma = d2_full = index = None
        if structure.spatial:
            assert batch.dist is not None
            S, Jb, Hb = structure.spatial_derivatives(th, batch.dist, order)
            J[:, sl] = Jb
            if order >= 2:
                d2_sigma = np.zeros((nb, k, k, d, d))
                d2_sigma[:, sl, sl] = Hb
        else:
            Sa, Ja, Ha = structure.derivatives(th, None, order)
            assert Ja is not None
            index = batch.coords.astype(np.intp)
            ia, ib = index[:, :, None], index[:, None, :]
            S = Sa[ia, ib]
            J[:, sl] = np.moveaxis(Ja[:, ia, ib], 0, 1)
            if order >= 2:
                assert Ha is not None
                d2_full = np.zeros((k, k, *Ha.shape[2:]))
                d2_full[sl, sl] = Ha
        groups.append(
            BlockGroup(
                X=None,
                sigma=S,
                d_sigma=J,
                d2_sigma=d2_sigma,
                cross=batch.XX,
                d2_full=d2_full,
                index=index,
            )
        )
    return groups


def theta_covariance(problem: MMRMProblem, theta: np.ndarray) -> np.ndarray:
    """mmrm's ``theta_vcov``: inverse of the exact Hessian of −ℓ in θ."""
    hess = problem.evaluate(theta, order=2).hessian
    try:
        if hess is None or not np.all(np.isfinite(hess)):
            raise np.linalg.LinAlgError("non-finite Hessian")
        W = np.linalg.inv(hess)
    except np.linalg.LinAlgError as exc:
        raise ModelSpecError(
            "The Hessian of the likelihood in the covariance parameters is singular at the "
            "estimate, so Satterthwaite / Kenward-Roger df cannot be computed; the covariance "
            "structure is probably over-parameterised for these data. Try a simpler structure "
            "(e.g. toeph or ar1h instead of us), or df='between-within' or 'residual'."
        ) from exc
    return 0.5 * (W + W.T)


def _pieces(
    problem: MMRMProblem, theta: np.ndarray, order: int
) -> tuple[list[BlockGroup], KRPieces]:
    groups = pattern_groups(problem, np.asarray(theta, dtype=float), order)
    return groups, kenward_roger_pieces(groups)


def mmrm_satterthwaite(
    problem: MMRMProblem,
    theta: np.ndarray,
    theta_cov: np.ndarray | None = None,
    evaluation: Evaluation | None = None,
) -> tuple[np.ndarray, VarianceGradientDF]:
    """Model-based Φ and Satterthwaite df (mmrm's "Satterthwaite" with "Asymptotic" vcov).

    ``theta_cov``: the inverse Hessian of −ℓ at θ when the caller has it (else computed).
    ``evaluation``: the order-2 evaluation of the criterion at θ when the caller has it: Φ is
    its M and ∂Φ/∂θ_k = −Φ (∂XᵀV⁻¹X/∂θ_k) Φ comes from its ``xvx_jacobian`` (the same sums
    :func:`~mesostats.mixed.kenward_roger.kenward_roger_pieces` forms as P_k), so no pattern
    is visited again.
    """
    W = theta_covariance(problem, theta) if theta_cov is None else np.asarray(theta_cov)
    if evaluation is not None and evaluation.xvx_jacobian is not None:
        phi = evaluation.beta_cov
        jac = -np.matmul(np.matmul(phi, evaluation.xvx_jacobian), phi)
        return phi, VarianceGradientDF(phi, 0.5 * (jac + jac.transpose(0, 2, 1)), W)
    _, pieces = _pieces(problem, theta, 1)
    return pieces.phi, VarianceGradientDF(pieces.phi, pieces.jacobian, W)


def mmrm_kenward_roger(
    problem: MMRMProblem,
    theta: np.ndarray,
    *,
    linear: bool = False,
    theta_cov: np.ndarray | None = None,
) -> tuple[np.ndarray, VarianceGradientDF]:
    """Kenward–Roger adjusted Φ_A and KR df (REML fits only).

    Parameters
    ----------
    problem : MMRMProblem
    theta : REML estimate (mmrm parameterisation).
    linear : drop the second-derivative term (mmrm's "Kenward-Roger-Linear").
    theta_cov : optional
        W, the inverse Hessian of −ℓ_REML at θ, when the caller has it (else computed).
    """
    if not problem.reml:
        raise ModelSpecError(
            "Kenward-Roger needs a REML fit, but this problem is fitted by ML. Use reml=True, "
            "or df='satterthwaite' for an ML fit."
        )
    groups, pieces = _pieces(problem, theta, 1 if linear else 2)
    W = theta_covariance(problem, theta) if theta_cov is None else np.asarray(theta_cov)
    vcov = kenward_roger_vcov(groups, pieces, W, linear=linear)
    return vcov, VarianceGradientDF(pieces.phi, pieces.jacobian, W)
