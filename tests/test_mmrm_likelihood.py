"""The pattern-batched MMRM likelihood and the covariance structures, checked independently of R.

- the (RE)ML criterion equals the one computed from the full block-diagonal V (no patterns,
  no sufficient statistics), with weights, groups and one pattern per subject (rtol 1e-12);
- the analytic gradient and Hessian equal central finite differences of the criterion and of
  the gradient (rtol 1e-5: the error of the differences, step 1e-5);
- each structure's ∂Σ/∂θ and ∂²Σ/∂θ² equal finite differences of Σ (rtol 1e-6), Σ on a subset
  of visits is the sub-matrix of Σ, and the closed-form contraction of ∂²Σ equals the full one;
- weights act as mmrm's Σ_i = W^{-1/2} Σ W^{-1/2}.
"""

from __future__ import annotations

import numpy as np
import pytest
from mmrm_data import FEV_FIXED, STRUCTURES, fev_data, fev_problem, fit_fev
from numpy.testing import assert_allclose

from mesostats.mixed.mmrm.likelihood import evaluate
from mesostats.mixed.mmrm.structures import make_structure

_problem = fev_problem
_fit = fit_fev


def _dense_minus_loglik(problem, theta: np.ndarray) -> float:
    """−ℓ from the full block-diagonal V (no patterns, no sufficient statistics)."""
    n, p = problem.X.shape
    V = np.zeros((n, n))
    for rows, S in zip(problem.subject_rows, problem.subject_sigma(theta), strict=True):
        V[np.ix_(rows, rows)] = S
    Vinv = np.linalg.inv(V)
    XtVX = problem.X.T @ Vinv @ problem.X
    beta = np.linalg.solve(XtVX, problem.X.T @ Vinv @ problem.y)
    r = problem.y - problem.X @ beta
    m2l = np.linalg.slogdet(V)[1] + r @ Vinv @ r
    if problem.reml:
        m2l += np.linalg.slogdet(XtVX)[1] + (n - p) * np.log(2 * np.pi)
    else:
        m2l += n * np.log(2 * np.pi)
    return 0.5 * m2l


@pytest.mark.parametrize(
    ("cov", "reml", "weighted"),
    [
        ("us(AVISIT | USUBJID)", True, True),
        ("adh(AVISIT | USUBJID)", False, True),
        ("csh(AVISIT | USUBJID)", True, False),
        ("toeph(AVISIT | USUBJID)", False, False),
        ("us(AVISIT | ARMCD / USUBJID)", True, True),
        ("sp_exp(VISITN2 | USUBJID)", False, True),
        ("sp_exp(VISITN, VISITN2 | USUBJID)", True, True),
    ],
)
def test_pattern_likelihood_equals_dense_likelihood(cov, reml, weighted):
    # fev_data has intermittent missing visits: 15 patterns for us; VISITN2 is a continuous
    # time, so every subject of sp_exp is its own pattern
    data = fev_data()
    data["w"] = np.random.default_rng(3).uniform(0.5, 2.0, len(data))
    kw = {"weights": "w"} if weighted else {}
    problem = _problem(f"{FEV_FIXED} + {cov}", reml, data, **kw)
    assert len(problem.blocks) > 10
    theta = np.random.default_rng(4).normal(scale=0.2, size=problem.n_theta)
    for g in range(problem.n_groups):
        theta[problem.theta_slice(g)][: problem.structure.n_sd] += 1.5
    assert_allclose(problem.evaluate(theta).value, _dense_minus_loglik(problem, theta), rtol=1e-12)


@pytest.mark.parametrize(
    ("formula", "reml"),
    [
        (f"{FEV_FIXED} + us(AVISIT | USUBJID)", True),
        (f"{FEV_FIXED} + ad(AVISIT | USUBJID)", False),
        ("FEV1 ~ ARMCD + us(AVISIT | ARMCD / USUBJID)", True),
        ("FEV1 ~ ARMCD + sp_exp(VISITN | USUBJID)", False),
        ("FEV1 ~ ARMCD + sp_exp(VISITN, VISITN2 | SEX / USUBJID)", True),
        (f"{FEV_FIXED} + ar1h(AVISIT | USUBJID)", True),
        (f"{FEV_FIXED} + toep(AVISIT | USUBJID)", True),
    ],
)
def test_analytic_gradient_and_hessian_match_finite_differences(formula, reml):
    problem = _problem(formula, reml)
    rng = np.random.default_rng(5)
    theta = rng.normal(scale=0.2, size=problem.n_theta) + np.tile(
        problem.structure.start(6.0), problem.n_groups
    )
    ev = problem.evaluate(theta, order=2)
    eps = 1e-5
    eye = np.eye(problem.n_theta)
    grad = [
        (problem.evaluate(theta + eps * e).value - problem.evaluate(theta - eps * e).value)
        / (2 * eps)
        for e in eye
    ]
    hess = [
        (
            problem.evaluate(theta + eps * e, 1).gradient
            - problem.evaluate(theta - eps * e, 1).gradient
        )
        / (2 * eps)
        for e in eye
    ]
    assert_allclose(ev.gradient, grad, rtol=1e-5, atol=1e-5)
    assert_allclose(ev.hessian, np.array(hess), rtol=1e-5, atol=1e-5)


def test_subject_sigma_derivatives_match_finite_differences():
    data = fev_data()
    data["w"] = np.linspace(0.5, 2.0, len(data))
    problem = _problem(f"{FEV_FIXED} + adh(AVISIT | USUBJID)", True, data, weights="w")
    theta = np.random.default_rng(6).normal(scale=0.3, size=problem.n_theta)
    J = problem.subject_sigma_jacobian(theta)
    H = problem.subject_sigma_hessian(theta)
    eps = 1e-6
    for k in (0, 5, problem.n_theta - 1):
        e = np.eye(problem.n_theta)[k] * eps
        up, down = problem.subject_sigma(theta + e), problem.subject_sigma(theta - e)
        jup, jdown = (
            problem.subject_sigma_jacobian(theta + e),
            problem.subject_sigma_jacobian(theta - e),
        )
        for i in (0, 7, 50):
            assert_allclose(J[i][k], (up[i] - down[i]) / (2 * eps), rtol=1e-6, atol=1e-8)
            assert_allclose(H[i][k], (jup[i] - jdown[i]) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_uniform_weights_scale_the_covariance_only():
    data = fev_data()
    plain = _fit(f"{FEV_FIXED} + us(AVISIT | USUBJID)", data, df="residual")
    data["w"] = 4.0
    weighted = _fit(f"{FEV_FIXED} + us(AVISIT | USUBJID)", data, df="residual", weights="w")
    assert_allclose(weighted.params, plain.params, rtol=1e-8)
    assert_allclose(weighted.covariance.to_numpy(), 4.0 * plain.covariance.to_numpy(), rtol=1e-7)
    # Σ_i = W^{-1/2} Σ W^{-1/2} is the same matrix at both optima: the same likelihood
    assert_allclose(weighted.loglik, plain.loglik, rtol=1e-10)


# --------------------------------------------------------------------------- results object


@pytest.mark.parametrize("structure", STRUCTURES)
def test_structure_derivatives_match_finite_differences(structure):
    s = make_structure(structure, 5)
    rng = np.random.default_rng(8)
    theta = rng.normal(scale=0.3, size=s.n_theta)
    coords = np.array([0, 1, 3, 4])  # a subject without the third visit
    sigma, jac, hess = s.derivatives(theta, coords)
    eps = 1e-6
    for k, e in enumerate(np.eye(s.n_theta) * eps):
        fd = (s.sigma(theta + e, coords) - s.sigma(theta - e, coords)) / (2 * eps)
        assert_allclose(jac[k], fd, rtol=1e-6, atol=1e-8)
        fd2 = (s.jacobian(theta + e, coords) - s.jacobian(theta - e, coords)) / (2 * eps)
        assert_allclose(hess[k], fd2, rtol=1e-6, atol=1e-8)
    # Σ on a subset of visits is the sub-matrix of Σ on all visits
    assert_allclose(sigma, s.sigma(theta)[np.ix_(coords, coords)], rtol=1e-14)
    # the contraction used by the likelihood equals the contraction of the full ∂²Σ
    W = rng.normal(size=(5, 5))
    assert_allclose(
        s.hessian_contract(theta, W), np.einsum("klab,ab->kl", s.hessian(theta), W), atol=1e-12
    )


def test_sp_exp_derivatives_on_continuous_times():
    s = make_structure("sp_exp", 2)
    theta, times = np.array([1.2, 0.4]), np.array([0.0, 0.7, 2.1, 5.0])
    eps = 1e-6
    jac, hess = s.jacobian(theta, times), s.hessian(theta, times)
    for k, e in enumerate(np.eye(2) * eps):
        fd = (s.sigma(theta + e, times) - s.sigma(theta - e, times)) / (2 * eps)
        assert_allclose(jac[k], fd, rtol=1e-6, atol=1e-9)
        fd2 = (s.jacobian(theta + e, times) - s.jacobian(theta - e, times)) / (2 * eps)
        assert_allclose(hess[k], fd2, rtol=1e-6, atol=1e-9)
    rho = 1.0 / (1.0 + np.exp(-0.4))
    assert_allclose(s.sigma(theta, times)[0, 2], np.exp(1.2) * rho**2.1)


@pytest.mark.parametrize(
    ("cov", "reml"),
    [
        ("us(AVISIT | USUBJID)", True),
        ("adh(AVISIT | USUBJID)", False),
        ("toeph(AVISIT | USUBJID)", True),
        ("us(AVISIT | ARMCD / USUBJID)", False),
    ],
)
def test_padded_batches_give_the_likelihood_of_the_batches_by_pattern_size(cov, reml):
    # fev_data is small: the criterion runs on one batch per group over all 4 visits
    # (Σ⁻¹ of each pattern embedded, zero at absent visits); it must equal the criterion on
    # the batches by number of visits to round-off, with its gradient and Hessian
    data = fev_data()
    data["w"] = np.random.default_rng(5).uniform(0.5, 2.0, len(data))
    problem = _problem(f"{FEV_FIXED} + {cov}", reml, data, weights="w")
    assert len(problem.criterion_batches) == problem.n_groups < len(problem.batches)
    theta = np.random.default_rng(6).normal(scale=0.2, size=problem.n_theta)
    for g in range(problem.n_groups):
        theta[problem.theta_slice(g)][: problem.structure.n_sd] += 1.5
    padded = problem.evaluate(theta, order=2)
    by_size = evaluate(
        theta,
        problem.batches,
        problem.structure,
        n_groups=problem.n_groups,
        reml=problem.reml,
        n_obs=problem.n,
        sum_log_weights=problem.sum_log_weights,
        order=2,
    )
    assert_allclose(padded.value, by_size.value, rtol=1e-12)
    assert_allclose(padded.beta, by_size.beta, rtol=1e-11, atol=1e-12)
    assert_allclose(padded.gradient, by_size.gradient, rtol=1e-9, atol=1e-9)
    assert_allclose(padded.hessian, by_size.hessian, rtol=1e-11, atol=1e-9)
