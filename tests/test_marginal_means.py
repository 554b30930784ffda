"""marginal_means against R's emmeans 1.8.4 (``reference/ref_emmeans.R`` → ``ref_emmeans.json``).

Two layers:

* the machinery, with R's own β and V (``WithReference``): the reference grid's L against
  ``emm@linfct`` (1e-12 absolute), estimates, SEs and intervals (1e-9 relative) — for the cbpp
  GLMM on the link and response scales, and for an unbalanced LMM with all four weightings;
* our fits end to end: ``fit_glmm`` (Laplace, cbpp) against emmeans on glmmTMB, 1e-5 relative
  for means and intervals (shared/reference/README.md), 1e-4 for SEs (the GLMM's SE
  tolerance: glmmTMB's Hessian vs ours); ``fit_lmm`` estimates and SEs against emmeans on lmer
  (tight optimum), 1e-5. Their df need ``MixedResults.df_for``:
  tests/test_marginal_means_lmm_df.py.

R calls (see the script): ``emmeans(glmmTMB(cbind(incidence, size - incidence) ~ period +
(1 | herd), binomial), ~ period[, type = "response"])``; ``emmeans(lmer(y ~ trt * site + sex +
x + (1 | subj)), ~ trt, weights = ...)``, ``~ trt | site``, ``at = list(x = 45)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from marginal_reference import (
    CBPP_FORMULA,
    LMM_FORMULA,
    REF,
    WithReference,
    cbpp_data,
    frame,
    linfct,
    lmm_data,
    r_name,
)
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.marginal import MarginalMeans
from mesostats.mixed.marginal.view import _per_coefficient_df

CBPP = REF["cbpp"]
LMM = REF["lmm"]
COLUMNS = ["estimate", "std_error", "df", "ci_lower", "ci_upper"]


@pytest.fixture(scope="module")
def cbpp_fit():
    return ms.fit_glmm(CBPP_FORMULA, cbpp_data(), family="binomial")


@pytest.fixture(scope="module")
def lmm_fit():
    return ms.fit_lmm(LMM_FORMULA, lmm_data())


@pytest.fixture(scope="module")
def cbpp_ref(cbpp_fit):
    return WithReference(cbpp_fit, CBPP["fixef"], CBPP["vcov"], CBPP["vcov_names"], np.inf)


@pytest.fixture(scope="module")
def lmm_ref(lmm_fit):
    """R's β and (unadjusted) V with df = 20 throughout (emmeans' ``df = 20``)."""
    return WithReference(
        lmm_fit, LMM["fixef"], LMM["satterthwaite"]["vcov"], LMM["fixef_names"], 20.0
    )


def _check(means, ref: pd.DataFrame, est: str, lo: str, hi: str, rtol: float, se_rtol=None):
    assert list(means.columns[-5:]) == COLUMNS
    assert_allclose(means["estimate"], ref[est], rtol=rtol)
    assert_allclose(means["std_error"], ref["SE"], rtol=se_rtol or rtol)
    assert_allclose(means["df"], ref["df"], rtol=1e-12)
    assert_allclose(means["ci_lower"], ref[lo], rtol=se_rtol or rtol)
    assert_allclose(means["ci_upper"], ref[hi], rtol=se_rtol or rtol)


# ------------------------------------------------------------------ machinery with R's β, V
def test_cbpp_grid_matches_emmeans_linfct(cbpp_ref):
    means = ms.marginal_means(cbpp_ref, "period", scale="link")
    L = means.means_state.L
    assert_allclose(L, linfct(CBPP["linfct"], list(cbpp_ref.params.index)), atol=1e-12)


def test_cbpp_link_scale_means_match_emmeans_given_its_coefficients(cbpp_ref):
    means = ms.marginal_means(cbpp_ref, "period", scale="link")
    ref = frame(CBPP["emm_link"])
    assert list(means["period"].astype(str)) == list(ref["period"])
    _check(means, ref, "emmean", "asymp.LCL", "asymp.UCL", 1e-9)


def test_cbpp_response_scale_means_match_emmeans_type_response(cbpp_ref):
    """Delta-method SE; the interval is the back-transformed link-scale interval."""
    means = ms.marginal_means(cbpp_ref, "period")
    ref = frame(CBPP["emm_response"])
    _check(means, ref, "prob", "asymp.LCL", "asymp.UCL", 1e-9)
    assert np.all((means["ci_lower"] > 0) & (means["ci_upper"] < 1))


@pytest.mark.parametrize("weights", ["equal", "proportional", "outer", "cells"])
def test_lmm_grid_weights_match_emmeans_linfct(lmm_ref, weights):
    means = ms.marginal_means(lmm_ref, "trt", weights=weights)
    expected = linfct(LMM["df20"][f"linfct_{weights}"], list(lmm_ref.params.index))
    assert_allclose(means.means_state.L, expected, atol=1e-12)


def test_lmm_weightings_differ_on_unbalanced_cells(lmm_ref):
    """Equal, proportional and cells weights give three different means here; outer equals
    proportional because site and sex enter this model additively (same margins)."""
    est = {
        w: ms.marginal_means(lmm_ref, "trt", weights=w)["estimate"].to_numpy()
        for w in ("equal", "proportional", "outer", "cells")
    }
    for a, b in (("equal", "proportional"), ("equal", "cells"), ("proportional", "cells")):
        assert np.max(np.abs(est[a] - est[b])) > 1e-2, (a, b)
    assert_allclose(est["outer"], est["proportional"], rtol=1e-12)


@pytest.mark.parametrize("weights", ["proportional", "outer"])
def test_outer_and_proportional_weights_differ_with_interacting_factors(weights):
    """``y ~ trt + site * sex + x``: outer (product of margins) ≠ proportional (joint)."""
    block = LMM["interaction"]
    fit = ms.fit_lmm(block["formula"], lmm_data())
    names = [r_name(n) for n in fit.params.index]  # our own β and V, a constant df
    beta = dict(zip(names, fit.params, strict=True))
    view = WithReference(fit, beta, np.asarray(fit.vcov).tolist(), names, 20.0)
    L = ms.marginal_means(view, "trt", weights=weights).means_state.L
    assert_allclose(L, linfct(block[f"linfct_{weights}"], list(fit.params.index)), atol=1e-12)
    other = "outer" if weights == "proportional" else "proportional"
    assert np.max(np.abs(L - linfct(block[f"linfct_{other}"], list(fit.params.index)))) > 1e-3


def test_lmm_grid_by_site_matches_emmeans_linfct(lmm_ref):
    means = ms.marginal_means(lmm_ref, "trt", by="site")
    assert list(means["trt"].astype(str)) == ["P", "A", "B"] * 2
    assert list(means["site"].astype(str)) == ["north"] * 3 + ["south"] * 3
    expected = linfct(LMM["df20"]["linfct_by_site"], list(lmm_ref.params.index))
    assert_allclose(means.means_state.L, expected, atol=1e-12)


def test_lmm_means_with_constant_df_match_emmeans(lmm_ref):
    means = ms.marginal_means(lmm_ref, "trt", level=0.95)
    _check(means, frame(LMM["df20"]["emm_equal"]), "emmean", "lower.CL", "upper.CL", 1e-9)


# ------------------------------------------------------------------ our fits end to end
def test_cbpp_fit_glmm_means_match_emmeans_on_glmmTMB(cbpp_fit):
    link = ms.marginal_means(cbpp_fit, "period", scale="link")
    _check(link, frame(CBPP["emm_link"]), "emmean", "asymp.LCL", "asymp.UCL", 1e-5, 1e-4)
    resp = ms.marginal_means(cbpp_fit, "period")
    _check(resp, frame(CBPP["emm_response"]), "prob", "asymp.LCL", "asymp.UCL", 1e-5, 1e-4)


@pytest.mark.parametrize("weights", ["equal", "proportional", "outer", "cells"])
def test_lmm_fit_lmm_means_and_ses_match_emmeans_on_lmer(lmm_fit, weights):
    view = WithReference(
        lmm_fit, LMM["fixef"], LMM["satterthwaite"]["vcov"], LMM["fixef_names"], 20.0
    )
    # our β and V, the reference object's df (df need MixedResults.df_for)
    view.params = lmm_fit.params
    view.vcov = lmm_fit.vcov
    means = ms.marginal_means(view, "trt", weights=weights)
    ref = frame(LMM["satterthwaite"][f"emm_{weights}"])
    assert_allclose(means["estimate"], ref["emmean"], rtol=1e-5)
    assert_allclose(means["std_error"], ref["SE"], rtol=1e-5)


# ------------------------------------------------------------------ table behaviour
def test_means_table_is_a_dataframe_that_keeps_its_state_on_row_subsets(cbpp_ref):
    means = ms.marginal_means(cbpp_ref, "period")
    assert isinstance(means, pd.DataFrame)
    assert isinstance(means, MarginalMeans)
    subset = means[means["period"] != "3"]
    assert isinstance(subset, MarginalMeans)
    assert subset.means_state is means.means_state
    assert list(subset.columns) == ["period", *COLUMNS]
    assert not means.means_state.L.flags.writeable
    plain = pd.DataFrame(means)
    assert plain["estimate"].tolist() == means["estimate"].tolist()


def test_at_sets_the_covariate_and_restricts_factor_levels(lmm_ref):
    at45 = ms.marginal_means(lmm_ref, "trt", at={"x": 45})
    mean_x = ms.marginal_means(lmm_ref, "trt")
    slope = lmm_ref.params["x"]
    x_bar = lmm_ref.model_frame["x"].mean()
    assert_allclose(at45["estimate"] - mean_x["estimate"], slope * (45 - x_bar), rtol=1e-12)
    two = ms.marginal_means(lmm_ref, "trt", at={"trt": ["P", "B"]})
    assert list(two["trt"].astype(str)) == ["P", "B"]
    assert_allclose(two["estimate"], mean_x["estimate"].iloc[[0, 2]], rtol=1e-12)


def test_two_specs_give_every_combination_first_spec_fastest(lmm_ref):
    means = ms.marginal_means(lmm_ref, ["trt", "sex"])
    assert list(means["trt"].astype(str)) == ["P", "A", "B"] * 2
    assert list(means["sex"].astype(str)) == ["F"] * 3 + ["M"] * 3


# ------------------------------------------------------------------ errors
def test_unknown_spec_names_the_model_variables(lmm_ref):
    with pytest.raises(ModelSpecError, match=r"`trtt` is not a variable .*Did you mean"):
        ms.marginal_means(lmm_ref, "trtt")


def test_covariate_as_spec_is_refused_with_advice(lmm_ref):
    with pytest.raises(ModelSpecError, match=r"`x` is a numeric covariate.*at="):
        ms.marginal_means(lmm_ref, "x")


def test_bad_weights_scale_level_and_at_are_refused(lmm_ref):
    with pytest.raises(ModelSpecError, match="weights must be one of"):
        ms.marginal_means(lmm_ref, "trt", weights="flat")
    with pytest.raises(ModelSpecError, match="scale must be"):
        ms.marginal_means(lmm_ref, "trt", scale="odds")
    with pytest.raises(ModelSpecError, match="level must be between"):
        ms.marginal_means(lmm_ref, "trt", level=95)
    with pytest.raises(ModelSpecError, match=r"`at` names 'age'"):
        ms.marginal_means(lmm_ref, "trt", at={"age": 40})
    with pytest.raises(ModelSpecError, match=r"level\(s\) \['C'\] for `trt`"):
        ms.marginal_means(lmm_ref, "site", at={"trt": ["C"]})
    with pytest.raises(ModelSpecError, match="specs and by name a variable twice"):
        ms.marginal_means(lmm_ref, "trt", by="trt")


def test_results_without_the_interface_are_refused():
    with pytest.raises(ModelSpecError, match="lacks params, vcov"):
        ms.marginal_means(object(), "trt")


def test_lmm_without_df_for_gives_single_coefficient_df_and_refuses_combinations():
    df_for = _per_coefficient_df(np.array([30.0, 12.5, 40.0]), "gaussian")
    assert_allclose(df_for(np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])), [12.5, 30.0])
    with pytest.raises(ModelSpecError, match="no `df_for` method"):
        df_for(np.array([[1.0, 1.0, 0.0]]))
    glmm = _per_coefficient_df(np.full(3, np.inf), "binomial")
    assert np.all(np.isinf(glmm(np.ones((2, 3)))))


def test_offset_enters_at_its_variables_mean_as_in_emmeans():
    """``offset(np.log(expo))``: emmeans' reference grid holds ``expo`` at its mean, so the
    link-scale mean is ``L β + log(mean(expo))``; contrasts are rate ratios ("A / P")."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 4)
    arm = np.where(g % 2 == 0, "P", "A")
    expo = rng.uniform(1, 3, size=g.size)
    mu = np.exp(0.5 + 0.4 * (arm == "A") + rng.normal(0, 0.8, 30)[g]) * expo
    data = pd.DataFrame(
        {
            "g": g.astype(str),
            "arm": pd.Categorical(arm, categories=["P", "A"]),
            "expo": expo,
            "y": rng.poisson(mu),
        }
    )
    fit = ms.fit_glmm("y ~ arm + offset(np.log(expo)) + (1 | g)", data, family="poisson")
    means = ms.marginal_means(fit, "arm", scale="link")
    beta = fit.params.to_numpy()
    expected = np.array([beta[0], beta[0] + beta[1]]) + np.log(expo.mean())
    assert_allclose(means["estimate"], expected, rtol=1e-12)
    ratio = ms.contrasts(ms.marginal_means(fit, "arm"), adjust="none")
    assert list(ratio["contrast"]) == ["A / P"]
    assert_allclose(ratio["estimate"], np.exp(beta[1]), rtol=1e-12)
