"""Tests of the mixed-model design layer (mesostats/mixed/design.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mixed_checks import load_csv
from numpy.testing import assert_allclose, assert_array_equal

from mesostats.exceptions import ExclusionWarning, ModelSpecError
from mesostats.mixed.design import aliased_columns, build_design


@pytest.fixture
def sleep() -> pd.DataFrame:
    return load_csv("sleepstudy.csv")


def test_sleepstudy_design_matches_lme4_layout(sleep: pd.DataFrame) -> None:
    d = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    assert d.fixed_names == ("Intercept", "Days")
    assert d.X.shape == (180, 2)
    assert_allclose(d.X[:, 1], sleep["Days"])
    (term,) = d.terms
    assert term.names == ("Intercept", "Days")
    assert term.n_levels == 18 and term.levels[0] == 308
    assert_array_equal(term.codes[:10], 0)
    assert d.n_theta == 3
    assert d.theta_names == ("Subject[Intercept]", "Subject[Days,Intercept]", "Subject[Days]")
    assert_array_equal(d.theta_start(), [1.0, 0.0, 1.0])
    assert_array_equal(d.theta_lower, [0.0, -np.inf, 0.0])
    (lam,) = d.lambda_blocks(np.array([1.0, 2.0, 3.0]))
    assert_array_equal(lam, [[1.0, 0.0], [2.0, 3.0]])  # θ fills the lower triangle by column
    assert d.excluded_rows.empty
    assert d.ngroups == {"Subject": 18}


def test_categorical_columns_get_treatment_contrasts() -> None:
    cbpp = load_csv("cbpp.csv").astype({"period": str})
    d = build_design(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"
    )
    assert d.fixed_names == ("Intercept", "period[T.2]", "period[T.3]", "period[T.4]")
    assert_allclose(d.prior_weights, cbpp["size"])
    assert_allclose(d.y, cbpp["incidence"] / cbpp["size"])
    c = build_design(
        "cbind(incidence, size - incidence) ~ C(period) + (1 | herd)",
        load_csv("cbpp.csv"),
        family="binomial",
    )
    assert c.fixed_names[1] == "C(period)[T.2]"


def test_unused_categories_are_dropped_like_r() -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "y": rng.normal(size=40),
            "arm": pd.Categorical(["b", "a"] * 20, categories=["a", "b", "never"]),
            "g": np.repeat(np.arange(8), 5),
        }
    )
    d = build_design("y ~ arm + (1 | g)", data)
    assert d.fixed_names == ("Intercept", "arm[T.b]")


def test_nested_levels_and_lme4_term_order() -> None:
    d = build_design("strength ~ 1 + (1 | batch/cask)", load_csv("pastes.csv"))
    assert [t.group for t in d.terms] == ["cask:batch", "batch"]  # decreasing levels
    assert [t.n_levels for t in d.terms] == [30, 10]
    assert list(d.terms[0].levels[:3]) == ["a:A", "a:B", "a:C"]


def test_double_bar_splits_into_scalar_terms(sleep: pd.DataFrame) -> None:
    d = build_design("Reaction ~ Days + (Days || Subject)", sleep)
    assert [t.names for t in d.terms] == [("Intercept",), ("Days",)]
    assert all(t.group == "Subject" for t in d.terms)
    assert_array_equal(d.theta_lower, [0.0, 0.0])


def test_offset_is_evaluated(sleep: pd.DataFrame) -> None:
    data = sleep.assign(expo=np.exp(sleep["Days"] / 10))
    d = build_design("Reaction ~ 1 + offset(np.log(expo)) + (1 | Subject)", data)
    assert_allclose(d.offset, sleep["Days"] / 10)
    assert_allclose(d.offset_for(data.head(3)), sleep["Days"].head(3) / 10)


def test_missing_values_are_set_aside_and_listed(sleep: pd.DataFrame) -> None:
    data = sleep.copy()
    data.loc[2, "Days"] = np.nan
    data.loc[7, "Reaction"] = np.nan
    data.loc[7, "Subject"] = np.nan
    data["unused"] = np.nan  # not in the formula: never causes an exclusion
    with pytest.warns(
        ExclusionWarning, match=r"2 of 180 rows .* Reaction \(1\), Days \(1\), Subject \(1\)"
    ):
        d = build_design("Reaction ~ Days + (Days | Subject)", data)
    assert d.n == 178
    assert list(d.excluded_rows["row"]) == [2, 7]
    assert list(d.excluded_rows["reason"]) == [
        "missing value in Days",
        "missing value in Reaction, Subject",
    ]
    assert 2 not in d.row_index and 7 not in d.row_index


def test_new_data_helpers_use_fit_coding(sleep: pd.DataFrame) -> None:
    d = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    new = pd.DataFrame({"Days": [1.0, 2.0], "Subject": [308, 999]})
    assert_allclose(d.fixed_matrix(new), [[1.0, 1.0], [1.0, 2.0]])
    assert_array_equal(d.terms[0].level_codes(new), [0, -1])
    assert_allclose(d.terms[0].columns_for(new), [[1.0, 1.0], [1.0, 2.0]])


def test_aliased_columns_are_found_in_order() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    X = np.column_stack([np.ones(50), x, 2 * x[:, 0] - x[:, 1], np.zeros(50)])
    out = aliased_columns(X, ["Intercept", "a", "b", "c", "z"])
    assert [name for name, _ in out] == ["c", "z"]
    assert_allclose([out[0][1]["a"], out[0][1]["b"]], [2.0, -1.0], rtol=1e-10)
    assert out[1][1] == {}


# --------------------------------------------------------------------------- errors
def test_unknown_column_suggests_close_match(sleep: pd.DataFrame) -> None:
    with pytest.raises(
        ModelSpecError, match=r"Column `Dayz` used in the fixed part .* Did you mean `Days`"
    ):
        build_design("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(ModelSpecError, match=r"`subject` used in the grouping factor .* `Subject`"):
        build_design("Reaction ~ Days + (1 | subject)", sleep)


def test_no_random_term_is_refused(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="no random-effect term"):
        build_design("Reaction ~ Days", sleep)


def test_one_level_grouping_factor_is_refused(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="grouping factor `site` has only 1 level"):
        build_design("Reaction ~ Days + (1 | site)", sleep.assign(site="A"))


def test_non_numeric_response_is_refused(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="response `grade` is not numeric"):
        build_design("grade ~ Days + (1 | Subject)", sleep.assign(grade="high"))


def test_rank_deficient_x_names_the_aliased_columns(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match=r"`D2` = 2·`Days`"):
        build_design("Reaction ~ Days + D2 + (1 | Subject)", sleep.assign(D2=2 * sleep["Days"]))
    with pytest.raises(ModelSpecError, match=r"`zero` is zero in every fitted row"):
        build_design("Reaction ~ Days + zero + (1 | Subject)", sleep.assign(zero=0.0))


def test_more_random_effects_than_observations_is_refused(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match=r"has 360 random effects .* only 180 observations"):
        build_design("Reaction ~ Days + (Days | row)", sleep.assign(row=np.arange(180)))


def test_binomial_response_must_be_zero_one(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match=r"binomial response must be 0/1 .* e\.g\. 2"):
        build_design("y ~ Days + (1 | Subject)", sleep.assign(y=2), family="binomial")
    d = build_design(
        "y ~ Days + (1 | Subject)", sleep.assign(y=sleep["Days"] > 4), family="binomial"
    )
    assert set(np.unique(d.y)) == {0.0, 1.0}


def test_cbind_counts_are_checked() -> None:
    cbpp = load_csv("cbpp.csv")
    with pytest.raises(ModelSpecError, match=r"successes exceed trials"):
        build_design("cbind(incidence, 1 - incidence) ~ 1 + (1 | herd)", cbpp, family="binomial")
    with pytest.raises(
        ModelSpecError, match=r"non-negative whole numbers; 56 row\(s\) are not, e\.g\. 0\.5"
    ):
        build_design(
            "cbind(half, size - half) ~ 1 + (1 | herd)", cbpp.assign(half=0.5), family="binomial"
        )
    with pytest.raises(ModelSpecError, match="family is 'gaussian'"):
        build_design("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp)


def test_poisson_response_must_be_counts(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="response `Reaction` must be non-negative whole"):
        build_design("Reaction ~ Days + (1 | Subject)", sleep, family="poisson")
    with pytest.raises(ModelSpecError, match=r"e\.g\. -1 at index 0"):
        build_design("k ~ Days + (1 | Subject)", sleep.assign(k=-1), family="poisson")


def test_other_input_errors(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="family must be one of"):
        build_design("Reaction ~ Days + (1 | Subject)", sleep, family="gamma")
    with pytest.raises(ModelSpecError, match="must be a pandas DataFrame"):
        build_design("Reaction ~ Days + (1 | Subject)", sleep.to_dict())  # type: ignore[arg-type]
    with pytest.raises(ModelSpecError, match="not finite in 1 row"):
        build_design(
            "Reaction ~ Days + (1 | Subject)",
            sleep.assign(Reaction=lambda d: d["Reaction"].where(d.index != 5, np.inf)),
        )
    with pytest.raises(ModelSpecError, match=r"offset\(np.log\(z\)\) is not finite"):
        build_design("Reaction ~ Days + offset(np.log(z)) + (1 | Subject)", sleep.assign(z=0.0))
    with pytest.raises(ModelSpecError, match="no fixed effect"):
        build_design("Reaction ~ 0 + (1 | Subject)", sleep)
    with (
        pytest.warns(ExclusionWarning, match="rows were not fitted"),
        pytest.raises(ModelSpecError, match="nothing is left"),
    ):
        build_design("Reaction ~ Days + (1 | Subject)", sleep.assign(Days=np.nan))


def test_formulaic_failures_become_model_spec_errors(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="Cannot parse the fixed part"):
        build_design("Reaction ~ Days +* Days + (1 | Subject)", sleep)
    with pytest.raises(ModelSpecError, match="Cannot build the fixed part"):
        build_design("Reaction ~ np.undefined_function(Days) + (1 | Subject)", sleep)
    with pytest.raises(ModelSpecError, match="Cannot build the random term"):
        build_design("Reaction ~ Days + (np.undefined_function(Days) | Subject)", sleep)
    with pytest.raises(
        ModelSpecError, match="response `C\\(Subject\\)` is not numeric: it gives 18"
    ):
        build_design("C(Subject) ~ Days + (1 | Subject)", sleep)


def test_too_few_rows_are_refused(sleep: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match="The data has no rows"):
        build_design("Reaction ~ Days + (1 | Subject)", sleep.iloc[:0])
    tiny = sleep.iloc[[1, 12]]
    with pytest.raises(ModelSpecError, match=r"Only 2 row\(s\) for 2 fixed effects"):
        build_design("Reaction ~ Days + (1 | Subject)", tiny)


def test_model_frame_is_the_used_columns_of_the_fitted_rows(sleep: pd.DataFrame) -> None:
    data = sleep.assign(extra=1.0, Subject=sleep["Subject"].astype("category"))
    data["Subject"] = data["Subject"].cat.add_categories(["unused"])
    d = build_design("Reaction ~ Days + (Days | Subject)", data)
    expected = data[["Reaction", "Days", "Subject"]].copy()
    expected["Subject"] = expected["Subject"].cat.remove_unused_categories()
    pd.testing.assert_frame_equal(d.model_frame, expected)
    assert d.row_index.equals(data.index)
    # a change to the caller's table after the build does not reach the design
    data.loc[0, "Reaction"] = -1.0
    data["Days"] = 0.0
    assert d.model_frame["Reaction"].iloc[0] == sleep["Reaction"].iloc[0]
    assert_array_equal(d.model_frame["Days"], sleep["Days"])
    # with rows set aside (the DataFrame route) the frame is the kept rows
    gappy = sleep.copy()
    gappy.loc[[3, 7], "Days"] = np.nan
    with pytest.warns(ExclusionWarning):
        kept = build_design("Reaction ~ Days + (Days | Subject)", gappy)
    pd.testing.assert_frame_equal(
        kept.model_frame, gappy.drop(index=[3, 7])[["Reaction", "Days", "Subject"]]
    )


@pytest.mark.parametrize("dtype", ["str", pd.StringDtype("python"), object, "category"])
def test_grouping_factor_matches_sorted_pandas_factorize(dtype: object) -> None:
    from mesostats.mixed.formula_eval import _grouping_factor

    values = ["b10", "B2", "é", "a", "b10", "Z", "ä", "a", "10", "b2"]
    series = pd.Series(values, dtype=dtype)  # type: ignore[call-overload]
    codes, levels = _grouping_factor(pd.DataFrame({"g": series}), ("g",))
    expected_codes, expected_levels = pd.factorize(series, sort=True)
    assert_array_equal(codes, expected_codes)
    if dtype == "category":
        expected_levels = series.cat.categories
    pd.testing.assert_index_equal(levels, pd.Index(expected_levels))
    assert list(levels) == sorted(set(values))  # code-point order, as R's C-locale sort
