"""Fuzzing load_study with hypothesis: mutate valid tables (wrong types, out-of-range values,
duplicate keys, dangling foreign keys, missing or extra columns, empty tables, missing keys,
odd unicode, huge strings; for files also Latin-1 and UTF-16 bytes) and check that

- loading raises ValidationError and never another exception, for DataFrames, for a SQLite
  database (rows numbered from 1: pandas writes no primary key) and for CSV files in any of
  the detected dialects (``,`` / ``;`` / tab, ``.`` or ``,`` decimals, UTF-8,
  UTF-8 with BOM, Windows-1252),
- every injected problem is among the reported ones (same table, row, column, rule),
- benign mutations (extra columns, odd text in free-text fields) load without error,
- the input DataFrames, files and database are left byte-identical.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import make_valid_tables
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mesostats.data.load import load_study
from mesostats.data.schema import load_schema
from mesostats.exceptions import ValidationError

SCHEMA = load_schema()
MISSING_TOKENS = {v.strip() for v in SCHEMA.tables["sessions"].missing_values}

# columns per kind, for the fixture tables of conftest.make_valid_tables
NUMERIC_RANGES = [  # (table, column, minimum, maximum)
    ("subjects", "age", 12, 100),
    ("cocktails", "concentration", 0, None),
    ("sessions", "visit", 1, None),
    ("sessions", "volume_ml", 0, 10),
    ("sessions", "hair_density", 0, 600),
    ("sessions", "pain_vas", 0, 10),
    ("adverse_events", "visit", 1, None),
]
TYPED_COLUMNS = [
    ("subjects", "age"),
    ("cocktails", "concentration"),
    ("sessions", "visit"),
    ("sessions", "day"),
    ("sessions", "volume_ml"),
    ("sessions", "hair_density"),
    ("sessions", "pain_vas"),
    ("sessions", "reactions_assessed"),
    ("adverse_events", "visit"),
    ("adverse_events", "serious"),
    ("adverse_events", "related"),
]
ENUM_COLUMNS = [
    ("subjects", "sex"),
    ("subjects", "diagnosis"),
    ("cocktails", "unit"),
    ("adverse_events", "event"),
    ("adverse_events", "severity"),
]
FREE_TEXT = [("subjects", "site"), ("subjects", "arm"), ("adverse_events", "verbatim")]
REQUIRED_KEYS = [
    ("subjects", "subject_id"),
    ("cocktails", "cocktail_id"),
    ("sessions", "subject_id"),
    ("sessions", "visit"),
    ("adverse_events", "subject_id"),
]
PRIMARY_KEYS = {t: list(s.primary_key) for t, s in SCHEMA.tables.items() if s.primary_key}

odd_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\x00\n\r",
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() not in MISSING_TOKENS and s.strip() != "")
huge = st.sampled_from([10_000, 150_000])


# The key columns a dangling key of each kind is looked up in.
REFERENCED_KEYS = {
    "subject": [("subjects", "subject_id")],
    "cocktail": [("cocktails", "cocktail_id")],
    "session": [("sessions", "subject_id"), ("sessions", "visit")],
}


@dataclass
class Mutated:
    """Mutated tables and the problems they must produce: (table, position, column, rule)."""

    tables: dict[str, pd.DataFrame]
    expected: set[tuple[str, Any, Any, str]] = field(default_factory=set)
    used_rows: set[tuple[str, int]] = field(default_factory=set)
    dropped: set[tuple[str, str]] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)
    encodings: dict[str, str] = field(default_factory=dict)
    uncertain: bool = False

    def free_row(self, data: st.DataObject, table: str) -> int | None:
        frame = self.tables[table]
        free = [i for i in range(len(frame)) if (table, i) not in self.used_rows]
        if not free:
            return None
        row = data.draw(st.sampled_from(free))
        self.used_rows.add((table, row))
        return row

    def set(self, table: str, row: int, column: str, value: Any) -> bool:
        frame = self.tables[table]
        if column not in frame.columns or (table, column) in self.dropped:
            return False
        if not (isinstance(value, float) and np.isnan(value)):
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return True

    def forget(self, table: str, column: str | None = None) -> None:
        """Drop expectations that a table-level or column-level mutation may invalidate.

        Foreign-key expectations are dropped conservatively, so afterwards an error may be
        raised although nothing is expected any more (``uncertain``).
        """
        before = len(self.expected)
        self.expected = {
            e
            for e in self.expected
            if not (
                (e[0] == table and (column is None or column in str(e[2]).split(", ")))
                or e[3] == "foreign_key"
            )
        }
        self.uncertain |= len(self.expected) < before


def mutate(data: st.DataObject, m: Mutated, for_files: bool) -> None:
    kind = data.draw(
        st.sampled_from(
            [
                "wrong_type", "out_of_range", "duplicate_key", "dangling_key", "missing_column",
                "extra_column", "empty_table", "missing_key", "odd_enum", "odd_free_text",
                "huge_text", "object_cell",
            ]
        )
    )  # fmt: skip
    if kind in ("wrong_type", "huge_text", "object_cell"):
        table, column = data.draw(st.sampled_from(TYPED_COLUMNS))
        row = m.free_row(data, table)
        if row is None:
            return
        if kind == "wrong_type":
            value: Any = "#" + data.draw(odd_text)
        elif kind == "huge_text":
            value = "#" + "9" * data.draw(huge)
        else:
            value = [1, 2]
        if m.set(table, row, column, value):
            m.expected.add((table, row, column, "type"))
    elif kind == "out_of_range":
        table, column, low, high = data.draw(st.sampled_from(NUMERIC_RANGES))
        row = m.free_row(data, table)
        if row is None:
            return
        step = data.draw(st.sampled_from([1, 7, 1000, 10**9]))
        if high is not None and data.draw(st.booleans()):
            value, rule = high + step, "maximum"
        else:
            value, rule = low - step, "minimum"
        if m.set(table, row, column, value):
            m.expected.add((table, row, column, rule))
    elif kind == "duplicate_key":
        table = data.draw(st.sampled_from(sorted(PRIMARY_KEYS)))
        row = m.free_row(data, table)
        if row is None or any((table, k) in m.dropped for k in PRIMARY_KEYS[table]):
            return
        frame = m.tables[table]
        copy_at = len(frame)
        m.tables[table] = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
        m.used_rows.add((table, copy_at))
        column = ", ".join(PRIMARY_KEYS[table])
        m.expected |= {(table, row, column, "primary_key"), (table, copy_at, column, "primary_key")}
    elif kind == "dangling_key":
        choice = data.draw(st.sampled_from(["subject", "cocktail", "session"]))
        table = "adverse_events" if choice == "session" else "sessions"
        row = m.free_row(data, table)
        if row is None:
            return
        if choice == "subject":
            ok, column = m.set(table, row, "subject_id", "ZZ" + data.draw(odd_text)), "subject_id"
        elif choice == "cocktail":
            ok, column = m.set(table, row, "cocktail_id", "NOPE"), "cocktail_id"
            m.set(table, row, "volume_ml", 1.0)
        else:
            ok, column = m.set(table, row, "visit", 99), "subject_id, visit"
        if ok and any(key in m.dropped for key in REFERENCED_KEYS[choice]):
            m.uncertain = True  # the referenced key column was dropped: nothing to check against
        elif ok:
            m.expected.add((table, row, column, "foreign_key"))
    elif kind == "missing_column":
        table, column = data.draw(st.sampled_from(REQUIRED_KEYS + ENUM_COLUMNS))
        if column in m.tables[table].columns:
            m.tables[table] = m.tables[table].drop(columns=column)
            m.dropped.add((table, column))
            m.forget(table, column)
            m.expected.add((table, "header", column, "missing_column"))
    elif kind == "extra_column":
        table = data.draw(st.sampled_from(sorted(m.tables)))
        # named per table: the same extra name in subjects and sessions is a real column clash
        # (subject columns are copied into the analysis tables), not a benign mutation
        name = f"extra_{table}_" + data.draw(st.text("abcxyz_", min_size=1, max_size=6))
        values = data.draw(st.sampled_from(["text", "numbers", "odd"]))
        frame = m.tables[table]
        if any(name in other.columns for other in m.tables.values()):
            m.uncertain = True  # the same extra column in subjects and sessions: a clash
        if values == "odd":
            frame[name] = [data.draw(odd_text) for _ in range(len(frame))]
        else:
            frame[name] = np.arange(len(frame)) if values == "numbers" else "note"
    elif kind == "empty_table":
        table = data.draw(st.sampled_from(sorted(m.tables)))
        m.tables[table] = m.tables[table].iloc[:0]
        m.forget(table)
        m.used_rows |= {(table, i) for i in range(10_000)}
        if table != "adverse_events":
            m.expected.add((table, None, None, "not_empty"))
    elif kind == "missing_key":
        table, column = data.draw(st.sampled_from(REQUIRED_KEYS))
        row = m.free_row(data, table)
        if row is not None and m.set(
            table, row, column, data.draw(st.sampled_from([None, np.nan]))
        ):
            m.expected.add((table, row, column, "required"))
    elif kind == "odd_enum":
        table, column = data.draw(st.sampled_from(ENUM_COLUMNS))
        row = m.free_row(data, table)
        if row is None:
            return
        value = "~" + data.draw(odd_text)
        if m.set(table, row, column, value):
            m.expected.add((table, row, column, "enum"))
    else:  # odd or huge free text: valid
        table, column = data.draw(st.sampled_from(FREE_TEXT))
        row = m.free_row(data, table)
        if row is None:
            return
        value = data.draw(odd_text) if kind == "odd_free_text" else "x" * data.draw(huge)
        m.set(table, row, column, value)


# CSV dialects a file may be written in: (delimiter, decimal mark, encoding); all detected.
DIALECTS = [(",", ".", "utf-8"), (";", ",", "cp1252"), ("\t", ".", "utf-8-sig")]


def dialect_text(frame: pd.DataFrame, delimiter: str, decimal: str) -> str:
    """The table as CSV text in a dialect (floats written with the decimal mark)."""
    if decimal == ".":
        return frame.to_csv(index=False, sep=delimiter)
    out = pd.DataFrame(
        {
            i: pd.Series(
                [
                    str(v).replace(".", decimal) if isinstance(v, float) and v == v else v
                    for v in frame.iloc[:, i].tolist()
                ],
                dtype=object,
            )
            for i in range(frame.shape[1])
        }
    )
    out.columns = frame.columns
    return out.to_csv(index=False, sep=delimiter)


def write_csv(m: Mutated, folder: Path, data: st.DataObject) -> None:
    """Write the tables as CSV in a dialect; maybe add Latin-1 bytes to one, or save it as
    UTF-16."""
    delimiter, decimal, encoding_of_all = data.draw(st.sampled_from(DIALECTS))
    target = data.draw(st.sampled_from([None, *sorted(m.tables)]))
    encoding = data.draw(st.sampled_from(["latin-1", "utf-16"])) if target else None
    for name, frame in m.tables.items():
        text = dialect_text(frame, delimiter, decimal)
        if name == target and encoding == "utf-16":
            (folder / f"{name}.csv").write_bytes(text.encode("utf-16"))
            m.forget(name)
            m.unreadable.add(name)
            m.expected.add((name, None, None, "encoding"))
        elif (
            name == target and encoding == "latin-1" and (row := m.free_row(data, name)) is not None
        ):
            # A non-UTF-8 byte in an extra field: the row is not read. The file reads as
            # Windows-1252 (detected) unless it also holds UTF-8 text (then an encoding problem).
            lines = text.split("\n")
            lines[row + 1] += f"{delimiter}é!"
            (folder / f"{name}.csv").write_bytes(
                "\n".join(lines).encode("latin-1", errors="replace")
            )
            m.expected.add((name, ("line", row + 2), None, "field_count"))
            m.uncertain |= not text.isascii()
        else:
            if encoding_of_all == "cp1252" and not all(ch.isascii() or ch.isalpha() for ch in text):
                m.uncertain = True  # symbols cp1252 cannot tell from other encodings
            (folder / f"{name}.csv").write_bytes(text.encode(encoding_of_all, errors="replace"))


def reported(error: ValidationError, for_files: bool) -> set[tuple[str, Any, Any, str]]:
    out = set()
    for rec in error.problems.itertuples(index=False):
        row = rec.row
        column = None if rec.column is None or rec.column != rec.column else rec.column
        out.add((rec.table, row, column, rec.rule))
        if rec.rule == "missing_column":
            out.add((rec.table, "header", column, rec.rule))
    return out


def as_reported_rows(
    expected: set[tuple[str, Any, Any, str]], mode: str
) -> set[tuple[str, Any, Any, str]]:
    out = set()
    for table, row, column, rule in expected:
        if isinstance(row, tuple):  # already a line number
            row = row[1]
        elif isinstance(row, (int, np.integer)) and mode == "files":
            row = int(row) + 2  # header on line 1, no embedded newlines in the values
        elif isinstance(row, (int, np.integer)) and mode == "sqlite":
            row = int(row) + 1  # tables without a primary key: rows numbered from 1
        out.add((table, row, column, rule))
    return out


def write_sqlite(m: Mutated, path: Path) -> str:
    """The tables in a SQLite database (pandas' to_sql: no primary keys); cells a database
    cannot hold (lists) are written as their text."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for name, frame in m.tables.items():
            out = frame.copy()
            for col in out.columns:
                if out[col].dtype == object:
                    out[col] = [
                        str(v) if isinstance(v, (list, tuple, dict, set)) else v for v in out[col]
                    ]
            out.to_sql(name, connection, index=False)
    engine.dispose()
    return url


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@settings(
    max_examples=90,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    mode=st.sampled_from(["frames", "files", "sqlite"]),
    n_mutations=st.integers(1, 4),
)
def test_mutated_tables_raise_validation_error_listing_every_injected_problem(
    data: st.DataObject, mode: str, n_mutations: int
) -> None:
    m = Mutated(make_valid_tables())
    for _ in range(n_mutations):
        mutate(data, m, mode != "frames")
    if mode == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = write_sqlite(m, Path(tmp) / "study.db")
            before = digest(Path(tmp))
            outcome = _load(url)
            assert digest(Path(tmp)) == before, "the database was modified"
    elif mode == "files":
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_csv(m, folder, data)
            before = digest(folder)
            outcome = _load(folder)
            assert digest(folder) == before, "input files were modified"
    else:
        snapshot = {k: v.copy(deep=True) for k, v in m.tables.items()}
        outcome = _load(m.tables)
        for name, frame in m.tables.items():
            pd.testing.assert_frame_equal(frame, snapshot[name])
    expected = as_reported_rows(m.expected, mode)
    event("expected problems" if expected else "valid after mutation")
    event(f"mode: {mode}")
    if not expected:
        if not m.uncertain:
            assert not isinstance(outcome, ValidationError), str(outcome)[:2000]
        return
    assert isinstance(outcome, ValidationError), f"no error; expected {sorted(map(str, expected))}"
    found = reported(outcome, mode != "frames")
    found |= {(t, "header" if r in (None, 1) else r, c, rule) for t, r, c, rule in found}
    missing = {e for e in expected if e not in found}
    assert not missing, f"not reported: {missing}\n{str(outcome)[:3000]}"


def _load(source: Any) -> Any:
    try:
        return load_study(source)
    except ValidationError as exc:
        return exc


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-32", "shift_jis"])
def test_wrong_encodings_never_escape_as_other_exceptions(tmp_path: Path, encoding: str) -> None:
    tables = make_valid_tables()
    tables["adverse_events"].loc[0, "verbatim"] = "œdème – 腫れ"
    for name, frame in tables.items():
        data = frame.to_csv(index=False).encode(encoding, errors="replace")
        (tmp_path / f"{name}.csv").write_bytes(data)
    before = digest(tmp_path)
    with pytest.raises(ValidationError, match="encoding") as info:
        load_study(tmp_path)
    assert set(info.value.problems["rule"]) <= {"encoding", "missing_table", "foreign_key"}
    assert digest(tmp_path) == before
