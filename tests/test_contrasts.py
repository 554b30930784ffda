"""contrasts against R's emmeans 1.8.4 (``reference/ref_emmeans.R`` → ``ref_emmeans.json``).

With R's β and V (``WithReference``, see marginal_reference.py) so that only the contrast and
adjustment machinery is compared: estimates, SEs, statistics, unadjusted / Holm / Bonferroni
p and their intervals 1e-9 relative; Tukey p 1e-7 relative (ptukey vs scipy's studentized
range) and intervals 1e-5 (R's qtukey stops its secant search at 1e-4); Dunnett (multivariate
t / normal, ``adjust = "mvt"`` in emmeans) p-values within 5e-5 absolute of mvtnorm run to
1e-6 (``*_precise``; our lattice rule's error is ~1e-5 for non-singular and ~3e-5 for the
singular pairwise correlations) and critical values within 1e-4 relative (mvtnorm's qmvt
root-finding tolerance is 1.2e-4); within 1.5e-3 absolute of emmeans' own printout (mvtnorm's
default accuracy is 1e-3).
cbpp: df = ∞ (z tests); LMM: emmeans' ``df = 20`` for every mean and contrast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from marginal_reference import CBPP_FORMULA, REF, WithReference, cbpp_data, frame, lmm_data
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ModelSpecError

CBPP = REF["cbpp"]
LMM = REF["lmm"]
OUT = ["contrast", "estimate", "std_error", "df", "statistic", "p_value", "ci_lower", "ci_upper"]


@pytest.fixture(scope="module")
def cbpp_means():
    fit = ms.fit_glmm(CBPP_FORMULA, cbpp_data(), family="binomial")
    ref = WithReference(fit, CBPP["fixef"], CBPP["vcov"], CBPP["vcov_names"], np.inf)
    return ms.marginal_means(ref, "period", scale="link"), ms.marginal_means(ref, "period")


@pytest.fixture(scope="module")
def lmm_ref():
    fit = ms.fit_lmm("y ~ trt * site + sex + x + (1 | subj)", lmm_data())
    return WithReference(fit, LMM["fixef"], LMM["satterthwaite"]["vcov"], LMM["fixef_names"], 20.0)


def _labels(ref: pd.DataFrame) -> list[str]:
    """emmeans prefixes numeric-looking levels with the factor name: period2 - period1."""
    return [c.replace("period", "") for c in ref["contrast"]]


def _check(con, ref, *, p_atol=None, ci_atol=None, rtol=1e-9, ci_rtol=None, z=False):
    lo, hi, stat = (
        ("asymp.LCL", "asymp.UCL", "z.ratio") if z else ("lower.CL", "upper.CL", "t.ratio")
    )
    assert list(con["contrast"]) == _labels(ref)
    assert_allclose(con["estimate"], ref["estimate"], rtol=1e-9)
    assert_allclose(con["std_error"], ref["SE"], rtol=1e-9)
    assert_allclose(con["df"], ref["df"], rtol=1e-12)
    assert_allclose(con["statistic"], ref[stat], rtol=1e-9)
    if p_atol is None:
        assert_allclose(con["p_value"], ref["p.value"], rtol=rtol)
        assert_allclose(con["ci_lower"], ref[lo], rtol=ci_rtol or rtol)
        assert_allclose(con["ci_upper"], ref[hi], rtol=ci_rtol or rtol)
    else:
        assert_allclose(con["p_value"], ref["p.value"], atol=p_atol)
        assert_allclose(con["ci_lower"], ref[lo], atol=ci_atol)
        assert_allclose(con["ci_upper"], ref[hi], atol=ci_atol)


@pytest.mark.parametrize("adjust", ["none", "holm", "bonferroni"])
def test_cbpp_trt_vs_ctrl_simple_adjustments_match_emmeans(cbpp_means, adjust):
    con = ms.contrasts(cbpp_means[0], "trt.vs.ctrl", adjust=adjust)
    assert list(con.columns) == OUT
    _check(con, frame(CBPP[f"trt_vs_ctrl_{adjust}"]), z=True)


def test_cbpp_trt_vs_ctrl_dunnett_matches_mvtnorm(cbpp_means):
    con = ms.contrasts(cbpp_means[0], "trt.vs.ctrl", adjust="dunnett")
    precise = CBPP["trt_vs_ctrl_precise"]
    assert_allclose(con["p_value"], precise["p_value"], atol=5e-5)
    se = con["std_error"].to_numpy()
    assert_allclose(con["ci_upper"] - con["estimate"], precise["crit_95"] * se, rtol=1e-4)
    _check(con, frame(CBPP["trt_vs_ctrl_mvt"]), p_atol=1.5e-3, ci_atol=1.5e-3, z=True)


def test_cbpp_pairwise_tukey_and_dunnett_match_emmeans(cbpp_means):
    tukey = ms.contrasts(cbpp_means[0], "pairwise", adjust="tukey")
    _check(tukey, frame(CBPP["pairwise_tukey"]), rtol=1e-7, ci_rtol=1e-5, z=True)
    mvt = ms.contrasts(cbpp_means[0], "pairwise", adjust="dunnett")
    precise = CBPP["pairwise_precise"]
    assert_allclose(mvt["p_value"], precise["p_value"], atol=5e-5)
    _check(mvt, frame(CBPP["pairwise_mvt"]), p_atol=1.5e-3, ci_atol=1.5e-3, z=True)


def test_cbpp_response_scale_contrasts_are_odds_ratios_as_emmeans(cbpp_means):
    con = ms.contrasts(cbpp_means[1], "trt.vs.ctrl", adjust="none")
    ref = frame(CBPP["trt_vs_ctrl_response_none"])
    assert list(con["contrast"]) == _labels(ref)
    assert list(con["contrast"]) == ["2 / 1", "3 / 1", "4 / 1"]
    assert_allclose(con["estimate"], ref["odds.ratio"], rtol=1e-9)
    assert_allclose(con["std_error"], ref["SE"], rtol=1e-9)
    assert_allclose(con["statistic"], ref["z.ratio"], rtol=1e-9)
    assert_allclose(con["p_value"], ref["p.value"], rtol=1e-9)
    assert_allclose(con["ci_lower"], ref["asymp.LCL"], rtol=1e-9)
    assert_allclose(con["ci_upper"], ref["asymp.UCL"], rtol=1e-9)


@pytest.mark.parametrize("adjust", ["bonferroni", "holm"])
def test_lmm_trt_vs_ctrl_with_df20_matches_emmeans(lmm_ref, adjust):
    con = ms.contrasts(ms.marginal_means(lmm_ref, "trt"), adjust=adjust)
    _check(con, frame(LMM["df20"][f"trt_vs_ctrl_{adjust}"]))


def test_lmm_dunnett_with_df20_matches_mvtnorm(lmm_ref):
    con = ms.contrasts(ms.marginal_means(lmm_ref, "trt"), adjust="dunnett")
    precise = LMM["df20"]["trt_vs_ctrl_precise"]
    assert_allclose(con["p_value"], precise["p_value"], atol=5e-5)
    assert_allclose(
        con["ci_upper"] - con["estimate"], precise["crit_95"] * con["std_error"], rtol=1e-4
    )
    _check(con, frame(LMM["df20"]["trt_vs_ctrl_mvt"]), p_atol=1.5e-3, ci_atol=1.5e-3)


def test_lmm_dunnett_by_site_adjusts_within_each_site(lmm_ref):
    means = ms.marginal_means(lmm_ref, "trt", by="site")
    con = ms.contrasts(means, adjust="dunnett")
    ref = frame(LMM["df20"]["trt_vs_ctrl_by_site_mvt"])
    assert list(con["site"].astype(str)) == list(ref["site"])
    _check(con, ref, p_atol=1.5e-3, ci_atol=1.5e-3)
    # each site's family alone gives the same numbers
    north = ms.contrasts(means[means["site"] == "north"], adjust="dunnett")
    assert_allclose(north["p_value"], con["p_value"][:2], rtol=1e-12)


def test_lmm_pairwise_tukey_and_dunnett_with_df20_match_emmeans(lmm_ref):
    means = ms.marginal_means(lmm_ref, "trt")
    tukey = ms.contrasts(means, "pairwise", adjust="tukey")
    assert list(tukey["contrast"]) == ["A - P", "B - P", "B - A"]
    _check(tukey, frame(LMM["df20"]["pairwise_tukey"]), rtol=1e-7, ci_rtol=1e-5)
    mvt = ms.contrasts(means, "pairwise", adjust="dunnett")
    assert_allclose(mvt["p_value"], LMM["df20"]["pairwise_precise"]["p_value"], atol=5e-5)
    _check(mvt, frame(LMM["df20"]["pairwise_mvt"]), p_atol=1.5e-3, ci_atol=1.5e-3)


def test_ref_custom_weights_and_subset(lmm_ref):
    means = ms.marginal_means(lmm_ref, "trt")
    to_b = ms.contrasts(means, ref="B", adjust="none")
    assert list(to_b["contrast"]) == ["P - B", "A - B"]
    custom = ms.contrasts(means, {"active_vs_p": [-1, 0.5, 0.5]}, adjust="none")
    est = means["estimate"].to_numpy()
    assert_allclose(custom["estimate"], -est[0] + 0.5 * est[1] + 0.5 * est[2], rtol=1e-12)
    assert list(custom["contrast"]) == ["active_vs_p"]


def test_contrast_errors_say_what_to_do(lmm_ref, cbpp_means):
    means = ms.marginal_means(lmm_ref, "trt")
    with pytest.raises(ModelSpecError, match="has lost them"):
        ms.contrasts(pd.concat([means]), adjust="none")
    with pytest.raises(ModelSpecError, match="pairwise comparisons only"):
        ms.contrasts(means, "trt.vs.ctrl", adjust="tukey")
    with pytest.raises(
        ModelSpecError, match=r"ref='C' is not one of the levels compared \(P, A, B\)"
    ):
        ms.contrasts(means, ref="C")
    with pytest.raises(ModelSpecError, match="has 2 weights but there are 3 means"):
        ms.contrasts(means, {"bad": [1, -1]})
    with pytest.raises(ModelSpecError, match="adjust must be one of"):
        ms.contrasts(means, adjust="scheffe")
    with pytest.raises(ModelSpecError, match="method must be"):
        ms.contrasts(means, "consec")


def test_scalar_df_from_the_model_is_one_df_per_contrast(lmm_ref):
    """A results object whose df_for returns one number (e.g. infinite for every L) still
    gets a family of contrasts, adjusted together."""

    class ScalarDf(WithReference):
        def df_for(self, L):
            return 20.0

    scalar = ScalarDf(
        lmm_ref.fit, LMM["fixef"], LMM["satterthwaite"]["vcov"], LMM["fixef_names"], 0
    )
    means = ms.marginal_means(scalar, "trt")
    assert_allclose(means["df"], 20.0)
    con = ms.contrasts(means, adjust="bonferroni")
    _check(con, frame(LMM["df20"]["trt_vs_ctrl_bonferroni"]))


def test_ordinal_results_without_thresholds_are_refused_with_the_reason(lmm_ref):
    ordinal = WithReference(
        lmm_ref.fit, LMM["fixef"], LMM["satterthwaite"]["vcov"], LMM["fixef_names"], np.inf
    )
    ordinal.family = "ordinal"
    with pytest.raises(ModelSpecError, match=r"cumulative link model need fit_clmm results"):
        ms.marginal_means(ordinal, "trt")
