"""The lean domain path (arrays, no pandas round trips) gives the tables of the pandas path.

The references here are the straightforward pandas constructions the domain fits used before
they were rewritten for speed (issue #16): ``outcome_table`` + ``course_exposure`` + concat for
the regrowth rows, ``statsmodels``' Clopper–Pearson intervals, the variance-component and
fixed-effect tables of the fitted model. Everything is compared exactly (``check_exact``,
rtol 0): the rewrite changes no number, dtype, column order, index or text.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

import mesostats as ms
from mesostats.data import derive
from mesostats.domain import aliasing
from mesostats.domain.common import (
    SIDE_EFFECT_COLUMNS,
    _variance_records,
    _wald_columns,
    holm_adjusted,
)
from mesostats.domain.exposure import course_exposure, recipe_matrix
from mesostats.domain.rates import clopper_pearson, event_rates
from mesostats.simulate.draw import simulate_tables


def _messy_study(seed: int) -> ms.Study:
    """Assessed sessions without an injection, subjects without a baseline, cocktail
    switchers and missing outcome values."""
    tables, _ = simulate_tables(50, 7, seed=seed)
    s = tables["sessions"].copy()
    third = s.index[s["visit"] == 3][:4]
    s.loc[third, ["cocktail_id", "volume_ml"]] = np.nan
    s.loc[third, "reactions_assessed"] = True
    no_base = s["subject_id"].unique()[5:8]
    s.loc[s["subject_id"].isin(no_base) & (s["visit"] == 1), "hair_density"] = np.nan
    switch = s["subject_id"].unique()[20:24]
    later = s["subject_id"].isin(switch) & (s["visit"] >= 3) & s["cocktail_id"].notna()
    s.loc[later, "cocktail_id"] = "C"
    s.loc[s.index[s["visit"] == 4][3:6], "hair_density"] = np.nan
    tables["sessions"] = s
    return ms.load_study(tables)


STUDIES = {
    "simulated": lambda: ms.simulate_study(60, 6, seed=1),
    "messy": lambda: _messy_study(1),
}


def _reference_regrowth_rows(study: ms.Study, outcome: str, design: str) -> pd.DataFrame:
    """The regrowth rows the pandas way (before the rewrite), baseline missing kept out."""
    table = study.outcome_table(outcome)
    course = course_exposure(study, study.ingredients, design=design)  # type: ignore[arg-type]
    position = study.sessions.index.get_indexer(table.index)
    exposure = course.exposure.iloc[position].set_axis(table.index)
    table = table.drop(columns=list(study.ingredients)).assign(
        course_cocktail=course.cocktail.iloc[position].to_numpy(dtype=object)
    )
    table = pd.concat([table, exposure], axis=1)
    post = table[table["week"].to_numpy(dtype=float) > 0]
    keep = ~post["baseline"].isna() & ~post[list(study.ingredients)].isna().any(axis=1)
    post = post[keep.to_numpy(dtype=bool)]
    center = float(post["baseline"].mean())
    return post.assign(baseline_centered=post["baseline"].to_numpy(dtype=float) - center)


@pytest.mark.parametrize("name", sorted(STUDIES))
@pytest.mark.parametrize("design", ["indicator", "dose"])
def test_regrowth_rows_equal_the_pandas_construction(name: str, design: str) -> None:
    study = STUDIES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ms.fit_regrowth(study, design=design)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(
        fit.data, _reference_regrowth_rows(study, "hair_density", design), check_exact=True
    )


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_side_effect_rows_equal_the_event_table_filtered(name: str) -> None:
    study = STUDIES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ms.fit_side_effects(study)
    table = study.event_table()
    injected = table[table["cocktail_id"].notna().to_numpy(dtype=bool)]
    pd.testing.assert_frame_equal(fit.data, injected, check_exact=True)
    reasons = set(fit.excluded_rows["reason"])
    n_dropped = len(table) - len(injected)
    assert len(fit.excluded_rows) == n_dropped
    if n_dropped:
        assert reasons == {
            "assessed session without an injection: nothing to attribute a side effect to"
        }


@pytest.mark.parametrize("event", [None, "pruritus", "erythema"])
def test_side_effect_rates_and_no_event_note_equal_the_eager_construction(
    event: str | None,
) -> None:
    """``rates`` (computed on first access) is ``event_rates`` of the rows modelled with
    every ingredient given, and the no-event note names the cocktail rows of that table with
    ``n_with_event == 0`` (how both were built before)."""
    study = _messy_study(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ms.fit_side_effects(study, event, ingredients=["minoxidil"])
    table = study.event_table(event)
    injected = table[table["cocktail_id"].notna().to_numpy(dtype=bool)]
    used = recipe_matrix(study.cocktails, study.ingredients, design="indicator")
    used = used[used.index.isin(set(injected["cocktail_id"].astype(str)))]
    given = [ing for ing in study.ingredients if bool((used[ing] != 0).any())]
    assert len(given) > 1  # (more ingredients than the one modelled)
    expected = event_rates(injected, given)
    pd.testing.assert_frame_equal(fit.rates, expected, check_exact=True)
    session = expected[(expected["level"] == "cocktail") & (expected["per"] == "session")]
    none = list(session.loc[session["n_with_event"] == 0, "name"])
    noted = [n for n in fit.notes if "had no session with the event" in n]
    if none:
        assert noted == [
            f"Cocktail{'s' if len(none) > 1 else ''} {', '.join(none)} had no session with "
            "the event; odds ratios involving them rest on few events and may be unstable."
        ]
    else:
        assert noted == []


def test_side_effect_ingredient_effects_equal_the_model_fixed_effects_table() -> None:
    """``ingredient_effects`` (built on first access) from the model's ``fixed_effects``
    table the plain way: exp of estimate and CI, p, Holm-adjusted p (exactly)."""
    study = _messy_study(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ms.fit_side_effects(study)
    fe = fit.model.fixed_effects.loc[list(fit.ingredients)]
    p = fe["p_value"].to_numpy(dtype=float)
    expected = pd.DataFrame(
        {
            "ingredient": pd.array(list(fit.ingredients), dtype="str"),
            "odds_ratio": np.exp(fe["estimate"].to_numpy(dtype=float)),
            "ci_lower": np.exp(fe["ci_lower"].to_numpy(dtype=float)),
            "ci_upper": np.exp(fe["ci_upper"].to_numpy(dtype=float)),
            "p_value": p,
            "p_adjusted": holm_adjusted(p),
        }
    )
    assert list(expected.columns) == list(SIDE_EFFECT_COLUMNS)
    pd.testing.assert_frame_equal(fit.ingredient_effects, expected, check_exact=True)
    table = fit.ingredient_effects
    table.loc[0, "odds_ratio"] = -1.0  # (a copy: the fit's table is unchanged)
    assert fit.ingredient_effects.loc[0, "odds_ratio"] == expected.loc[0, "odds_ratio"]


def test_event_table_equals_concatenated_design_and_subject_columns() -> None:
    study = _messy_study(7)
    s = study.sessions
    keep = s["reactions_assessed"].fillna(False).to_numpy(dtype=bool)
    table = study.event_table()
    design = derive.ingredient_design(study.cocktails, s["cocktail_id"], study.ingredients)
    pd.testing.assert_frame_equal(
        table[list(study.ingredients)], design[keep], check_exact=True, check_names=False
    )
    subjects = study.subjects.set_index("subject_id")
    for column in subjects.columns:
        expected = subjects[column].reindex(table["subject_id"]).set_axis(table.index)
        pd.testing.assert_series_equal(table[column], expected, check_exact=True)


def test_ingredient_matrix_text_lookup_equals_the_python_lookup() -> None:
    study = _messy_study(3)
    cocktail = study.sessions["cocktail_id"]
    as_objects = pd.Series(cocktail.to_numpy(dtype=object), index=cocktail.index, dtype=object)
    for kind in ("indicator", "dose"):
        volume = study.sessions["volume_ml"]
        fast = derive.ingredient_matrix(
            study.cocktails, cocktail, study.ingredients, kind=kind, volume_ml=volume
        )
        slow = derive.ingredient_matrix(
            study.cocktails, as_objects, study.ingredients, kind=kind, volume_ml=volume
        )
        np.testing.assert_array_equal(fast, slow)
        assert fast.dtype == slow.dtype


def test_recipe_matrix_rows_follow_the_cocktails_table() -> None:
    study = ms.simulate_study(20, 4, seed=2)
    recipes = recipe_matrix(study.cocktails, study.ingredients, design="dose")
    for row in study.cocktails.itertuples():
        if row.ingredient in study.ingredients:
            assert recipes.loc[row.cocktail_id, row.ingredient] == row.concentration
    assert recipes.index.name == "cocktail_id"
    assert list(recipes.index) == list(pd.unique(study.cocktails["cocktail_id"]))


def test_clopper_pearson_equals_statsmodels_bit_for_bit() -> None:
    k = np.array([kk for n in range(0, 120) for kk in range(n + 1)], dtype=float)
    n = np.array([n for n in range(0, 120) for _ in range(n + 1)], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for alpha in (0.05, 0.1):
            lower, upper = proportion_confint(k, n, alpha=alpha, method="beta")
            ours = clopper_pearson(k, n, alpha)
            np.testing.assert_array_equal(ours[0], lower)
            np.testing.assert_array_equal(ours[1], upper)


def test_variance_records_and_wald_columns_equal_the_model_tables() -> None:
    study = ms.simulate_study(60, 6, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [ms.fit_regrowth(study), ms.fit_side_effects(study)]
    for fit in fits:
        model = fit.model
        vc = model.variance_components
        records = _variance_records(model)
        assert [r.group for r in records] == list(vc["group"])
        assert [r.var1 for r in records] == [None if pd.isna(v) else v for v in vc["var1"]]
        assert [r.var2 is None for r in records] == list(vc["var2"].isna())
        np.testing.assert_array_equal([r.sdcor for r in records], vc["sdcor"].to_numpy())
        wald = _wald_columns(model, fit.effect_terms)
        rows = model.fixed_effects.loc[list(fit.effect_terms.values())]
        for column, values in wald.items():
            np.testing.assert_array_equal(values, rows[column].to_numpy())


def test_aliasing_check_is_memoised_and_equals_a_fresh_check() -> None:
    study = ms.simulate_study(20, 4, seed=2)
    used = recipe_matrix(study.cocktails, study.ingredients)
    aliasing._ALIASING_CACHE.clear()
    first = aliasing.find_aliasing(used)
    again = aliasing.find_aliasing(used.copy())
    assert again is first  # the same (immutable) answer for the same values and labels
    fresh = aliasing._find_aliasing(
        used.to_numpy(dtype=float),
        [aliasing.INTERCEPT, *used.columns],
        tuple(used.index),
        "indicator",
    )
    assert fresh == first
    aliased = used.assign(biotin=used["minoxidil"])  # a different matrix: checked anew
    assert not aliasing.find_aliasing(aliased).estimable
