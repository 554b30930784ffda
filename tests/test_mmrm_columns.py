"""How fit_mmrm reads its data columns (mesostats.mixed.mmrm.columns): text columns of any
pandas storage, object columns and categoricals code to the same factor (sorted levels, or the
categories' order), rows with a missing value are set aside with the table and warning of
mesostats.mixed.design, and the fit does not depend on the coding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mmrm_data import FEV_FIXED, fev_data, fit_fev
from numpy.testing import assert_allclose

from mesostats.exceptions import ExclusionWarning
from mesostats.mixed.design import _set_aside_missing
from mesostats.mixed.mmrm import fit_mmrm
from mesostats.mixed.mmrm.columns import ColumnCoder

US = f"{FEV_FIXED} + us(AVISIT | USUBJID)"


@pytest.mark.parametrize(
    "dtype", ["str", "object", pd.StringDtype("python"), pd.StringDtype("pyarrow")]
)
def test_text_columns_code_as_pandas_factorize_sorts_them(dtype):
    s = pd.Series(["b", "a", None, "B", "é", "a", "ab"], dtype=dtype)
    codes, levels = ColumnCoder(pd.DataFrame({"x": s})).factor("x")
    ref_codes, ref_levels = pd.factorize(s, sort=True)
    assert np.array_equal(codes, ref_codes)
    assert list(levels) == list(ref_levels) == ["B", "a", "ab", "b", "é"]
    assert ColumnCoder(pd.DataFrame({"x": s})).missing("x").tolist() == [
        False, False, True, False, False, False, False,
    ]  # fmt: skip


def test_text_object_and_categorical_columns_give_the_same_fit():
    cat = fit_fev(US, df="satterthwaite")
    data = fev_data()
    for col in ("USUBJID", "AVISIT", "ARMCD", "RACE"):  # SEX keeps R's Male < Female
        data[col] = data[col].astype(str)
    text = fit_fev(US, data, df="satterthwaite")
    data_obj = data.astype({c: object for c in ("USUBJID", "AVISIT", "ARMCD", "RACE")})
    obj = fit_fev(US, data_obj, df="satterthwaite")
    for other in (text, obj):
        assert other.problem.fixed_names == cat.problem.fixed_names
        assert_allclose(other.loglik, cat.loglik, rtol=1e-13)
        assert_allclose(other.fixed_effects.to_numpy(), cat.fixed_effects.to_numpy(), rtol=1e-9)
    # subjects in sorted text order (PT1, PT10, ...) rather than the categorical's order
    assert list(text.problem.subject_ids[:3]) == sorted(data["USUBJID"].unique())[:3]


def test_set_aside_rows_are_listed_and_warned_as_the_design_helper_does():
    data = fev_data()
    data.loc[data.index[[1, 5, 9]], "RACE"] = np.nan  # one of them also lacks FEV1
    used = ["FEV1", "RACE", "SEX", "ARMCD", "AVISIT", "USUBJID"]
    with pytest.warns(ExclusionWarning) as caught:
        fit = fit_mmrm(US, data, df="residual")
    with pytest.warns(ExclusionWarning) as expected_warning:
        _, expected = _set_aside_missing(data[used], used)
    assert [str(w.message) for w in caught] == [str(w.message) for w in expected_warning]
    assert "RACE (3)" in str(caught[0].message)
    pd.testing.assert_frame_equal(fit.excluded_rows, expected)
    assert fit.nobs == len(data) - len(expected)
