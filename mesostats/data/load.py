"""Read a study from files or DataFrames, validate it, and return a :class:`Study`.

Sources
-------
- a **folder** holding ``subjects``, ``cocktails``, ``sessions`` and (optionally)
  ``adverse_events`` as ``.csv``, ``.parquet`` or ``.xlsx`` files (file names are matched
  without regard to case; two files for the same table are a problem);
- a **datapackage.json** (Frictionless Data Package) whose resources are named after the
  tables; each resource's ``path`` (relative, inside the package folder), ``format``,
  ``encoding`` and ``dialect.delimiter`` are honoured, and inline ``data`` is read too. The
  data are validated against mesostats' schemas, not against schemas the package carries;
- a **dict of DataFrames** with those keys (``adverse_events`` may be left out).

Every problem met while reading — a missing table, an unreadable or ambiguous file, bytes that
are not UTF-8 (e.g. a Latin-1 or UTF-16 export), a line with the wrong number of fields — is
collected with the validation problems and raised as one
:class:`~mesostats.exceptions.ValidationError`; no other exception type escapes
:func:`load_study` for bad input. Input files are only read; the caller's DataFrames are never
modified (every change happens on new objects).

How values are read
-------------------
CSV files are parsed by pyarrow's multithreaded reader. The fast path asks pyarrow for the
schema types directly (the usual case: a clean file costs little more than
``pandas.read_csv``). If any value does not parse, or validation finds any problem, the file
is read again with **every column as text**, so a stray ``"n/a (dropout)"`` in a number column
becomes a reported ``type`` problem with its raw text instead of a crash, and every problem
shows the value exactly as written in the file; numbers are then parsed column by column (see
:mod:`mesostats.data.validate`). The schema's ``missingValues`` tokens are read as missing.
Parquet and XLSX keep the cell types they store; cells that do not fit the schema are reported
with their stored value. Files are read side by side in threads (the work happens in pyarrow /
openpyxl C code).

Row labels (``row`` in problems and exclusions, and the index of the Study tables)
----------------------------------------------------------------------------------
- CSV: the 1-based **line number** where the record starts (header = line 1). Line numbers
  are computed from the raw bytes with numpy: a newline inside a double-quoted value does not
  end a record, so a record that spans lines is labelled with its first line, and later records
  keep their true line numbers; blank lines are skipped but counted. (Lines are counted by
  ``\\n``; files using bare ``\\r`` line ends get record numbers instead.)
- XLSX: the spreadsheet row number (header = row 1); fully empty rows are skipped but counted.
- Parquet and inline datapackage data: record number + 1, as in the same table written as CSV.
- DataFrames: the index label.

CDISC column names
------------------
Tables laid out with CDISC (SDTM/ADaM) variable names are read through this mapping, in every
table where the column appears:

============  ==================  ==========================================================
CDISC name    mesostats column    values
============  ==================  ==========================================================
USUBJID       subject_id
SITEID        site
ARM           arm
SEX           sex                 F / M
AGE           age
AVISITN       visit
ADY           day
ABLFL         baseline_flag       Y / empty
AEDECOD       event               any case; spaces and hyphens read as ``_``
AETERM        verbatim
AESEV         severity            MILD / MODERATE / SEVERE, any case
AESER         serious             Y / N
AEREL         related             Y / N, RELATED / NOT RELATED, POSSIBLY / PROBABLY /
                                  DEFINITELY RELATED, UNRELATED, UNLIKELY RELATED, any case
============  ==================  ==========================================================

A table may mix CDISC and friendly names, but not both names of the same column (reported as
``duplicate_column``). Problems in these columns show the value after the mapping of values.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import mmap
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from mesostats.data.schema import StudySchema, TableSchema, load_schema
from mesostats.data.study import Study
from mesostats.data.validate import RawTable, as_text, validate_tables
from mesostats.exceptions import PROBLEM_COLUMNS, ValidationError

__all__ = ["CDISC_COLUMNS", "load_study", "read_tables"]

CDISC_COLUMNS: dict[str, str] = {
    "USUBJID": "subject_id",
    "SITEID": "site",
    "ARM": "arm",
    "SEX": "sex",
    "AGE": "age",
    "AVISITN": "visit",
    "ADY": "day",
    "ABLFL": "baseline_flag",
    "AEDECOD": "event",
    "AETERM": "verbatim",
    "AESEV": "severity",
    "AESER": "serious",
    "AEREL": "related",
}

_RELATED_TRUE = (
    "y",
    "yes",
    "related",
    "possibly related",
    "probably related",
    "definitely related",
    "possible",
    "probable",
    "definite",
)
_RELATED_FALSE = ("n", "no", "not related", "unrelated", "unlikely related", "unlikely", "none")

_CDISC_RECODED = ("AESEV", "AEDECOD", "AEREL")

Bytes = bytes | mmap.mmap  # file contents: bytes, or a read-only memory map

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx"}


# --------------------------------------------------------------------------------------------
# Problems found while reading
# --------------------------------------------------------------------------------------------


class _ReadLog:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def add(
        self,
        table: str,
        row: object,
        column: str | None,
        value: object,
        rule: str,
        message: str,
        position: int = -1,
    ) -> None:
        self.records.append(
            {
                "table": table,
                "row": row,
                "column": column,
                "value": value,
                "rule": rule,
                "message": message,
                "_pos": position,
            }
        )

    def frame(self) -> pd.DataFrame:
        if not self.records:
            return pd.DataFrame(columns=[*PROBLEM_COLUMNS, "_pos"])
        return pd.DataFrame.from_records(self.records).astype(object)


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _decode_problems(
    data: bytes, table: str, origin: str, log: _ReadLog, encoding: str
) -> bytes | None:
    """Check the encoding; return UTF-8 bytes to parse (or None when unreadable)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        encoding.lower().replace("-", "") == "utf8" and b"\x00" in data[:4096]
    ):
        is_zip = data.startswith(b"PK\x03\x04")
        what = (
            "an Excel/zip file, not CSV text: save it with the .xlsx extension"
            if is_zip
            else "UTF-16 text (or a binary file): re-save it as CSV UTF-8"
        )
        log.add(
            table,
            None,
            None,
            repr(data[:16]),
            "encoding",
            f"{origin} is {what}. mesostats reads CSV files encoded as UTF-8.",
        )
        return None
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        try:
            return data.decode(encoding).encode("utf-8")
        except (LookupError, UnicodeDecodeError) as exc:
            log.add(table, None, None, encoding, "encoding", f"{origin}: {exc}")
            return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    bad_positions: list[int] = []

    def collect(exc: UnicodeError) -> tuple[str, int]:
        assert isinstance(exc, UnicodeDecodeError)  # only registered for decoding
        bad_positions.append(exc.start)
        return ("\ufffd", exc.end)

    handler_name = f"mesostats_collect_{id(bad_positions)}"
    codecs.register_error(handler_name, collect)
    text = data.decode("utf-8", errors=handler_name)
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    positions = np.asarray(bad_positions, dtype=np.int64)
    lines = np.searchsorted(newlines, positions) + 1
    first_per_line = np.unique(lines, return_index=True)[1]
    starts = np.concatenate([[0], newlines + 1])
    for i in first_per_line:
        line = int(lines[i])
        pos = int(positions[i])
        line_start = int(starts[line - 1])
        line_end = int(newlines[line - 1]) if line - 1 < len(newlines) else len(data)
        snippet = data[max(line_start, pos - 40) : min(line_end, pos + 40)]
        log.add(
            table,
            line,
            None,
            snippet.decode("utf-8", "backslashreplace"),
            "encoding",
            f"line {line} of {origin} holds bytes that are not UTF-8 (e.g. byte "
            f"0x{data[pos]:02x}); the file was probably saved as Latin-1/Windows-1252. "
            "Re-save it as CSV UTF-8, or declare its encoding in a datapackage.json.",
            position=line,
        )
    return text.encode("utf-8")


def _record_layout(data: Bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Start offset, end offset and first line number of every non-empty CSV record.

    A newline ends a record only outside double quotes (even number of quote characters
    before it); records that are empty (or only ``\\r``) are blank lines and are dropped.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    has_quotes = data.find(b'"') >= 0
    if has_quotes:
        quotes = np.flatnonzero(arr == 34)
        breaks_idx = np.flatnonzero(np.searchsorted(quotes, newlines) % 2 == 0)
    else:
        breaks_idx = np.arange(len(newlines))
    breaks = newlines[breaks_idx]
    starts = np.concatenate([[0], breaks + 1]).astype(np.int64)
    ends = np.concatenate([breaks, [len(data)]]).astype(np.int64)
    lines = np.concatenate([[1], breaks_idx + 2]).astype(np.int64)
    length = ends - starts
    carriage = np.zeros(len(starts), dtype=bool)
    one = length == 1
    carriage[one] = arr[starts[one]] == 13
    keep = (length > 0) & ~carriage
    return starts[keep], ends[keep], lines[keep], has_quotes


def _report_unterminated_quote(data: Bytes, table: str, origin: str, log: _ReadLog) -> None:
    """An odd number of double quotes: the last one opens a value that never closes."""
    arr = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(arr == 34)
    if len(quotes) % 2 == 0:
        return
    last = int(quotes[-1])
    line = int(np.count_nonzero(arr[:last] == 10)) + 1
    start = data.rfind(b"\n", 0, last) + 1
    end = data.find(b"\n", last)
    end = len(data) if end < 0 else end
    log.add(
        table,
        line,
        None,
        data[start : min(end, start + 200)].decode("utf-8", "replace").rstrip("\r"),
        "unterminated_quote",
        f"line {line} of {origin} opens a double-quoted value that is never closed, so the "
        "rest of the file is read as part of that value. Close the quote, or double the "
        'quote characters inside a value ("").',
        position=line,
    )


def _field_counts(data: Bytes, starts: np.ndarray, delimiter: str, has_quotes: bool) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.uint8)
    delims = np.flatnonzero(arr == ord(delimiter))
    if has_quotes:
        quotes = np.flatnonzero(arr == 34)
        delims = delims[np.searchsorted(quotes, delims) % 2 == 0]
    record = np.searchsorted(starts, delims, side="right") - 1
    record = record[record >= 0]
    return np.bincount(record, minlength=len(starts)) + 1


def _parse_header(text: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    except csv.Error:
        row = text.rstrip("\r\n").split(delimiter)
    return [name.strip().lstrip("\ufeff").strip() for name in row]


def _arrow_types(
    names: list[str], internal: list[str], schema: TableSchema | None, typed: bool
) -> tuple[dict[str, pa.DataType], list[str], list[str]]:
    """pyarrow column types: schema types when ``typed``, else text for every column."""
    types: dict[str, pa.DataType] = {name: pa.string() for name in internal}
    true_values: list[str] = []
    false_values: list[str] = []
    if not typed or schema is None:
        return types, true_values, false_values
    specs = {f.name: f for f in schema.fields}
    booleans = [f for f in schema.fields if f.type == "boolean"]
    same_lists = len({(f.true_values, f.false_values) for f in booleans}) == 1
    if booleans and same_lists:
        true_values, false_values = list(booleans[0].true_values), list(booleans[0].false_values)
    seen: set[str] = set()
    arrow_of = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string()}
    for name, key in zip(names, internal, strict=True):
        if name in _CDISC_RECODED:
            continue  # values are recoded after reading: keep the text
        field_name = CDISC_COLUMNS.get(name, name) if name not in specs else name
        spec = specs.get(field_name)
        if spec is None or field_name in seen:
            continue
        seen.add(field_name)
        if spec.type == "boolean":
            types[key] = pa.bool_() if same_lists else pa.string()
        else:
            types[key] = arrow_of[spec.type]
    return types, true_values, false_values


_NULLABLE_TYPES = {pa.bool_(): pd.BooleanDtype()}  # (integers with gaps become float64)


def read_csv_table(
    path: Path,
    table: str,
    log: _ReadLog,
    *,
    schema: TableSchema | None = None,
    typed: bool = False,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> RawTable | None:
    """Read one CSV file; row labels are the line numbers where records start.

    With ``typed=True`` (the fast path) pyarrow parses schema columns to their types while
    reading; any value it cannot parse makes this fall back to reading every column as text
    (``typed=False``), which is what validation needs to report raw values.
    """
    origin = path.name
    try:
        data = _map_file(path)
    except OSError as exc:
        log.add(table, None, None, str(path), "unreadable", f"cannot read {path}: {exc}")
        return None
    head = bytes(data[:4096])
    plain_utf8 = (
        encoding.lower().replace("-", "").replace("_", "") == "utf8"
        and not head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        and b"\x00" not in head
        and _is_valid_utf8(data)
    )
    if plain_utf8:  # the usual case: parse the mapped file as it is, without a copy
        return _parse_csv(data, origin, table, log, schema, typed, delimiter)
    decoded = _decode_problems(bytes(data), table, origin, log, encoding)
    if decoded is None:
        return None
    return _parse_csv(decoded, origin, table, log, schema, typed, delimiter)


def _map_file(path: Path) -> Bytes:
    """The file's bytes, memory-mapped when possible (no copy; read-only)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return handle.read()
        try:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return handle.read()


def _is_valid_utf8(data: Bytes) -> bool:
    """UTF-8 validity of the whole buffer, checked by pyarrow's (SIMD) validator."""
    if len(data) == 0:
        return True
    buffer = pa.py_buffer(data)
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, buffer])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _parse_csv(
    data: Bytes,
    origin: str,
    table: str,
    log: _ReadLog,
    schema: TableSchema | None,
    typed: bool,
    delimiter: str,
    careful: bool = False,
) -> RawTable:
    """Parse UTF-8 CSV bytes (see :func:`read_csv_table`).

    Fast path (no double quote anywhere, so every newline ends a record): the header is the
    first line and data record *k* is on line *k* + 1; blank lines are not skipped but parsed
    as rows with too few fields, which sends the file down the careful path. Careful path:
    record boundaries and line numbers come from :func:`_record_layout`, blank lines are
    skipped, and rows with the wrong number of fields are reported.
    """
    missing_values = list(schema.missing_values) if schema is not None else [""]
    first_newline = data.find(b"\n")
    header_end = len(data) if first_newline < 0 else first_newline
    names = _parse_header(data[:header_end].decode("utf-8"), delimiter)
    simple = (
        not careful and len(names) > 1 and data.find(b'"') < 0 and data[:1] not in (b"\n", b"\r")
    )
    if simple:
        body_start = header_end + 1
        has_quotes = False
        starts = ends = lines = np.empty(0, dtype=np.int64)
    else:
        starts, ends, lines, has_quotes = _record_layout(data)
        if has_quotes:
            _report_unterminated_quote(data, table, origin, log)
        if len(starts) == 0:
            return RawTable(pd.DataFrame(), pd.Index([], dtype=np.int64), origin, 1, [])
        names = _parse_header(data[starts[0] : ends[0]].decode("utf-8"), delimiter)
        starts, ends, lines = starts[1:], ends[1:], lines[1:]
        body_start = int(starts[0]) if len(starts) else len(data)
    if body_start >= len(data) or (not simple and len(starts) == 0):
        frame = pd.DataFrame({i: pd.Series([], dtype="str") for i in range(len(names))})
        frame.columns = pd.Index(names, dtype=object)
        raw = RawTable(frame, pd.Index([], dtype=np.int64), origin, 1, list(names))
        return _drop_unnamed(raw, table, log)
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    internal = [f"c{i}" for i in range(len(names))]
    types, true_values, false_values = _arrow_types(names, internal, schema, typed)
    convert = pa_csv.ConvertOptions(
        column_types=types,
        null_values=missing_values,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    if true_values:
        convert.true_values = true_values
        convert.false_values = false_values
    try:
        arrow_table = pa_csv.read_csv(
            pa.BufferReader(pa.py_buffer(memoryview(data)[body_start:])),
            read_options=pa_csv.ReadOptions(column_names=internal, block_size=1 << 20),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=has_quotes,
                ignore_empty_lines=not simple,
                invalid_row_handler=on_invalid,
            ),
            convert_options=convert,
        )
    except (pa.ArrowException, ValueError):
        if simple:
            return _parse_csv(data, origin, table, log, schema, typed, delimiter, True)
        if typed:
            return _parse_csv(data, origin, table, log, schema, False, delimiter, True)
        return _read_csv_python(
            data, starts, lines, names, table, origin, delimiter, log, missing_values
        )
    if simple and (invalid or _has_blank_rows(arrow_table)):
        return _parse_csv(data, origin, table, log, schema, typed, delimiter, True)
    if typed and (invalid or _has_unparsed_nan(arrow_table)):
        return _parse_csv(data, origin, table, log, schema, False, delimiter, careful)
    if simple:
        keep_lines = np.arange(2, arrow_table.num_rows + 2, dtype=np.int64)
    else:
        keep = np.ones(len(starts), dtype=bool)
        if invalid:
            counts = _field_counts(data, starts, delimiter, has_quotes)
            keep = counts == len(names)
            if int((~keep).sum()) != len(invalid) or int(keep.sum()) != arrow_table.num_rows:
                return _read_csv_python(
                    data, starts, lines, names, table, origin, delimiter, log, missing_values
                )
            _report_field_counts(
                data, starts, ends, lines, counts, ~keep, names, table, origin, log
            )
        elif arrow_table.num_rows != len(starts):
            return _read_csv_python(
                data, starts, lines, names, table, origin, delimiter, log, missing_values
            )
        keep_lines = lines[keep]
    frame = arrow_table.to_pandas(types_mapper=_NULLABLE_TYPES.get, split_blocks=True)
    for i, col in enumerate(frame.columns):
        if pa.types.is_string(arrow_table.schema.field(i).type) and not isinstance(
            frame[col].dtype, pd.StringDtype
        ):
            frame[col] = frame[col].astype("str")
    frame.columns = pd.Index(names, dtype=object)
    raw = RawTable(
        frame,
        pd.Index(keep_lines),
        origin,
        1,
        list(names),
        missing_applied=True,
        typed_read=typed,
    )
    return _drop_unnamed(raw, table, log)


def _has_blank_rows(arrow_table: pa.Table) -> bool:
    """Rows with every cell missing: blank lines, which the careful path skips."""
    if arrow_table.num_columns == 0 or arrow_table.num_rows == 0:
        return False
    blank = pc.is_null(arrow_table.column(0))
    for column in arrow_table.columns[1:]:
        if not pc.any(blank).as_py():
            return False
        blank = pc.and_(blank, pc.is_null(column))
    return bool(pc.any(blank).as_py())


def _has_unparsed_nan(arrow_table: pa.Table) -> bool:
    """A float column holding NaN that was text like "-nan" (not a missing-value token)."""
    for column in arrow_table.columns:
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            return True
    return False


def _report_field_counts(
    data: Bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    lines: np.ndarray,
    counts: np.ndarray,
    bad: np.ndarray,
    names: list[str],
    table: str,
    origin: str,
    log: _ReadLog,
) -> None:
    for i in np.flatnonzero(bad):
        text = data[int(starts[i]) : min(int(ends[i]), int(starts[i]) + 200)]
        log.add(
            table,
            int(lines[i]),
            None,
            text.decode("utf-8", "replace").rstrip("\r"),
            "field_count",
            f"line {int(lines[i])} of {origin} has {int(counts[i])} fields but the header has "
            f"{len(names)}; the row was not read. A value holding the delimiter must be "
            "wrapped in double quotes; otherwise a delimiter is missing or extra.",
            position=int(lines[i]),
        )


def _read_csv_python(
    data: Bytes,
    starts: np.ndarray,
    lines: np.ndarray,
    names: list[str],
    table: str,
    origin: str,
    delimiter: str,
    log: _ReadLog,
    missing_values: list[str],
) -> RawTable:
    """Fallback for files pyarrow refuses (odd quoting): the stdlib csv module, row by row."""
    text = data[int(starts[0]) :].decode("utf-8", "replace")
    first_line = int(lines[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    labels: list[int] = []
    previous_end = 0
    try:
        for record in reader:
            start_line = first_line + previous_end
            previous_end = reader.line_num
            if not record or record == [""]:
                continue
            if len(record) != len(names):
                log.add(
                    table,
                    start_line,
                    None,
                    delimiter.join(record)[:200],
                    "field_count",
                    f"line {start_line} of {origin} has {len(record)} fields but the header has "
                    f"{len(names)}; the row was not read. A value holding the delimiter must "
                    "be wrapped in double quotes; otherwise a delimiter is missing or extra.",
                    position=start_line,
                )
                continue
            rows.append(record)
            labels.append(start_line)
    except csv.Error as exc:
        log.add(
            table,
            first_line + previous_end,
            None,
            None,
            "unreadable",
            f"{origin} cannot be parsed as CSV after line {first_line + previous_end}: {exc}. "
            "Check for an unmatched double quote.",
            position=first_line + previous_end,
        )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({i: pd.Series(list(col), dtype="str") for i, col in enumerate(columns)})
    for col in frame.columns:
        frame[col] = frame[col].astype("str")
        frame[col] = frame[col].where(~frame[col].isin(missing_values))
    frame.columns = pd.Index(names, dtype=object)
    raw = RawTable(
        frame, pd.Index(labels, dtype=np.int64), origin, 1, list(names), missing_applied=True
    )
    return _drop_unnamed(raw, table, log)


def _drop_unnamed(raw: RawTable, table: str, log: _ReadLog) -> RawTable:
    """Drop columns without a name that hold no value (trailing delimiters); report others."""
    names = [str(c) for c in raw.frame.columns]
    unnamed = [i for i, n in enumerate(names) if n == "" or n.lower() == "nan" or n == "None"]
    if not unnamed:
        return raw
    keep = [i for i in range(len(names)) if i not in unnamed]
    for i in unnamed:
        col = raw.frame.iloc[:, i]
        filled = col.notna().to_numpy(dtype=bool)
        if filled.any():
            first = int(np.flatnonzero(filled)[0])
            log.add(
                table,
                raw.rows[first],
                f"(column {i + 1})",
                col.iloc[first],
                "missing_column_name",
                f"column {i + 1} of {raw.origin} has values but no name in the header (first "
                f"value on row {raw.rows[first]}); name the column or delete the values.",
                position=first,
            )
    sources = raw.column_sources or names
    return dataclasses.replace(
        raw, frame=raw.frame.iloc[:, keep], column_sources=[sources[i] for i in keep]
    )


# --------------------------------------------------------------------------------------------
# Parquet and XLSX
# --------------------------------------------------------------------------------------------


def read_parquet_table(path: Path, table: str, log: _ReadLog) -> RawTable | None:
    """Read a Parquet file with its stored types; rows labelled record number + 1."""
    try:
        import pyarrow.parquet as pq

        frame = pq.read_table(path).to_pandas(ignore_metadata=True, split_blocks=True)
    except Exception as exc:  # corrupt files raise many types
        log.add(
            table,
            None,
            None,
            str(path.name),
            "unreadable",
            f"cannot read {path} as Parquet ({type(exc).__name__}: {exc}).",
        )
        return None
    frame.columns = pd.Index([str(c) for c in frame.columns], dtype=object)
    rows = pd.Index(np.arange(2, len(frame) + 2, dtype=np.int64))
    frame.index = pd.RangeIndex(len(frame))
    return _drop_unnamed(RawTable(frame, rows, path.name, 1, list(frame.columns)), table, log)


def read_xlsx_table(
    path: Path, table: str, log: _ReadLog, *, sheet: str | None = None
) -> RawTable | None:
    """Read a worksheet (named like the table, else the first) with openpyxl."""
    try:
        import openpyxl

        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # corrupt files raise many types
        log.add(
            table,
            None,
            None,
            str(path.name),
            "unreadable",
            f"cannot read {path} as an Excel workbook ({type(exc).__name__}: {exc}).",
        )
        return None
    try:
        names = workbook.sheetnames
        wanted = sheet if sheet is not None else table
        chosen = wanted if wanted in names else names[0]
        worksheet = workbook[chosen]
        header: list[str] | None = None
        records: list[tuple[Any, ...]] = []
        labels: list[int] = []
        for number, values in enumerate(worksheet.iter_rows(min_row=1, values_only=True), 1):
            if all(v is None or (isinstance(v, str) and v == "") for v in values):
                continue
            if header is None:
                header = ["" if v is None else str(v).strip() for v in values]
                continue
            width = len(header)
            cells = tuple(values)
            if len(cells) > width and any(v is not None for v in cells[width:]):
                log.add(
                    table,
                    number,
                    None,
                    next(v for v in cells[width:] if v is not None),
                    "field_count",
                    f"row {number} of {path.name} has values right of the last named column; "
                    "the row was not read. Name the column or delete the values.",
                    position=number,
                )
                continue
            records.append(cells[:width] + (None,) * (width - len(cells)))
            labels.append(number)
    except Exception as exc:
        log.add(
            table,
            None,
            None,
            str(path.name),
            "unreadable",
            f"cannot read {path} as an Excel workbook ({type(exc).__name__}: {exc}).",
        )
        return None
    finally:
        workbook.close()
    header = header or []
    data = {i: pd.Series([r[i] for r in records], dtype=object) for i in range(len(header))}
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(records)))
    frame.columns = pd.Index(header, dtype=object)
    raw = RawTable(frame, pd.Index(labels, dtype=np.int64), path.name, 1, list(header))
    return _drop_unnamed(raw, table, log)


def _read_file(
    path: Path,
    fmt: str,
    table: str,
    log: _ReadLog,
    *,
    schema: TableSchema | None = None,
    typed: bool = False,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> RawTable | None:
    if fmt == "csv":
        return read_csv_table(
            path,
            table,
            log,
            schema=schema,
            typed=typed,
            delimiter=delimiter,
            encoding=encoding,
        )
    if fmt == "parquet":
        return read_parquet_table(path, table, log)
    return read_xlsx_table(path, table, log)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _read_folder(
    folder: Path, schema: StudySchema, log: _ReadLog, typed: bool
) -> dict[str, RawTable]:
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        log.add("study", None, None, str(folder), "unreadable", f"cannot list {folder}: {exc}")
        return {}
    jobs: dict[str, tuple[Path, str]] = {}
    for name in schema.table_names:
        candidates = [
            p
            for p in entries
            if p.suffix.lower() in _FORMATS and p.name[: -len(p.suffix)].lower() == name
        ]
        if not candidates:
            if schema.tables[name].required_table:
                shown = ", ".join(p.name for p in entries[:20]) or "nothing"
                log.add(
                    name,
                    None,
                    None,
                    None,
                    "missing_table",
                    f"no {name}.csv, {name}.parquet or {name}.xlsx in {folder} (found: {shown}).",
                )
            continue
        if len(candidates) > 1:
            log.add(
                name,
                None,
                None,
                ", ".join(p.name for p in candidates),
                "ambiguous_table",
                f"{len(candidates)} files could hold the {name} table in {folder}: "
                f"{', '.join(p.name for p in candidates)}. Keep only one.",
            )
            continue
        jobs[name] = (candidates[0], _FORMATS[candidates[0].suffix.lower()])

    def read(name: str) -> RawTable | None:
        path, fmt = jobs[name]
        return _read_file(path, fmt, name, log, schema=schema.tables[name], typed=typed)

    # The readers spend their time in pyarrow / openpyxl C code: read the files side by side.
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        results = dict(zip(jobs, pool.map(read, jobs), strict=True))
    return {name: raw for name, raw in results.items() if raw is not None}


def _read_datapackage(
    descriptor_path: Path, schema: StudySchema, log: _ReadLog, typed: bool
) -> dict[str, RawTable]:
    try:
        with open(descriptor_path, encoding="utf-8") as handle:
            package = json.load(handle)
        resources = package["resources"]
        if not isinstance(resources, list):
            raise TypeError("resources is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.add(
            "datapackage",
            None,
            None,
            str(descriptor_path),
            "unreadable",
            f"cannot read {descriptor_path} as a Data Package descriptor: {exc}.",
        )
        return {}
    root = descriptor_path.parent
    by_name = {str(r.get("name")): r for r in resources if isinstance(r, dict)}
    tables: dict[str, RawTable] = {}
    for name in schema.table_names:
        resource = by_name.get(name)
        if resource is None:
            if schema.tables[name].required_table:
                log.add(
                    name,
                    None,
                    None,
                    None,
                    "missing_table",
                    f"{descriptor_path.name} has no resource named {name} (resources: "
                    f"{', '.join(sorted(by_name)) or 'none'}).",
                )
            continue
        raw = _read_resource(resource, root, name, log, schema.tables[name], typed)
        if raw is not None:
            tables[name] = raw
    return tables


def _read_resource(
    resource: Mapping[str, Any],
    root: Path,
    name: str,
    log: _ReadLog,
    table_schema: TableSchema,
    typed: bool,
) -> RawTable | None:
    if "data" in resource and "path" not in resource:
        return _inline_data(resource["data"], name, log)
    rel = resource.get("path")
    if not isinstance(rel, str) or not rel:
        log.add(
            name,
            None,
            None,
            repr(rel),
            "unreadable",
            f"resource {name}: path must be a single relative file path (got {rel!r}).",
        )
        return None
    if "://" in rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        log.add(
            name,
            None,
            None,
            rel,
            "unreadable",
            f"resource {name}: path {rel!r} must be relative and inside the package folder "
            "(remote files are not fetched).",
        )
        return None
    path = root / rel
    fmt = str(resource.get("format") or path.suffix.lstrip(".")).lower()
    fmt = {"pq": "parquet", "xls": "xlsx"}.get(fmt, fmt)
    if fmt not in ("csv", "parquet", "xlsx"):
        log.add(
            name,
            None,
            None,
            fmt,
            "unreadable",
            f"resource {name}: format {fmt!r} is not supported (csv, parquet, xlsx).",
        )
        return None
    dialect = resource.get("dialect") or {}
    delimiter = str(dialect.get("delimiter", ",")) if isinstance(dialect, dict) else ","
    if len(delimiter) != 1:
        delimiter = ","
    encoding = str(resource.get("encoding") or "utf-8")
    if not path.is_file():
        log.add(
            name,
            None,
            None,
            rel,
            "missing_table",
            f"resource {name}: file {path} does not exist.",
        )
        return None
    return _read_file(
        path,
        fmt,
        name,
        log,
        schema=table_schema,
        typed=typed,
        delimiter=delimiter,
        encoding=encoding,
    )


def _inline_data(data: Any, name: str, log: _ReadLog) -> RawTable | None:
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        frame = pd.DataFrame.from_records(data).astype(object)
    elif isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        header = [str(h) for h in data[0]]
        body = data[1:]
        if any(len(r) != len(header) for r in body):
            log.add(
                name,
                None,
                None,
                None,
                "field_count",
                f"resource {name}: inline data rows must have as many values as the header.",
            )
            return None
        frame = pd.DataFrame(body, columns=header, dtype=object)
    else:
        log.add(
            name,
            None,
            None,
            None,
            "unreadable",
            f"resource {name}: inline data must be a list of objects or of arrays.",
        )
        return None
    rows = pd.Index(np.arange(2, len(frame) + 2, dtype=np.int64))
    return RawTable(frame, rows, f"{name} (inline)", 1, [str(c) for c in frame.columns])


def _from_dataframes(
    tables: Mapping[Any, Any], schema: StudySchema, log: _ReadLog
) -> dict[str, RawTable]:
    out: dict[str, RawTable] = {}
    known = set(schema.table_names)
    for key, value in tables.items():
        if key not in known:
            log.add(
                str(key),
                None,
                None,
                None,
                "unknown_table",
                f"{key!r} is not a table of a study (expected keys: "
                f"{', '.join(schema.table_names)}); check the spelling.",
            )
            continue
        if not isinstance(value, pd.DataFrame):
            log.add(
                str(key),
                None,
                None,
                type(value).__name__,
                "not_a_table",
                f"tables[{key!r}] must be a pandas DataFrame, got {type(value).__name__}.",
            )
            continue
        frame = value.copy(deep=False)
        frame.columns = pd.Index([str(c) for c in value.columns], dtype=object)
        rows = (
            value.index.to_flat_index() if isinstance(value.index, pd.MultiIndex) else value.index
        )
        frame.index = pd.RangeIndex(len(frame))
        out[str(key)] = RawTable(frame, rows, "DataFrame", None, list(frame.columns))
    return out


# --------------------------------------------------------------------------------------------
# CDISC names
# --------------------------------------------------------------------------------------------


def _apply_cdisc(raw: RawTable, table_schema: TableSchema) -> RawTable:
    """Rename CDISC columns to friendly names and normalise their coded values."""
    names = [str(c) for c in raw.frame.columns]
    fields = set(table_schema.field_names)
    renamed = [
        CDISC_COLUMNS[n] if n in CDISC_COLUMNS and CDISC_COLUMNS[n] in fields else n for n in names
    ]
    if renamed == names:
        return raw
    frame = raw.frame.copy(deep=False)
    replacements: dict[int, pd.Series] = {}
    for i, (old, new) in enumerate(zip(names, renamed, strict=True)):
        if old == new:
            continue
        column = frame.iloc[:, i]
        if old in ("AESEV", "AEDECOD", "AEREL"):
            replacements[i] = _normalise_cdisc_values(old, column)
    for i, series in replacements.items():
        frame.isetitem(i, series)
    frame.columns = pd.Index(renamed, dtype=object)
    return dataclasses.replace(raw, frame=frame, column_sources=raw.column_sources or names)


def _normalise_cdisc_values(cdisc_name: str, column: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return column
    text = as_text(column)
    lowered = text.str.strip().str.lower()
    if cdisc_name == "AESEV":
        return lowered
    if cdisc_name == "AEDECOD":
        return lowered.str.replace(r"[\s\-]+", "_", regex=True)
    out = text.copy()
    out[lowered.isin(_RELATED_TRUE).to_numpy(dtype=bool)] = "true"
    out[lowered.isin(_RELATED_FALSE).to_numpy(dtype=bool)] = "false"
    return out


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def read_tables(
    source: Any, schema: StudySchema, *, typed: bool = False
) -> tuple[dict[str, RawTable], pd.DataFrame, str]:
    """Read every table of ``source`` as :class:`RawTable` (no type checks yet).

    Returns
    -------
    tables : dict of str to RawTable
        CDISC columns already renamed.
    read_problems : DataFrame
        Problems met while reading (missing tables, encodings, unreadable files, …).
    description : str
        A one-line description of the source.
    """
    log = _ReadLog()
    if isinstance(source, Mapping):
        tables = _from_dataframes(source, schema, log)
        description = "dict of DataFrames"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            tables = _read_folder(path, schema, log, typed)
            description = f"folder {path}"
        elif path.is_file() and path.suffix.lower() == ".json":
            tables = _read_datapackage(path, schema, log, typed)
            description = f"datapackage {path}"
        else:
            what = "does not exist" if not path.exists() else "is not a folder or a .json file"
            log.add(
                "study",
                None,
                None,
                str(path),
                "source",
                f"{path} {what}; pass a folder holding subjects/cocktails/sessions tables, "
                "a datapackage.json, or a dict of DataFrames.",
            )
            tables, description = {}, str(path)
    else:
        log.add(
            "study",
            None,
            None,
            type(source).__name__,
            "source",
            f"cannot load a study from a {type(source).__name__}; pass a folder path, a "
            "datapackage.json path, or a dict of DataFrames.",
        )
        tables, description = {}, repr(type(source))
    renamed = {
        name: _apply_cdisc(raw, schema.tables[name])
        for name, raw in tables.items()
        if name in schema.tables
    }
    return renamed, log.frame(), description


def load_study(source: Any, *, schema: StudySchema | str | os.PathLike[str] | None = None) -> Study:
    """Read, validate and return a study.

    Parameters
    ----------
    source : str, Path or dict of DataFrame
        A folder holding ``subjects``, ``cocktails``, ``sessions`` and optionally
        ``adverse_events`` as ``.csv``, ``.parquet`` or ``.xlsx``; a path to a
        ``datapackage.json``; or a dict of DataFrames with those keys. CDISC column names are
        read too (see the module docstring for the mapping).
    schema : StudySchema or path, optional
        Schema to validate against (a :class:`~mesostats.data.schema.StudySchema` or a folder
        holding ``datapackage.json`` and table schemas); default: the schema shipped with
        mesostats (``data_schema/``).

    Returns
    -------
    Study
        Typed tables (index = source row label), exclusions and ingredient list.

    Raises
    ------
    ValidationError
        Listing every problem in every table (types, required values, enums, ranges, keys,
        cross-row rules, encodings, unreadable or missing files). Nothing else is raised for
        bad input, and the input (files or DataFrames) is never modified.

    Examples
    --------
    >>> import mesostats as ms
    >>> study = ms.load_study("my_study/")  # doctest: +SKIP
    >>> study.outcome_table("hair_density").head()  # doctest: +SKIP
    """
    if schema is None:
        study_schema = load_schema()
    elif isinstance(schema, StudySchema):
        study_schema = schema
    else:
        study_schema = load_schema(Path(schema))
    tables, read_problems, description = read_tables(source, study_schema, typed=True)
    links: dict[tuple[str, str], np.ndarray] = {}
    try:
        typed = _validate(tables, read_problems, study_schema, links)
    except ValidationError:
        if not any(raw.typed_read for raw in tables.values()):
            raise
        # Report raw text values: read the CSV files again with every column as text.
        tables, read_problems, description = read_tables(source, study_schema, typed=False)
        typed = _validate(tables, read_problems, study_schema, links)
    return Study.from_tables(typed, study_schema, source=description, links=links)


def _validate(
    tables: Mapping[str, RawTable],
    read_problems: pd.DataFrame,
    schema: StudySchema,
    links: dict[tuple[str, str], np.ndarray],
) -> dict[str, pd.DataFrame]:
    absent = set(read_problems["table"]) if len(read_problems) else set()
    return validate_tables(
        tables, schema, read_problems=read_problems, absent_tables=absent, links=links
    )
