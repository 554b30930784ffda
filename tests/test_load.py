"""load_study: sources (folder of CSV/Parquet/XLSX, datapackage.json, dict), CDISC names,
row labels, read problems (encodings, unreadable files, missing tables), input untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mesostats as ms
from mesostats.data.load import load_study

TABLES = ("subjects", "cocktails", "sessions", "adverse_events")


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], fmt: str = "csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        elif fmt == "parquet":
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            frame.to_excel(folder / f"{name}.xlsx", index=False)
    return folder


def assert_same_study(a: ms.Study, b: ms.Study) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(
            getattr(a, name).reset_index(drop=True), getattr(b, name).reset_index(drop=True)
        )
    assert a.ingredients == b.ingredients


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_file_formats_give_the_same_study_as_the_dict(tmp_path, valid_tables, fmt):
    from_dict = load_study(valid_tables)
    from_files = load_study(write_tables(tmp_path / fmt, valid_tables, fmt))
    assert_same_study(from_dict, from_files)
    # files: rows are labelled by line number (header = line 1)
    assert from_files.sessions.index[:3].tolist() == [2, 3, 4]
    assert from_dict.sessions.index[:3].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def problem_rows(error: ms.ValidationError) -> list[tuple]:
    out = []
    for rec in error.problems.itertuples(index=False):
        out.append(
            tuple(
                None if (v is None or (isinstance(v, float) and v != v)) else v
                for v in (rec.table, rec.row, rec.column, rec.value, rec.rule)
            )
        )
    return out


def csv_folder(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    return write_tables(tmp_path / "study", tables, "csv")


def folder_digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def replace_line(path: Path, line: int, old: str, new: str) -> None:
    """Replace text on a 1-based line of a text file (UTF-8)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert old in lines[line - 1], (old, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# CSV: raw values, line numbers
# --------------------------------------------------------------------------------------------


def test_csv_problems_report_raw_text_and_line_numbers(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    replace_line(folder / "sessions.csv", 3, "104.0", "700")  # range error (typed fast path)
    replace_line(folder / "sessions.csv", 5, "130.0", "130,5")  # extra field → field count
    replace_line(folder / "subjects.csv", 4, "29", "29 y")  # type error
    before = folder_digest(folder)
    with pytest.raises(ms.ValidationError, match="3 validation problems") as info:
        load_study(folder)
    assert problem_rows(info.value) == [
        ("subjects", 4, "age", "29 y", "type"),
        ("sessions", 3, "hair_density", "700", "maximum"),
        ("sessions", 5, None, "S01,4,85,,,130,5,,False", "field_count"),
    ]
    assert folder_digest(folder) == before


def test_range_error_alone_is_reported_with_the_raw_text(tmp_path, valid_tables):
    """The fast typed read would give 700.0; the loader re-reads as text to report '700'."""
    folder = csv_folder(tmp_path, valid_tables)
    replace_line(folder / "sessions.csv", 3, "104.0", "700")
    with pytest.raises(ms.ValidationError, match=r"column hair_density \(value '700'\)") as info:
        load_study(folder)
    assert problem_rows(info.value) == [("sessions", 3, "hair_density", "700", "maximum")]


def test_quoted_newlines_and_blank_lines_keep_true_line_numbers(tmp_path, valid_tables):
    valid_tables["adverse_events"].loc[0, "verbatim"] = "redness,\nthen\nswelling"
    folder = csv_folder(tmp_path, valid_tables)
    text = (folder / "adverse_events.csv").read_text(encoding="utf-8")
    lines = text.split("\n")
    # line 1 header, lines 2-4 the first record (two embedded newlines), then rows on 5, 6, 7
    assert lines[4].startswith("S01,2,pain")
    lines.insert(5, "")  # a blank line: the S02 record moves to line 7
    lines[6] = lines[6].replace("S02,3,erythema,mild", "S02,3,erythema,bad")
    (folder / "adverse_events.csv").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(
        ms.ValidationError,
        match=r"adverse_events, row 7, column severity \(value 'bad'\): .*\[rule: enum\]",
    ) as info:
        load_study(folder)
    assert problem_rows(info.value) == [("adverse_events", 7, "severity", "bad", "enum")]


def test_quoted_values_and_blank_lines_load_with_line_number_index(tmp_path, valid_tables):
    valid_tables["adverse_events"].loc[1, "verbatim"] = 'said "ouch",\nloudly'
    folder = csv_folder(tmp_path, valid_tables)
    path = folder / "sessions.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("\n", "\n\n", 2), encoding="utf-8")
    study = load_study(folder)
    assert study.sessions.index[:3].tolist() == [3, 5, 6]
    assert study.adverse_events.index.tolist() == [2, 3, 5, 6]
    assert study.adverse_events["verbatim"].iloc[1] == 'said "ouch",\nloudly'


def test_crlf_line_ends_and_utf8_bom_read_like_plain_utf8(tmp_path, valid_tables):
    valid_tables["adverse_events"].loc[2, "verbatim"] = "rougeur étendue µ"
    plain = load_study(csv_folder(tmp_path / "a", valid_tables))
    folder = tmp_path / "b"
    folder.mkdir()
    for name, frame in valid_tables.items():
        text = frame.to_csv(index=False, lineterminator="\r\n")
        (folder / f"{name}.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert_same_study(plain, load_study(folder))


def test_latin1_bytes_are_reported_per_line_with_other_problems(tmp_path, valid_tables):
    """A file mixing UTF-8 and Latin-1 lines (a Windows-1252 file alone is detected)."""
    folder = csv_folder(tmp_path, valid_tables)
    path = folder / "adverse_events.csv"
    data = path.read_bytes().replace(b"redness\n", "rougeur é\n".encode("latin-1"), 1)
    data = data.replace(b"swelling", "œdème".encode("cp1252"))
    data = data.replace(b"pain,moderate", b"pain,awful")
    path.write_bytes(data)
    with pytest.raises(ms.ValidationError, match="must be one of") as info:
        load_study(folder)  # detected as Windows-1252: only the bad severity is a problem
    assert [(r[0], r[1], r[4]) for r in problem_rows(info.value)] == [("adverse_events", 3, "enum")]
    path.write_bytes(data.replace(b"<b>scalp</b>", "cuir chevelu µ".encode()))
    with pytest.raises(ms.ValidationError, match="holds bytes that are not UTF-8") as info:
        load_study(folder)
    rows = problem_rows(info.value)
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("adverse_events", 3, "enum"),
        ("adverse_events", 4, "encoding"),
        ("adverse_events", 5, "encoding"),
    ]
    assert "0xe9" in info.value.problems["message"].iloc[1]


def test_utf16_file_is_an_encoding_problem_not_a_crash(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    path = folder / "subjects.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(ms.ValidationError, match="UTF-16 text") as info:
        load_study(folder)
    assert problem_rows(info.value) == [
        ("subjects", None, None, repr(path.read_bytes()[:16]), "encoding")
    ]


def test_xlsx_saved_as_csv_is_recognised(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    valid_tables["cocktails"].to_excel(tmp_path / "c.xlsx", index=False)
    (folder / "cocktails.csv").write_bytes((tmp_path / "c.xlsx").read_bytes())
    with pytest.raises(ms.ValidationError, match="an Excel/zip file, not CSV text"):
        load_study(folder)


def test_unnamed_columns_dropped_when_empty_reported_when_filled(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    path = folder / "subjects.csv"
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    path.write_text("\n".join(line + "," for line in lines) + "\n", encoding="utf-8")
    load_study(folder)  # trailing delimiters: an empty unnamed column, dropped
    lines[2] += ",note"
    path.write_text("\n".join(line + ("" if i == 2 else ",") for i, line in enumerate(lines)))
    with pytest.raises(ms.ValidationError, match="has values but no name") as info:
        load_study(folder)
    assert problem_rows(info.value) == [
        ("subjects", 3, "(column 8)", "note", "missing_column_name")
    ]


def test_empty_and_header_only_files(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    header = (folder / "cocktails.csv").read_text(encoding="utf-8").split("\n")[0]
    (folder / "cocktails.csv").write_text(header + "\n", encoding="utf-8")
    (folder / "adverse_events.csv").write_bytes(b"")
    with pytest.raises(
        ms.ValidationError, match=r"cocktails \(cocktails\.csv\) has 0 rows"
    ) as info:
        load_study(folder)
    rows = problem_rows(info.value)
    assert ("cocktails", None, None, 0, "not_empty") in rows
    assert ("adverse_events", 1, "subject_id", None, "missing_column") in rows
    # every session with a cocktail now dangles
    assert sum(r[4] == "foreign_key" for r in rows) == 8


def test_unterminated_quote_is_reported_at_its_line(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    replace_line(folder / "adverse_events.csv", 3, "pain at injection", '"pain at injection')
    with pytest.raises(ms.ValidationError, match="never closed") as info:
        load_study(folder)
    assert problem_rows(info.value)[0] == (
        "adverse_events",
        3,
        None,
        'S01,2,pain,moderate,False,True,"pain at injection',
        "unterminated_quote",
    )


# --------------------------------------------------------------------------------------------
# folders: missing, ambiguous and unreadable files
# --------------------------------------------------------------------------------------------


def test_missing_tables_are_listed_and_adverse_events_may_be_absent(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    (folder / "adverse_events.csv").unlink()
    study = load_study(folder)
    assert len(study.adverse_events) == 0
    assert list(study.adverse_events.columns) == [
        "subject_id", "visit", "event", "severity", "serious", "related", "verbatim",
    ]  # fmt: skip
    (folder / "subjects.csv").unlink()
    (folder / "cocktails.csv").unlink()
    with pytest.raises(ms.ValidationError, match=r"no subjects.csv, subjects.parquet") as info:
        load_study(folder)
    assert problem_rows(info.value) == [
        ("subjects", None, None, None, "missing_table"),
        ("cocktails", None, None, None, "missing_table"),
    ]


def test_two_files_for_one_table_are_ambiguous(tmp_path, valid_tables):
    folder = csv_folder(tmp_path, valid_tables)
    valid_tables["subjects"].to_parquet(folder / "Subjects.parquet")
    with pytest.raises(ms.ValidationError, match="2 files could hold the subjects table") as info:
        load_study(folder)
    assert problem_rows(info.value) == [
        ("subjects", None, None, "Subjects.parquet, subjects.csv", "ambiguous_table")
    ]


def test_corrupt_parquet_and_xlsx_and_directories_are_unreadable(tmp_path, valid_tables):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "subjects.parquet").write_bytes(b"PAR1 not really parquet")
    (folder / "cocktails.xlsx").write_bytes(b"PK\x03\x04 broken zip")
    (folder / "sessions.csv").mkdir()
    with pytest.raises(
        ms.ValidationError, match=r"cannot read .*subjects\.parquet as Parquet"
    ) as info:
        load_study(folder)
    rows = problem_rows(info.value)
    assert [(r[0], r[4]) for r in rows] == [
        ("subjects", "unreadable"),
        ("cocktails", "unreadable"),
        ("sessions", "unreadable"),
    ]


def test_bad_sources_raise_validation_errors(tmp_path):
    with pytest.raises(ms.ValidationError, match="does not exist"):
        load_study(tmp_path / "nowhere")
    with pytest.raises(ms.ValidationError, match="cannot load a study from a int"):
        load_study(42)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ms.ValidationError, match=r"is not a folder or a \.json file"):
        load_study(tmp_path / "x.txt")


# --------------------------------------------------------------------------------------------
# XLSX specifics
# --------------------------------------------------------------------------------------------


def test_xlsx_rows_are_sheet_row_numbers_and_stray_cells_are_reported(tmp_path, valid_tables):
    import openpyxl

    folder = write_tables(tmp_path / "x", valid_tables, "xlsx")
    path = folder / "sessions.xlsx"
    book = openpyxl.load_workbook(path)
    sheet = book.active
    sheet.insert_rows(3)  # a blank row 3: records below move down one row
    sheet.cell(row=6, column=6).value = "lots"  # hair_density of S01 visit 3
    sheet.cell(row=8, column=20).value = "stray"
    book.save(path)
    with pytest.raises(
        ms.ValidationError, match=r"sessions, row 6, column hair_density \(value 'lots'\)"
    ) as info:
        load_study(folder)
    assert problem_rows(info.value) == [
        ("sessions", 6, "hair_density", "lots", "type"),
        ("sessions", 8, "(column 20)", "stray", "missing_column_name"),
    ]


def test_xlsx_sheet_named_after_the_table_is_preferred(tmp_path, valid_tables):
    folder = tmp_path / "x"
    write_tables(folder, valid_tables, "xlsx")
    with pd.ExcelWriter(folder / "cocktails.xlsx") as writer:
        pd.DataFrame({"notes": ["read me"]}).to_excel(writer, sheet_name="README", index=False)
        valid_tables["cocktails"].to_excel(writer, sheet_name="cocktails", index=False)
    assert load_study(folder).ingredients == ["biotin", "dutasteride", "minoxidil"]


# --------------------------------------------------------------------------------------------
# datapackage.json
# --------------------------------------------------------------------------------------------


def write_datapackage(folder: Path, resources: list[dict]) -> Path:
    path = folder / "datapackage.json"
    path.write_text(json.dumps({"name": "trial", "resources": resources}), encoding="utf-8")
    return path


def test_datapackage_with_dialect_encoding_and_inline_data(tmp_path, valid_tables):
    valid_tables["adverse_events"].loc[3, "verbatim"] = "œdème"
    folder = tmp_path / "pkg"
    (folder / "data").mkdir(parents=True)
    valid_tables["subjects"].to_csv(folder / "data" / "subj.csv", index=False, sep=";")
    valid_tables["sessions"].to_parquet(folder / "data" / "sessions.parquet")
    valid_tables["adverse_events"].to_csv(
        folder / "data" / "ae.csv", index=False, encoding="cp1252"
    )
    cocktails = valid_tables["cocktails"]
    inline = [list(cocktails.columns), *cocktails.astype(object).values.tolist()]
    path = write_datapackage(
        folder,
        [
            {"name": "subjects", "path": "data/subj.csv", "dialect": {"delimiter": ";"}},
            {"name": "cocktails", "data": inline},
            {"name": "sessions", "path": "data/sessions.parquet"},
            {"name": "adverse_events", "path": "data/ae.csv", "encoding": "cp1252"},
        ],
    )
    study = load_study(path)
    assert_same_study(load_study(valid_tables), study)
    assert study.source == f"datapackage {path}"


def test_datapackage_problems(tmp_path, valid_tables):
    folder = tmp_path / "pkg"
    folder.mkdir()
    write_tables(folder, valid_tables)
    path = write_datapackage(
        folder,
        [
            {"name": "subjects", "path": "../outside.csv"},
            {"name": "sessions", "path": "sessions.csv"},
            {"name": "cocktails", "path": "nothere.csv"},
        ],
    )
    with pytest.raises(
        ms.ValidationError,
        match=r"path '\.\./outside\.csv' must be relative and inside the package folder",
    ) as info:
        load_study(path)
    assert problem_rows(info.value) == [
        ("subjects", None, None, "../outside.csv", "unreadable"),
        ("cocktails", None, None, "nothere.csv", "missing_table"),
    ]
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ms.ValidationError, match=r"cannot read .* as a Data Package"):
        load_study(path)


def test_shipped_datapackage_layout_reads_a_csv_folder(tmp_path, valid_tables):
    """data_schema/datapackage.json names <table>.csv files: copy it next to CSV files."""
    import shutil

    from mesostats.data.schema import schema_dir

    folder = csv_folder(tmp_path, valid_tables)
    for item in schema_dir().iterdir():
        shutil.copy(item, folder / item.name)
    assert_same_study(load_study(valid_tables), load_study(folder / "datapackage.json"))


# --------------------------------------------------------------------------------------------
# CDISC names
# --------------------------------------------------------------------------------------------


def cdisc_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    from mesostats.data.load import CDISC_COLUMNS

    friendly_to_cdisc = {v: k for k, v in CDISC_COLUMNS.items()}
    out = {name: frame.rename(columns=friendly_to_cdisc) for name, frame in tables.items()}
    ae = out["adverse_events"]
    ae["AESEV"] = ae["AESEV"].str.upper()
    ae["AEDECOD"] = ae["AEDECOD"].str.upper()
    ae["AESER"] = np.where(ae["AESER"], "Y", "N")
    ae["AEREL"] = np.where(ae["AEREL"], "RELATED", "NOT RELATED")
    sessions = out["sessions"]
    sessions["ABLFL"] = np.where(sessions["AVISITN"] == 1, "Y", None)
    return out


def test_cdisc_named_tables_load_to_the_same_study(tmp_path, valid_tables):
    friendly = valid_tables
    friendly["sessions"]["baseline_flag"] = friendly["sessions"]["visit"] == 1
    cdisc = cdisc_tables({k: v.copy() for k, v in friendly.items()})
    assert "USUBJID" in cdisc["sessions"] and "AEREL" in cdisc["adverse_events"]
    expected = load_study(friendly)
    from_dict = load_study(cdisc)
    from_csv = load_study(csv_folder(tmp_path, cdisc))
    for study in (from_dict, from_csv):
        for name in ("subjects", "cocktails", "adverse_events"):
            pd.testing.assert_frame_equal(
                getattr(study, name).reset_index(drop=True),
                getattr(expected, name).reset_index(drop=True),
            )
        assert study.sessions["baseline_flag"].fillna(False).tolist() == (
            expected.sessions["baseline_flag"].tolist()
        )
        assert_frame_values_equal(study.outcome_table(), expected.outcome_table())


def assert_frame_values_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_cdisc_related_values_and_unknown_codes(valid_tables):
    cdisc = cdisc_tables(valid_tables)
    ae = cdisc["adverse_events"]
    ae["AEREL"] = ["possibly related", "Unlikely related", "PROBABLE", "sometimes"]
    with pytest.raises(
        ms.ValidationError, match=r"adverse_events, row 3, column related \(value 'sometimes'\)"
    ) as info:
        load_study(cdisc)
    assert problem_rows(info.value) == [("adverse_events", 3, "related", "sometimes", "type")]
    ae["AEREL"] = ["possibly related", "Unlikely related", "PROBABLE", "N"]
    assert load_study(cdisc).adverse_events["related"].tolist() == [True, False, True, False]


def test_both_names_of_a_column_is_a_duplicate(valid_tables):
    valid_tables["sessions"]["AVISITN"] = valid_tables["sessions"]["visit"]
    with pytest.raises(ms.ValidationError, match="column visit appears more than once"):
        load_study(valid_tables)


# --------------------------------------------------------------------------------------------
# the input is never modified
# --------------------------------------------------------------------------------------------


def test_dataframes_are_not_modified(valid_tables):
    from conftest import make_valid_tables

    valid_tables["sessions"]["cocktail_id"] = valid_tables["sessions"]["cocktail_id"].astype(object)
    cdisc = cdisc_tables(make_valid_tables())
    snapshots = {k: v.copy(deep=True) for k, v in valid_tables.items()}
    cdisc_snap = {k: v.copy(deep=True) for k, v in cdisc.items()}
    study = load_study(valid_tables)
    load_study(cdisc)
    study.sessions.loc[study.sessions.index[0], "hair_density"] = -1.0
    study.subjects.loc[study.subjects.index[0], "site"] = "changed"
    for name, frame in valid_tables.items():
        pd.testing.assert_frame_equal(frame, snapshots[name])
    for name, frame in cdisc.items():
        pd.testing.assert_frame_equal(frame, cdisc_snap[name])


# --------------------------------------------------------------------------------------------
# odd DataFrame input
# --------------------------------------------------------------------------------------------


def test_odd_cells_and_indexes_never_crash(valid_tables):
    ae = valid_tables["adverse_events"]
    ae["verbatim"] = ae["verbatim"].astype(object)
    ae.loc[0, "verbatim"] = "lone surrogate \ud800"
    ae.at[1, "verbatim"] = {"a": [1, 2]}
    subjects = valid_tables["subjects"]
    subjects.index = pd.MultiIndex.from_tuples([("x", i) for i in range(4)])
    subjects["site"] = pd.Categorical(subjects["site"])
    study = load_study(valid_tables)
    assert study.adverse_events["verbatim"].iloc[0] == "lone surrogate \\ud800"
    assert study.adverse_events["verbatim"].iloc[1] == "{'a': [1, 2]}"
    assert study.subjects.index.tolist()[0] == ("x", 0)
    subjects["age"] = subjects["age"].astype(object)
    subjects.loc[("x", 2), "age"] = pd.Timestamp("2020-01-01")
    with pytest.raises(ms.ValidationError, match=r"subjects, row \('x', 2\), column age") as info:
        load_study(valid_tables)
    assert problem_rows(info.value) == [
        ("subjects", ("x", 2), "age", pd.Timestamp("2020-01-01"), "type")
    ]


def test_line_numbers_stay_whole_numbers_beside_table_level_problems(tmp_path, valid_tables):
    """A missing table (row None) and a bad line: the line is reported as 5, not 5.0."""
    folder = csv_folder(tmp_path, valid_tables)
    (folder / "cocktails.csv").unlink()
    replace_line(folder / "sessions.csv", 5, "S01", "S01,extra")
    with pytest.raises(
        ms.ValidationError, match=r"\n  - sessions, row 5 \(value 'S01,extra,"
    ) as info:
        load_study(folder)
    rows = info.value.problems["row"].tolist()
    assert rows[:2] == [None, 5] and type(rows[1]) is int
    assert [p[-1] for p in problem_rows(info.value)][:2] == ["missing_table", "field_count"]
