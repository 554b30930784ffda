"""Tests of mesostats.domain.exposure and .aliasing: recipes, course exposure, aliasing.

The small study of ``conftest.valid_tables`` has cocktails PLA (saline), MB (minoxidil +
biotin) and DB (dutasteride + biotin): with the placebo contrast, biotin = minoxidil +
dutasteride in every cocktail, the textbook aliasing case.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from numpy.testing import assert_allclose, assert_array_equal

import mesostats as ms
from mesostats.domain.aliasing import find_aliasing, require_estimable
from mesostats.domain.exposure import (
    course_exposure,
    ingredient_units,
    recipe_matrix,
    resolve_ingredients,
    session_exposure,
)
from mesostats.exceptions import ModelSpecError


def recipes(spec: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Cocktail × ingredient matrix from a nested dict (absent = 0)."""
    return pd.DataFrame(spec).T.fillna(0.0).astype(float)


@pytest.fixture
def small_study(valid_tables):
    return ms.load_study(valid_tables)


# --------------------------------------------------------------------------- designs


def test_recipe_matrix_indicators_and_concentrations_match_the_cocktails_table(small_study):
    ind = recipe_matrix(small_study.cocktails, small_study.ingredients)
    expected = pd.DataFrame(
        [[0, 0, 0], [1, 0, 1], [1, 1, 0]],
        index=pd.Index(["PLA", "MB", "DB"], name="cocktail_id"),
        columns=["biotin", "dutasteride", "minoxidil"],
        dtype=float,
    )
    pd.testing.assert_frame_equal(ind, expected)
    dose = recipe_matrix(small_study.cocktails, small_study.ingredients, design="dose")
    assert_allclose(dose.to_numpy(), [[0, 0, 0], [5.0, 0, 0.5], [5.0, 0.01, 0]])


def test_session_exposure_dose_is_concentration_times_volume(small_study):
    dose = session_exposure(small_study, ["biotin", "dutasteride"], design="dose")
    # S02 receives DB (biotin 5 mg/mL, dutasteride 0.01 %) at 1.5 mL on visits 2 and 3
    s02 = small_study.sessions["subject_id"].to_numpy() == "S02"
    assert_allclose(dose.loc[s02, "biotin"].to_numpy(), [0.0, 7.5, 7.5, 0.0])
    assert_allclose(dose.loc[s02, "dutasteride"].to_numpy(), [0.0, 0.015, 0.015, 0.0])


def test_course_exposure_carries_the_cocktail_to_follow_up_visits(small_study):
    course = course_exposure(small_study, small_study.ingredients)
    s01 = small_study.sessions["subject_id"].to_numpy() == "S01"
    # day -7 before any injection: 0; days 1, 29 MB; day 85 follow-up without injection: MB
    assert_allclose(course.exposure.loc[s01, "minoxidil"].to_numpy(), [0, 1, 1, 1])
    assert_allclose(course.exposure.loc[s01, "dutasteride"].to_numpy(), [0, 0, 0, 0])
    assert course.cocktail[s01].tolist()[1:] == ["MB", "MB", "MB"]
    assert pd.isna(course.cocktail[s01].iloc[0])
    assert course.switchers == []


def test_course_exposure_of_a_switcher_is_the_mean_over_sessions_so_far(valid_tables):
    sessions = valid_tables["sessions"]
    sessions.loc[(sessions["subject_id"] == "S03") & (sessions["visit"] == 3), "cocktail_id"] = "MB"
    study = ms.load_study(valid_tables)
    course = course_exposure(study, study.ingredients)
    s03 = study.sessions["subject_id"].to_numpy() == "S03"
    # PLA at day 1, MB at day 29: mean exposure 0, 1/2, then carried to day 85
    assert_allclose(course.exposure.loc[s03, "minoxidil"].to_numpy(), [0, 0, 0.5, 0.5])
    assert course.cocktail[s03].tolist()[1:] == ["PLA", "MB", "MB"]
    assert course.switchers == ["S03"]


def test_course_dose_uses_each_session_volume(valid_tables):
    sessions = valid_tables["sessions"]
    s04 = sessions["subject_id"] == "S04"
    sessions.loc[s04 & (sessions["visit"] == 3), "volume_ml"] = 1.0  # 2.0 mL then 1.0 mL
    study = ms.load_study(valid_tables)
    course = course_exposure(study, ["minoxidil"], design="dose")
    rows = study.sessions["subject_id"].to_numpy() == "S04"
    assert_allclose(course.exposure.loc[rows, "minoxidil"].to_numpy(), [0, 1.0, 0.75, 0.75])


def test_dose_design_without_volume_column_is_refused(small_study):
    # load_study requires volume_ml with a cocktail; a Study built by hand may lack it
    study = dataclasses.replace(
        small_study, sessions=small_study.sessions.drop(columns="volume_ml")
    )
    with pytest.raises(ModelSpecError, match="needs the volume_ml column"):
        session_exposure(study, ["biotin"], design="dose")


def test_unknown_design_kind_is_refused(small_study):
    with pytest.raises(ModelSpecError, match=r"design must be 'indicator'.*got 'doses'"):
        recipe_matrix(small_study.cocktails, ["biotin"], design="doses")  # type: ignore[arg-type]


def test_ingredient_in_two_units_is_refused_for_doses(valid_tables):
    valid_tables["cocktails"].loc[4, "unit"] = "ug/mL"  # biotin of DB in another unit
    study = ms.load_study(valid_tables)
    with pytest.raises(ModelSpecError, match=r"biotin: mg/mL, ug/mL"):
        ingredient_units(study.cocktails, ["biotin", "minoxidil"])
    assert ingredient_units(study.cocktails, ["minoxidil"]) == {"minoxidil": "%"}


# --------------------------------------------------------------------------- aliasing


def test_sum_relation_is_written_with_positive_coefficients_and_all_bases():
    m = recipes(
        {
            "PLA": {"biotin": 0},
            "MB": {"minoxidil": 1, "biotin": 1},
            "DB": {"dutasteride": 1, "biotin": 1},
        }
    )[["biotin", "dutasteride", "minoxidil"]]
    a = find_aliasing(m)
    A = np.column_stack([np.ones(3), m.to_numpy()])
    assert a.null_dimension == scipy.linalg.null_space(A).shape[1] == 1
    assert a.rank == 3
    (rel,) = a.relations
    assert rel.equation == "biotin = dutasteride + minoxidil"
    # the relation is exact: biotin − dutasteride − minoxidil = 0 in every cocktail
    assert_array_equal(m["biotin"] - m["dutasteride"] - m["minoxidil"], 0)
    assert rel.cocktails == ("MB", "DB")
    assert a.estimable_sets == (
        ("biotin", "dutasteride"),
        ("biotin", "minoxidil"),
        ("dutasteride", "minoxidil"),
    )
    assert a.aliased == ("biotin", "dutasteride", "minoxidil")


def test_ingredients_always_together_are_named_as_such():
    m = recipes(
        {
            "P": {"minoxidil": 0},
            "A": {"minoxidil": 1, "vitamin_d": 1, "zinc": 1},
            "B": {"dutasteride": 1, "vitamin_d": 1, "zinc": 1},
            "C": {"dutasteride": 1},
        }
    )[["dutasteride", "minoxidil", "vitamin_d", "zinc"]]
    with pytest.raises(ModelSpecError, match="vitamin_d and zinc always come together") as err:
        require_estimable(m, intercept_meaning="week term")
    text = str(err.value)
    assert "vitamin_d and zinc always come together (cocktails A, B): zinc = vitamin_d" in text
    assert (
        "Estimable: ingredients=['dutasteride', 'minoxidil', 'vitamin_d'] or "
        "['dutasteride', 'minoxidil', 'zinc']"
    ) in text


def test_ingredient_in_every_cocktail_is_confounded_with_the_intercept():
    m = recipes(
        {
            "A": {"minoxidil": 1, "biotin": 1},
            "B": {"dutasteride": 1, "biotin": 1},
            "C": {"minoxidil": 1, "dutasteride": 1, "biotin": 1},
        }
    )[["biotin", "dutasteride", "minoxidil"]]
    with pytest.raises(
        ModelSpecError,
        match=r"(?s)biotin is in every cocktail used \(A, B, C\).*common trend \(biotin = 1\)"
        r".*Estimable: ingredients=\['dutasteride', 'minoxidil'\]",
    ):
        require_estimable(m, intercept_meaning="common trend")


def test_linear_combination_with_a_constant_is_exact_and_rational():
    # each cocktail holds exactly one of minoxidil / biotin, and there is no placebo
    m = recipes({"A": {"minoxidil": 1, "biotin": 0}, "B": {"biotin": 1}, "C": {"biotin": 1}})
    (rel,) = find_aliasing(m).relations
    assert rel.equation == "biotin = 1 − minoxidil"


def test_dose_relation_has_the_concentration_ratio():
    m = recipes({"P": {"minoxidil": 0.0}, "A": {"minoxidil": 0.5, "biotin": 5.0}})
    m = pd.concat([m, recipes({"B": {"minoxidil": 1.0, "biotin": 10.0}})])
    a = find_aliasing(m, design="dose")
    (rel,) = a.relations
    assert rel.equation == "biotin = 10·minoxidil"
    assert "always come together in the same proportion" in rel.explanation("x")
    assert a.estimable_sets == (("minoxidil",), ("biotin",))


def test_two_independent_relations_give_a_two_dimensional_null_space():
    m = recipes(
        {
            "P": {"minoxidil": 0},
            "A": {"minoxidil": 1, "iron": 1},
            "B": {"dutasteride": 1, "zinc": 1},
        }
    )[["dutasteride", "iron", "minoxidil", "zinc"]]
    a = find_aliasing(m)
    assert a.null_dimension == 2
    assert sorted(r.equation for r in a.relations) == ["minoxidil = iron", "zinc = dutasteride"]
    assert len(a.estimable_sets) == 4
    for subset in a.estimable_sets:
        cols = np.column_stack([np.ones(3), m[list(subset)].to_numpy()])
        assert np.linalg.matrix_rank(cols) == cols.shape[1] == 3


def test_single_cocktail_leaves_nothing_estimable():
    m = recipes({"A": {"minoxidil": 1}})
    with pytest.raises(ModelSpecError, match="No ingredient can be estimated"):
        require_estimable(m, intercept_meaning="trend")


def test_separable_design_passes():
    m = recipes(
        {
            "P": {"minoxidil": 0},
            "A": {"minoxidil": 1, "biotin": 1},
            "B": {"dutasteride": 1, "biotin": 1},
            "C": {"minoxidil": 1, "dutasteride": 1, "biotin": 1},
        }
    )
    a = require_estimable(m, intercept_meaning="trend")
    assert a.estimable and a.relations == () and a.rank == 4


# --------------------------------------------------------------------------- choosing


def test_resolve_ingredients_lists_what_is_available(small_study):
    used = recipe_matrix(small_study.cocktails, small_study.ingredients).loc[["PLA", "MB"]]
    chosen, unused = resolve_ingredients(small_study, None, used)
    assert chosen == ["biotin", "minoxidil"] and unused == ["dutasteride"]
    with pytest.raises(ModelSpecError, match=r"\['finasteride'\] is in no cocktail of this study"):
        resolve_ingredients(small_study, ["finasteride"], used)
    with pytest.raises(ModelSpecError, match=r"in none of the cocktails used.*\(PLA, MB\)"):
        resolve_ingredients(small_study, ["dutasteride"], used)
    with pytest.raises(ModelSpecError, match="'saline' is the placebo"):
        resolve_ingredients(small_study, ["saline"], used)
    with pytest.raises(ModelSpecError, match="more than once"):
        resolve_ingredients(small_study, ["biotin", "biotin"], used)
    with pytest.raises(ModelSpecError, match=r"asks for no ingredient"):
        resolve_ingredients(small_study, [], used)
    assert resolve_ingredients(small_study, "minoxidil", used) == (["minoxidil"], [])
