"""CSV dialects (mesostats.data.readers.csv_dialect, csv_numbers): delimiters, decimal marks,
thousands separators and encodings detected or declared; one root cause gives one problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import mesostats as ms
from mesostats.data.load import load_study
from mesostats.datasets import EXAMPLE_DIR

TABLES = ("subjects", "cocktails", "sessions", "adverse_events")
_DECIMAL = re.compile(r"^-?\d+\.\d+$")


def european_copy(folder: Path, *, delimiter: str = ";", encoding: str = "cp1252") -> Path:
    """The example study as Excel writes it in France: ';', ',' decimals, Windows-1252."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frame = pd.read_csv(EXAMPLE_DIR / f"{name}.csv", dtype=str, keep_default_na=False)
        for col in frame.columns:
            if frame[col].str.match(_DECIMAL).any():
                frame[col] = frame[col].str.replace(".", ",", regex=False)
        frame.to_csv(folder / f"{name}.csv", sep=delimiter, index=False, encoding=encoding)
    return folder


def digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def assert_same_study(a: ms.Study, b: ms.Study) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_european_example_study_is_detected_and_loads_like_the_original(tmp_path):
    folder = european_copy(tmp_path / "eu")
    assert "érythème".encode("cp1252") in (folder / "adverse_events.csv").read_bytes()
    before = digest(folder)
    assert_same_study(ms.example_study(), load_study(folder))
    assert digest(folder) == before


@pytest.mark.parametrize(
    ("delimiter", "encoding"), [("\t", "utf-8"), ("\t", "utf-8-sig"), (";", "utf-8-sig")]
)
def test_tab_and_bom_variants_are_detected(tmp_path, delimiter, encoding):
    folder = european_copy(tmp_path / "v", delimiter=delimiter, encoding=encoding)
    assert_same_study(ms.example_study(), load_study(folder))


def test_declared_dialect_reads_the_european_files(tmp_path):
    folder = european_copy(tmp_path / "eu")
    declared = {"delimiter": ";", "decimalChar": ",", "encoding": "cp1252"}
    assert_same_study(ms.example_study(), load_study(folder, dialect=declared))
    resources = [
        {"name": name, "path": f"{name}.csv", "dialect": declared, "encoding": "windows-1252"}
        for name in TABLES
    ]
    (folder / "datapackage.json").write_text(json.dumps({"resources": resources}))
    assert_same_study(ms.example_study(), load_study(folder / "datapackage.json"))


def test_wrong_declared_delimiter_is_one_problem_per_file(tmp_path):
    folder = european_copy(tmp_path / "eu")
    with pytest.raises(
        ms.ValidationError, match=r"sessions\.csv is separated by ';', not ',' as declared in"
    ) as info:
        load_study(folder, dialect={"delimiter": ","})
    problems = info.value.problems
    assert list(problems["table"]) == list(TABLES)
    assert set(problems["rule"]) == {"dialect"} and set(problems["row"]) == {1}


def test_wrong_declared_decimal_mark_is_one_problem_for_the_file(tmp_path):
    folder = european_copy(tmp_path / "eu")
    with pytest.raises(
        ms.ValidationError,
        match=r"sessions\.csv writes decimals with ',' \(e\.g\. '0,9' on line 2, column "
        r"volume_ml; \d+ values\), not '\.' as declared in dialect=",
    ) as info:
        load_study(folder, dialect={"decimalChar": "."})
    problems = info.value.problems
    assert list(problems["table"]) == ["cocktails", "sessions"]  # the files holding decimals
    assert list(problems["rule"]) == ["dialect", "dialect"]


def test_wrong_declared_encoding_is_one_problem_per_file(tmp_path):
    folder = european_copy(tmp_path / "eu")
    with pytest.raises(
        ms.ValidationError, match=r"adverse_events\.csv is not utf-8 as declared .*Windows-1252"
    ) as info:
        load_study(folder, dialect={"encoding": "utf-8"})
    assert list(info.value.problems["rule"]) == ["encoding"]  # only that file has accents
    utf8 = european_copy(tmp_path / "u", encoding="utf-8")
    with pytest.raises(ms.ValidationError, match=r"is UTF-8 text, not cp1252 as declared"):
        load_study(utf8, dialect={"encoding": "cp1252"})


def test_delimiter_changing_between_rows_is_one_problem(tmp_path, valid_tables):
    folder = tmp_path / "s"
    folder.mkdir()
    for name, frame in valid_tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    path = folder / "sessions.csv"
    lines = path.read_text().split("\n")
    for i in range(10, 15):  # lines 11-15 pasted from another export
        lines[i] = lines[i].replace(",", ";")
    path.write_text("\n".join(lines))
    with pytest.raises(
        ms.ValidationError,
        match=r"sessions\.csv changes delimiter between rows: the header and most rows are "
        r"separated by ',', but 5 rows \(lines 11, 12, 13, 14, 15\) by ';'",
    ) as info:
        load_study(folder)
    sessions = info.value.problems[info.value.problems["table"] == "sessions"]
    assert list(sessions["rule"]) == ["mixed_delimiters"] and list(sessions["row"]) == [11]


def test_mixed_decimal_marks_in_one_column_is_one_problem(tmp_path):
    folder = european_copy(tmp_path / "eu", encoding="utf-8")
    path = folder / "sessions.csv"
    text = path.read_text()
    lines = text.split("\n")
    for i in (40, 41, 90):  # three values written with '.'
        cells = lines[i].split(";")
        cells[5] = cells[5].replace(",", ".")
        lines[i] = ";".join(cells)
    path.write_text("\n".join(lines))
    with pytest.raises(
        ms.ValidationError,
        match=r"column hair_density of sessions\.csv mixes decimal marks: 3 values use '\.' "
        r"\(first on line 41: '\d+\.\d'\) where the file uses ','",
    ) as info:
        load_study(folder)
    assert list(info.value.problems["rule"]) == ["mixed_decimal_marks"]
    assert list(info.value.problems["row"]) == [41]


def test_thousands_separators_are_detected_and_declared(tmp_path, valid_tables):
    valid_tables["cocktails"]["concentration"] = [0.9, 1234.5, 5.0, 0.01, 5.0]
    folder = tmp_path / "k"
    folder.mkdir()
    for name, frame in valid_tables.items():
        text = frame.to_csv(index=False, sep=";", decimal=",")
        (folder / f"{name}.csv").write_text(text.replace("1234,5", "1.234,5"))
    expected = load_study(valid_tables)
    study = load_study(folder)
    assert study.cocktails["concentration"].tolist() == [0.9, 1234.5, 5.0, 0.01, 5.0]
    pd.testing.assert_frame_equal(
        study.sessions.reset_index(drop=True), expected.sessions.reset_index(drop=True)
    )
    declared = load_study(folder, dialect={"decimalChar": ",", "groupChar": "."})
    assert declared.cocktails["concentration"].tolist() == [0.9, 1234.5, 5.0, 0.01, 5.0]


def test_unusable_dialect_values_are_reported(tmp_path, valid_tables):
    folder = european_copy(tmp_path / "eu")
    with pytest.raises(ms.ValidationError, match=r"decimalChar=';' is not a usable decimal"):
        load_study(folder, dialect={"decimalChar": ";", "encoding": "no-such-codec"})
    with pytest.raises(ms.ValidationError, match=r"a dialect is a mapping"):
        load_study(folder, dialect=";")  # type: ignore[arg-type]


def test_undecidable_delimiter_says_how_to_declare_it(tmp_path, valid_tables):
    folder = european_copy(tmp_path / "eu")
    (folder / "cocktails.csv").write_text("a;b,c\nx;y,z\nxx,yy;zz\n")
    with pytest.raises(
        ms.ValidationError, match=r"cannot tell the delimiter of cocktails\.csv.*Declare it"
    ):
        load_study(folder)


def test_numbers_that_could_use_either_mark_are_one_problem(tmp_path, valid_tables):
    """1,250 alone: one and a quarter, or one thousand two hundred and fifty?"""
    valid_tables["cocktails"]["concentration"] = [1.25, 2.5, 5.0, 1.75, 5.0]
    folder = tmp_path / "k"
    folder.mkdir()
    for name, frame in valid_tables.items():
        form = "%.3f" if name == "cocktails" else None  # cocktails: 1,250 2,500 5,000 …
        text = frame.to_csv(index=False, sep=";", float_format=form, decimal=",")
        (folder / f"{name}.csv").write_text(text)
    with pytest.raises(
        ms.ValidationError,
        match=r"cannot tell what ',' means in the numbers of cocktails\.csv: every such value "
        r"\(e\.g\. '1,250', '2,500', '5,000'\) could be a decimal mark or a thousands separator",
    ) as info:
        load_study(folder)
    assert info.value.problems["rule"].tolist() == ["dialect"]
    study = load_study(folder, dialect={"decimalChar": ","})
    assert study.cocktails["concentration"].tolist() == [1.25, 2.5, 5.0, 1.75, 5.0]
    resources = [{"name": name, "path": f"{name}.csv"} for name in TABLES]
    resources[1]["dialect"] = {"decimalChar": ".", "groupChar": ","}  # cocktails only
    (folder / "datapackage.json").write_text(json.dumps({"resources": resources}))
    grouped = load_study(folder / "datapackage.json")
    assert grouped.cocktails["concentration"].tolist() == [1250.0, 2500.0, 5000.0, 1750, 5000]


def test_wrong_dialect_in_datapackage_names_the_resource(tmp_path):
    folder = european_copy(tmp_path / "eu")
    resources = [
        {"name": name, "path": f"{name}.csv", "dialect": {"delimiter": "\t"}} for name in TABLES
    ]
    (folder / "datapackage.json").write_text(json.dumps({"resources": resources}))
    with pytest.raises(
        ms.ValidationError,
        match=r"subjects\.csv is separated by ';', not tab as declared in datapackage\.json "
        r"\(resource subjects\)",
    ) as info:
        load_study(folder / "datapackage.json")
    assert len(info.value.problems) == 4


def test_comma_decimals_after_a_sample_without_decimals_are_read(tmp_path):
    """The sample (first 64 KB) decides nothing when it holds no decimal: here the first data
    line carries a 100,000-character cell, so the sample is the header alone. The file's ','
    decimals are then read as such (the whole file confirms the mark); the one bad cell is one
    ``type`` problem on its line, and no ``dialect`` problem claims the first lines use '.'."""
    folder = european_copy(tmp_path / "eu", encoding="utf-8")
    path = folder / "cocktails.csv"
    lines = path.read_text().split("\n")
    header = lines[0].split(";")
    column = header.index("concentration")
    cells = lines[1].split(";")
    cells[column] = "#" + "9" * 100_000
    lines[1] = ";".join(cells)
    path.write_text("\n".join(lines))
    with pytest.raises(ms.ValidationError) as info:
        load_study(folder)
    problems = info.value.problems
    assert list(problems["rule"]) == ["type"]
    assert list(problems["table"]) == ["cocktails"] and list(problems["row"]) == [2]
    assert list(problems["column"]) == ["concentration"]


def test_a_declared_decimal_mark_the_file_contradicts_is_still_one_problem(tmp_path):
    """Only a detected mark gives way: a declared one that no value uses stays one problem."""
    folder = european_copy(tmp_path / "eu", encoding="utf-8")
    with pytest.raises(
        ms.ValidationError, match=r"writes decimals with ',' .*not '\.' as declared in"
    ):
        load_study(folder, dialect={"delimiter": ";", "decimalChar": "."})
