"""Numerical core of the GLMM engine: Laplace / adaptive Gauss–Hermite log-likelihoods.

Checked against the independent R implementation in ``reference/glmm_exact.R`` (its values
are frozen in ``ref_cbpp.json``), against direct numerical integration per group
(``scipy.integrate.quad``), and the exact gradients against finite differences.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import integrate
from scipy.special import gammaln

from mesostats.mixed.finite_diff import hessian_from_gradient
from mesostats.mixed.laplace import CanonicalFamily, GeneralLaplace, GeneralLaplaceData
from mesostats.mixed.quadrature import ScalarRandomEffect, quadrature_rule

REF = Path(__file__).parent / "reference"
CBPP_REF = json.loads((REF / "ref_cbpp.json").read_text())
BETA_NAMES = ["Intercept", "period2", "period3", "period4"]


@pytest.fixture(scope="module")
def cbpp_arrays() -> dict[str, np.ndarray]:
    d = pd.read_csv(REF / "cbpp.csv", dtype={"herd": str, "period": str})
    n = d["size"].to_numpy(float)
    k = d["incidence"].to_numpy(float)
    X = np.column_stack([np.ones(len(d))] + [(d["period"] == p).to_numpy(float) for p in "234"])
    codes = pd.factorize(d["herd"], sort=True)[0].astype(np.int64)
    return {"y": k / n, "n": n, "X": X, "codes": codes}


def cbpp_model(a: dict[str, np.ndarray], nodes: int) -> ScalarRandomEffect:
    m = len(a["y"])
    return ScalarRandomEffect(
        CanonicalFamily("binomial"),
        a["y"],
        a["n"],
        np.zeros(m),
        a["X"],
        np.ones(m),
        a["codes"],
        15,
        nodes,
    )


def simulated_poisson(seed: int = 3, n_groups: int = 40, per: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=n_groups * per)
    X = np.column_stack([np.ones_like(x), x])
    z = rng.uniform(0.5, 1.5, size=len(x))  # a scalar random *slope* column (0 + z | g)
    eta = X @ np.array([0.3, 0.5]) + 0.8 * z * rng.normal(size=n_groups)[codes]
    y = rng.poisson(np.exp(eta)).astype(float)
    return {"y": y, "X": X, "z": z, "codes": codes, "G": np.array(n_groups)}


def exact_loglik(y, weights, X, z, codes, beta, theta, family):
    """Σ_g log ∫ Π p(y_i | u) φ(u) du by adaptive Gauss–Kronrod (scipy.integrate.quad)."""
    eta0 = X @ beta
    total = 0.0
    for g in np.unique(codes):
        rows = codes == g

        def log_integrand(u, rows=rows):
            """log of p(y_g | u) φ(u); u scalar or a 1-d grid."""
            u = np.asarray(u, dtype=float)
            eta = eta0[rows, None] + theta * z[rows, None] * u[None, ...].reshape(1, -1)
            if family == "binomial":
                ll = np.sum(weights[rows, None] * (y[rows, None] * eta - np.logaddexp(0.0, eta)), 0)
            else:
                ll = np.sum(y[rows, None] * eta - np.exp(eta), 0)
            out = ll - 0.5 * u.reshape(-1) ** 2 - 0.5 * np.log(2 * np.pi)
            return out if u.ndim else float(out[0])

        grid = np.linspace(-12, 12, 2401)
        centre = grid[np.argmax(log_integrand(grid))]
        top = log_integrand(centre)
        val, _ = integrate.quad(
            lambda u, c=top, f=log_integrand: np.exp(f(u) - c),
            centre - 15,
            centre + 15,
            epsabs=0,
            epsrel=1e-12,
            limit=400,
        )
        total += top + np.log(val)
    if family == "binomial":
        k = y * weights
        total += np.sum(gammaln(weights + 1) - gammaln(k + 1) - gammaln(weights - k + 1))
    else:
        total -= np.sum(gammaln(y + 1))
    return total


@pytest.mark.parametrize("fit_name", ["lme4_laplace", "lme4_agq25", "glmmTMB_laplace"])
@pytest.mark.parametrize(("nodes", "key"), [(1, "laplace"), (25, "agq25"), (100, "agq100")])
def test_cbpp_loglik_at_reference_estimates_matches_glmm_exact_R(cbpp_arrays, fit_name, nodes, key):
    """glmm_exact.R's glmm_loglik_agq(d, beta, sigma, K) at each fit's estimates."""
    block = {"lme4_laplace": "laplace", "lme4_agq25": "agq25", "glmmTMB_laplace": "glmmTMB_laplace"}
    fit = CBPP_REF[block[fit_name]]
    beta = np.array([fit["fixef"][k] for k in BETA_NAMES])
    expected = CBPP_REF["independent_check"]["loglik_at_estimates"][fit_name][key]
    got = cbpp_model(cbpp_arrays, nodes).evaluate(beta, fit["sd_intercept"], gradient=False)
    assert_allclose(got.loglik, expected, atol=1e-9, rtol=0)


def test_cbpp_agq_loglik_matches_scipy_quad_and_converges_with_nodes(cbpp_arrays):
    a = cbpp_arrays
    beta = np.array([-1.4, -1.0, -1.1, -1.6])
    theta = 0.65
    exact = exact_loglik(a["y"], a["n"], a["X"], np.ones(56), a["codes"], beta, theta, "binomial")
    errors = [
        abs(cbpp_model(a, k).evaluate(beta, theta, gradient=False).loglik - exact)
        for k in (1, 3, 7, 15, 25)
    ]
    assert errors[0] > 1e-3  # Laplace is visibly off for these small groups
    assert all(later < earlier for earlier, later in itertools.pairwise(errors[:4]))
    assert errors[-1] < 1e-9


def test_poisson_random_slope_agq_matches_scipy_quad():
    s = simulated_poisson()
    m = len(s["y"])
    beta, theta = np.array([0.25, 0.55]), 0.9
    exact = exact_loglik(s["y"], np.ones(m), s["X"], s["z"], s["codes"], beta, theta, "poisson")
    model = ScalarRandomEffect(
        CanonicalFamily("poisson"),
        s["y"],
        np.ones(m),
        np.zeros(m),
        s["X"],
        s["z"],
        s["codes"],
        int(s["G"]),
        30,
    )
    assert_allclose(model.evaluate(beta, theta, gradient=False).loglik, exact, atol=1e-8)


def test_one_node_rule_is_the_laplace_approximation():
    t, log_w = quadrature_rule(1)
    assert_allclose(t, [0.0])
    assert_allclose(log_w, [0.0], atol=1e-15)
    t, log_w = quadrature_rule(20)
    # ∫ φ(u) du = 1: Σ ω_k φ(t_k)/φ(0) = 1 for the standard normal itself
    assert_allclose(np.sum(np.exp(log_w - 0.5 * t**2)), 1.0, rtol=1e-13)


def numerical_gradient(f, x, h=1e-5):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(len(x))])


@pytest.mark.parametrize("nodes", [1, 2, 9, 25])
def test_cbpp_gradient_matches_finite_differences(cbpp_arrays, nodes):
    model = cbpp_model(cbpp_arrays, nodes)
    x0 = np.array([-1.3, -1.0, -1.1, -1.5, 0.7])
    grad = model.evaluate(x0[:4], x0[4]).gradient
    num = numerical_gradient(lambda x: model.evaluate(x[:4], x[4], gradient=False).loglik, x0)
    assert_allclose(grad, num, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("nodes", [1, 12])
def test_poisson_random_slope_gradient_matches_finite_differences(nodes):
    s = simulated_poisson()
    m = len(s["y"])
    model = ScalarRandomEffect(
        CanonicalFamily("poisson"),
        s["y"],
        np.ones(m),
        np.zeros(m),
        s["X"],
        s["z"],
        s["codes"],
        int(s["G"]),
        nodes,
    )
    x0 = np.array([0.2, 0.6, 0.7])
    grad = model.evaluate(x0[:2], x0[2]).gradient
    num = numerical_gradient(lambda x: model.evaluate(x[:2], x[2], gradient=False).loglik, x0)
    assert_allclose(grad, num, rtol=1e-7, atol=1e-6)


def _richardson_hessian(model: ScalarRandomEffect, x0: np.ndarray) -> np.ndarray:
    p = len(x0) - 1
    return hessian_from_gradient(
        lambda x: model.evaluate(x[:p], float(x[p])).gradient,
        x0,
        np.full(len(x0), 1e-4),
        richardson=True,
    )


@pytest.mark.parametrize("theta", [0.7, 1.6, 0.0])
def test_cbpp_laplace_hessian_matches_richardson_differences_of_the_gradient(cbpp_arrays, theta):
    """The exact Laplace Hessian (binomial, trials > 1, random intercept), also at θ = 0,
    against Richardson-extrapolated central differences of the exact gradient (error
    O(h⁴) ≈ 1e-16; agreement here ~1e-12 relative)."""
    model = cbpp_model(cbpp_arrays, 1)
    x0 = np.array([-1.3, -1.0, -1.1, -1.5, theta])
    exact = model.laplace_hessian(x0[:4], theta)
    assert_allclose(exact, exact.T, rtol=1e-12, atol=0)
    assert_allclose(exact, _richardson_hessian(model, x0), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("theta", [0.7, 0.0])
def test_poisson_random_slope_laplace_hessian_matches_richardson_differences(theta):
    """As above for the Poisson family and a random slope (z ≠ 1: every power of z)."""
    s = simulated_poisson()
    m = len(s["y"])
    model = ScalarRandomEffect(
        CanonicalFamily("poisson"),
        s["y"],
        np.ones(m),
        np.zeros(m),
        s["X"],
        s["z"],
        s["codes"],
        int(s["G"]),
        1,
    )
    x0 = np.array([0.2, 0.6, theta])
    exact = model.laplace_hessian(x0[:2], theta)
    assert_allclose(exact, _richardson_hessian(model, x0), rtol=1e-8, atol=1e-7)


def test_laplace_hessian_is_refused_for_quadrature(cbpp_arrays):
    with pytest.raises(ValueError, match="Laplace"):
        cbpp_model(cbpp_arrays, 5).laplace_hessian(np.zeros(4), 1.0)


def test_general_laplace_equals_scalar_path_on_cbpp(cbpp_arrays):
    a = cbpp_arrays
    m = len(a["y"])
    data = GeneralLaplaceData(
        CanonicalFamily("binomial"),
        a["y"],
        a["n"],
        np.zeros(m),
        a["X"],
        [a["codes"]],
        [np.ones((m, 1))],
        [15],
    )
    beta, theta = np.array([-1.3, -1.0, -1.1, -1.5]), 0.7
    general = GeneralLaplace(data).evaluate(beta, np.array([theta]))
    scalar = cbpp_model(a, 1).evaluate(beta, theta)
    assert_allclose(general.loglik, scalar.loglik, rtol=0, atol=1e-10)
    assert_allclose(general.gradient, scalar.gradient, rtol=1e-9, atol=1e-10)


def crossed_and_slope_models(cbpp_arrays):
    a = cbpp_arrays
    m = len(a["y"])
    fam = CanonicalFamily("binomial")
    period = a["X"][:, 1:] @ np.array([1.0, 2.0, 3.0]) - 1.5
    second = (np.arange(m) % 4).astype(np.int64)
    crossed = GeneralLaplaceData(
        fam,
        a["y"],
        a["n"],
        np.zeros(m),
        a["X"],
        [a["codes"], second],
        [np.ones((m, 1)), np.ones((m, 1))],
        [15, 4],
    )
    slope = GeneralLaplaceData(
        fam,
        a["y"],
        a["n"],
        np.zeros(m),
        a["X"],
        [a["codes"]],
        [np.column_stack([np.ones(m), period])],
        [15],
    )
    return {"crossed": (crossed, [0.6, 0.3]), "slope": (slope, [0.6, -0.1, 0.2])}


@pytest.mark.parametrize("structure", ["crossed", "slope"])
def test_general_laplace_gradient_matches_finite_differences(cbpp_arrays, structure):
    data, theta = crossed_and_slope_models(cbpp_arrays)[structure]
    model = GeneralLaplace(data)
    x0 = np.concatenate([[-1.3, -1.0, -1.1, -1.5], theta])
    grad = model.evaluate(x0[:4], x0[4:]).gradient
    num = numerical_gradient(lambda x: model.evaluate(x[:4], x[4:], gradient=False).loglik, x0)
    assert_allclose(grad, num, rtol=1e-6, atol=1e-6)


def test_general_laplace_logdet_matches_dense_determinant(cbpp_arrays):
    """Block-Schur log det(AᵀWA + I) against numpy's slogdet of the assembled matrix."""
    data, theta = crossed_and_slope_models(cbpp_arrays)["crossed"]
    from mesostats.mixed.laplace import BlockSchurFactor

    vals, _ = data.row_values(np.array(theta))
    w = np.random.default_rng(1).uniform(0.1, 2.0, size=len(data.y))
    A = np.zeros((len(data.y), data.n_re))
    for c in range(vals.shape[1]):
        A[np.arange(len(data.y)), data.cols[:, c]] += vals[:, c]
    H = A.T @ (w[:, None] * A) + np.eye(data.n_re)
    factor = BlockSchurFactor(data, vals, w)
    assert_allclose(factor.logdet, np.linalg.slogdet(H)[1], rtol=1e-12)
    rhs = np.arange(data.n_re, dtype=float)
    assert_allclose(factor.solve(rhs), np.linalg.solve(H, rhs), rtol=1e-10)
    lev = factor.row_quadratic(vals, vals)
    assert_allclose(lev, np.einsum("ij,jk,ik->i", A, np.linalg.inv(H), A), rtol=1e-10)


def test_modes_stay_finite_for_groups_with_all_zero_or_all_one_outcomes():
    """Penalised modes are finite even when a group's outcomes are all 0 or all 1."""
    codes = np.repeat(np.arange(4), 5)
    y = np.array([0.0] * 5 + [1.0] * 5 + [0, 1, 0, 1, 0] + [1, 1, 0, 1, 1])
    X = np.ones((20, 1))
    model = ScalarRandomEffect(
        CanonicalFamily("binomial"), y, np.ones(20), np.zeros(20), X, np.ones(20), codes, 4, 1
    )
    for theta in (0.5, 3.0, 20.0):
        ev = model.evaluate(np.array([0.0]), theta)
        assert ev.converged
        assert np.all(np.isfinite(ev.u))
        assert ev.u[0] < 0 < ev.u[1]


@pytest.mark.parametrize("q", [1, 2, 3])
def test_stacked_block_inverse_and_logdet_match_numpy(q):
    from mesostats.mixed.laplace import _stacked_inverse_logdet

    a = np.random.default_rng(q).normal(size=(7, q, q))
    h = a @ a.transpose(0, 2, 1) + np.eye(q)
    inv, logdet = _stacked_inverse_logdet(h)
    assert_allclose(inv, np.linalg.inv(h), rtol=1e-12, atol=1e-14)
    assert_allclose(logdet, np.sum(np.linalg.slogdet(h)[1]), rtol=1e-13)
