"""Tests of MixedResults (mesostats/mixed/results.py): tables, prediction, display."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mixed_checks import load_csv, load_reference
from numpy.testing import assert_allclose
from scipy import stats

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.design import build_design
from mesostats.mixed.results import MixedResults

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return load_csv("sleepstudy.csv")


@pytest.fixture(scope="module")
def fit(sleep: pd.DataFrame) -> MixedResults:
    return ms.fit_lmm(SLEEP, sleep)


def test_fixed_effects_table_is_wald_with_satterthwaite_p(fit: MixedResults) -> None:
    fe = fit.fixed_effects
    assert list(fe.columns) == [
        "estimate",
        "std_error",
        "statistic",
        "df",
        "p_value",
        "ci_lower",
        "ci_upper",
    ]
    assert list(fe.index) == ["Intercept", "Days"]
    q = stats.t.ppf(0.975, fe["df"])  # interval agrees with the Satterthwaite t test
    assert_allclose(fe["ci_lower"], fe["estimate"] - q * fe["std_error"], rtol=1e-12)
    assert_allclose(fe["ci_upper"], fe["estimate"] + q * fe["std_error"], rtol=1e-12)
    # lmerTest/emmeans interval for Days with df = 17: 10.4673 ± t(0.975, 17)·1.54579
    assert_allclose(fe.loc["Days", ["ci_lower", "ci_upper"]], [7.205955, 13.728617], atol=1e-4)
    assert_allclose(fe["statistic"], fe["estimate"] / fe["std_error"], rtol=1e-12)
    assert_allclose(fe["p_value"], 2 * stats.t.sf(fe["statistic"].abs(), fe["df"]), rtol=1e-10)
    # lmerTest: t = 36.8380896462844, 6.77148148899918
    assert_allclose(fe["statistic"], [36.8380896462844, 6.77148148899918], rtol=1e-4)


def test_variance_components_layout_like_r_varcorr(fit: MixedResults) -> None:
    vc = fit.variance_components
    assert list(vc["group"]) == ["Subject", "Subject", "Subject", "Residual"]
    assert list(vc["var1"].iloc[:3]) == ["Intercept", "Days", "Intercept"]
    assert vc["var2"].iloc[2] == "Days" and vc["var2"].drop(2).isna().all()
    assert_allclose(vc["vcov"].iloc[:2], vc["sdcor"].iloc[:2] ** 2, rtol=1e-12)
    cov = fit.covariance_blocks()[0]
    assert_allclose(vc["vcov"].iloc[2], cov[0, 1], rtol=1e-12)
    assert_allclose(vc["sdcor"].iloc[3], fit.sigma, rtol=1e-12)


def test_information_criteria_match_lme4(fit: MixedResults) -> None:
    ref = load_reference("ref_sleepstudy.json")["REML"]
    assert_allclose(fit.aic, ref["AIC"], atol=1e-5)
    assert_allclose(fit.bic, ref["BIC"], atol=1e-5)
    assert_allclose(fit.deviance, ref["REML_criterion"], atol=1e-5)
    assert fit.n_params == ref["df_logLik"]


def test_ranef_dicts_have_levels_and_terms(fit: MixedResults) -> None:
    re, se = fit.ranef["Subject"], fit.ranef_se["Subject"]
    assert list(re.columns) == ["Intercept", "Days"] == list(se.columns)
    assert len(re) == 18 and re.index.name == "Subject"
    assert (se.to_numpy() > 0).all()
    # lme4's coef() = fixef + ranef: subject 308 -> 253.663655798386, 19.6662617251619
    coef = re.loc[308] + fit.fixed_effects["estimate"]
    assert_allclose(coef, [253.663655798386, 19.6662617251619], rtol=1e-5)


def test_fitted_and_residuals_add_up_to_response(fit: MixedResults, sleep: pd.DataFrame) -> None:
    assert_allclose(fit.fitted + fit.residuals, sleep["Reaction"], rtol=1e-12)
    assert fit.fitted.index.equals(sleep.index)


def test_predict_with_and_without_random_effects(fit: MixedResults, sleep: pd.DataFrame) -> None:
    assert_allclose(fit.predict(), fit.fitted, rtol=1e-12)
    beta = fit.fixed_effects["estimate"]
    population = fit.predict(include_random=False)
    assert_allclose(population, beta["Intercept"] + beta["Days"] * sleep["Days"], rtol=1e-12)
    assert_allclose(fit.predict(scale="link"), fit.predict(scale="response"))
    new = pd.DataFrame({"Days": [0.0, 3.0, 3.0, np.nan], "Subject": [308, 308, 12345, 308]})
    pred = fit.predict(new)
    b = fit.ranef["Subject"].loc[308]
    assert_allclose(pred.iloc[0], beta["Intercept"] + b["Intercept"], rtol=1e-12)
    assert_allclose(
        pred.iloc[1],
        beta.sum() * 0 + beta["Intercept"] + b["Intercept"] + 3 * (beta["Days"] + b["Days"]),
    )
    # a subject not in the fit gets the population-level prediction
    assert_allclose(pred.iloc[2], beta["Intercept"] + 3 * beta["Days"], rtol=1e-12)
    assert np.isnan(pred.iloc[3])
    assert pred.index.equals(new.index)
    only_fixed = fit.predict(new[["Days"]].iloc[:2], include_random=False)
    assert_allclose(only_fixed, beta["Intercept"] + beta["Days"] * new["Days"].iloc[:2])


def test_predict_errors(fit: MixedResults) -> None:
    with pytest.raises(ModelSpecError, match="scale must be 'response' or 'link'"):
        fit.predict(scale="probability")
    with pytest.raises(ModelSpecError, match="newdata lacks column"):
        fit.predict(pd.DataFrame({"Days": [1.0]}))
    with pytest.raises(ModelSpecError, match="must be a pandas DataFrame"):
        fit.predict({"Days": [1.0]})  # type: ignore[arg-type]


def test_predict_with_unseen_category_says_why() -> None:
    rng = np.random.default_rng(1)
    data = pd.DataFrame(
        {
            "y": rng.normal(size=60) + np.repeat(rng.normal(0, 2, 12), 5),
            "arm": ["a", "b"] * 30,
            "g": np.repeat(np.arange(12), 5),
        }
    )
    fit = ms.fit_lmm("y ~ arm + (1 | g)", data)
    with pytest.raises(ModelSpecError, match="categories seen in the fit"):
        fit.predict(pd.DataFrame({"arm": ["c"], "g": [0]}))


def test_results_are_immutable(fit: MixedResults) -> None:
    with pytest.raises(AttributeError, match="immutable"):
        fit.loglik = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        fit.theta[0] = 1.0
    table = fit.fixed_effects
    table.loc["Days", "estimate"] = 0.0
    assert fit.fixed_effects.loc["Days", "estimate"] != 0.0


def test_summary_repr_and_html(fit: MixedResults) -> None:
    text = str(fit)
    assert text.startswith("Linear mixed model fit by REML")
    assert "Random effects:" in text and "Fixed effects:" in text and "Days" in text
    assert repr(fit).count("\n") == 0
    assert repr(fit).startswith("<MixedResults LMM REML: Reaction ~ Days + (Days | Subject)")
    html = fit._repr_html_()
    assert html.startswith('<div class="mesostats-summary">') and "<table" in html


def test_html_escapes_names() -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "y": rng.normal(size=60) + np.repeat(rng.normal(0, 2, 12), 5),
            "arm": ["<b>x</b>", "0 control"] * 30,
            "g": np.repeat(np.arange(12), 5),
        }
    )
    fit = ms.fit_lmm("y ~ arm + (1 | g)", data)
    html = fit.summary().as_html()
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_glmm_results_use_link_and_z_tests() -> None:
    """Built from numbers (as the GLMM engine does): cbpp Laplace optimum of ref_cbpp.json."""
    cbpp = load_csv("cbpp.csv").astype({"period": str})
    design = build_design(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    opt = load_reference("ref_cbpp.json")["independent_check"]["laplace_optimum"]
    beta = np.array([opt["fixef"][k] for k in ["Intercept", "period2", "period3", "period4"]])
    se = np.array([opt["se"][k] for k in ["Intercept", "period2", "period3", "period4"]])
    res = MixedResults(
        design,
        family="binomial",
        method="Laplace",
        beta=beta,
        vcov=np.diag(se**2),
        theta=[opt["sd_intercept"]],
        sigma=1.0,
        loglik=opt["logLik"],
        df=np.inf,
        ranef=[np.zeros((15, 1))],
        ranef_sd=[np.ones((15, 1))],
        converged=True,
        singular=False,
    )
    vc = res.variance_components
    assert list(vc["group"]) == ["herd"]  # no residual row
    assert_allclose(vc["sdcor"].iloc[0], opt["sd_intercept"])
    fe = res.fixed_effects
    assert np.isinf(fe["df"]).all()
    assert_allclose(fe["p_value"], 2 * stats.norm.sf(np.abs(beta / se)), rtol=1e-12)
    assert res.n_params == 5
    eta = res.predict(include_random=False, scale="link")
    assert_allclose(res.predict(include_random=False), 1 / (1 + np.exp(-eta)), rtol=1e-12)
    assert_allclose(res.residuals, design.y - res.fitted, rtol=1e-12)
    assert "z value" in res.summary().as_text()
    assert res.summary().as_text().startswith("Generalized linear mixed model")


def test_predict_nested_groups_uses_both_levels() -> None:
    pastes = load_csv("pastes.csv")
    fit = ms.fit_lmm("strength ~ 1 + (1 | batch/cask)", pastes)
    assert_allclose(fit.predict(pastes.iloc[:6]), fit.fitted.iloc[:6], rtol=1e-12)
    new = pd.DataFrame({"batch": ["A", "Z"], "cask": ["z", "a"]})
    pred = fit.predict(new)
    mu = fit.fixed_effects.loc["Intercept", "estimate"]
    # unseen cask within a known batch: batch effect only; unseen batch: population mean
    assert_allclose(pred.iloc[0], mu + fit.ranef["batch"].loc["A", "Intercept"], rtol=1e-12)
    assert_allclose(pred.iloc[1], mu, rtol=1e-12)
