"""fit_mmrm refuses bad input with a ModelSpecError that says what is wrong and what to do."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from mmrm_data import FEV_FIXED, fev_data

from mesostats.exceptions import ExclusionWarning, ModelSpecError
from mesostats.mixed.mmrm import fit_mmrm

US = f"{FEV_FIXED} + us(AVISIT | USUBJID)"


def _fit(formula: str, data: pd.DataFrame | None = None, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)
        return fit_mmrm(formula, fev_data() if data is None else data, **kw)  # type: ignore[arg-type]


def test_two_rows_of_one_subject_at_one_visit():
    data = fev_data().dropna(subset=["FEV1"])
    data = pd.concat([data, data.iloc[[0]]])
    with pytest.raises(ModelSpecError, match=r"Subject 'PT1' has 2 rows at AVISIT = 'VIS2'"):
        _fit(US, data, df="residual")


def test_visit_factor_with_one_level():
    data = fev_data()
    data = data[data["AVISIT"] == "VIS3"]
    with pytest.raises(ModelSpecError, match=r"visit factor `AVISIT` has only 1 level \(VIS3\)"):
        _fit("FEV1 ~ ARMCD + us(AVISIT | USUBJID)", data, df="residual")


def test_spatial_time_must_be_numeric():
    with pytest.raises(ModelSpecError, match=r"`sp_exp` needs a numeric time, but `AVISIT`"):
        _fit("FEV1 ~ ARMCD + sp_exp(AVISIT | USUBJID)", df="residual")


def test_group_changing_within_a_subject():
    data = fev_data()
    data["ARM2"] = np.where(np.arange(len(data)) % 2 == 0, "A", "B")
    with pytest.raises(ModelSpecError, match=r"group `ARM2` changes within subject 'PT\d+'"):
        _fit("FEV1 ~ ARMCD + us(AVISIT | ARM2 / USUBJID)", data, df="residual")


def test_kenward_roger_needs_reml():
    with pytest.raises(ModelSpecError, match=r"Kenward–Roger\) needs a REML fit"):
        _fit(US, reml=False, df="kenward-roger")


def test_unknown_structure_suggests_the_close_match():
    with pytest.raises(ModelSpecError, match=r"Unknown covariance structure `ar1hh`.*`ar1h`"):
        _fit(f"{FEV_FIXED} + ar1hh(AVISIT | USUBJID)", df="residual")


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        (FEV_FIXED, r"has no covariance term"),
        (f"{US} + ar1(AVISIT | USUBJID)", r"has 2 covariance terms"),
        (f"{FEV_FIXED} + (1 | USUBJID)", r"An MMRM has no random effects"),
        (f"{FEV_FIXED} + us(AVISIT | ARMCD / SEX / USUBJID)", r"more than one `/`"),
        (f"{FEV_FIXED} + us(AVISITT | USUBJID)", r"`AVISITT`.*Did you mean `AVISIT`"),
    ],
)
def test_malformed_formulas(formula, message):
    with pytest.raises(ModelSpecError, match=message):
        _fit(formula, df="residual")


def test_unknown_df_and_vcov_methods():
    with pytest.raises(ModelSpecError, match=r"df must be one of .*'satterthwaite'"):
        _fit(US, df="satterwaite")
    with pytest.raises(ModelSpecError, match=r"vcov must be None .*'empirical'"):
        _fit(US, df="residual", vcov="sandwich")


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("WEIGHTS", r"weights column `WEIGHTS` is not in the data.*`WEIGHT`"),
        (np.ones(3), r"weights has 3 values but the data has 800 rows"),
        (np.where(np.arange(800) == 5, -1.0, 1.0), r"positive and finite; 1 are not \(e\.g\. -1"),
    ],
)
def test_bad_weights(weights, message):
    with pytest.raises(ModelSpecError, match=message):
        _fit(US, df="residual", weights=weights)


def test_data_must_be_a_dataframe():
    with pytest.raises(ModelSpecError, match="data must be a pandas DataFrame"):
        fit_mmrm(US, fev_data().to_dict(), df="residual")  # type: ignore[arg-type]
