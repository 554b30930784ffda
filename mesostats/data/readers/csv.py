"""CSV files: parsed by pyarrow's multithreaded reader, labelled with their line numbers.

The fast path asks pyarrow for the schema types directly (the usual case: a clean file costs
little more than ``pandas.read_csv``). If any value does not parse, the file is read again with
**every column as text**, so a stray ``"n/a (dropout)"`` in a number column becomes a
reported ``type`` problem with its raw text instead of a crash (see :mod:`..parse`). The
schema's ``missingValues`` tokens are read as missing.

A file without any double quote is parsed in one go (every newline ends a record: data record
*k* is on line *k* + 1). Otherwise, or when that fails, the careful path takes record
boundaries and line numbers from :mod:`.csv_layout`, skips blank lines and reports rows with the
wrong number of fields. Files pyarrow refuses altogether (odd quoting) are read by the stdlib
:mod:`csv` module, row by row, as a last resort. The dialect (delimiter, decimal mark,
encoding) comes from :mod:`.csv_dialect`; ``,`` decimals are parsed by pyarrow itself.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from mesostats.data.cdisc import CDISC_COLUMNS, CDISC_RECODED
from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.readers.columns import drop_unnamed
from mesostats.data.readers.csv_dialect import (
    CsvDialect,
    choose_delimiter,
    detect_numbers,
    looks_like_cp1252,
    sample_lines,
)
from mesostats.data.readers.csv_layout import (
    Bytes,
    decode_problems,
    field_counts,
    is_valid_utf8,
    map_file,
    parse_header,
    record_layout,
    report_field_counts,
    report_mixed_delimiters,
    report_unterminated_quote,
)
from mesostats.data.readers.csv_numbers import normalise_numbers
from mesostats.data.schema import TableSchema

__all__ = ["read_csv_table"]

_NULLABLE_TYPES = {pa.bool_(): pd.BooleanDtype()}  # (integers with gaps become float64)


def read_csv_table(
    path: Path,
    table: str,
    log: ProblemLog,
    *,
    schema: TableSchema | None = None,
    typed: bool = False,
    dialect: CsvDialect | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> RawTable | None:
    """Read one CSV file; row labels are the line numbers where records start.

    With ``typed=True`` (the fast path) pyarrow parses schema columns to their types while
    reading; any value it cannot parse makes this fall back to reading every column as text
    (``typed=False``), which is what validation needs to report raw values. ``dialect``
    (or the older ``delimiter`` / ``encoding``) declares what is known of the file's dialect;
    the rest is detected (:mod:`.csv_dialect`).
    """
    dialect = (dialect or CsvDialect()).merged(
        CsvDialect(delimiter=delimiter, encoding=encoding, declared_by="datapackage.json")
    )
    origin = path.name
    try:
        data = map_file(path)
    except OSError as exc:
        log.add_one(table, None, None, str(path), "unreadable", f"cannot read {path}: {exc}")
        return None
    text = _utf8_bytes(data, dialect, table, origin, log)
    if text is None:
        return None
    lines = sample_lines(bytes(text[: 1 << 16]))
    known = set(CDISC_COLUMNS) | ({f.name for f in schema.fields} if schema else set())
    chosen = choose_delimiter(lines, known, dialect, table, origin, log)
    if chosen is None:
        return None
    number_columns = _number_columns(schema)
    marks = detect_numbers(lines, chosen, number_columns, dialect, table, origin, log)
    if marks is None:
        return None
    decimal, thousands = marks
    numbers = _Numbers(
        decimal,
        thousands,
        dialect.declared_by if dialect.decimal is not None else None,
        number_columns,
        active=chosen != "," or decimal != "." or thousands is not None,
    )
    return _parse_csv(text, origin, table, log, schema, typed, chosen, numbers)


def _utf8_bytes(
    data: Bytes, dialect: CsvDialect, table: str, origin: str, log: ProblemLog
) -> Bytes | None:
    """The file as UTF-8 bytes (the mapped file itself when it is UTF-8 already), decoded from
    the declared or detected encoding; None (one problem logged) when it cannot be read."""
    declared = dialect.encoding
    key = (declared or "utf-8").lower().replace("-", "").replace("_", "")
    head = bytes(data[:4096])
    not_text = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head
    valid = not not_text and is_valid_utf8(data)
    if key == "utf8" and valid and not head.startswith(codecs.BOM_UTF8):
        return data  # the usual case: parse the mapped file as it is, without a copy
    if key in ("utf8", "utf8sig") and not valid and not not_text:
        text = looks_like_cp1252(bytes(data))
        if text is not None:
            if declared is None:
                return text.encode("utf-8")
            log.add_one(
                table,
                None,
                None,
                declared,
                "encoding",
                f"{origin} is not {declared} as declared in {dialect.declared_by}: it reads as "
                "Windows-1252 (an Excel export). Declare encoding 'cp1252', or leave the "
                "encoding out and mesostats detects it.",
            )
            return None
    if key not in ("utf8", "utf8sig") and valid and not bytes(data).isascii():
        log.add_one(
            table,
            None,
            None,
            declared,
            "encoding",
            f"{origin} is UTF-8 text, not {declared} as declared in {dialect.declared_by}: "
            "read that way its accented letters would be garbled. Declare encoding 'utf-8', "
            "or leave the encoding out.",
        )
        return None
    return decode_problems(bytes(data), table, origin, log, declared or "utf-8")


def _number_columns(schema: TableSchema | None) -> set[str]:
    """Names (schema and CDISC) of the columns holding numbers."""
    if schema is None:
        return set()
    names = {f.name for f in schema.fields if f.type in ("number", "integer")}
    return names | {cdisc for cdisc, name in CDISC_COLUMNS.items() if name in names}


@dataclass(frozen=True)
class _Numbers:
    """How numbers are written in the file (see :mod:`.csv_numbers`)."""

    decimal: str = "."
    thousands: str | None = None
    declared_by: str | None = None
    columns: set[str] = field(default_factory=set)
    active: bool = False  # normalise the number columns of the text read


@dataclass
class _Records:
    """Where the header and the data records of a file are."""

    names: list[str]  # the header
    simple: bool  # no double quote: every newline ends a record, blank lines not skipped
    has_quotes: bool
    body_start: int  # byte offset of the first data record
    starts: np.ndarray  # careful path: byte offsets, ends and first lines of the data records
    ends: np.ndarray
    lines: np.ndarray

    @property
    def empty(self) -> bool:
        return not self.simple and len(self.starts) == 0


def _parse_csv(
    data: Bytes,
    origin: str,
    table: str,
    log: ProblemLog,
    schema: TableSchema | None,
    typed: bool,
    delimiter: str,
    numbers: _Numbers,
    careful: bool = False,
) -> RawTable | None:
    """Parse UTF-8 CSV bytes (see :func:`read_csv_table`): locate the records, parse them with
    pyarrow, label the rows, and fall back (careful path, text, stdlib csv) when needed."""
    missing_values = list(schema.missing_values) if schema is not None else [""]
    if numbers.thousands is not None:
        typed = False  # pyarrow does not read thousands separators: normalise the text
    records = _locate_records(data, delimiter, careful, table, origin, log)
    if records is None:
        return RawTable(pd.DataFrame(), pd.Index([], dtype=np.int64), origin, 1, [])
    if records.body_start >= len(data) or records.empty:
        return _header_only(records.names, origin, table, log)

    def again(careful: bool, typed: bool = typed) -> RawTable | None:
        return _parse_csv(data, origin, table, log, schema, typed, delimiter, numbers, careful)

    def by_python() -> RawTable:
        return _read_csv_python(data, records, table, origin, delimiter, log, missing_values)

    invalid: list[Any] = []
    try:
        arrow_table = _read_arrow(
            data, records, schema, typed, delimiter, numbers.decimal, missing_values, invalid
        )
    except (pa.ArrowException, ValueError):
        if records.simple:
            return again(careful=True)
        if typed:
            return again(careful=True, typed=False)
        return by_python()
    if records.simple and (invalid or _has_blank_rows(arrow_table)):
        return again(careful=True)
    if typed and (invalid or _has_unparsed_nan(arrow_table)):
        return again(careful=careful, typed=False)
    labels = _row_labels(data, records, arrow_table, invalid, delimiter, table, origin, log)
    if labels is None:
        return by_python()
    if numbers.active and not typed:
        normalised = normalise_numbers(
            arrow_table,
            records.names,
            numbers.columns,
            numbers.decimal,
            numbers.thousands,
            labels,
            numbers.declared_by,
            table,
            origin,
            log,
        )
        if normalised is None:
            return None
        arrow_table = normalised
    raw = RawTable(
        _arrow_to_frame(arrow_table, records.names),
        pd.Index(labels),
        origin,
        1,
        list(records.names),
        missing_applied=True,
        typed_read=typed,
    )
    return drop_unnamed(raw, table, log)


def _locate_records(
    data: Bytes, delimiter: str, careful: bool, table: str, origin: str, log: ProblemLog
) -> _Records | None:
    """The header and the data records; None when the file holds no record at all."""
    first_newline = data.find(b"\n")
    header_end = len(data) if first_newline < 0 else first_newline
    names = parse_header(data[:header_end].decode("utf-8"), delimiter)
    simple = (
        not careful and len(names) > 1 and data.find(b'"') < 0 and data[:1] not in (b"\n", b"\r")
    )
    if simple:
        none = np.empty(0, dtype=np.int64)
        return _Records(names, True, False, header_end + 1, none, none, none)
    starts, ends, lines, has_quotes = record_layout(data)
    if has_quotes:
        report_unterminated_quote(data, table, origin, log)
    if len(starts) == 0:
        return None
    names = parse_header(data[starts[0] : ends[0]].decode("utf-8"), delimiter)
    starts, ends, lines = starts[1:], ends[1:], lines[1:]
    body_start = int(starts[0]) if len(starts) else len(data)
    return _Records(names, False, has_quotes, body_start, starts, ends, lines)


def _header_only(names: list[str], origin: str, table: str, log: ProblemLog) -> RawTable:
    frame = pd.DataFrame({i: pd.Series([], dtype="str") for i in range(len(names))})
    frame.columns = pd.Index(names, dtype=object)
    raw = RawTable(frame, pd.Index([], dtype=np.int64), origin, 1, list(names))
    return drop_unnamed(raw, table, log)


def _read_arrow(
    data: Bytes,
    records: _Records,
    schema: TableSchema | None,
    typed: bool,
    delimiter: str,
    decimal: str,
    missing_values: list[str],
    invalid: list[Any],
) -> pa.Table:
    """pyarrow's reader on the data records; rows with a wrong field count go to ``invalid``."""

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    internal = [f"c{i}" for i in range(len(records.names))]
    types, true_values, false_values = _arrow_types(records.names, internal, schema, typed)
    convert = pa_csv.ConvertOptions(
        column_types=types,
        null_values=missing_values,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        decimal_point=decimal,
    )
    if true_values:
        convert.true_values = true_values
        convert.false_values = false_values
    return pa_csv.read_csv(
        pa.BufferReader(pa.py_buffer(memoryview(data)[records.body_start :])),
        read_options=pa_csv.ReadOptions(column_names=internal, block_size=1 << 20),
        parse_options=pa_csv.ParseOptions(
            delimiter=delimiter,
            newlines_in_values=records.has_quotes,
            ignore_empty_lines=not records.simple,
            invalid_row_handler=on_invalid,
        ),
        convert_options=convert,
    )


def _row_labels(
    data: Bytes,
    records: _Records,
    arrow_table: pa.Table,
    invalid: list[Any],
    delimiter: str,
    table: str,
    origin: str,
    log: ProblemLog,
) -> np.ndarray | None:
    """Line number of every row pyarrow returned (rows with a wrong field count reported);
    None when pyarrow's rows cannot be matched with the records (read by stdlib csv then)."""
    if records.simple:
        return np.arange(2, arrow_table.num_rows + 2, dtype=np.int64)
    keep = np.ones(len(records.starts), dtype=bool)
    if invalid:
        counts = field_counts(data, records.starts, delimiter, records.has_quotes)
        keep = counts == len(records.names)
        if int((~keep).sum()) != len(invalid) or int(keep.sum()) != arrow_table.num_rows:
            return None
        explained = report_mixed_delimiters(
            data, records.starts, records.lines, records.has_quotes, ~keep, len(records.names),
            delimiter, table, origin, log,
        )  # fmt: skip
        report_field_counts(
            data,
            records.starts,
            records.ends,
            records.lines,
            counts,
            ~keep & ~explained,
            records.names,
            table,
            origin,
            log,
        )
    elif arrow_table.num_rows != len(records.starts):
        return None
    return records.lines[keep]


def _arrow_to_frame(arrow_table: pa.Table, names: list[str]) -> pd.DataFrame:
    frame = arrow_table.to_pandas(types_mapper=_NULLABLE_TYPES.get, split_blocks=True)
    for i, col in enumerate(frame.columns):
        if pa.types.is_string(arrow_table.schema.field(i).type) and not isinstance(
            frame[col].dtype, pd.StringDtype
        ):
            frame[col] = frame[col].astype("str")
    frame.columns = pd.Index(names, dtype=object)
    return frame


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
        if name in CDISC_RECODED:
            continue  # values are recoded after reading: keep the text
        field_name = CDISC_COLUMNS.get(name, name) if name not in specs else name
        spec = specs.get(field_name)
        if spec is None or field_name in seen:
            continue
        seen.add(field_name)
        if spec.type == "boolean":
            types[key] = pa.bool_() if same_lists else pa.string()
        else:
            types[key] = arrow_of.get(spec.type, pa.string())  # dates: parse.py reads them
    return types, true_values, false_values


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


def _read_csv_python(
    data: Bytes,
    records: _Records,
    table: str,
    origin: str,
    delimiter: str,
    log: ProblemLog,
    missing_values: list[str],
) -> RawTable:
    """Fallback for files pyarrow refuses (odd quoting): the stdlib csv module, row by row."""
    names = records.names
    text = data[int(records.starts[0]) :].decode("utf-8", "replace")
    first_line = int(records.lines[0])
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
                log.add_one(
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
        log.add_one(
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
    return drop_unnamed(raw, table, log)
