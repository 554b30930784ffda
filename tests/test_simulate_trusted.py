"""The trusted simulation path of the power trials gives the Study that simulate_study gives.

``mesostats.simulate.api._simulated_study`` types the drawn tables without re-validating them
(the plan was validated once by the probe trial); every table, the exclusions, ingredients,
source and schema must equal those of the validated :func:`mesostats.simulate_study`
(compared exactly, dtypes and index names included).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import mesostats as ms
from mesostats.simulate.api import _simulated_study

CASES: list[dict[str, Any]] = [
    {"n_subjects": 60, "n_sessions": 6, "seed": 1},
    {"n_subjects": 30, "n_sessions": 8, "seed": 5, "n_sites": 1},
    {
        "n_subjects": 40,
        "n_sessions": 10,
        "seed": 2,
        "dropout": 0.3,
        "missing_rate": 0.2,
        "n_followup": 3,
    },
    {"n_subjects": 24, "n_sessions": 4, "seed": 7, "effects": {"event_intercept": 0.5}},
]


@pytest.mark.parametrize("settings", CASES)
def test_trusted_simulation_equals_validated_simulate_study(settings: dict[str, Any]) -> None:
    validated = ms.simulate_study(**settings)
    trusted = _simulated_study(**settings)
    for name in ("subjects", "cocktails", "sessions", "adverse_events", "exclusions"):
        pd.testing.assert_frame_equal(
            getattr(trusted, name), getattr(validated, name), check_exact=True
        )
    assert trusted.ingredients == validated.ingredients
    assert trusted.source == validated.source
    assert trusted.schema is validated.schema
    assert trusted.truth.keys() == validated.truth.keys()
    pd.testing.assert_frame_equal(
        trusted.outcome_table("hair_density"), validated.outcome_table("hair_density")
    )
    pd.testing.assert_frame_equal(trusted.event_table(), validated.event_table())
    # the adverse events' session rows come from the draw (links), equal to the key match
    assert trusted._event_sessions is not None
    assert trusted._event_sessions.dtype == validated._event_session_rows().dtype
    assert (trusted._event_sessions == validated._event_session_rows()).all()
