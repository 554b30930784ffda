"""Visit dates (mesostats.data.readers.dates, parse, study_day): sessions exported with dates
instead of study days; day-first / month-first detected per column, declared when ambiguous."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_csv_dialect import european_copy

import mesostats as ms
from mesostats.data.load import load_study
from mesostats.data.readers.dates import dates_to_iso, detect_date_order


def visit_dates(sessions: pd.DataFrame, first: pd.Series) -> pd.Series:
    """Dates from days: the subject's first injection date + (day - 1), or + day before it."""
    day = sessions["day"].to_numpy(dtype=np.int64)
    offset = np.where(day >= 1, day - 1, day)
    start = sessions["subject_id"].map(first).to_numpy(dtype="datetime64[ns]")
    return pd.Series(start + offset.astype("timedelta64[D]"), index=sessions.index)


def with_dates(sessions: pd.DataFrame, first: pd.Series, fmt: str) -> pd.DataFrame:
    out = sessions.drop(columns=["day"])
    out.insert(2, "date", visit_dates(sessions, first).dt.strftime(fmt))
    return out


def dated_european_copy(folder: Path, fmt: str) -> Path:
    """The example study as a French CSV export whose sessions carry visit dates, not days."""
    european_copy(folder)
    sessions = ms.example_study().sessions
    ids = sessions["subject_id"].unique()
    first = pd.Series(pd.Timestamp("2025-01-06") + pd.to_timedelta(np.arange(len(ids)), "D"), ids)
    text = pd.read_csv(folder / "sessions.csv", sep=";", dtype=str, keep_default_na=False)
    text = text.drop(columns=["day"])
    text.insert(2, "date", visit_dates(sessions, first).dt.strftime(fmt).to_numpy())
    text.to_csv(folder / "sessions.csv", sep=";", index=False, encoding="cp1252")
    return folder


def small_dated_copy(folder: Path, tables: dict[str, pd.DataFrame], first: str) -> Path:
    folder.mkdir()
    ids = tables["sessions"]["subject_id"].unique()
    starts = pd.Series(pd.Timestamp(first), index=ids)
    for name, frame in tables.items():
        if name == "sessions":
            frame = with_dates(frame, starts, "%d/%m/%Y")
        frame.to_csv(folder / f"{name}.csv", sep=";", index=False)
    return folder


@pytest.mark.parametrize("fmt", ["%d/%m/%Y", "%d.%m.%Y", "%m/%d/%Y", "%Y-%m-%d"])
def test_example_study_with_visit_dates_loads_with_the_same_days(tmp_path, fmt):
    folder = dated_european_copy(tmp_path / "eu", fmt)
    expected = ms.example_study()
    study = load_study(folder)
    np.testing.assert_array_equal(study.sessions["day"], expected.sessions["day"])
    assert study.sessions["day"].dtype == np.int64
    assert study.sessions["date"].dtype == "datetime64[ns]"
    assert study.sessions["date"].iloc[0] == pd.Timestamp("2025-01-06")
    pd.testing.assert_frame_equal(study.exclusions, expected.exclusions)
    assert len(study.outcome_table("hair_density")) == len(expected.outcome_table("hair_density"))


def test_dates_mixing_day_first_and_month_first_are_one_problem(tmp_path):
    folder = dated_european_copy(tmp_path / "eu", "%d/%m/%Y")
    path = folder / "sessions.csv"
    lines = path.read_text(encoding="cp1252").split("\n")
    cells = lines[9].split(";")
    day, month, year = cells[2].split("/")
    assert int(day) > 12
    cells[2] = f"{month}/{day}/{year}"  # line 10 written month-first
    lines[9] = ";".join(cells)
    path.write_text("\n".join(lines), encoding="cp1252")
    with pytest.raises(
        ms.ValidationError,
        match=r"dates in column date of sessions\.csv mix day-first \(line \d+: '\d\d/\d\d/2025'"
        rf"\) and month-first \(line 10: '{month}/{day}/{year}'\) orders",
    ) as info:
        load_study(folder)
    problems = info.value.problems
    assert list(problems["rule"]) == ["dialect"]


def test_all_ambiguous_dates_are_one_problem_until_the_order_is_declared(tmp_path, valid_tables):
    expected = valid_tables["sessions"]["day"].to_numpy()
    folder = small_dated_copy(tmp_path / "s", valid_tables, "2025-03-09")  # every day ≤ 12
    with pytest.raises(
        ms.ValidationError,
        match=r"the dates in column date of sessions\.csv are ambiguous \(e\.g\. line 2: "
        r"'02/03/2025'\).*dialect=\{'dateOrder': 'DMY'\}.*\"format\": \"%d/%m/%Y\"",
    ) as info:
        load_study(folder)
    assert len(info.value.problems) == 1
    study = load_study(folder, dialect={"dateOrder": "DMY"})
    np.testing.assert_array_equal(study.sessions["day"], expected)
    assert study.sessions["date"].iloc[0] == pd.Timestamp("2025-03-02")
    with pytest.raises(ms.ValidationError, match=r"visit 2 has day 92, not after"):
        load_study(folder, dialect={"dateOrder": "MDY"})  # 09/03 read as 3 September


def test_date_order_declared_in_the_datapackage(tmp_path, valid_tables):
    folder = small_dated_copy(tmp_path / "s", valid_tables, "2025-03-09")
    (folder / "datapackage.json").write_text(
        '{"resources": ['
        '{"name": "subjects", "path": "subjects.csv"},'
        '{"name": "cocktails", "path": "cocktails.csv"},'
        '{"name": "sessions", "path": "sessions.csv", "dialect": {"dateOrder": "DMY"}},'
        '{"name": "adverse_events", "path": "adverse_events.csv"}]}'
    )
    study = load_study(folder / "datapackage.json")
    np.testing.assert_array_equal(study.sessions["day"], valid_tables["sessions"]["day"])


def test_an_unparseable_date_is_a_type_problem_at_its_line(tmp_path, valid_tables):
    folder = small_dated_copy(tmp_path / "s", valid_tables, "2025-03-20")
    path = folder / "sessions.csv"
    path.write_text(path.read_text().replace("12/06/2025", "31/02/2025", 1))
    text = path.read_text().split("\n")
    bad_line = next(i + 1 for i, line in enumerate(text) if "31/02/2025" in line)
    with pytest.raises(ms.ValidationError, match=r"date \(Visit date\) must be a date") as info:
        load_study(folder)
    problems = info.value.problems
    assert list(problems["rule"]) == ["type"]
    assert list(problems["row"]) == [bad_line] and list(problems["value"]) == ["31/02/2025"]


def test_subject_never_injected_gets_no_day_and_is_excluded(valid_tables):
    sessions = valid_tables["sessions"]
    first = pd.Series(pd.Timestamp("2025-03-20"), index=sessions["subject_id"].unique())
    dated = with_dates(sessions, first, "%Y-%m-%d")
    never = dated["subject_id"] == "S03"
    dated.loc[never, "cocktail_id"] = np.nan
    dated.loc[never, "volume_ml"] = np.nan
    tables = {**valid_tables, "sessions": dated}
    tables["adverse_events"] = tables["adverse_events"][
        tables["adverse_events"]["subject_id"] != "S03"
    ]
    study = ms.load_study(tables)
    days = study.sessions["day"]
    assert days[never.to_numpy()].isna().all()
    np.testing.assert_array_equal(days[~never.to_numpy()], sessions["day"][~never])
    excluded = study.exclusions[study.exclusions["reason"].str.startswith("no study day")]
    assert list(excluded["row"]) == list(sessions.index[never])
    outcome = study.outcome_table("hair_density")
    assert "S03" not in set(outcome["subject_id"]) and outcome["day"].notna().all()
    left_out = study.outcome_exclusions("hair_density")
    assert set(sessions.index[never]) <= set(left_out["row"])


def test_iso_dates_and_a_declared_pattern_parse_as_dates(valid_tables):
    sessions = valid_tables["sessions"]
    first = pd.Series(pd.Timestamp("2025-03-20"), index=sessions["subject_id"].unique())
    iso = ms.load_study({**valid_tables, "sessions": with_dates(sessions, first, "%Y-%m-%d")})
    np.testing.assert_array_equal(iso.sessions["day"], sessions["day"])
    typed = with_dates(sessions, first, "%Y-%m-%d")
    typed["date"] = pd.to_datetime(typed["date"])
    native = ms.load_study({**valid_tables, "sessions": typed})
    np.testing.assert_array_equal(native.sessions["day"], sessions["day"])


def test_day_rules_still_check_derived_days(valid_tables):
    sessions = valid_tables["sessions"]
    first = pd.Series(pd.Timestamp("2025-03-20"), index=sessions["subject_id"].unique())
    dated = with_dates(sessions, first, "%Y-%m-%d")
    dated.loc[2, "date"] = "2025-03-01"  # visit 3 of S01 before its visit 2
    with pytest.raises(ms.ValidationError, match=r"later visit number must have a later") as info:
        ms.load_study({**valid_tables, "sessions": dated})
    assert set(info.value.problems["rule"]) == {"day_increases_with_visit"}


def test_detection_counts_only_values_that_tell_the_order():
    text = pd.Series(["2025-04-03", "03/04/2025", "25.12.2024", "13/13/2025", None, "x"])
    found = detect_date_order(text)
    assert (found.order, found.day_first, found.month_first) == ("DMY", 2, None)
    iso = dates_to_iso(text, found.order)
    assert list(iso[:4]) == ["2025-04-03", "2025-04-03", "2024-12-25", "2025-13-13"]
    assert iso[4:].isna().all()
    assert detect_date_order(pd.Series(["2025-04-03", None])).order == "YMD"
    assert detect_date_order(pd.Series(["03/04/2025"]), "MDY").order == "MDY"


def test_day_and_date_that_disagree_are_one_problem_per_subject(valid_tables):
    sessions = valid_tables["sessions"]
    first = pd.Series(pd.Timestamp("2025-03-20"), index=sessions["subject_id"].unique())
    both = sessions.copy()
    both.insert(3, "date", visit_dates(sessions, first).dt.strftime("%Y-%m-%d"))
    assert (
        ms.load_study({**valid_tables, "sessions": both})
        .sessions["day"]
        .equals(ms.load_study(valid_tables).sessions["day"])
    )
    both.loc[7, "day"] = 90  # S02, visit 4
    both.loc[[14, 15], "day"] = [30, 86]  # S04, visits 3 and 4
    with pytest.raises(
        ms.ValidationError,
        match=r"day 90 disagrees with date: counted from the subject's first injection "
        r"\(2025-03-20\) the visit is study day 85",
    ) as info:
        ms.load_study({**valid_tables, "sessions": both})
    problems = info.value.problems
    assert list(problems["rule"]) == ["day_matches_date"] * 2
    assert list(problems["row"]) == [7, 14]


@pytest.mark.parametrize("target", ["folder", "parquet", "sqlite"])
def test_a_study_with_dates_saves_and_loads_back(tmp_path, valid_tables, target):
    sessions = valid_tables["sessions"]
    first = pd.Series(pd.Timestamp("2025-03-20"), index=sessions["subject_id"].unique())
    study = ms.load_study({**valid_tables, "sessions": with_dates(sessions, first, "%d/%m/%Y")})
    if target == "sqlite":
        where: object = ms.save_study(study, f"sqlite:///{tmp_path / 'study.db'}")
    else:
        fmt = "parquet" if target == "parquet" else "csv"
        where = ms.save_study(study, tmp_path / "out", format=fmt)
    back = ms.load_study(where)
    pd.testing.assert_series_equal(back.sessions["date"], study.sessions["date"], check_index=False)
    np.testing.assert_array_equal(back.sessions["day"], sessions["day"])
