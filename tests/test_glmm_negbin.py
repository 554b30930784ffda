"""Negative-binomial (NB2) GLMMs: fit_glmm(..., family="negative_binomial").

References (tests/reference/ref_nb.R → ref_nb.json, data salamanders.csv): glmmTMB 1.1.5
``nbinom2`` Laplace fits of glmmTMB's Salamanders data (``count ~ spp + mined + (1 | site)``,
and with ``offset(log(area))``), polished by Newton steps on glmmTMB's own objective; the exact
marginal log-likelihood by R's ``integrate()`` per site for the AGQ checks (glmmTMB has no AGQ).
Tolerances (reference/README.md): log-likelihood 1e-6 absolute, coefficients 1e-4 absolute,
SEs (and θ, k, SE(k)) 1e-3 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, optimize, stats

import mesostats as ms
from mesostats.exceptions import ConvergenceWarning, ModelSpecError
from mesostats.mixed.design import build_design
from mesostats.mixed.glmm.core import _merge_terms, term_arrays
from mesostats.mixed.glmm.negbin import LOG_K_MAX, NegBinLoglik, nb_loglik_rows

REF = Path(__file__).parent / "reference"
NB = json.loads((REF / "ref_nb.json").read_text())
FORMULA = "count ~ spp + mined + (1 | site)"
OFFSET_FORMULA = "count ~ spp + mined + offset(log(area)) + (1 | site)"

LOGLIK_ATOL = 1e-6
FIXEF_ATOL = 1e-4
SE_RTOL = 1e-3


def salamanders() -> pd.DataFrame:
    data = pd.read_csv(REF / "salamanders.csv")
    for column in ("spp", "mined"):  # R's level order (reference level first)
        data[column] = pd.Categorical(data[column], categories=NB["levels"][column])
    return data


@pytest.fixture(scope="module")
def laplace_fit() -> ms.MixedResults:
    return ms.fit_glmm(FORMULA, salamanders(), family="negative_binomial")


@pytest.fixture(scope="module")
def offset_fit() -> ms.MixedResults:
    return ms.fit_glmm(OFFSET_FORMULA, salamanders(), family="negative_binomial")


@pytest.fixture(scope="module")
def agq_fit() -> ms.MixedResults:
    return ms.fit_glmm(FORMULA, salamanders(), family="negative_binomial", nagq=25)


def _check_against_glmmtmb(fit: ms.MixedResults, ref: dict) -> None:
    fe = fit.fixed_effects
    assert list(fe.index) == list(ref["fixef"])
    assert_allclose(fit.loglik, ref["logLik"], rtol=0, atol=LOGLIK_ATOL)
    assert_allclose(fe["estimate"], list(ref["fixef"].values()), rtol=0, atol=FIXEF_ATOL)
    assert_allclose(fe["std_error"], list(ref["se"].values()), rtol=SE_RTOL)
    assert_allclose(fit.variance_components["sdcor"].iloc[0], ref["sd_site"], rtol=SE_RTOL)
    assert_allclose(fit.dispersion, ref["k"], rtol=SE_RTOL)
    assert_allclose(fit.dispersion_se, ref["k"] * ref["se_log_k"], rtol=SE_RTOL)
    assert fit.converged and fit.messages == []


def test_salamanders_nbinom2_laplace_matches_glmmtmb(laplace_fit):
    _check_against_glmmtmb(laplace_fit, NB["laplace"])
    assert laplace_fit.family == "negative_binomial" and laplace_fit.link == "log"
    assert laplace_fit.method == "Laplace"
    fe = laplace_fit.fixed_effects
    assert np.all(np.isinf(fe["df"]))
    assert_allclose(fe["p_value"], 2 * stats.norm.sf(np.abs(fe["estimate"] / fe["std_error"])))


def test_salamanders_nbinom2_offset_matches_glmmtmb(offset_fit):
    _check_against_glmmtmb(offset_fit, NB["offset_laplace"])


def test_salamanders_nbinom2_crossed_random_effects_match_glmmtmb():
    # two grouping factors: the general Laplace path (dense Schur complement)
    ref = NB["crossed_laplace"]
    fit = ms.fit_glmm(
        "count ~ mined + cover + (1 | site) + (1 | spp)", salamanders(), family="nbinom2"
    )
    fe = fit.fixed_effects
    assert_allclose(fit.loglik, ref["logLik"], rtol=0, atol=LOGLIK_ATOL)
    assert_allclose(fe["estimate"], list(ref["fixef"].values()), rtol=0, atol=FIXEF_ATOL)
    assert_allclose(fe["std_error"], list(ref["se"].values()), rtol=SE_RTOL)
    vc = fit.variance_components.set_index("group")["sdcor"]
    assert_allclose([vc["site"], vc["spp"]], [ref["sd_site"], ref["sd_spp"]], rtol=SE_RTOL)
    assert_allclose(fit.dispersion, ref["k"], rtol=SE_RTOL)
    assert_allclose(fit.dispersion_se, ref["k"] * ref["se_log_k"], rtol=SE_RTOL)
    assert fit.converged


def test_nb_aic_counts_the_dispersion(laplace_fit):
    # glmmTMB: 8 fixed effects + SD + log k = 10 parameters
    assert laplace_fit.n_params == 10
    assert_allclose(laplace_fit.aic, -2 * NB["laplace"]["logLik"] + 20, atol=2 * LOGLIK_ATOL)


def test_nb_summary_shows_the_dispersion(laplace_fit):
    text = str(laplace_fit.summary())
    assert "negative_binomial" in text and "Dispersion k (NB2)" in text


def test_nb_fitted_values_are_exp_of_the_linear_predictor(laplace_fit):
    eta = laplace_fit.predict(scale="link")
    assert_allclose(laplace_fit.fitted, np.exp(eta))


def _salamander_objective(nagq: int) -> tuple[NegBinLoglik, np.ndarray]:
    design = build_design(FORMULA, salamanders(), family="negative_binomial")
    factors, _ = _merge_terms(term_arrays(design))
    ref = NB["laplace"]
    x = np.array([*ref["fixef"].values(), ref["sd_site"], ref["log_k"]])
    return NegBinLoglik(
        design.y, design.prior_weights, design.offset, design.X, factors, nagq, ref["log_k"]
    ), x


def test_nb_agq25_equals_the_exact_marginal_loglik_from_r_integrate():
    # AGQ(25) at glmmTMB's Laplace estimates against integrate() per site (ref_nb.R)
    objective, x = _salamander_objective(25)
    assert_allclose(
        objective(x, gradient=False)[0], NB["agq"]["logLik_integrate"], rtol=0, atol=1e-8
    )
    # and Laplace (nAGQ = 1) is the Laplace log-likelihood of glmmTMB at that point
    laplace, _ = _salamander_objective(1)
    assert_allclose(laplace(x, gradient=False)[0], NB["laplace"]["logLik"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("nagq", [1, 15])
def test_nb_gradient_matches_central_differences(nagq):
    # nagq = 1: exact in (β, θ, log k); nagq = 15: exact in (β, θ), log k by differences
    objective, x = _salamander_objective(nagq)
    x = x + 0.05  # away from the optimum
    grad = objective.gradient(x)
    h = 1e-5
    numeric = np.array(
        [
            (objective(x + h * e, gradient=False)[0] - objective(x - h * e, gradient=False)[0])
            / (2 * h)
            for e in np.eye(len(x))
        ]
    )
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def _exact_marginal(fit: ms.MixedResults) -> float:
    """The marginal log-likelihood by scipy's adaptive quadrature, site by site (independent
    of the Gauss–Hermite rule): centred at each site's mode, split there."""
    design = fit.design
    eta0 = design.X @ fit.fixed_effects["estimate"].to_numpy() + design.offset
    sd = float(fit.variance_components["sdcor"].iloc[0])
    k = float(fit.dispersion)  # type: ignore[arg-type]
    codes = design.terms[0].codes
    total = 0.0
    for g in range(design.terms[0].n_levels):
        rows = codes == g
        y, e = design.y[rows], eta0[rows]

        def logf(u: float, y: np.ndarray = y, e: np.ndarray = e) -> float:
            return float(np.sum(nb_loglik_rows(y, e + u, k)) + stats.norm.logpdf(u, 0.0, sd))

        mode = optimize.minimize_scalar(lambda u, f=logf: -f(u)).x
        top = logf(mode)
        parts = [
            integrate.quad(
                lambda u, f=logf, t=top: np.exp(f(u) - t), a, b, epsabs=0, epsrel=1e-13, limit=500
            )[0]
            for a, b in ((mode - 15 * sd, mode), (mode, mode + 15 * sd))
        ]
        total += top + np.log(sum(parts))
    return total


def test_nb_agq25_fit_loglik_is_the_exact_marginal_at_its_estimates(agq_fit):
    assert agq_fit.method == "AGQ(25)" and agq_fit.converged
    assert_allclose(agq_fit.loglik, _exact_marginal(agq_fit), rtol=0, atol=1e-8)
    # the AGQ maximum is no lower than the exact marginal at the Laplace estimates
    assert agq_fit.loglik >= NB["agq"]["logLik_integrate"] - 1e-9
    # and close to the Laplace estimates (the approximation is good here)
    assert_allclose(
        agq_fit.fixed_effects["estimate"], list(NB["laplace"]["fixef"].values()), atol=0.02
    )


def test_nb_matches_nb_loglik_formula_of_scipy():
    y = np.array([0.0, 1, 3, 10, 25])
    eta = np.array([-1.0, 0.2, 1.1, 2.0, 3.5])
    k = 1.7
    p = k / (k + np.exp(eta))
    assert_allclose(nb_loglik_rows(y, eta, k), stats.nbinom.logpmf(y, k, p), rtol=1e-12)


# ---------------------------------------------------------------------------- boundary
def test_nb_on_poisson_data_reports_the_boundary_in_words():
    # Poisson counts (no overdispersion); with this seed the NB maximum is at k = ∞ (with
    # others a finite k fits slightly better: the sample is then a little overdispersed)
    rng = np.random.default_rng(20261207)
    n_subj, n_vis = 80, 6
    subject = np.repeat(np.arange(n_subj), n_vis)
    x = rng.normal(size=n_subj * n_vis)
    b = rng.normal(0.0, 0.5, n_subj)
    y = rng.poisson(np.exp(0.5 + 0.3 * x + b[subject]))
    data = pd.DataFrame({"y": y, "x": x, "subject": subject.astype(str)})
    nb = ms.fit_glmm("y ~ x + (1 | subject)", data, family="negative_binomial")
    pois = ms.fit_glmm("y ~ x + (1 | subject)", data, family="poisson")
    if nb.dispersion < np.exp(LOG_K_MAX) * 0.999:  # an interior k: the data show some
        pytest.fail(f"expected the boundary on these Poisson data, got k = {nb.dispersion}")
    assert any("ran to" in m and "family='poisson'" in m for m in nb.messages)
    assert_allclose(nb.loglik, pois.loglik, rtol=0, atol=1e-4)
    assert_allclose(nb.fixed_effects["estimate"], pois.fixed_effects["estimate"], rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("bad", "shown"), [(-1, "-1"), (2.5, "2.5")])
def test_nb_counts_must_be_non_negative_whole_numbers(bad, shown):
    data = salamanders().astype({"count": float})
    data.loc[[5, 9], "count"] = bad
    with pytest.raises(
        ModelSpecError,
        match=rf"non-negative whole numbers; 2 row\(s\) are not, e\.g\. {shown} at index 5 "
        r"\(rows at index 5, 9\)",
    ):
        ms.fit_glmm(FORMULA, data, family="negative_binomial")


@pytest.mark.parametrize("area", [0.0, -2.0])
def test_nb_offset_of_an_area_at_or_below_zero_is_refused_with_the_rows(area):
    data = salamanders()
    data.loc[[3, 7], "area"] = area
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            ModelSpecError,
            match=r"offset\(log\(area\)\) is not finite in 2 row\(s\) \(index 3, 7\)",
        ):
            ms.fit_glmm(OFFSET_FORMULA, data, family="negative_binomial")


def test_unknown_family_message_offers_the_negative_binomial():
    with pytest.raises(ModelSpecError, match="family='negative_binomial'"):
        ms.fit_glmm(FORMULA, salamanders(), family="gamma")


def test_nbinom2_is_an_alias(laplace_fit):
    fit = ms.fit_glmm(FORMULA, salamanders(), family="nbinom2")
    assert fit.family == "negative_binomial"
    assert_allclose(fit.loglik, laplace_fit.loglik, rtol=0, atol=1e-9)


def test_nb_agq_needs_one_scalar_random_effect():
    data = salamanders()
    with pytest.raises(ModelSpecError, match="exactly one scalar random effect"):
        ms.fit_glmm(
            "count ~ mined + (1 | site) + (1 | spp)", data, family="negative_binomial", nagq=5
        )


# ---------------------------------------------------------------------------- coverage
_TRUE_BETA = np.array([1.0, -0.4, 0.1])  # intercept, arm, visit (log scale)
_TRUE_SD, _TRUE_K = 0.6, 2.0


def _simulate_nb_trial(seed: int, n_subjects: int = 100, n_visits: int = 6):
    """Two-arm trial, counts at 6 visits: NB2 (gamma–Poisson) around exp(Xβ + b_subject)."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_visits)
    arm = (np.arange(n_subjects) % 2)[subject].astype(float)
    visit = np.tile(np.arange(n_visits, dtype=float), n_subjects)
    X = np.column_stack([np.ones_like(visit), arm, visit])
    mu = np.exp(X @ _TRUE_BETA + rng.normal(0.0, _TRUE_SD, n_subjects)[subject])
    y = rng.poisson(rng.gamma(_TRUE_K, mu / _TRUE_K)).astype(float)
    return y, X, subject


@pytest.mark.slow
def test_nb_truth_recovery_and_wald_coverage_over_1000_simulated_trials():
    """Seeds 0…999, 100 subjects × 6 visits, β = (1, −0.4, 0.1), SD 0.6, k = 2 (≈ 15 s).

    95 % Wald intervals (β: from the joint Hessian over (β, θ, log k); log k likewise) must
    cover in 93–97 % of the 1,000 trials for each of β₀, β_arm, β_visit and log k: the
    binomial SD of a coverage proportion is √(0.95·0.05/1000) = 0.69 %, so 93–97 % is ±2.9
    SD (measured: 94.4, 93.6, 94.7, 94.9 %; pooled over the four 94.4 %). The mean estimates
    lie within 3 Monte-Carlo SEs of the truth.
    """
    from mesostats.mixed.glmm.core import RandomTermArrays
    from mesostats.mixed.glmm.negbin import fit_negbin_arrays

    truth = np.append(_TRUE_BETA, np.log(_TRUE_K))
    estimates, covered = [], []
    for seed in range(1000):
        y, X, subject = _simulate_nb_trial(seed)
        term = RandomTermArrays(subject.astype(np.int64), np.ones((len(y), 1)), 100)
        core = fit_negbin_arrays(y, np.ones(len(y)), np.zeros(len(y)), X, [term])
        assert core.optimum.converged and not core.at_boundary
        est = np.append(core.beta, core.log_k)
        se = np.append(np.sqrt(np.diag(core.vcov_beta)), core.se_log_k)
        estimates.append(est)
        covered.append(np.abs(est - truth) <= stats.norm.ppf(0.975) * se)
    coverage = np.mean(covered, axis=0)
    assert np.all((coverage >= 0.93) & (coverage <= 0.97)), coverage
    assert 0.93 <= float(np.mean(covered)) <= 0.97
    est = np.array(estimates)
    mc_se = est.std(axis=0, ddof=1) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(axis=0) - truth) < 3 * mc_se), est.mean(axis=0) - truth


# ---------------------------------------------------------------------------- domain
def test_fit_regrowth_models_hair_counts_per_target_area_as_nb():
    study = ms.simulate_study(150, seed=5)
    fit = ms.fit_regrowth(study, "hair_count", random_slope=False)
    model = fit.model
    # glmmTMB on the same model frame (reference/ref_nb_regrowth.R): the person SD is 0.119,
    # not 0 (an optimiser that stopped at SD = 0 was 46.7 log-likelihood units short)
    ref = json.loads((REF / "ref_nb_regrowth.json").read_text())
    frame = pd.read_csv(REF / "nb_regrowth_seed5.csv")
    mine = fit.data[list(frame.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.astype(frame.dtypes.to_dict()), frame, rtol=1e-14)
    assert ref["loglik"] - 1e-6 <= model.loglik <= ref["loglik"] + 1e-4
    assert_allclose(
        model.fixed_effects["estimate"].to_numpy(), list(ref["fixef"].values()), atol=1e-4
    )
    vc = model.variance_components.set_index("group")["sdcor"]
    assert_allclose([vc["subject_id"], vc["site"]], [ref["sd_subject"], ref["sd_site"]], atol=1e-3)
    assert_allclose(model.dispersion, ref["dispersion"], rtol=1e-3)
    assert model.family == "negative_binomial" and model.link == "log"
    assert fit.formula.startswith("value ~ offset(log(area)) + baseline_centered + week")
    assert "negative-binomial GLMM (NB2, log link)" in fit.notes[0]
    assert "offset log(target_area_cm2)" in fit.notes[0]
    # simulated counts: NB2 (k = 40) around density × area, density with its own noise, so
    # the fitted k is finite and below the counting k
    assert 1.0 < model.dispersion < study.truth["hair_count_dispersion"]
    # every default ingredient raises regrowth in the truth: the log-scale effects are > 0
    # and, times the baseline density, near the true slopes (hairs/cm² per week)
    effects = fit.ingredient_effects.set_index("ingredient")
    density = float(np.exp(fit.baseline_center))
    for ing, slope in study.truth["ingredient_slopes"].items():
        if ing in effects.index and slope > 0:
            est, se = effects.loc[ing, ["effect", "std_error"]]
            assert abs(est * density - slope) < 4 * se * density, (ing, est * density, slope)
    text = str(fit.summary())
    assert "negative binomial (NB2, log link)" in text


def test_fit_regrowth_keeps_the_lmm_for_hair_density():
    study = ms.simulate_study(60, seed=5)
    assert ms.fit_regrowth(study, "hair_density").model.family == "gaussian"


# ---------------------------------------------------------------------------- other paths
def test_nb_refit_template_reproduces_the_fit(laplace_fit):
    from mesostats.mixed.refit import ModelTemplate

    template = ModelTemplate.from_results(laplace_fit)
    est = template.estimates(laplace_fit.design.y)
    assert_allclose(est.beta, laplace_fit.params.to_numpy(), rtol=0, atol=1e-6)
    refit = template.fit(laplace_fit.design.y)
    assert refit.family == "negative_binomial"
    assert_allclose(refit.loglik, laplace_fit.loglik, rtol=0, atol=1e-9)
    with pytest.raises(ModelSpecError, match="non-negative whole-number counts"):
        template.estimates(laplace_fit.design.y + 0.5)


def test_nb_profile_objective_is_refused_in_words(laplace_fit):
    from mesostats.mixed.glmm import design_objective

    with pytest.raises(ModelSpecError, match="not available for negative-binomial fits"):
        design_objective(laplace_fit.design, "negative_binomial")


def test_nb_bootstrap_draws_nb_counts(laplace_fit):
    """The bootstrap's one simulation path (simulate_mixed with size=k) draws NB2 counts."""
    from mesostats.mixed.simulation import simulate_mixed

    beta = laplace_fit.params.to_numpy()
    draws = simulate_mixed(
        laplace_fit.design,
        family="negative_binomial",
        beta=beta,
        theta=np.zeros(1),  # no person effects: the draws' spread is the NB2's alone
        sigma=1.0,
        n=400,
        rng=np.random.default_rng(1),
        size=2.0,
    ).T
    mu = np.exp(laplace_fit.design.X @ beta)
    # Var = μ + μ²/k with k = 2 (a Poisson draw would give Var = μ)
    assert_allclose(draws.mean(axis=0).mean(), mu.mean(), rtol=0.05)
    assert_allclose(draws.var(axis=0).mean(), (mu + mu**2 / 2).mean(), rtol=0.1)


def test_nb_species_with_no_counts_is_reported_as_separation():
    data = salamanders()
    data.loc[data["spp"] == "PR", "count"] = 0
    with pytest.warns(ConvergenceWarning, match=r"Separation: the outcome is 0 in every row with"):
        fit = ms.fit_glmm(FORMULA, data, family="negative_binomial")
    assert not fit.converged
    se = fit.fixed_effects["std_error"]
    assert np.isinf(se["spp[T.PR]"]) and np.all(np.isfinite(se.drop("spp[T.PR]")))
    assert fit.fixed_effects.loc["spp[T.PR]", "estimate"] < -5
