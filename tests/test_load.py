"""load_study: sources (folder of CSV/Parquet/XLSX, datapackage.json, dict), CDISC names,
row labels, read problems (encodings, unreadable files, missing tables), input untouched."""

from __future__ import annotations

from pathlib import Path

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
