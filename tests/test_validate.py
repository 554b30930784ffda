"""Validation: every schema rule has a failing example whose problems table is checked row by
row (table, row, column, value, rule), and a table with many problems raises one error that
lists all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mesostats.data.load import load_study
from mesostats.data.schema import StudySchema, load_schema, parse_table_schema
from mesostats.data.validate import collect_problems, combine_codes, duplicated_codes
from mesostats.exceptions import ValidationError

Tables = dict[str, pd.DataFrame]
Problem = tuple[str, Any, Any, Any, str]


def problem_rows(error: ValidationError) -> list[Problem]:
    """(table, row, column, value, rule) of every problem, missing values as None."""
    out = []
    for rec in error.problems.itertuples(index=False):
        value = None if _is_missing(rec.value) else rec.value
        column = None if _is_missing(rec.column) else rec.column
        row = None if _is_missing(rec.row) else rec.row
        out.append((rec.table, row, column, value, rec.rule))
    return out


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def set_cell(frame: pd.DataFrame, row: int, column: str, value: object) -> None:
    """Put any object into a cell (the column becomes object dtype if needed)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value


# --------------------------------------------------------------------------------------------
# one failing example per rule: mutate valid tables, expect exactly these problems
# --------------------------------------------------------------------------------------------


def _type_number(t: Tables) -> None:
    set_cell(t["sessions"], 2, "hair_density", "lots")


def _type_integer(t: Tables) -> None:
    set_cell(t["subjects"], 1, "age", "41.5")


def _type_boolean(t: Tables) -> None:
    set_cell(t["sessions"], 0, "reactions_assessed", "maybe")


def _required(t: Tables) -> None:
    set_cell(t["subjects"], 0, "sex", None)


def _enum(t: Tables) -> None:
    set_cell(t["subjects"], 1, "diagnosis", "alopecia")


def _minimum(t: Tables) -> None:
    set_cell(t["subjects"], 2, "age", 5)


def _maximum(t: Tables) -> None:
    set_cell(t["sessions"], 1, "hair_density", 700.0)


def _pattern(t: Tables) -> None:
    set_cell(t["cocktails"], 1, "ingredient", "Minoxidil")


def _pk_sessions(t: Tables) -> None:
    set_cell(t["sessions"], 3, "visit", 3)


def _pk_subjects(t: Tables) -> None:
    t["subjects"] = pd.concat([t["subjects"], t["subjects"].iloc[[0]]], ignore_index=True)


def _pk_cocktails(t: Tables) -> None:
    t["cocktails"] = pd.concat([t["cocktails"], t["cocktails"].iloc[[1]]], ignore_index=True)


def _fk_subject(t: Tables) -> None:
    set_cell(t["sessions"], 15, "subject_id", "S99")


def _fk_cocktail(t: Tables) -> None:
    set_cell(t["sessions"], 1, "cocktail_id", "XX")


def _fk_session(t: Tables) -> None:
    set_cell(t["adverse_events"], 3, "visit", 9)


def _missing_column(t: Tables) -> None:
    t["subjects"] = t["subjects"].drop(columns="age")


def _duplicate_column(t: Tables) -> None:
    t["subjects"]["SEX"] = t["subjects"]["sex"]


def _clash_derived(t: Tables) -> None:
    t["subjects"]["week"] = 1


def _clash_ingredient(t: Tables) -> None:
    t["subjects"]["biotin"] = "yes"


def _empty_table(t: Tables) -> None:
    t["sessions"] = t["sessions"].iloc[:0]
    del t["adverse_events"]


def _missing_table(t: Tables) -> None:
    del t["subjects"]


def _day_zero(t: Tables) -> None:
    set_cell(t["sessions"], 1, "day", 0)


def _day_not_increasing(t: Tables) -> None:
    set_cell(t["sessions"], 2, "day", 1)


def _two_baselines(t: Tables) -> None:
    t["sessions"]["baseline_flag"] = False
    t["sessions"].loc[[0, 1], "baseline_flag"] = True


def _late_baseline(t: Tables) -> None:
    t["sessions"]["baseline_flag"] = False
    t["sessions"].loc[2, "baseline_flag"] = True


def _volume_missing(t: Tables) -> None:
    set_cell(t["sessions"], 1, "volume_ml", np.nan)


def _volume_column_missing(t: Tables) -> None:
    t["sessions"] = t["sessions"].drop(columns="volume_ml")


def _area_missing(t: Tables) -> None:
    t["sessions"]["hair_count"] = 65
    t["sessions"]["target_area_cm2"] = 0.65
    set_cell(t["sessions"], 0, "target_area_cm2", np.nan)


def _area_zero(t: Tables) -> None:
    t["sessions"]["target_area_cm2"] = 0.65
    set_cell(t["sessions"], 1, "target_area_cm2", 0.0)


def _reserved_ingredient(t: Tables) -> None:
    set_cell(t["cocktails"], 2, "ingredient", "age")


def _unknown_table(t: Tables) -> None:
    t["visits"] = t["sessions"]


def _not_a_table(t: Tables) -> None:
    t["subjects"] = [1, 2]  # type: ignore[assignment]


RULE_CASES: list[tuple[str, Callable[[Tables], None], list[Problem], str]] = [
    ("type_number", _type_number, [("sessions", 2, "hair_density", "lots", "type")],
     r"hair_density \(Hair density \(hairs/cm²\)\) must be a number; this value is not a"),
    ("type_integer", _type_integer, [("subjects", 1, "age", "41.5", "type")],
     r"age \(Age \(years\)\) must be a whole number; check for a decimal"),
    ("type_boolean", _type_boolean, [("sessions", 0, "reactions_assessed", "maybe", "type")],
     r"must be true or false \(true: 1, true, y, yes; false: 0, false, n, no"),
    ("required", _required, [("subjects", 0, "sex", None, "required")],
     r"sex \(Sex\) is required but the cell is empty"),
    ("enum", _enum, [("subjects", 1, "diagnosis", "alopecia", "enum")],
     r"diagnosis \(Diagnosis\) must be one of: AGA, FPHL, TE"),
    ("minimum", _minimum, [("subjects", 2, "age", 5, "minimum")],
     r"age \(Age \(years\)\) must be ≥ 12"),
    ("maximum", _maximum, [("sessions", 1, "hair_density", 700.0, "maximum")],
     r"must be ≤ 600; check the units"),
    ("pattern", _pattern, [("cocktails", 1, "ingredient", "Minoxidil", "pattern")],
     r"ingredient \(Ingredient\) must match the pattern"),
    ("primary_key_sessions", _pk_sessions,
     [("sessions", 2, "subject_id, visit", "S01, 3", "primary_key"),
      ("sessions", 3, "subject_id, visit", "S01, 3", "primary_key")],
     r"the key \(subject_id, visit\) must be unique in sessions"),
    ("primary_key_subjects", _pk_subjects,
     [("subjects", 0, "subject_id", "S01", "primary_key"),
      ("subjects", 4, "subject_id", "S01", "primary_key")],
     r"the key \(subject_id\) must be unique in subjects"),
    ("primary_key_cocktails", _pk_cocktails,
     [("cocktails", 1, "cocktail_id, ingredient", "MB, minoxidil", "primary_key"),
      ("cocktails", 5, "cocktail_id, ingredient", "MB, minoxidil", "primary_key")],
     r"the key \(cocktail_id, ingredient\) must be unique in cocktails"),
    ("foreign_key_subject", _fk_subject,
     [("sessions", 15, "subject_id", "S99", "foreign_key")],
     r"subject_id is not a \(subject_id\) of the subjects table"),
    ("foreign_key_cocktail", _fk_cocktail,
     [("sessions", 1, "cocktail_id", "XX", "foreign_key")],
     r"cocktail_id is not a \(cocktail_id\) of the cocktails table"),
    ("foreign_key_session", _fk_session,
     [("adverse_events", 3, "subject_id, visit", "S04, 9", "foreign_key")],
     r"subject_id, visit is not a \(subject_id, visit\) of the sessions table"),
    ("missing_column", _missing_column, [("subjects", None, "age", None, "missing_column")],
     r"required column age is missing from DataFrame \(columns found: subject_id, site"),
    ("duplicate_column", _duplicate_column,
     [("subjects", None, "sex", "SEX", "duplicate_column")],
     r"column sex appears more than once \(read from columns 'sex' and 'SEX'\)"),
    ("column_clash_derived", _clash_derived,
     [("subjects", None, "week", "week", "column_clash")],
     r"extra column week of subjects has the name of a sessions or derived column"),
    ("column_clash_ingredient", _clash_ingredient,
     [("subjects", None, "biotin", "biotin", "column_clash")],
     r"extra column biotin of subjects has the name of an ingredient"),
    ("not_empty", _empty_table, [("sessions", None, None, 0, "not_empty")],
     r"sessions \(DataFrame\) has 0 rows; The sessions table must hold at least one visit"),
    ("missing_table", _missing_table, [("subjects", None, None, None, "missing_table")],
     r"the subjects table is missing; it is required"),
    ("day_not_zero", _day_zero, [("sessions", 1, "day", 0, "day_not_zero")],
     r"Study days have no day 0"),
    ("day_increases_with_visit", _day_not_increasing,
     [("sessions", 2, "day", 1, "day_increases_with_visit")],
     r"day must increase with visit within subject_id: visit 2 has day 1, not after"),
    ("one_baseline_per_subject", _two_baselines,
     [("sessions", 0, "baseline_flag", True, "one_baseline_per_subject"),
      ("sessions", 1, "baseline_flag", True, "one_baseline_per_subject")],
     r"At most one visit per person carries baseline_flag"),
    ("baseline_on_or_before_day_1", _late_baseline,
     [("sessions", 2, "baseline_flag", True, "baseline_on_or_before_day_1")],
     r"A flagged baseline visit must be on or before study day 1"),
    ("volume_with_cocktail", _volume_missing,
     [("sessions", 1, "volume_ml", None, "volume_with_cocktail")],
     r"the volume injected \(volume_ml\) is required"),
    ("volume_with_cocktail_column", _volume_column_missing,
     [("sessions", None, "volume_ml", None, "volume_with_cocktail")],
     r"column volume_ml is missing but cocktail_id is filled on 8 rows"),
    ("area_with_hair_count", _area_missing,
     [("sessions", 0, "target_area_cm2", None, "area_with_hair_count")],
     r"target_area_cm2 is required when hair_count is given"),
    ("target_area_positive", _area_zero,
     [("sessions", 1, "target_area_cm2", 0.0, "target_area_positive")],
     r"The target area must be greater than 0"),
    ("ingredient_not_reserved", _reserved_ingredient,
     [("cocktails", 2, "ingredient", "age", "ingredient_not_reserved")],
     r"Ingredient names become column names"),
    ("unknown_table", _unknown_table, [("visits", None, None, None, "unknown_table")],
     r"'visits' is not a table of a study \(expected keys: subjects, cocktails"),
    ("not_a_table", _not_a_table, [("subjects", None, None, "list", "not_a_table")],
     r"tables\['subjects'\] must be a pandas DataFrame, got list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "expected", "message"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_rule_violation_gives_exactly_the_expected_problems(
    valid_tables: Tables,
    mutate: Callable[[Tables], None],
    expected: list[Problem],
    message: str,
) -> None:
    mutate(valid_tables)
    with pytest.raises(ValidationError, match=message) as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == expected


def test_every_schema_rule_has_a_failing_example() -> None:
    """The cases above cover every x-mesostats-rule name and every constraint in the schema."""
    schema = load_schema()
    covered = {rule for case in RULE_CASES for *_, rule in case[2]}
    rule_names = {str(r["name"]) for t in schema.tables.values() for r in t.rules}
    constraints = set()
    for table in schema.tables.values():
        for spec in table.fields:
            constraints |= {"type"} if spec.type != "string" else set()
            constraints |= {"required"} if spec.required else set()
            constraints |= {"enum"} if spec.enum else set()
            constraints |= {"minimum"} if spec.minimum is not None else set()
            constraints |= {"maximum"} if spec.maximum is not None else set()
            constraints |= {"pattern"} if spec.pattern else set()
        constraints |= {"primary_key"} if table.primary_key else set()
        constraints |= {"foreign_key"} if table.foreign_keys else set()
    assert rule_names | constraints <= covered, (rule_names | constraints) - covered


def test_valid_tables_pass_and_keep_their_values(valid_tables: Tables) -> None:
    study = load_study(valid_tables)
    assert study.sessions["hair_density"].iloc[:4].tolist() == [100.0, 104.0, 120.0, 130.0]
    assert study.subjects["age"].dtype == np.int64
    assert study.sessions["reactions_assessed"].dtype == bool
    assert str(study.sessions["subject_id"].dtype) == "str"


# --------------------------------------------------------------------------------------------
# constraints that the shipped schema does not use: unique, minLength, maxLength
# --------------------------------------------------------------------------------------------


def schema_with_site_constraints(**constraints: Any) -> StudySchema:
    import json

    base = load_schema()
    with open(f"{base.directory}/subjects.schema.json", encoding="utf-8") as handle:
        raw = json.load(handle)
    for field in raw["fields"]:
        if field["name"] == "site":
            field["constraints"].update(constraints)
    tables = dict(base.tables)
    tables["subjects"] = parse_table_schema("subjects", raw)
    return StudySchema(tables=tables, directory=base.directory, package=base.package)


def test_unique_constraint_reports_every_duplicated_row(valid_tables: Tables) -> None:
    schema = schema_with_site_constraints(unique=True)
    with pytest.raises(ValidationError, match=r"site \(Site\) must be unique") as info:
        load_study(valid_tables, schema=schema)
    assert problem_rows(info.value) == [
        ("subjects", 0, "site", "Lyon", "unique"),
        ("subjects", 1, "site", "Lyon", "unique"),
        ("subjects", 2, "site", "Porto", "unique"),
        ("subjects", 3, "site", "Porto", "unique"),
    ]


def test_min_and_max_length_constraints(valid_tables: Tables) -> None:
    schema = schema_with_site_constraints(minLength=2, maxLength=4)
    set_cell(valid_tables["subjects"], 0, "site", "L")
    with pytest.raises(ValidationError, match=r"must have at most 4 characters") as info:
        load_study(valid_tables, schema=schema)
    assert problem_rows(info.value) == [
        ("subjects", 0, "site", "L", "minLength"),
        ("subjects", 2, "site", "Porto", "maxLength"),
        ("subjects", 3, "site", "Porto", "maxLength"),
    ]


# --------------------------------------------------------------------------------------------
# details of single rules
# --------------------------------------------------------------------------------------------


def test_day_rule_checks_unsorted_sessions(valid_tables: Tables) -> None:
    """Rows in any order: the rule sorts by subject and visit before comparing days."""
    sessions = valid_tables["sessions"].iloc[::-1].copy()
    sessions.loc[6, "day"] = 100  # S02 visit 3 after visit 4 (day 85)
    valid_tables["sessions"] = sessions
    with pytest.raises(ValidationError, match="day must increase with visit") as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [("sessions", 7, "day", 85, "day_increases_with_visit")]


def test_type_error_is_reported_once_not_also_as_required(valid_tables: Tables) -> None:
    set_cell(valid_tables["subjects"], 0, "age", "thirty")
    with pytest.raises(
        ValidationError,
        match=r"1 validation problem in subjects:\n  - subjects, row 0, column age "
        r"\(value 'thirty'\)",
    ) as info:
        load_study(valid_tables)
    assert [p[-1] for p in problem_rows(info.value)] == ["type"]


def test_missing_value_tokens_count_as_missing(valid_tables: Tables) -> None:
    set_cell(valid_tables["subjects"], 0, "sex", "NA")
    set_cell(valid_tables["sessions"], 0, "hair_density", "N/A")
    with pytest.raises(
        ValidationError,
        match=r"subjects, row 0, column sex \(value 'NA'\): sex \(Sex\) is required",
    ) as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [("subjects", 0, "sex", "NA", "required")]


def test_dangling_key_of_a_row_with_a_bad_key_type_is_not_double_reported(
    valid_tables: Tables,
) -> None:
    set_cell(valid_tables["adverse_events"], 0, "visit", "two")
    with pytest.raises(
        ValidationError,
        match=r"adverse_events, row 0, column visit \(value 'two'\).*must be a whole number",
    ) as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [("adverse_events", 0, "visit", "two", "type")]


def test_infinite_number_is_a_type_problem(valid_tables: Tables) -> None:
    set_cell(valid_tables["cocktails"], 0, "concentration", float("inf"))
    with pytest.raises(ValidationError, match="must be a number") as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [("cocktails", 0, "concentration", float("inf"), "type")]


def test_integral_decimals_are_accepted_as_integers(valid_tables: Tables) -> None:
    valid_tables["subjects"]["age"] = valid_tables["subjects"]["age"].astype(float)
    set_cell(valid_tables["sessions"], 0, "visit", "1.0")
    study = load_study(valid_tables)
    assert study.subjects["age"].tolist() == [34, 41, 29, 55]
    assert study.sessions["visit"].iloc[0] == 1


def test_numeric_zero_one_booleans_are_accepted(valid_tables: Tables) -> None:
    valid_tables["sessions"]["reactions_assessed"] = valid_tables["sessions"][
        "reactions_assessed"
    ].astype(int)
    study = load_study(valid_tables)
    assert study.sessions["reactions_assessed"].tolist()[:4] == [False, True, True, False]
    set_cell(valid_tables["sessions"], 1, "reactions_assessed", 2)
    with pytest.raises(ValidationError, match="must be true or false") as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [("sessions", 1, "reactions_assessed", 2, "type")]


def test_missing_column_suggests_a_close_name(valid_tables: Tables) -> None:
    valid_tables["subjects"] = valid_tables["subjects"].rename(columns={"diagnosis": "Diagnosis"})
    with pytest.raises(ValidationError, match="A column 'Diagnosis' exists: rename it"):
        load_study(valid_tables)


def test_dataframe_index_labels_are_the_row_labels(valid_tables: Tables) -> None:
    valid_tables["subjects"].index = ["a", "b", "c", "d"]
    set_cell(valid_tables["subjects"], "c", "age", 200)
    with pytest.raises(
        ValidationError,
        match=r"subjects, row c, column age \(value '200'\): age \(Age \(years\)\) must be ≤ 100",
    ) as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [("subjects", "c", "age", 200, "maximum")]


def test_error_message_counts_and_truncates_after_50(valid_tables: Tables) -> None:
    sessions = pd.concat([valid_tables["sessions"]] * 5, ignore_index=True)
    sessions["visit"] = np.arange(1, len(sessions) + 1)
    sessions["day"] = np.arange(1, len(sessions) + 1)
    sessions["hair_density"] = 1000.0
    valid_tables["sessions"] = sessions
    valid_tables["adverse_events"] = valid_tables["adverse_events"].iloc[:0]
    with pytest.raises(ValidationError, match=r"^80 validation problems in sessions:") as info:
        load_study(valid_tables)
    assert "… and 30 more" in str(info.value)
    assert len(info.value.problems) == 80


# --------------------------------------------------------------------------------------------
# completeness: many problems of several kinds → one error listing all of them
# --------------------------------------------------------------------------------------------


def test_many_problems_of_several_kinds_raise_one_error_listing_all(
    valid_tables: Tables,
) -> None:
    injected: set[tuple[str, Any, Any, str]] = set()
    t = valid_tables
    set_cell(t["subjects"], 0, "sex", "X")
    injected.add(("subjects", 0, "sex", "enum"))
    set_cell(t["subjects"], 1, "age", "old")
    injected.add(("subjects", 1, "age", "type"))
    set_cell(t["subjects"], 3, "diagnosis", None)
    injected.add(("subjects", 3, "diagnosis", "required"))
    set_cell(t["cocktails"], 3, "concentration", -1.0)
    injected.add(("cocktails", 3, "concentration", "minimum"))
    set_cell(t["cocktails"], 4, "unit", "mg")
    injected.add(("cocktails", 4, "unit", "enum"))
    set_cell(t["sessions"], 5, "hair_density", 9999.0)
    injected.add(("sessions", 5, "hair_density", "maximum"))
    set_cell(t["sessions"], 6, "pain_vas", "ouch")
    injected.add(("sessions", 6, "pain_vas", "type"))
    set_cell(t["sessions"], 9, "cocktail_id", "ZZ")
    injected.add(("sessions", 9, "cocktail_id", "foreign_key"))
    set_cell(t["sessions"], 13, "volume_ml", None)
    injected.add(("sessions", 13, "volume_ml", "volume_with_cocktail"))
    set_cell(t["sessions"], 8, "day", 0)
    injected.add(("sessions", 8, "day", "day_not_zero"))
    set_cell(t["adverse_events"], 1, "severity", "awful")
    injected.add(("adverse_events", 1, "severity", "enum"))
    set_cell(t["adverse_events"], 2, "subject_id", "S77")
    injected.add(("adverse_events", 2, "subject_id, visit", "foreign_key"))
    set_cell(t["adverse_events"], 3, "serious", "perhaps")
    injected.add(("adverse_events", 3, "serious", "type"))
    with pytest.raises(ValidationError, match=r"^13 validation problems in") as info:
        load_study(t)
    found = {(p[0], p[1], p[2], p[4]) for p in problem_rows(info.value)}
    assert found == injected


# --------------------------------------------------------------------------------------------
# key helpers
# --------------------------------------------------------------------------------------------


def test_combine_codes_gives_equal_codes_to_equal_keys_only() -> None:
    a = (np.array([0, 0, 1, 1, -1]), 2)
    b = (np.array([0, 1, 0, 1, 0]), 2)
    codes = combine_codes([a, b])
    assert codes.tolist() == [0, 1, 2, 3, -1]


def test_combine_codes_renumbers_instead_of_overflowing() -> None:
    big = 2**40
    a = (np.array([0, big - 1, big - 1, 5]), big)
    b = (np.array([0, big - 1, big - 1, 5]), big)
    codes = combine_codes([a, b])
    assert codes[1] == codes[2] and len(set(codes.tolist())) == 3
    assert codes.min() >= 0


def test_duplicated_codes_marks_every_copy() -> None:
    codes = np.array([3, 1, 3, -1, -1, 2, 10**12, 10**12])
    assert duplicated_codes(codes).tolist() == [True, False, True, False, False, False, True, True]


def test_collect_problems_returns_empty_table_for_valid_input(valid_tables: Tables) -> None:
    from mesostats.data.load import read_tables

    raw, read_problems, _ = read_tables(valid_tables, load_schema())
    problems, checked = collect_problems(raw, load_schema(), read_problems=read_problems)
    assert len(problems) == 0
    assert list(problems.columns) == ["table", "row", "column", "value", "rule", "message"]
    assert set(checked) == {"subjects", "cocktails", "sessions", "adverse_events"}


def test_factorize_text_gives_equal_codes_to_equal_values_in_any_order() -> None:
    from mesostats.data.validate import factorize_column

    grouped = pd.Series(["b", "b", "a", "a", None, "b", "c", "c"], dtype="str")
    codes, n = factorize_column(grouped)  # runs: b, a, (missing), b again, c
    assert codes.tolist() == [0, 0, 1, 1, -1, 0, 2, 2] and n == 3
    scattered = pd.Series(["x", "y", "x", "z", "y", None], dtype="str")  # no runs
    codes, n = factorize_column(scattered)
    assert codes.tolist() == [0, 1, 0, 2, 1, -1] and n == 3
