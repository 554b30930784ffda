"""Shared fixtures: a small, valid study as a dict of DataFrames (friendly column names).

``valid_tables`` returns fresh copies on every use, so a test may mutate its copy freely.
The study: 4 subjects at 2 sites, 3 cocktails (placebo saline, minoxidil + biotin,
dutasteride + biotin), 4 visits each (day −7 baseline, days 1, 29, 85), a few adverse events.
"""

from __future__ import annotations

import pandas as pd
import pytest


def make_valid_tables() -> dict[str, pd.DataFrame]:
    """A small valid study (new DataFrames on every call)."""
    subjects = pd.DataFrame(
        {
            "subject_id": ["S01", "S02", "S03", "S04"],
            "site": ["Lyon", "Lyon", "Porto", "Porto"],
            "arm": ["randomised", "randomised", "randomised", "randomised"],
            "sex": ["M", "F", "M", "F"],
            "age": [34, 41, 29, 55],
            "diagnosis": ["AGA", "FPHL", "AGA", "TE"],
            "stage": ["NH-III", "Ludwig-II", "NH-IIIv", None],
        }
    )
    cocktails = pd.DataFrame(
        {
            "cocktail_id": ["PLA", "MB", "MB", "DB", "DB"],
            "ingredient": ["saline", "minoxidil", "biotin", "dutasteride", "biotin"],
            "concentration": [0.9, 0.5, 5.0, 0.01, 5.0],
            "unit": ["%", "%", "mg/mL", "%", "mg/mL"],
        }
    )
    sessions = pd.DataFrame(
        {
            "subject_id": ["S01"] * 4 + ["S02"] * 4 + ["S03"] * 4 + ["S04"] * 4,
            "visit": [1, 2, 3, 4] * 4,
            "day": [-7, 1, 29, 85] * 4,
            "cocktail_id": [
                *(None, "MB", "MB", None),
                *(None, "DB", "DB", None),
                *(None, "PLA", "PLA", None),
                *(None, "MB", "MB", None),
            ],
            "volume_ml": [
                *(None, 1.0, 1.0, None),
                *(None, 1.5, 1.5, None),
                *(None, 1.0, 1.0, None),
                *(None, 2.0, 2.0, None),
            ],
            "hair_density": [
                *(100.0, 104.0, 120.0, 130.0),
                *(80.0, 82.0, 95.0, 101.0),
                *(150.0, 149.0, 151.0, 148.0),
                *(60.0, 62.0, 70.0, None),
            ],
            "pain_vas": [
                *(None, 3.0, 2.5, None),
                *(None, 4.0, 5.0, None),
                *(None, 2.0, 1.0, None),
                *(None, 6.0, 5.5, None),
            ],
            "reactions_assessed": [False, True, True, False] * 4,
        }
    )
    adverse_events = pd.DataFrame(
        {
            "subject_id": ["S01", "S01", "S02", "S04"],
            "visit": [2, 2, 3, 3],
            "event": ["erythema", "pain", "erythema", "oedema"],
            "severity": ["mild", "moderate", "mild", "severe"],
            "serious": [False, False, False, True],
            "related": [True, True, True, False],
            "verbatim": ["redness <b>scalp</b>", "pain at injection", "redness", "swelling"],
        }
    )
    return {
        "subjects": subjects,
        "cocktails": cocktails,
        "sessions": sessions,
        "adverse_events": adverse_events,
    }


@pytest.fixture
def valid_tables() -> dict[str, pd.DataFrame]:
    """A small valid study as a dict of DataFrames (fresh copy per test)."""
    return make_valid_tables()
