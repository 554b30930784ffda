"""One imputation of the missing visits from the MMRM's approximate posterior, under MAR or a
reference-based assumption (:func:`impute_once`).

**Parameter draw** (the "approximate Bayesian" route of multiple imputation; Little & Rubin
2019, *Statistical Analysis with Missing Data*, 3rd ed., §10.2). The covariance parameters θ
(R mmrm's unconstrained parameterisation: log standard deviations and Cholesky-type
correlation parameters, so every draw is a valid covariance) are drawn from their large-sample
posterior N(θ̂, H⁻¹) with H the exact Hessian of −ℓ (REML) at θ̂; given θ, the fixed effects
are drawn from their exact conditional posterior under a flat prior,
β | θ ~ N(β̂(θ), (XᵀV(θ)⁻¹X)⁻¹). This needs one GLS evaluation per imputation instead of a
refit per bootstrap sample (rbmi's "approxbayes"; Gower-Page et al. 2022, *JOSS* 7(74):4251),
and with θ on an unconstrained scale the normal approximation is the usual one for
variance components (Pinheiro & Bates 2000, §2.4.3).

**Imputation means** (Carpenter, Roger & Kenward 2013, *J Biopharm Stat* 23:1352). With μ_a the
person's own-arm mean profile, μ_r the control (reference) arm's at the person's baseline,
and d the person's last observed visit (later visits are *dropout* visits; missing visits
before d are intermittent and always imputed under MAR, as in rbmi):

* ``mar``: μ_a at every visit;
* ``jump_to_reference`` (J2R): μ_a up to d, μ_r after;
* ``copy_reference`` (CR): μ_r at every visit (observed ones too) for people who drop out;
* ``copy_increments`` (CIR): μ_a up to d, then μ_a(d) + μ_r(t) − μ_r(d).

People without dropout, and everyone in the control arm, are imputed under MAR. The missing
values y_M of a person with observed y_O and mean m are drawn from the conditional normal
N(m_M + Σ_MO Σ_OO⁻¹(y_O − m_O), Σ_MM − Σ_MO Σ_OO⁻¹ Σ_OM), computed once per missingness
pattern and applied to all the people sharing it at once.

Random numbers: one ``numpy.random.Generator`` per imputation (a child of the user's seed);
the θ, β and residual draws are taken in a fixed order and the residual normals are drawn for
the whole grid, so every method (and every δ) uses the same draws: common random numbers.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from mesostats.exceptions import ModelSpecError
from mesostats.imputation.setup import ImputationSetup

__all__ = ["METHODS", "draw_parameters", "imputation_means", "impute_once"]

#: Imputation assumptions accepted by :func:`mesostats.sensitivity`.
METHODS = ("mar", "jump_to_reference", "copy_reference", "copy_increments")


def draw_parameters(
    setup: ImputationSetup, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(β, Σ) from the approximate posterior (module docstring)."""
    problem = setup.problem
    chol = linalg.cholesky(setup.theta_cov, lower=True)
    theta = setup.theta + chol @ rng.standard_normal(setup.theta.size)
    ev = problem.evaluate(theta)
    if not np.all(np.isfinite(ev.beta)):
        raise ModelSpecError(
            "a draw of the covariance parameters gave a singular covariance; the primary "
            "model's covariance is poorly determined. Try a simpler structure."
        )
    beta = ev.beta + linalg.cholesky(ev.beta_cov, lower=True) @ rng.standard_normal(ev.beta.size)
    return beta, problem.group_sigma(theta, 0)


def imputation_means(setup: ImputationSetup, beta: np.ndarray, method: str) -> np.ndarray:
    """(n, V) mean profile of each person under ``method`` (module docstring)."""
    own = setup.X_own @ beta
    if method == "mar":
        return own
    ref = setup.X_ref @ beta
    after = setup.after_dropout
    dropped = np.asarray(after.any(axis=1), dtype=bool)
    if method == "jump_to_reference":
        return np.where(after, ref, own)
    if method == "copy_reference":
        return np.where(dropped[:, None], ref, own)
    if method == "copy_increments":
        rows = np.arange(setup.n)
        at_d = (own[rows, setup.last] - ref[rows, setup.last])[:, None]
        return np.where(after, ref + at_d, own)
    raise ModelSpecError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")


def impute_once(setup: ImputationSetup, method: str, rng: np.random.Generator) -> np.ndarray:
    """A completed (n, V) grid of change from baseline: observed values kept, missing drawn."""
    beta, sigma = draw_parameters(setup, rng)
    z = rng.standard_normal(setup.y.shape)
    mean = imputation_means(setup, beta, method)
    return conditional_draw(setup, mean, sigma, z)


def conditional_draw(
    setup: ImputationSetup, mean: np.ndarray, sigma: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Missing values from N(m_M + Σ_MO Σ_OO⁻¹(y_O − m_O), Σ_MM − Σ_MO Σ_OO⁻¹ Σ_OM), one
    pattern at a time; ``z`` (n, V) standard normals (only the missing cells are used)."""
    out = setup.y.copy()
    for k, mask in enumerate(setup.masks):
        miss = ~mask
        if not miss.any():
            continue
        who = np.flatnonzero(setup.pattern == k)
        o, m = np.flatnonzero(mask), np.flatnonzero(miss)
        S_oo = sigma[np.ix_(o, o)]
        S_mo = sigma[np.ix_(m, o)]
        A = linalg.solve(S_oo, S_mo.T, assume_a="pos").T  # Σ_MO Σ_OO⁻¹
        C = sigma[np.ix_(m, m)] - A @ S_mo.T
        L = linalg.cholesky((C + C.T) / 2.0, lower=True)
        centred = setup.y[np.ix_(who, o)] - mean[np.ix_(who, o)]
        out[np.ix_(who, m)] = mean[np.ix_(who, m)] + centred @ A.T + z[np.ix_(who, m)] @ L.T
    return out
