"""marginal_means / contrasts of fit_lmm results with df, against emmeans + lmerTest/pbkrtest.

Needs ``MixedResults.df_for`` (Satterthwaite / Kenward–Roger df of any L, added with
``fit_lmm(df="kenward-roger")``). Reference: ``reference/ref_emmeans.R`` (block ``lmm``)::

    m <- lmer(y ~ trt * site + sex + x + (1 | subj), data = emm_lmm.csv, REML = TRUE)  # tight
    emmeans(m, ~ trt, lmer.df = "satterthwaite")      # and "kenward-roger" (vcovAdj, KR df)
    emmeans(m, ~ trt | site, ...); contrast(., "trt.vs.ctrl"); pairs(., reverse = TRUE)

Tolerances: LS means, contrasts, SEs and intervals 1e-5 relative (shared/reference/README.md);
df 1e-3 relative (Satterthwaite, as the model's own df) and 1e-4 (KR); unadjusted and Holm p
1e-4 relative; Dunnett (mvt) p 1e-3 absolute and critical values 5e-3 absolute (emmeans calls
mvtnorm at its default accuracy, 1e-3 in probability, finds the quantile with uniroot's
tolerance 1.2e-4 and rounds df to an integer; measured: 2.4e-3 at worst); Tukey p 1e-4
relative. Our own Dunnett accuracy is checked against precise references in test_contrasts.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms

REF_DIR = Path(__file__).parent / "reference"
REF = json.loads((REF_DIR / "ref_emmeans.json").read_text())["lmm"]
DF_RTOL = {"satterthwaite": 1e-3, "kenward-roger": 1e-4}


def lmm_data() -> pd.DataFrame:
    data = pd.read_csv(REF_DIR / "emm_lmm.csv")
    data["trt"] = pd.Categorical(data["trt"], categories=["P", "A", "B"])
    data["site"] = pd.Categorical(data["site"], categories=["north", "south"])
    data["sex"] = pd.Categorical(data["sex"], categories=["F", "M"])
    return data


@pytest.fixture(scope="module", params=["satterthwaite", "kenward-roger"])
def fitted(request):
    fit = ms.fit_lmm(REF["formula"], lmm_data(), df=request.param)
    block = REF["satterthwaite" if request.param == "satterthwaite" else "kenward_roger"]
    return request.param, fit, block


def _check_means(means, ref: list[dict], df_rtol: float) -> None:
    r = pd.DataFrame(ref)
    assert_allclose(means["estimate"], r["emmean"], rtol=1e-5)
    assert_allclose(means["std_error"], r["SE"], rtol=1e-5)
    assert_allclose(means["df"], r["df"], rtol=df_rtol)
    assert_allclose(means["ci_lower"], r["lower.CL"], rtol=1e-5)
    assert_allclose(means["ci_upper"], r["upper.CL"], rtol=1e-5)


@pytest.mark.parametrize("weights", ["equal", "proportional", "outer", "cells"])
def test_lmm_lsmeans_with_df_match_emmeans(fitted, weights):
    method, fit, block = fitted
    means = ms.marginal_means(fit, "trt", weights=weights)
    _check_means(means, block[f"emm_{weights}"], DF_RTOL[method])


def test_lmm_lsmeans_by_site_at_x_and_two_specs_match_emmeans(fitted):
    method, fit, block = fitted
    _check_means(ms.marginal_means(fit, "trt", by="site"), block["emm_by_site"], DF_RTOL[method])
    _check_means(ms.marginal_means(fit, "trt", at={"x": 45}), block["emm_at_x"], DF_RTOL[method])
    _check_means(ms.marginal_means(fit, ["trt", "sex"]), block["emm_two_specs"], DF_RTOL[method])


@pytest.mark.parametrize(
    ("key", "method", "adjust", "by"),
    [
        ("trt_vs_ctrl_mvt", "trt.vs.ctrl", "dunnett", None),
        ("trt_vs_ctrl_none", "trt.vs.ctrl", "none", None),
        ("trt_vs_ctrl_by_site_mvt", "trt.vs.ctrl", "dunnett", "site"),
        ("trt_vs_ctrl_by_site_holm", "trt.vs.ctrl", "holm", "site"),
        ("pairwise_tukey", "pairwise", "tukey", None),
        ("pairwise_bonferroni", "pairwise", "bonferroni", None),
    ],
)
def test_lmm_contrasts_with_df_match_emmeans(fitted, key, method, adjust, by):
    df_method, fit, block = fitted
    con = ms.contrasts(ms.marginal_means(fit, "trt", by=by), method, adjust=adjust)
    r = pd.DataFrame(block[key])
    assert list(con["contrast"]) == list(r["contrast"])
    assert_allclose(con["estimate"], r["estimate"], rtol=1e-5)
    assert_allclose(con["std_error"], r["SE"], rtol=1e-5)
    assert_allclose(con["df"], r["df"], rtol=DF_RTOL[df_method])
    assert_allclose(con["statistic"], r["t.ratio"], rtol=1e-5)
    if adjust == "dunnett":
        assert_allclose(con["p_value"], r["p.value"], atol=1e-3)
        crit = (con["ci_upper"] - con["estimate"]) / con["std_error"]
        crit_r = (r["upper.CL"] - r["estimate"]) / r["SE"]
        assert_allclose(crit, crit_r, atol=5e-3)
        assert_allclose(con["ci_lower"], con["estimate"] - crit * con["std_error"], rtol=1e-12)
    else:
        assert_allclose(con["p_value"], r["p.value"], rtol=1e-4)
        assert_allclose(con["ci_lower"], r["lower.CL"], rtol=1e-5)
        assert_allclose(con["ci_upper"], r["upper.CL"], rtol=1e-5)


def test_lmm_custom_contrast_matches_emmeans(fitted):
    df_method, fit, block = fitted
    con = ms.contrasts(
        ms.marginal_means(fit, "trt"), {"active_vs_p": [-1, 0.5, 0.5]}, adjust="none"
    )
    r = pd.DataFrame(block["custom_none"])
    assert list(con["contrast"]) == ["active_vs_p"]
    assert_allclose(con["estimate"], r["estimate"], rtol=1e-5)
    assert_allclose(con["std_error"], r["SE"], rtol=1e-5)
    assert_allclose(con["df"], r["df"], rtol=DF_RTOL[df_method])
    assert_allclose(con["p_value"], r["p.value"], rtol=1e-4)
    assert np.all(np.isfinite(con["df"]))
