"""fev_data and R mmrm's frozen results, for the MMRM tests.

``reference/mmrm/``: ``fev_data.csv`` (the example trial of R's mmrm), ``ref_fev.json``
(written by ``ref_mmrm.R`` with R 4.2.2 and mmrm 0.3.14: one block per structure × method) and
``sas_kr.json`` (SAS PROC MIXED's KR results recorded in mmrm's test suite). Factor levels as
R has them: ``SEX`` Male < Female (not alphabetical), ``ARMCD`` PBO < TRT, ``AVISIT``
VIS1 < … < VIS4, ``RACE`` alphabetical.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

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
    with open(REFERENCE / "ref_fev.json", encoding="utf-8") as fh:
        return dict(json.load(fh))


def fev_reference(block: str) -> dict[str, Any]:
    """One block of ref_fev.json, e.g. ``"us_reml_residual"``."""
    return dict(_reference()[block])


def sas_reference() -> dict[str, Any]:
    """sas_kr.json: SAS PROC MIXED's KR SE and df of ARMCDTRT per structure."""
    with open(REFERENCE / "sas_kr.json", encoding="utf-8") as fh:
        return dict(json.load(fh))
