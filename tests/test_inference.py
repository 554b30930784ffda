"""Tests of mesostats/mixed/inference.py: Satterthwaite df and compare()."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mixed_checks import load_csv, load_reference
from numpy.testing import assert_allclose
from scipy import stats

import mesostats as ms
from mesostats.exceptions import ExclusionWarning, ModelSpecError, SingularFitWarning
from mesostats.mixed.design import build_design
from mesostats.mixed.inference import satterthwaite, varpar_hessian
from mesostats.mixed.lmm import ProfiledDeviance, optimise_theta
from mesostats.mixed.results import MixedResults

SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return load_csv("sleepstudy.csv")


@pytest.fixture(scope="module")
def ml_fits(sleep: pd.DataFrame) -> dict[str, MixedResults]:
    return {
        "intercept": ms.fit_lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False),
        "slope": ms.fit_lmm(SLEEP, sleep, reml=False),
        "null": ms.fit_lmm("Reaction ~ 1 + (Days | Subject)", sleep, reml=False),
    }


@pytest.mark.parametrize("reml", [True, False])
def test_satterthwaite_df_match_lmertest(sleep: pd.DataFrame, reml: bool) -> None:
    block = "REML" if reml else "ML"
    ref = load_reference("ref_sleepstudy.json")[block]["satterthwaite"]["df"]
    problem = ProfiledDeviance(build_design(SLEEP, sleep), reml=reml)
    opt = optimise_theta(problem, problem.design.theta_start())
    fit = ms.fit_lmm(SLEEP, sleep, reml=reml)
    vcov = fit.vcov.to_numpy()
    # both Hessian routes: from the optimiser's profiled Hessian, and by differences in (θ, σ)
    fast = satterthwaite(problem, opt.theta, fit.sigma, vcov, profiled_hessian=opt.hessian)
    slow = satterthwaite(problem, opt.theta, fit.sigma, vcov)
    assert_allclose(fast.df, [ref["Intercept"], ref["Days"]], rtol=1e-3)
    assert_allclose(slow.df, [ref["Intercept"], ref["Days"]], rtol=1e-3)
    assert_allclose(fast.hessian, slow.hessian, rtol=1e-4, atol=1e-6)


def test_varpar_hessian_sigma_rows_are_analytic(sleep: pd.DataFrame) -> None:
    problem = ProfiledDeviance(build_design(SLEEP, sleep), reml=True)
    theta = np.array([0.9, 0.02, 0.25])
    sigma = 25.0

    def dev(t: np.ndarray, s: float) -> float:
        st = problem.state(t)
        m = problem.dof
        return st.logdet_L + st.logdet_RX + m * np.log(2 * np.pi * s**2) + st.r2 / s**2

    H = varpar_hessian(problem, theta, sigma)
    h = 1e-3
    d2 = (dev(theta, sigma + h) - 2 * dev(theta, sigma) + dev(theta, sigma - h)) / h**2
    assert_allclose(H[-1, -1], d2, rtol=1e-5)
    e = np.array([1.0, 0, 0]) * 1e-4
    cross = (
        dev(theta + e, sigma + h)
        - dev(theta + e, sigma - h)
        - dev(theta - e, sigma + h)
        + dev(theta - e, sigma - h)
    ) / (4 * h * 1e-4)
    assert_allclose(H[0, -1], cross, rtol=1e-4)


def test_variance_parameter_covariance_is_reported(sleep: pd.DataFrame) -> None:
    fit = ms.fit_lmm(SLEEP, sleep)
    cov = fit.variance_parameter_cov
    assert cov is not None
    assert list(cov.index) == [*fit.design.theta_names, "sigma"]
    assert np.all(np.linalg.eigvalsh(cov.to_numpy()) > 0)


# --------------------------------------------------------------------------- compare
def test_compare_random_slope_uses_chi_bar_squared(ml_fits: dict[str, MixedResults]) -> None:
    """lme4: anova(lmer(Reaction ~ Days + (1|Subject), REML=FALSE), lmer(... (Days|Subject)))
    gives Chisq 42.1393 on 2 df (plain χ²: p 7.0724e-10)."""
    table = ms.compare(ml_fits["slope"], ml_fits["intercept"])
    assert list(table.columns) == [
        "model",
        "npar",
        "loglik",
        "aic",
        "bic",
        "chisq",
        "df",
        "p_value",
        "note",
    ]
    assert list(table["model"]) == [
        "Reaction ~ Days + (1 | Subject)",
        "Reaction ~ Days + (Days | Subject)",
    ]
    assert list(table["npar"]) == [4, 6]
    assert np.isnan(table["chisq"].iloc[0])
    chisq = table["chisq"].iloc[1]
    assert_allclose(chisq, 42.1393, atol=1e-4)
    assert table["df"].iloc[1] == 2
    expected = 0.5 * stats.chi2.sf(chisq, 1) + 0.5 * stats.chi2.sf(chisq, 2)
    assert_allclose(table["p_value"].iloc[1], expected, rtol=1e-10)
    assert "50:50 mixture of χ²_1 and χ²_2" in table["note"].iloc[1]
    assert_allclose(table["aic"], [1802.078643005, 1763.939344463], atol=1e-6)


def test_compare_fixed_effects_uses_plain_chi_squared(ml_fits: dict[str, MixedResults]) -> None:
    table = ms.compare(ml_fits["null"], ml_fits["slope"])
    chisq = table["chisq"].iloc[1]
    assert table["df"].iloc[1] == 1
    assert_allclose(table["p_value"].iloc[1], stats.chi2.sf(chisq, 1), rtol=1e-12)
    assert table["note"].iloc[1].startswith("χ² (fixed effects differ)")


def test_compare_adding_a_variance_to_nothing_mixes_with_point_mass() -> None:
    rng = np.random.default_rng(3)
    g1 = np.repeat(np.arange(20), 6)
    g2 = np.tile(np.arange(6), 20)
    y = rng.normal(0, 2, 20)[g1] + rng.normal(0, 1, 6)[g2] + rng.normal(size=120)
    data = pd.DataFrame({"y": y, "g1": g1, "g2": g2})
    small = ms.fit_lmm("y ~ 1 + (1 | g1)", data)
    big = ms.fit_lmm("y ~ 1 + (1 | g1) + (1 | g2)", data)
    table = ms.compare(small, big)  # REML fits with identical fixed effects are allowed
    chisq = table["chisq"].iloc[1]
    assert_allclose(table["p_value"].iloc[1], 0.5 * stats.chi2.sf(chisq, 1), rtol=1e-12)
    assert "mixture of χ²_0 and χ²_1" in table["note"].iloc[1]


def test_compare_refuses_fits_on_different_rows(sleep: pd.DataFrame) -> None:
    full = ms.fit_lmm(SLEEP, sleep, reml=False)
    with pytest.warns(ExclusionWarning, match="1 of 180 rows were not fitted"):
        fewer = ms.fit_lmm(
            "Reaction ~ Days + (1 | Subject)",
            sleep.assign(Reaction=sleep["Reaction"].where(sleep.index != 0)),
            reml=False,
        )
    with pytest.raises(ModelSpecError, match=r"\(179 rows\) are not on the same rows"):
        ms.compare(full, fewer)


def test_compare_refuses_reml_fits_with_different_fixed_effects(sleep: pd.DataFrame) -> None:
    a = ms.fit_lmm(SLEEP, sleep)
    b = ms.fit_lmm("Reaction ~ 1 + (Days | Subject)", sleep)
    with pytest.raises(ModelSpecError, match="REML fits with different fixed effects"):
        ms.compare(a, b)


def test_compare_other_refusals(ml_fits: dict[str, MixedResults], sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="at least two"):
        ms.compare(ml_fits["slope"])
    reml = ms.fit_lmm(SLEEP, sleep)
    with pytest.raises(ModelSpecError, match="Cannot compare REML with non-REML"):
        ms.compare(reml, ml_fits["intercept"])
    other = ms.fit_lmm("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep, reml=False)
    with pytest.raises(ModelSpecError, match="not nested"):
        ms.compare(ml_fits["null"], ml_fits["intercept"])
    with pytest.raises(ModelSpecError, match="same number of parameters"):
        ms.compare(other, ml_fits["null"])


def test_compare_refuses_different_families() -> None:
    cbpp = load_csv("cbpp.csv").astype({"period": str})
    lmm = ms.fit_lmm("size ~ period + (1 | herd)", cbpp, reml=False)
    design = build_design(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    glmm = MixedResults(
        design,
        family="binomial",
        method="Laplace",
        beta=np.zeros(4),
        vcov=np.eye(4),
        theta=[0.6],
        sigma=1.0,
        loglik=-100.0,
        df=np.inf,
        ranef=[np.zeros((15, 1))],
        ranef_sd=[np.ones((15, 1))],
        converged=True,
        singular=False,
    )
    with pytest.raises(ModelSpecError, match="Cannot compare a gaussian fit with a binomial fit"):
        ms.compare(lmm, glmm)


def test_compare_refuses_models_whose_random_parts_are_not_nested(sleep: pd.DataFrame) -> None:
    slope_only = ms.fit_lmm("Reaction ~ Days + (0 + Days | Subject)", sleep, reml=False)
    with pytest.warns(SingularFitWarning, match="on the boundary"):  # a vehicle for compare()
        both = ms.fit_lmm(
            "Reaction ~ Days + (1 | Subject) + (1 | visit)",
            sleep.assign(visit=sleep["Days"]),
            reml=False,
        )
    with pytest.raises(
        ModelSpecError, match=r"random effects \['Days'\] within `Subject` are missing"
    ):
        ms.compare(slope_only, both)
