"""Satterthwaite degrees of freedom for the fixed effects of a linear mixed model.

**Satterthwaite degrees of freedom** (Kuznetsova, Brockhoff & Christensen 2017, *J. Stat.
Softw.* 82(13); the lmerTest package). For a fixed effect β_j with variance
v_j(φ) = [σ² (XᵀV₀(θ)⁻¹X)⁻¹]_jj as a function of the variance parameters φ = (θ, σ),

    df_j = 2 v_j² / (∇v_jᵀ A ∇v_j),   A = 2 H⁻¹,

where H is the Hessian of the (RE)ML deviance in φ with β profiled (lmerTest's
``devfun_vp``) and A the asymptotic covariance of φ̂ (Moore–Penrose inverse over eigenvalues
> 1e-8, as lmerTest). lmerTest differentiates numerically (numDeriv); here ∇v_j is analytic
(∂(XᵀV₀⁻¹X)/∂θ from the blocked factorisation, see ``mixed.lmm``), H's σ rows are analytic,
and its θ block comes from the optimiser's Hessian of the profiled deviance at the optimum
(no extra evaluations; ``varpar_hessian`` falls back to Richardson-extrapolated central
differences of the analytic gradient when no Hessian is given).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mesostats.mixed.finite_diff import hessian_from_gradient, relative_steps

if TYPE_CHECKING:  # typing only: lmm imports this module at run time
    from mesostats.mixed.lmm import ProfiledDeviance

__all__ = ["SatterthwaiteResult", "satterthwaite", "varpar_hessian"]

_EIGEN_TOL = 1e-8


@dataclass
class SatterthwaiteResult:
    """Satterthwaite df per fixed effect with the pieces they come from."""

    df: np.ndarray
    varpar_cov: np.ndarray
    hessian: np.ndarray
    jacobian: list[np.ndarray]
    messages: list[str] = field(default_factory=list)


def varpar_hessian(
    problem: ProfiledDeviance,
    theta: np.ndarray,
    sigma: float,
    profiled_hessian: np.ndarray | None = None,
) -> np.ndarray:
    """Hessian of the (RE)ML deviance in (θ, σ) with β profiled (lmerTest's ``devfun_vp``).

    dev(θ, σ) = log-determinants(θ) + m·log(2πσ²) + r²(θ)/σ², m = n (ML) or n − p (REML).
    The σ rows are analytic. The θ block is either derived from the Hessian of the
    *profiled* deviance d(θ) = min_σ dev(θ, σ) at the optimum, where σ² = r²/m gives
    ∂²dev/∂θ² = ∂²d/∂θ² + (∂r²/∂θ)(∂r²/∂θ)ᵀ/(m σ⁴) (no extra evaluations), or computed by
    Richardson-extrapolated central differences of the analytic θ-gradient.
    """
    k = problem.n_theta
    st = problem.state(theta)
    _, d_r2, _ = problem.deviance_parts_gradient(st)
    m = problem.dof
    r2 = st.r2
    H = np.zeros((k + 1, k + 1))
    if profiled_hessian is not None:
        H[:k, :k] = profiled_hessian + np.outer(d_r2, d_r2) / (m * sigma**4)
    else:
        H[:k, :k] = hessian_from_gradient(
            lambda t: problem.varpar_theta_gradient(t, sigma),
            theta,
            relative_steps(theta, 1e-3, 0.05),
            richardson=True,
        )
    H[:k, k] = H[k, :k] = -2.0 * d_r2 / sigma**3
    H[k, k] = -2.0 * m / sigma**2 + 6.0 * r2 / sigma**4
    return H


def satterthwaite(
    problem: ProfiledDeviance,
    theta: np.ndarray,
    sigma: float,
    vcov: np.ndarray,
    *,
    profiled_hessian: np.ndarray | None = None,
) -> SatterthwaiteResult:
    """Satterthwaite denominator df of each fixed effect (lmerTest's method).

    Parameters
    ----------
    problem : ProfiledDeviance
        The fitted model's deviance.
    theta, sigma : the (RE)ML estimates.
    vcov : (p, p) covariance of β̂ at the estimates.
    profiled_hessian : optional
        Hessian of the profiled deviance at θ̂ (from the optimiser); saves evaluations.

    Returns
    -------
    SatterthwaiteResult
        ``df`` (p,), ``varpar_cov`` = 2 H⁺ (asymptotic covariance of (θ, σ)).

    References
    ----------
    Kuznetsova, A., Brockhoff, P. B., Christensen, R. H. B. (2017). lmerTest package: tests in
    linear mixed effects models. *J. Stat. Softw.* 82(13), 1–26.
    """
    theta = np.asarray(theta, dtype=float)
    H = varpar_hessian(problem, theta, sigma, profiled_hessian)
    evals, evecs = np.linalg.eigh(H)
    messages = []
    if (evals < -_EIGEN_TOL).any():
        messages.append(
            "The Hessian of the deviance in the variance parameters has negative "
            f"eigenvalue(s) {', '.join(f'{v:.2g}' for v in evals[evals < -_EIGEN_TOL])}: "
            "Satterthwaite df may be unreliable."
        )
    pos = evals > _EIGEN_TOL
    h_inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    A = 2.0 * h_inv
    jac = problem.covbeta_jacobian(theta, sigma)
    grads = np.stack([np.diag(J) for J in jac], axis=1)  # (p, k+1)
    denom = np.sum((grads @ A) * grads, axis=1)  # gᵀAg per coefficient
    positive = denom > 0
    df = np.full(denom.shape, np.inf)
    df[positive] = 2.0 * np.diag(vcov)[positive] ** 2 / denom[positive]
    return SatterthwaiteResult(df=df, varpar_cov=A, hessian=H, jacobian=jac, messages=messages)
