"""derive: study week, CDISC baseline / CHG / PCHG, ingredient design, event counts —
against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from mesostats.data.derive import (
    active_ingredients,
    baseline_values,
    change_from_baseline,
    event_counts,
    ingredient_design,
    study_week,
)


def test_study_week_has_no_day_zero() -> None:
    days = pd.Series([-14, -7, -1, 1, 8, 15, 29, None], dtype="Int64")
    assert_allclose(study_week(days), [-2.0, -1.0, -1 / 7, 0.0, 1.0, 2.0, 4.0, np.nan])


def test_baseline_last_value_on_or_before_day_1_in_any_row_order() -> None:
    subject = ["a", "b", "a", "a", "b", "b", "c"]
    day = [29, 1, -3, 1, -10, 8, 5]
    value = [12.0, np.nan, 10.0, 11.0, 20.0, 22.0, 7.0]
    # a: days -3 (10), 1 (11) → 11; b: day 1 missing → day -10 (20); c: nothing before day 2
    assert_allclose(baseline_values(subject, day, value), [11, 20, 11, 11, 20, 20, np.nan])


def test_baseline_flag_overrides_the_day_rule_when_its_value_exists() -> None:
    subject = ["a", "a", "a", "b", "b"]
    day = [-7, 1, 29, -7, 1]
    value = [5.0, 6.0, 9.0, np.nan, 3.0]
    flag = pd.array([True, False, False, True, None], dtype="boolean")
    # a: flagged day -7 → 5 (not day 1's 6); b: flagged row has no value → day rule → 3
    assert_allclose(baseline_values(subject, day, value, flag), [5, 5, 5, 3, 3])


def test_change_from_baseline_and_percent_change() -> None:
    chg, pchg = change_from_baseline([110.0, 90.0, 5.0, 4.0, np.nan], [100.0, 100.0, 0.0, -2.0, 1])
    assert_allclose(chg, [10.0, -10.0, 5.0, 6.0, np.nan])
    assert_allclose(pchg, [10.0, -10.0, np.nan, 300.0, np.nan])


@pytest.fixture
def recipes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cocktail_id": ["P", "A", "A", "B"],
            "ingredient": ["saline", "minoxidil", "biotin", "biotin"],
            "concentration": [0.9, 0.5, 5.0, 2.0],
        }
    )


def test_active_ingredients_exclude_saline(recipes: pd.DataFrame) -> None:
    assert active_ingredients(recipes) == ["biotin", "minoxidil"]


def test_ingredient_indicators(recipes: pd.DataFrame) -> None:
    given = pd.Series(["A", "B", None, "P", "A"], index=[10, 11, 12, 13, 14], dtype="str")
    design = ingredient_design(recipes, given, ["biotin", "minoxidil"])
    assert design.index.tolist() == [10, 11, 12, 13, 14]
    assert design.to_numpy().tolist() == [[1, 1], [1, 0], [0, 0], [0, 0], [1, 1]]
    assert (design.dtypes == np.int64).all()


def test_ingredient_doses_are_concentration_times_volume(recipes: pd.DataFrame) -> None:
    given = pd.Series(["A", "B", None, "A"], dtype="str")
    volume = pd.Series([1.0, 2.0, np.nan, 0.5])
    design = ingredient_design(
        recipes, given, ["biotin", "minoxidil"], kind="dose", volume_ml=volume
    )
    assert_allclose(design.to_numpy(), [[5.0, 0.5], [4.0, 0.0], [0.0, 0.0], [2.5, 0.25]])
    with pytest.raises(ValueError, match="kind='dose' needs volume_ml"):
        ingredient_design(recipes, given, ["biotin"], kind="dose")
    with pytest.raises(ValueError, match="kind must be 'indicator' or 'dose'"):
        ingredient_design(recipes, given, ["biotin"], kind="amount")  # type: ignore[arg-type]


def test_event_counts_per_session_key() -> None:
    sessions = [pd.Series(["a", "a", "b", None], dtype="str"), pd.Series([1, 2, 1, 1])]
    events = [pd.Series(["a", "a", "b", "z", "a"], dtype="str"), pd.Series([2, 2, 1, 1, 3])]
    assert event_counts(sessions, events).tolist() == [0, 2, 1, 0]
    empty = [pd.Series([], dtype="str"), pd.Series([], dtype="int64")]
    assert event_counts(sessions, empty).tolist() == [0, 0, 0, 0]


def test_cocktails_received_lists_each_cocktail_once_in_order_of_first_injection() -> None:
    from mesostats.data.derive import RECEIVED_COLUMNS, cocktails_received, first_cocktail

    sessions = pd.DataFrame(
        {
            "subject_id": ["a", "a", "a", "b", "b", "c"],
            "day": [1, 15, 29, 1, 15, 1],
            "cocktail_id": ["M", "M", "D", None, None, "P"],
        }
    )
    received = cocktails_received(sessions)
    assert list(received.columns) == RECEIVED_COLUMNS
    assert received[["subject_id", "cocktail_id", "n_sessions", "order"]].values.tolist() == [
        ["a", "M", 2, 1],
        ["a", "D", 1, 2],
        ["c", "P", 1, 1],
    ]
    assert received["first_day"].tolist() == [1, 29, 1]
    assert first_cocktail(sessions).to_dict() == {"a": "M", "c": "P"}  # b was never injected
