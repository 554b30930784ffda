"""simulate() on every fitted model: the moments of the draws match the fitted model.

Each test draws many responses from a fitted model and compares their sample mean and
covariance with the model's: mean Xβ (or g⁻¹(Xβ), or the lognormal mean), covariance
σ²I + ZGZᵀ per subject (LMM), Σ_i per subject (MMRM), p(1 − p)/trials (binomial). The
tolerance is stated as a number of Monte Carlo standard errors: an entry is flagged when it
is more than 5 SEs away, i.e. with probability < 6e-7 per entry for a correct draw (about
1e-4 over the ≤ 200 entries of a test); the draws are seeded, so each test is deterministic.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest
from mixed_checks import load_csv
from mmrm_data import fit_fev
from scipy import stats

from mesostats.exceptions import ExclusionWarning, ModelSpecError
from mesostats.mixed.glmm import fit_glmm
from mesostats.mixed.lmm import fit_lmm
from mesostats.mixed.results import MixedResults
from mesostats.mixed.simulation import draw_family, draw_ordinal, simulate_mixed

N_SE = 5.0  # tolerance in Monte Carlo standard errors


@cache
def sleep_fit() -> MixedResults:
    return fit_lmm("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv"))


@cache
def cbpp_fit() -> MixedResults:
    data = load_csv("cbpp.csv").astype({"herd": str, "period": str})
    return fit_glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", data)


@cache
def grouse_fit() -> MixedResults:
    data = load_csv("grouseticks.csv").astype({"YEAR": str, "BROOD": str, "LOCATION": str})
    return fit_glmm("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", data, family="poisson")


def assert_mean_within(draws: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """Each row's sample mean within N_SE Monte Carlo SEs of ``mean``."""
    n = draws.shape[1]
    z = (draws.mean(axis=1) - mean) / np.sqrt(var / n)
    assert np.max(np.abs(z)) < N_SE, f"largest |z| {np.max(np.abs(z)):.2f}"


def assert_cov_within(draws: np.ndarray, cov: np.ndarray) -> None:
    """Sample covariance within N_SE SEs of ``cov`` (Gaussian SE of a covariance:
    √((σ_jj σ_kk + σ_jk²)/n))."""
    n = draws.shape[1]
    sample = np.cov(draws)
    d = np.diag(cov)
    se = np.sqrt((np.outer(d, d) + cov**2) / n)
    z = (sample - cov) / se
    assert np.max(np.abs(z)) < N_SE, f"largest |z| {np.max(np.abs(z)):.2f}"


# --------------------------------------------------------------------------- LMM
def test_lmm_simulate_has_mean_xbeta_and_covariance_sigma2_plus_zgz():
    fit = sleep_fit()
    draws = fit.simulate(20_000, seed=1)
    assert draws.shape == (180, 20_000)
    X = fit.design.X
    xb = X @ fit.params.to_numpy()
    G = fit.covariance_blocks()[0]
    term = fit.design.terms[0]
    rows = np.flatnonzero(term.codes == 0)  # the first subject's 10 days
    Z = term.Z[rows]
    V = fit.sigma**2 * np.eye(rows.size) + Z @ G @ Z.T
    assert_mean_within(draws[rows], xb[rows], np.diag(V))
    assert_cov_within(draws[rows], V)
    # two subjects are independent: the cross-covariance is 0 within N_SE SEs
    other = np.flatnonzero(term.codes == 1)
    cross = np.cov(draws[rows[0]], draws[other[0]])[0, 1]
    assert abs(cross) < N_SE * np.sqrt(V[0, 0] * V[0, 0] / 20_000)


def test_lmm_simulate_without_random_effects_has_variance_sigma2():
    fit = sleep_fit()
    draws = fit.simulate(20_000, seed=2, include_random=False)
    xb = fit.design.X @ fit.params.to_numpy()
    rows = np.arange(10)
    assert_mean_within(draws[rows], xb[rows], np.full(10, fit.sigma**2))
    assert_cov_within(draws[rows], fit.sigma**2 * np.eye(10))


def test_lmm_conditional_simulate_keeps_the_conditional_modes():
    fit = sleep_fit()
    draws = fit.simulate(20_000, seed=3, conditional=True)
    fitted = fit.fitted.to_numpy()
    assert_mean_within(draws, fitted, np.full(fitted.size, fit.sigma**2))
    assert_cov_within(draws[:10], fit.sigma**2 * np.eye(10))


def test_simulate_is_reproducible_by_seed_and_differs_between_seeds():
    fit = sleep_fit()
    a = fit.simulate(5, seed=7)
    np.testing.assert_array_equal(a, fit.simulate(5, seed=7))
    assert not np.allclose(a, fit.simulate(5, seed=8))
    same = fit.simulate(5, seed=np.random.SeedSequence(7))
    np.testing.assert_array_equal(a, same)  # an int seed is SeedSequence(seed)


def test_one_draw_per_generator_is_the_first_column_of_a_batch():
    """n = 1 with a generator gives the first replicate of a batch drawn with the same
    generator seed: the per-replicate use of the bootstrap and power (one child stream per
    replicate) draws in the same order as a batch."""
    fit = sleep_fit()
    child = np.random.SeedSequence(11).spawn(3)[2]
    one = fit.simulate(1, seed=np.random.default_rng(child))
    assert one.shape == (180, 1)
    again = simulate_mixed(
        fit.design,
        family="gaussian",
        beta=fit.params.to_numpy(),
        theta=fit.theta,
        sigma=fit.sigma,
        n=1,
        rng=np.random.default_rng(child),
    )
    np.testing.assert_array_equal(one, again)


# --------------------------------------------------------------------------- GLMM
def test_binomial_cbind_simulate_has_binomial_moments_without_random_effects():
    fit = cbpp_fit()
    draws = fit.simulate(20_000, seed=4, include_random=False)
    trials = fit.design.prior_weights
    assert draws.shape == (fit.nobs, 20_000)
    successes = draws * trials[:, None]
    np.testing.assert_allclose(successes, np.rint(successes), atol=1e-9)  # whole counts
    p = fit.predict(include_random=False).to_numpy()
    assert_mean_within(draws, p, p * (1 - p) / trials)
    var = draws.var(axis=1)
    # variance of a sample variance of a binomial proportion: ≈ (μ4 − σ⁴)/n, bounded here
    # by σ²/n·(1/trials); checked loosely at 10 % relative
    np.testing.assert_allclose(var, p * (1 - p) / trials, rtol=0.1)


def test_binomial_simulate_with_random_effects_matches_the_logit_normal_mean():
    fit = cbpp_fit()
    draws = fit.simulate(20_000, seed=5)
    eta = fit.predict(include_random=False, scale="link").to_numpy()
    sd = float(np.sqrt(fit.covariance_blocks()[0][0, 0]))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    p = (stats.logistic.cdf(eta[:, None] + sd * nodes[None, :]) * weights).sum(axis=1)
    # Var of the proportion: E[p(1−p)]/trials + Var(p) ≤ p(1 − p) (bounded by Bernoulli)
    assert_mean_within(draws, p, p * (1 - p))


def test_poisson_simulate_has_the_lognormal_mean_of_two_crossed_effects():
    fit = grouse_fit()
    draws = fit.simulate(20_000, seed=6)
    eta = fit.predict(include_random=False, scale="link").to_numpy()
    v = sum(float(c[0, 0]) for c in fit.covariance_blocks())
    mean = np.exp(eta + v / 2)
    var = mean + mean**2 * (np.exp(v) - 1)  # Poisson–lognormal variance
    assert_mean_within(draws, mean, var)
    assert np.all(draws == np.rint(draws)) and np.all(draws >= 0)


def test_bernoulli_draws_are_zero_or_one():
    rng = np.random.default_rng(0)
    draws = draw_family("binomial", np.zeros((50, 200)), rng)
    assert set(np.unique(draws)) == {0.0, 1.0}
    assert abs(draws.mean() - 0.5) < N_SE * np.sqrt(0.25 / draws.size)


def test_negative_binomial_draws_have_mean_mu_and_variance_mu_plus_mu2_over_size():
    rng = np.random.default_rng(2)
    mu, size = np.array([0.5, 3.0, 20.0]), 1.7
    draws = draw_family(
        "negative_binomial", np.log(mu)[:, None] + np.zeros((3, 100_000)), rng, size=size
    )
    var = mu + mu**2 / size
    assert_mean_within(draws, mu, var)
    # sample variance within 4 %: its relative SE √((kurtosis − 1)/n) is at most 0.75 %
    # here (NB kurtosis ≈ 3 + 6/size ≈ 6.5), so 4 % is more than 5 SEs
    np.testing.assert_allclose(draws.var(axis=1), var, rtol=0.04)
    with pytest.raises(ModelSpecError, match="needs its size"):
        draw_family("negative_binomial", np.zeros((2, 2)), rng)


def test_ordinal_draws_match_the_cumulative_logit_probabilities():
    """The CLMM hook: P(Y ≤ k) = logit⁻¹(α_k − η)."""
    rng = np.random.default_rng(1)
    alpha = np.array([-1.0, 0.5, 2.0])
    eta = np.full((1, 100_000), 0.3)
    codes = draw_ordinal(eta, alpha, rng)
    cdf = stats.logistic.cdf(alpha - 0.3)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    observed = np.bincount(codes.astype(int).ravel(), minlength=4) / codes.size
    se = np.sqrt(probs * (1 - probs) / codes.size)
    assert np.max(np.abs(observed - probs) / se) < N_SE


# --------------------------------------------------------------------------- MMRM
@cache
def fev_fit():
    return fit_fev("FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)")


def test_mmrm_simulate_has_mean_xbeta_and_the_fitted_covariance_per_subject():
    fit = fev_fit()
    draws = fit.simulate(20_000, seed=9)
    assert draws.shape == (fit.nobs, 20_000)
    problem = fit.problem
    xb = problem.X @ fit.params.to_numpy()
    sigma = fit.covariance.to_numpy()
    complete = [i for i, r in enumerate(problem.subject_rows) if r.size == 4]
    rows = problem.subject_rows[complete[0]]
    assert_mean_within(draws[rows], xb[rows], np.diag(sigma))
    assert_cov_within(draws[rows], sigma)
    # a subject with missed visits: Σ restricted to its visits
    partial = next(i for i, r in enumerate(problem.subject_rows) if r.size == 2)
    rows = problem.subject_rows[partial]
    visits = problem.coords[rows].astype(int)
    assert_cov_within(draws[rows], sigma[np.ix_(visits, visits)])


def test_mmrm_simulate_refuses_conditional():
    with pytest.raises(ModelSpecError, match="no random effects to condition on"):
        fev_fit().simulate(3, conditional=True)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("n", [0, -2, 2.5, True])
def test_simulate_refuses_a_bad_n(n):
    with pytest.raises(ModelSpecError, match="must be an integer ≥ 1"):
        sleep_fit().simulate(n)


def test_simulate_refuses_a_bad_seed():
    with pytest.raises(ModelSpecError, match="seed must be a whole number ≥ 0"):
        sleep_fit().simulate(2, seed=-1)


def test_simulate_refuses_conditional_without_random_effects():
    with pytest.raises(ModelSpecError, match="choose one"):
        sleep_fit().simulate(2, conditional=True, include_random=False)


def test_simulate_mmrm_with_weights_scales_by_inverse_root_weight():
    data = pd.DataFrame(
        {
            "id": np.repeat(np.arange(400), 2).astype(str),
            "visit": np.tile(["a", "b"], 400),
            "w": np.tile([1.0, 4.0], 400),
        }
    )
    data["y"] = np.random.default_rng(0).standard_normal(800) / np.sqrt(data["w"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)
        fit = fit_fev("y ~ 1 + us(visit | id)", data, weights="w")
    draws = fit.simulate(20_000, seed=10)
    sigma = fit.covariance.to_numpy()
    scale = 1 / np.sqrt(np.array([1.0, 4.0]))
    assert_cov_within(draws[:2], sigma * np.outer(scale, scale))
