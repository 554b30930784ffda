"""fit_lmm(df="kenward-roger") and MixedResults.df_for against pbkrtest 0.5.2.

References: /work/shared/reference/ref_sleepstudy.json (balanced sleepstudy, lmerTest's
``summary(fit, ddf = "Kenward-Roger")``) and tests/reference/ref_lmm_kenward_roger.json, written
by tests/reference/ref_lmm_kenward_roger.R (R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest
0.5.2; optimiser run to 1e-14): unbalanced sleepstudy (KR adjustment ≠ 0), a contrast's df by
``get_Lb_ddf`` (KR) and lmerTest's ``contest1D`` (Satterthwaite), nested Pastes, crossed
Penicillin.
Tolerances (relative): SEs 1e-4 (reference README), df 1e-4 (README: 1e-3 for Satterthwaite).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ModelSpecError

SHARED = Path("/work/shared/reference")
HERE = Path(__file__).parent / "reference"
SE_RTOL = 1e-4
DF_RTOL = 1e-4


def _data(name: str) -> pd.DataFrame:
    local = HERE / name
    return pd.read_csv(local if local.exists() else SHARED / name)


def _unbalanced_sleepstudy() -> pd.DataFrame:
    """The rows ref_lmm_kenward_roger.R keeps (subjects numbered 1..18 in sorted order)."""
    sleep = _data("sleepstudy.csv")
    sid = pd.factorize(sleep["Subject"], sort=True)[0] + 1
    drop = ((sid % 3 == 0) & (sleep["Days"] >= 7)) | ((sid % 4 == 1) & (sleep["Days"] <= 1))
    out = sleep[~drop].copy()
    out["Days2"] = (out["Days"] - 4.5) ** 2
    return out


KR_REF = json.loads((HERE / "ref_lmm_kenward_roger.json").read_text())
CASES = {
    "sleepstudy_unbalanced": ("Reaction ~ Days + (Days | Subject)", _unbalanced_sleepstudy),
    "sleepstudy_unbalanced_quadratic": (
        "Reaction ~ Days + Days2 + (1 | Subject)",
        _unbalanced_sleepstudy,
    ),
    "pastes": ("strength ~ 1 + (1 | batch/cask)", lambda: _data("pastes.csv")),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: _data("penicillin.csv")),
}


def _values(x: dict[str, float] | list[float] | float) -> np.ndarray:
    if isinstance(x, dict):
        return np.array(list(x.values()), dtype=float)
    return np.atleast_1d(np.asarray(x, dtype=float))


@pytest.fixture(scope="module")
def sleep_kr() -> ms.MixedResults:
    return ms.fit_lmm(
        "Reaction ~ Days + (Days | Subject)", _data("sleepstudy.csv"), df="kenward-roger"
    )


def test_sleepstudy_kenward_roger_matches_pbkrtest(sleep_kr: ms.MixedResults) -> None:
    ref = json.loads((SHARED / "ref_sleepstudy.json").read_text())["REML"]["kenward_roger"]
    fe = sleep_kr.fixed_effects
    assert_allclose(fe["std_error"], _values(ref["se"]), rtol=SE_RTOL)
    assert_allclose(fe["df"], _values(ref["df"]), rtol=DF_RTOL)
    assert_allclose(fe["p_value"], _values(ref["p"]), rtol=1e-3)


@pytest.mark.parametrize("case", list(CASES))
def test_kenward_roger_matches_pbkrtest(case: str) -> None:
    formula, load = CASES[case]
    ref = KR_REF[case]
    fit = ms.fit_lmm(formula, load(), df="kenward-roger")
    fe = fit.fixed_effects
    assert fit.nobs == ref["n"]
    assert_allclose(fe["estimate"], _values(ref["fixef"]), rtol=1e-6)
    assert_allclose(fe["std_error"], _values(ref["se"]), rtol=SE_RTOL)
    assert_allclose(fe["df"], _values(ref["df"]), rtol=DF_RTOL)
    assert_allclose(fit.vcov.to_numpy(), np.array(ref["vcov_adjusted"]), rtol=2 * SE_RTOL)
    # the adjustment is not a no-op here: KR SEs exceed the model-based ones
    unadjusted = ms.fit_lmm(formula, load()).fixed_effects["std_error"].to_numpy()
    assert_allclose(unadjusted, _values(ref["se_unadjusted"]), rtol=SE_RTOL)
    if case.startswith("sleepstudy_unbalanced"):
        assert np.all(fe["std_error"].to_numpy() > unadjusted * (1 + 1e-4))
    # df_for reproduces the table's df column
    assert_allclose(fit.df_for(np.eye(len(fe))), fe["df"], rtol=1e-12)


def test_contrast_df_matches_pbkrtest_get_Lb_ddf() -> None:
    ref = KR_REF["sleepstudy_unbalanced"]
    fit = ms.fit_lmm(
        "Reaction ~ Days + (Days | Subject)", _unbalanced_sleepstudy(), df="kenward-roger"
    )
    L = np.array(ref["contrast"], dtype=float)
    assert_allclose(fit.df_for(L), [ref["contrast_df"]], rtol=DF_RTOL)
    assert_allclose(fit.df_for(L[None, :]), [ref["contrast_df"]], rtol=DF_RTOL)


def test_satterthwaite_df_for_matches_lmerTest_contest1D() -> None:
    fit = ms.fit_lmm("Reaction ~ Days + (Days | Subject)", _unbalanced_sleepstudy())
    ref = KR_REF["sleepstudy_unbalanced"]
    L = np.array(ref["contrast"], dtype=float)
    assert_allclose(fit.df_for(L), [ref["contrast_df_satterthwaite"]], rtol=1e-3)
    fe = fit.fixed_effects
    assert_allclose(fit.df_for(np.eye(2)), fe["df"], rtol=1e-10)
    L = np.array([[1.0, 3.0], [2.0, 6.0]])  # the same contrast at two scales
    df = fit.df_for(L)
    assert df.shape == (2,)
    assert_allclose(df[0], df[1], rtol=1e-12)
    assert fe["df"].min() - 1 < df[0] < 200


def test_kenward_roger_with_ml_is_refused() -> None:
    with pytest.raises(ModelSpecError, match=r"REML fits only \(reml=False"):
        ms.fit_lmm(
            "Reaction ~ Days + (Days | Subject)",
            _data("sleepstudy.csv"),
            reml=False,
            df="kenward-roger",
        )


def test_unknown_df_method_is_refused() -> None:
    with pytest.raises(ModelSpecError, match="df must be one of 'satterthwaite', 'kenward-roger'"):
        ms.fit_lmm("Reaction ~ Days + (Days | Subject)", _data("sleepstudy.csv"), df="wald")


def test_df_for_checks_the_number_of_columns(sleep_kr: ms.MixedResults) -> None:
    with pytest.raises(ModelSpecError, match=r"L must have 2 columns .*Intercept, Days.*\(3,\)"):
        sleep_kr.df_for(np.ones(3))


def test_glmm_df_for_is_infinite() -> None:
    cbpp = _data("cbpp.csv")
    cbpp["period"] = cbpp["period"].astype(str)
    fit = ms.fit_glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    out = fit.df_for(np.eye(4)[:2])
    assert out.shape == (2,) and np.all(np.isinf(out))


def test_kenward_roger_refuses_blocks_too_large_to_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crossed factors join all rows into one block; past the memory cap KR says so."""
    from mesostats.mixed.lmm import kenward_roger

    monkeypatch.setattr(kenward_roger, "_MAX_BLOCK_BYTES", 1e5)
    with pytest.raises(ModelSpecError, match=r"connect 144 rows in one block.*'satterthwaite'"):
        ms.fit_lmm(
            "diameter ~ 1 + (1 | plate) + (1 | sample)",
            _data("penicillin.csv"),
            df="kenward-roger",
        )
