"""check_model: calibration under correct models, power against constructed misfits, the
one-step influence against exact deletion, and the ModelCheck object.

Calibration and power are measured over seeds on constructed GLMM/LMM data (50 persons × 8
rows, random intercept SD 0.5, one covariate x ~ U(−1, 1)); every test is seeded, so the
counts below are fixed numbers, and the bounds say how unlikely a failure would be for a
correct implementation:

* correct model, 20 seeds: each test rejects at most 3 of 20 at the 5 % level
  (P(X ≥ 4) = 0.016 for X ~ Bin(20, 0.05)); measured over 40 seeds (Poisson GLMM):
  uniformity 0, dispersion 0, zero_inflation 0, outliers 0, residual_trend 0,
  person_effects_normality 0 rejections — the simulated-residual tests are conservative
  without refits, as DHARMa documents (parameters fitted to the same data);
* power, 20 seeds: a test with measured power ≥ 0.75 must reject in ≥ 10 of 20
  (P(X ≤ 9) ≤ 0.004 for X ~ Bin(20, 0.75)); one with measured power 1.0 (40 of 40, so
  ≥ 0.93 at 95 %) in ≥ 15 of 20 (P(X ≤ 14) < 0.01 at power 0.93). Measured over 40 seeds:
  Poisson fitted to negative-binomial data (size 1): uniformity 1.0, dispersion 0.78,
  zero_inflation 1.0; Poisson fitted to zero-inflated Poisson (25 % extra zeros):
  zero_inflation 1.0, uniformity 0.98; a missing quadratic term (Poisson, 1.5 x²; LMM,
  2 x²): residual_trend 1.0 for both (the rank-score version, re-measured; a wrong link:
  test_check_wrong_link.py).
"""

from __future__ import annotations

import warnings
from functools import cache

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mixed_checks import load_csv
from mmrm_data import fev_data, fit_fev
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.checks import TEST_COLUMNS, ModelCheck, check_model
from mesostats.checks.linearised import linearise
from mesostats.checks.residuals import scaled_residuals, simulated_residuals
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.glmm import fit_glmm
from mesostats.mixed.lmm import fit_lmm
from mesostats.mixed.results import MixedResults

SEEDS = range(20)


def constructed(seed: int, kind: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_p, k = 50, 8
    pid = np.repeat(np.arange(n_p), k)
    x = rng.uniform(-1, 1, n_p * k)
    u = rng.normal(0, 0.5, n_p)[pid]
    eta = 0.5 + 0.6 * x + u
    if kind == "poisson":
        y = rng.poisson(np.exp(eta))
    elif kind == "negative_binomial":  # Poisson–gamma, size 1
        mu = np.exp(eta)
        y = rng.poisson(mu * rng.gamma(1.0, 1.0, mu.size))
    elif kind == "zero_inflated":
        y = np.where(rng.random(eta.size) < 0.25, 0, rng.poisson(np.exp(eta + 0.3)))
    elif kind == "poisson_quadratic":
        y = rng.poisson(np.exp(eta + 1.5 * x**2 - 0.5))
    elif kind == "gaussian":
        y = eta + rng.normal(0, 1, eta.size)
    elif kind == "gaussian_quadratic":
        y = eta + 2 * x**2 + rng.normal(0, 1, eta.size)
    else:
        raise ValueError(kind)
    return pd.DataFrame({"y": y.astype(float), "x": x, "pid": pid.astype(str)})


def rejections(kind: str) -> pd.Series:
    """Rejections at 5 % per test over SEEDS (a Poisson GLMM or an LMM of y ~ x)."""
    flagged = []
    for seed in SEEDS:
        data = constructed(seed, kind)
        if kind.startswith("gaussian"):
            fit = fit_lmm("y ~ x + (1 | pid)", data)
        else:
            fit = fit_glmm("y ~ x + (1 | pid)", data, family="poisson")
        tests = check_model(fit, n_sim=250, seed=seed).tests.set_index("test")
        flagged.append(tests["p_value"] < 0.05)
    return pd.DataFrame(flagged).sum()


# --------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("kind", ["poisson", "gaussian"])
def test_no_test_rejects_more_than_3_of_20_correct_models(kind):
    counts = rejections(kind)
    assert set(counts.index) >= {"uniformity", "dispersion", "outliers", "residual_trend"}
    assert counts.max() <= 3, counts.to_dict()


def test_no_test_rejects_more_than_3_of_20_mmrms_fitted_to_their_own_simulations():
    """Data drawn by simulate() from the fev_data MMRM (us), refitted and checked:
    measured 0 uniformity, 0 dispersion, 1 outliers, 0 residual_trend rejections."""
    formula = "FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)"
    base = fit_fev(formula)
    data = fev_data().loc[base.problem.row_index]
    flagged = []
    for seed in SEEDS:
        data["FEV1"] = base.simulate(1, seed=100 + seed)[:, 0]
        tests = check_model(fit_fev(formula, data), seed=seed).tests.set_index("test")
        flagged.append(tests["p_value"] < 0.05)
    counts = pd.DataFrame(flagged).sum()
    assert counts.max() <= 3, counts.to_dict()


# --------------------------------------------------------------------------- power
def test_overdispersion_of_negative_binomial_data_is_flagged():
    counts = rejections("negative_binomial")
    assert counts["dispersion"] >= 10, counts.to_dict()
    assert counts["uniformity"] >= 15, counts.to_dict()


def test_zero_inflation_is_flagged():
    counts = rejections("zero_inflated")
    assert counts["zero_inflation"] >= 15, counts.to_dict()


@pytest.mark.parametrize("kind", ["poisson_quadratic", "gaussian_quadratic"])
def test_a_missing_quadratic_term_is_flagged_by_the_residual_trend(kind):
    counts = rejections(kind)
    assert counts["residual_trend"] >= 15, counts.to_dict()


# --------------------------------------------------------------------------- residuals
def test_scaled_residuals_are_0_below_1_above_and_randomised_on_ties():
    sims = np.array([[1.0, 2.0, 3.0, 4.0]] * 3 + [[0.0, 0.0, 1.0, 1.0]])
    obs = np.array([0.5, 5.0, 2.5, 0.0])
    res = scaled_residuals(obs, sims, np.random.default_rng(0))
    assert res[0] == 0.0 and res[1] == 1.0 and res[2] == 0.5
    assert 0.0 <= res[3] <= 0.5  # tie with two of four simulations: uniform on [0, 0.5]


def test_simulated_residuals_of_continuous_draws_are_their_ranks_among_the_others():
    sims = np.array([[3.0, 1.0, 2.0, 5.0, 4.0]])
    res = simulated_residuals(sims, np.random.default_rng(0))
    assert_allclose(res, [[0.5, 0.0, 0.25, 1.0, 0.75]])


# --------------------------------------------------------------------------- linearisation
@cache
def sleep_fit() -> MixedResults:
    return fit_lmm("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv"))


def test_linearised_modes_of_an_lmm_are_its_blups():
    fit = sleep_fit()
    modes = linearise(fit).modes(fit.design.y[:, None])[:, :, 0]
    assert_allclose(modes, fit.ranef["Subject"].to_numpy(), rtol=1e-7, atol=1e-8)


def test_linearised_modes_of_a_glmm_are_its_conditional_modes():
    """The conditional modes are the fixed point of one penalised-IRLS step (1e-6)."""
    fit = fit_glmm("y ~ x + (1 | pid)", constructed(3, "poisson"), family="poisson")
    modes = linearise(fit).modes(fit.design.y[:, None])[:, :, 0]
    assert_allclose(modes, fit.ranef["pid"].to_numpy(), atol=1e-6)


def test_one_step_influence_of_an_lmm_is_the_exact_deletion_at_fixed_theta():
    """Δβ_(i) against generalised least squares without subject i, V = σ²I + ZGZᵀ (1e-8)."""
    fit = sleep_fit()
    check = check_model(fit, n_sim=20)
    term = fit.design.terms[0]
    X, y = fit.design.X, fit.design.y
    G = fit.covariance_blocks()[0]
    V = fit.sigma**2 * np.eye(fit.nobs)
    for level in range(term.n_levels):
        rows = np.flatnonzero(term.codes == level)
        V[np.ix_(rows, rows)] += term.Z[rows] @ G @ term.Z[rows].T

    def gls(keep: np.ndarray) -> np.ndarray:
        Vi = np.linalg.inv(V[np.ix_(keep, keep)])
        return np.linalg.solve(X[keep].T @ Vi @ X[keep], X[keep].T @ Vi @ y[keep])

    full = gls(np.arange(fit.nobs))
    assert_allclose(full, fit.params.to_numpy(), rtol=1e-6)
    for level in (0, 7, 17):
        keep = np.flatnonzero(term.codes != level)
        expected = gls(keep) - full
        got = check.influence.iloc[level].to_numpy()
        assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("which", "tolerance"), [("regrowth", 0.05), ("side", 0.1)])
def test_one_step_influence_is_close_to_refits_without_the_most_influential_persons(
    which, tolerance
):
    """Against refits without each of the 3 most influential persons of the example study
    (θ re-estimated): within 0.05 SE (LMM) and 0.1 SE (binomial GLMM; measured 0.036 and
    0.069 SE over the 6 most influential)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = ms.example_study()
        fit = ms.fit_regrowth(study) if which == "regrowth" else ms.fit_side_effects(study)
    model = fit.model
    check = check_model(fit, n_sim=20)
    key = check.key_effect
    se = model.fixed_effects.loc[key, "std_error"]
    data = fit.data.loc[model.design.row_index]
    for person in check.influence[key].abs().sort_values(ascending=False).index[:3]:
        keep = data[data["subject_id"].astype(str) != str(person)]
        if which == "regrowth":
            refit = fit_lmm(model.formula, keep)
        else:
            refit = fit_glmm(model.formula, keep, family="binomial")
        exact = refit.params[key] - model.params[key]
        assert abs(check.influence.loc[person, key] - exact) / se < tolerance


def test_one_step_influence_of_an_mmrm_is_the_exact_deletion_at_fixed_theta():
    fit = fit_fev("FEV1 ~ ARMCD * AVISIT + us(AVISIT | USUBJID)")
    check = check_model(fit, n_sim=20)
    pr = fit.problem
    sigma = fit.covariance.to_numpy()
    blocks = []
    for rows in pr.subject_rows:
        v = pr.coords[rows].astype(int)
        blocks.append((rows, np.linalg.inv(sigma[np.ix_(v, v)])))

    def gls(skip: int) -> np.ndarray:
        H = sum(pr.X[r].T @ inv @ pr.X[r] for i, (r, inv) in enumerate(blocks) if i != skip)
        g = sum(pr.X[r].T @ inv @ pr.y[r] for i, (r, inv) in enumerate(blocks) if i != skip)
        return np.linalg.solve(H, g)

    full = gls(-1)
    for subject in (0, 50):
        assert_allclose(check.influence.iloc[subject], gls(subject) - full, rtol=1e-7, atol=1e-10)


# --------------------------------------------------------------------------- the object
@cache
def side_effect_check() -> ModelCheck:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        side = ms.fit_side_effects(ms.example_study())
    return ms.check_model(side, n_sim=100, seed=3)


def test_check_model_table_residuals_and_key_effect_of_a_domain_result():
    check = side_effect_check()
    tests = check.tests
    assert tuple(tests.columns) == TEST_COLUMNS
    assert list(tests["test"]) == [
        "uniformity",
        "dispersion",
        "outliers",
        "residual_trend",
        "person_effects_normality",
    ]  # 0/1 rows: no zero-inflation test
    assert set(tests["verdict"]) <= {"ok", "problem"}
    assert np.all((tests["p_value"] >= 0) & (tests["p_value"] <= 1))
    assert check.residuals.between(0, 1).all()
    assert len(check.residuals) == 1030
    assert check.key_effect in {"biotin", "dutasteride", "minoxidil"}
    assert check.influence.shape == (150, 4)
    text = str(check)
    assert "Model checks" in text and "uniformity" in text


def test_check_model_is_reproducible_and_immutable():
    check = side_effect_check()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = ms.check_model(ms.fit_side_effects(ms.example_study()), n_sim=100, seed=3)
    pd.testing.assert_frame_equal(check.tests, again.tests)
    with pytest.raises(AttributeError, match="immutable"):
        check.n_sim = 3  # type: ignore[misc]
    copy = check.tests
    copy.loc[0, "p_value"] = -1.0
    assert check.tests.loc[0, "p_value"] >= 0
    res = check.residuals
    res.iloc[0] = 9.0
    assert check.residuals.iloc[0] <= 1


def test_plot_returns_a_four_panel_figure_without_pyplot():
    before = plt.get_fignums()
    fig = side_effect_check().plot()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    assert plt.get_fignums() == before  # nothing registered with pyplot, nothing shown


def test_check_model_of_an_mmrm_has_no_person_effect_test():
    fit = fit_fev("FEV1 ~ ARMCD * AVISIT + us(AVISIT | USUBJID)")
    check = check_model(fit, n_sim=50)
    assert "person_effects_normality" not in set(check.tests["test"])
    assert "zero_inflation" not in set(check.tests["test"])
    assert check.person_effects is None
    assert isinstance(check.plot(), Figure)


def test_check_model_of_counts_has_a_zero_inflation_test():
    fit = fit_glmm("y ~ x + (1 | pid)", constructed(0, "poisson"), family="poisson")
    assert "zero_inflation" in set(check_model(fit, n_sim=50).tests["test"])


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("n_sim", [5, 0, 2.5, True])
def test_check_model_refuses_a_bad_n_sim(n_sim):
    with pytest.raises(ModelSpecError, match="n_sim must be a whole number ≥ 10"):
        check_model(sleep_fit(), n_sim=n_sim)


def test_check_model_refuses_a_bad_seed():
    with pytest.raises(ModelSpecError, match="seed must be a whole number ≥ 0"):
        check_model(sleep_fit(), seed=-1)


def test_check_model_refuses_what_is_not_a_fitted_model():
    with pytest.raises(ModelSpecError, match=r"needs a fitted model.*got DataFrame"):
        check_model(pd.DataFrame())


def test_check_model_refuses_conditional_simulation_of_an_mmrm():
    fit = fit_fev("FEV1 ~ ARMCD * AVISIT + us(AVISIT | USUBJID)")
    with pytest.raises(ModelSpecError, match="which an MMRM does not have"):
        check_model(fit, conditional=True)


# --------------------------------------------------------------------------- report
def test_report_section_flags_a_misfit_in_the_banner_and_shows_a_failure():
    from mesostats.reporting.sections.checks import checks_section
    from mesostats.reporting.steps import Failure, MessageLog

    data = constructed(1, "negative_binomial")
    fit = fit_glmm("y ~ x + (1 | pid)", data, family="poisson")
    log = MessageLog()
    section = checks_section(
        {"regrowth": (fit, None), "side": (None, Failure("Side-effect model", "no events"))},
        0,
        log,
    )
    first, second = section["models"]
    assert first["failure"] is None and first["figure"].uri.startswith("data:image/png;base64,")
    assert any("uniformity" in p for p in first["problems"])
    flagged = [m for m in log.items if m.kind == "model check"]
    assert flagged and all(m.source == "Model checks (regrowth model)" for m in flagged)
    assert second["failure"].reason == "no events"


def test_report_has_a_model_checks_section():
    from mesostats.reporting.build import render_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        html = render_report(ms.example_study())
    assert "6. Model checks" in html
    assert html.count("Residuals uniform (KS)") == 2  # regrowth and side effects
