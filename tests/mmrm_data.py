"""fev_data and R mmrm's frozen results, for the MMRM tests.

``reference/mmrm/``: ``fev_data.csv`` (the example trial of R's mmrm), ``ref_fev.json``
(written by ``ref_mmrm.R`` with R 4.2.2 and mmrm 0.3.14: one block per structure × method) and
``sas_kr.json`` (SAS PROC MIXED's KR results recorded in mmrm's test suite), and
``ref_fev_more.json`` (``ref_mmrm_more.R``, the same R and mmrm: weighted fits, a grouped ML
fit, conditional predictions), ``ref_fev_spatial.json`` (``ref_mmrm_spatial.R``, the same R and
mmrm: ``sp_exp(VISITN, VISITN2 | USUBJID)`` on two coordinates). Factor levels as
R has them: ``SEX`` Male < Female (not alphabetical), ``ARMCD`` PBO < TRT, ``AVISIT``
VIS1 < … < VIS4, ``RACE`` alphabetical.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from mesostats.exceptions import ExclusionWarning
from mesostats.mixed.mmrm import MMRMResults, fit_mmrm
from mesostats.mixed.mmrm.build import build_problem
from mesostats.mixed.mmrm.problem import MMRMProblem

REFERENCE = Path(__file__).parent / "reference" / "mmrm"
FEV_FIXED = "FEV1 ~ RACE + SEX + ARMCD * AVISIT"
STRUCTURES = ("us", "toep", "toeph", "ar1", "ar1h", "ad", "adh", "cs", "csh")


def fev_data() -> pd.DataFrame:
    """fev_data with R's factor levels (a new DataFrame on every call)."""
    return _fev_data().copy()


@cache
def _fev_data() -> pd.DataFrame:
    raw = pd.read_csv(REFERENCE / "fev_data.csv")
    levels = {
        "SEX": ["Male", "Female"],
        "ARMCD": ["PBO", "TRT"],
        "AVISIT": ["VIS1", "VIS2", "VIS3", "VIS4"],
        "RACE": ["Asian", "Black or African American", "White"],
    }
    for col, cats in levels.items():
        raw[col] = pd.Categorical(raw[col], categories=cats)
    subjects = sorted(raw["USUBJID"].unique(), key=lambda s: int(s[2:]))
    raw["USUBJID"] = pd.Categorical(raw["USUBJID"], categories=subjects)
    return raw


@cache
def _reference() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("ref_fev.json", "ref_fev_more.json", "ref_fev_spatial.json"):
        with open(REFERENCE / name, encoding="utf-8") as fh:
            out.update(json.load(fh))
    return out


def fev_reference(block: str) -> dict[str, Any]:
    """One block of ref_fev.json (e.g. ``"us_reml_residual"``), of ref_fev_more.json
    (``"us_reml_weighted"``, ``"ar1h_ml_weighted"``, ``"ad_grouped_ml"``, ``"us_reml_predict"``)
    or of ref_fev_spatial.json (``"sp_exp2_reml_kenwardroger"``, ...)."""
    return dict(_reference()[block])


def sas_reference() -> dict[str, Any]:
    """sas_kr.json: SAS PROC MIXED's KR SE and df of ARMCDTRT per structure."""
    with open(REFERENCE / "sas_kr.json", encoding="utf-8") as fh:
        return dict(json.load(fh))


def fit_fev(formula: str, data: pd.DataFrame | None = None, **kw: Any) -> MMRMResults:
    """fit_mmrm on fev_data (or ``data``), without the ExclusionWarning of its missing FEV1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)
        return fit_mmrm(formula, fev_data() if data is None else data, **kw)


def fev_problem(
    formula: str, reml: bool, data: pd.DataFrame | None = None, **kw: Any
) -> MMRMProblem:
    """The MMRMProblem of ``formula`` on fev_data (or ``data``), warnings as in fit_fev."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)
        return build_problem(formula, fev_data() if data is None else data, reml=reml, **kw)
