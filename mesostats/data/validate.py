"""Vectorised, schema-driven validation of study tables: every problem, one error.

Each check is a column operation (numpy, pandas or pyarrow compute): there is no Python loop
over rows, so a million sessions validate in a fraction of a second. Checks are driven by the
Table Schema descriptors of :mod:`mesostats.data.schema`; the cross-row and cross-field rules
come from each schema's ``x-mesostats-rules`` list. frictionless-py would do the same checks row
by row in Python (minutes for a million rows), hence this hand-written module.

What is checked, and the ``rule`` name given to each problem
-------------------------------------------------------------
Table level
    ``missing_table`` (a required table is absent), ``min_rows`` rules (``not_empty``: the table
    has no rows).
Columns
    ``missing_column`` (a field with ``required: true`` is not a column), ``duplicate_column``
    (two columns with the same name, also after CDISC renaming), ``column_clash`` (see below).
Values (per field; missing values are those listed in the schema's ``missingValues``)
    ``type`` (text that is not a number / integer / boolean; ``value`` is the raw text),
    ``required``, ``enum``, ``minimum``, ``maximum``, ``pattern``, ``minLength``,
    ``maxLength``, ``unique``.
Keys
    ``primary_key`` (every row of a duplicated key is reported), ``foreign_key`` (every row
    whose key is not in the referenced table; rows whose key is missing are left to
    ``required``).
Rules from ``x-mesostats-rules`` (the ``kind`` decides the check, the ``name`` is the rule)
    ``min_rows``, ``not_equal``, ``exclusive_minimum``, ``not_in``, ``required_if_present``,
    ``increasing_within``, ``at_most_one_true``, ``true_only_if_at_most``.

A value that fails its type is reported once, as ``type``; the later checks see it as missing
(so it is not also reported as ``required``). Rules that compare rows skip rows whose inputs
are missing or invalid.

Extra columns
-------------
Columns that no schema field names are **kept** (with the type they were read with) and are not
a problem by themselves: studies often carry more than the contract. They are a problem
(``column_clash``) only when they would collide with another column in the analysis tables of
:class:`~mesostats.data.study.Study`: an extra column of ``subjects`` (whose columns are copied
into ``outcome_table`` and ``event_table``) named like a sessions column, a derived column
(``week``, ``value``, ``baseline``, ``chg``, ``pchg``, ``events``, ``any_event``, …) or an
ingredient. Duplicated column names are always a problem.

Speed
-----
Keys are compared as integers: text key columns are dictionary-encoded once (only the first
value of each run of equal values, so rows grouped by subject cost little), composite keys are
combined in mixed radix, duplicates are counted with :func:`numpy.bincount`, and a foreign key
is looked up once per *distinct* value. Text comparisons (enums, missing-value tokens) use
pyarrow's C++ hash sets rather than pandas' ``isin``, which walks pyarrow-backed text in Python.
``bench/bench_load.py`` times a million sessions against plain ``pandas.read_csv``.

Row labels
----------
``row`` in a problem is whatever the reader attached to the row: the 1-based line number in
the file (header = line 1; see :mod:`mesostats.data.load` for how embedded newlines are
handled), or the DataFrame index label. Column-level problems carry the header's label
(line 1 for files, ``None`` for DataFrames); table-level problems carry ``None``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mesostats.data.schema import FieldSpec, StudySchema, TableSchema
from mesostats.exceptions import PROBLEM_COLUMNS, ValidationError

__all__ = ["RawTable", "collect_problems", "validate_tables"]

# Derived columns of Study.outcome_table / event_table: subject columns must not use them.
DERIVED_COLUMNS = (
    "subject_id",
    "visit",
    "day",
    "week",
    "value",
    "baseline",
    "chg",
    "pchg",
    "events",
    "any_event",
    "cocktail_id",
    "volume_ml",
)


@dataclass
class RawTable:
    """A table as read, before types are checked.

    Attributes
    ----------
    frame : DataFrame
        The columns as read: text (``str`` dtype) from CSV files, typed or ``object`` columns
        from Parquet, XLSX and DataFrames. Never modified by validation.
    rows : Index
        Row label of each row of ``frame`` (file line number or DataFrame index label).
    origin : str
        Where the table came from (file name or ``"DataFrame"``), for messages.
    header_row : object
        Label used for column-level problems: ``1`` for files, ``None`` for DataFrames.
    column_sources : list of str, optional
        The original name of each column before CDISC renaming (same order as ``frame``).
    missing_applied : bool
        The reader already turned the schema's missing-value tokens into missing cells.
    typed_read : bool
        The reader parsed schema columns to their types (CSV fast path); problems are then
        reported with typed values, so the loader re-reads as text before raising.
    """

    frame: pd.DataFrame
    rows: pd.Index
    origin: str = "DataFrame"
    header_row: object = None
    column_sources: list[str] | None = None
    missing_applied: bool = False
    typed_read: bool = False


@dataclass
class ProblemLog:
    """Accumulates problems as small DataFrames (one per check) and sorts them at the end."""

    table_order: Sequence[str]
    chunks: list[pd.DataFrame] = field(default_factory=list)

    def add(
        self,
        table: str,
        rows: Any,
        column: str | None,
        values: Any,
        rule: str,
        message: str | Sequence[str] | np.ndarray,
        positions: Any = None,
    ) -> None:
        """Record problems; ``rows``/``values``/``message`` are scalars or equal-length arrays."""
        row_arr = _as_object_array(rows)
        n = len(row_arr)
        if n == 0:
            return
        val_arr = _as_object_array(values, n)
        msg_arr = _as_object_array(message, n)
        pos = (
            np.full(n, -1, dtype=np.int64)
            if positions is None
            else np.asarray(positions, dtype=np.int64)
        )
        self.chunks.append(
            pd.DataFrame(
                {
                    "table": np.full(n, table, dtype=object),
                    "row": row_arr,
                    "column": np.full(n, column, dtype=object),
                    "value": val_arr,
                    "rule": np.full(n, rule, dtype=object),
                    "message": msg_arr,
                    "_pos": pos,
                }
            )
        )

    def extend(self, other: pd.DataFrame) -> None:
        """Add problems already in table form (e.g. from a reader)."""
        if len(other):
            chunk = other.reindex(columns=PROBLEM_COLUMNS).astype(object)
            if "_pos" in other:
                chunk["_pos"] = other["_pos"].to_numpy(dtype=np.int64)
            else:
                chunk["_pos"] = -1
            self.chunks.append(chunk)

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def frame(self) -> pd.DataFrame:
        """All problems, ordered by table (schema order), then row position."""
        if not self.chunks:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})
        problems = pd.concat(self.chunks, ignore_index=True)
        order = {name: i for i, name in enumerate(self.table_order)}
        table_rank = problems["table"].map(order).fillna(len(order)).to_numpy(dtype=np.int64)
        # Within a table: by row when rows are line numbers (files), else by position.
        numeric_rows = pd.to_numeric(
            pd.Series([r if type(r) is int else None for r in problems["row"]], dtype=object),
            errors="coerce",
        ).to_numpy(dtype="float64", na_value=np.nan)
        by_row = bool(np.isfinite(numeric_rows[problems["_pos"].to_numpy() >= 0]).all())
        within = np.where(
            np.isfinite(numeric_rows) & by_row, numeric_rows, problems["_pos"].to_numpy()
        )
        idx = np.lexsort((np.arange(len(problems)), within, table_rank))
        out = problems.iloc[idx][PROBLEM_COLUMNS].reset_index(drop=True)
        return out.astype(object)


def _as_object_array(values: Any, n: int | None = None) -> np.ndarray:
    if isinstance(values, (pd.Index, pd.Series, pd.api.extensions.ExtensionArray)):
        arr = np.array(pd.Series(values).astype(object).to_numpy(), dtype=object, copy=True)
        arr[pd.isna(arr)] = None
        return arr
    if isinstance(values, np.ndarray):
        arr = np.array(values, dtype=object, copy=True)
        if arr.size and values.dtype.kind == "f":
            arr[np.isnan(values)] = None
        return arr
    if isinstance(values, (list, tuple)):
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        return arr
    size = 1 if n is None else n
    arr = np.empty(size, dtype=object)
    arr[:] = [values] * size
    return arr


# --------------------------------------------------------------------------------------------
# Parsing one column
# --------------------------------------------------------------------------------------------


@dataclass
class ParsedColumn:
    """A column parsed to its schema type."""

    values: pd.Series  # typed, NA where missing or invalid
    missing: np.ndarray  # bool: the cell is empty / a missing-value token
    bad: np.ndarray  # bool: the cell has a value that is not of the field's type
    bad_reason: str = ""
    fractional: np.ndarray | None = None  # bool: numbers that are not whole (integer fields)


def as_text(series: pd.Series) -> pd.Series:
    """The column as pandas ``str`` dtype (missing stays missing); never fails on odd objects."""
    if isinstance(series.dtype, pd.StringDtype):
        return series
    try:
        return series.astype("str")
    except (UnicodeEncodeError, TypeError, ValueError):
        # Lone surrogates or objects whose str() fails: make each cell printable.
        return pd.Series(
            [_printable(v) for v in series.to_numpy(dtype=object)],
            index=series.index,
            dtype="str",
        )


def _printable(value: object) -> object:
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        text = str(value)
    except Exception:  # a user object whose __str__ fails
        text = object.__repr__(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_arrow_text(series: pd.Series | pd.Index) -> bool:
    """True for pandas text columns stored as pyarrow strings (the pandas 3 default)."""
    dtype = series.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def arrow_array(series: pd.Series | pd.Index) -> pa.Array:
    """The column as one contiguous pyarrow array (zero-copy when it is one chunk)."""
    arr = pa.array(series, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks()
    return arr


def isin_values(series: pd.Series, values: Any) -> np.ndarray:
    """``series.isin(values)`` as a bool array (False where missing).

    pandas' ``isin`` on pyarrow-backed text walks the lookup values in Python; here text is
    matched by :func:`pyarrow.compute.is_in` (a C++ hash set), which matters for foreign keys
    of a million rows against a hundred thousand subjects.
    """
    if is_arrow_text(series):
        arr = arrow_array(series)
        if isinstance(values, pd.Series) and is_arrow_text(values):
            lookup = arrow_array(values.dropna()).cast(arr.type)
        else:
            lookup = _constant_lookup(tuple(str(v) for v in values if v is not None), arr.type)
        found = pc.is_in(arr, value_set=lookup)
        return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(series.isin(list(values)).to_numpy(dtype=bool), dtype=bool)


@lru_cache(maxsize=256)
def _constant_lookup(values: tuple[str, ...], arrow_type: pa.DataType) -> pa.Array:
    """pyarrow array of a fixed list of strings (enums, missing-value tokens), built once."""
    return pa.array(values, type=arrow_type)


def _missing_mask(text: pd.Series, missing_values: Sequence[str]) -> np.ndarray:
    mask = text.isna().to_numpy(dtype=bool, copy=True)
    if missing_values:
        mask |= isin_values(text, tuple(missing_values))
    return mask


def _is_native(series: pd.Series, ftype: str) -> bool:
    dtype = series.dtype
    if ftype in ("number", "integer"):
        return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if ftype == "boolean":
        return pd.api.types.is_bool_dtype(dtype)
    return False


def parse_column(series: pd.Series, spec: FieldSpec, missing_values: Sequence[str]) -> ParsedColumn:
    """Parse one column to the type of ``spec``, flagging missing and invalid cells.

    Numbers are parsed by pyarrow's vectorised cast when every cell is clean text, else by
    :func:`pandas.to_numeric` with ``errors="coerce"``; integers accept integral decimals such
    as ``"3.0"`` (spreadsheets write them); booleans accept the field's ``trueValues`` and
    ``falseValues`` (and 0/1 numbers).
    """
    ftype = spec.type
    if _is_native(series, ftype):
        if ftype == "boolean":
            values = series.astype("boolean")
            missing = values.isna().to_numpy(dtype=bool)
            return ParsedColumn(values, missing, np.zeros(len(series), dtype=bool))
        if ftype == "integer" and pd.api.types.is_integer_dtype(series.dtype):
            missing = series.isna().to_numpy(dtype=bool)  # all False unless nullable Int64
            return ParsedColumn(series, missing, np.zeros(len(series), dtype=bool))
        numbers = series.astype("float64")
        if ftype == "number" and numbers.dtype == np.float64:
            arr = numbers.to_numpy()
            missing = np.isnan(arr)
            infinite = np.isinf(arr)  # the only invalid values a float column can hold
            if not infinite.any():
                return ParsedColumn(numbers, missing, infinite)
        missing = numbers.isna().to_numpy(dtype=bool)
        return _finish_number(numbers, missing, np.zeros(len(series), dtype=bool), spec)
    if ftype == "boolean" and pd.api.types.is_numeric_dtype(series.dtype):
        numbers = series.astype("float64")
        missing = numbers.isna().to_numpy(dtype=bool)
        ok = numbers.isin([0.0, 1.0]).to_numpy(dtype=bool)
        bad = ~missing & ~ok
        values = pd.Series(pd.array(np.where(ok, numbers == 1.0, False), dtype="boolean"))
        values.index = series.index
        values[~ok] = pd.NA
        return ParsedColumn(values, missing, bad, "is not one of 0/1 or true/false")

    text = as_text(series)
    missing = _missing_mask(text, missing_values)
    has_tokens = bool(missing.any()) and bool(text.notna().to_numpy(dtype=bool)[missing].any())
    if ftype == "string":
        values = text.where(~missing) if has_tokens else text
        return ParsedColumn(values, missing, np.zeros(len(series), dtype=bool))
    if ftype == "boolean":
        is_true = isin_values(text, list(spec.true_values))
        is_false = isin_values(text, list(spec.false_values))
        bad = ~missing & ~is_true & ~is_false
        values = pd.Series(pd.array(is_true, dtype="boolean"), index=series.index)
        values[missing | bad] = pd.NA
        return ParsedColumn(values, missing, bad, "is not a recognised true/false value")
    numbers = _text_to_float(text, missing if has_tokens else None)
    bad = ~missing & numbers.isna().to_numpy(dtype=bool)
    return _finish_number(numbers, missing, bad, spec)


def _text_to_float(text: pd.Series, missing: np.ndarray | None) -> pd.Series:
    """Parse text to float64 (NaN where missing or not a number)."""
    clean = text.where(~missing) if missing is not None else text
    try:
        arr = pc.cast(pa.array(clean, from_pandas=True), pa.float64())
        numbers = pd.Series(arr.to_numpy(zero_copy_only=False), index=text.index, copy=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        numbers = pd.to_numeric(clean, errors="coerce").astype("float64")
    # A literal "nan" that is not a missing-value token is not a number.
    return numbers


def _finish_number(
    numbers: pd.Series, missing: np.ndarray, bad: np.ndarray, spec: FieldSpec
) -> ParsedColumn:
    arr = numbers.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(arr)
    bad = bad | (~missing & ~finite)
    reason = "is not a number"
    if spec.type == "integer":
        with np.errstate(invalid="ignore"):
            integral = finite & (np.floor(arr) == arr) & (np.abs(arr) < 2.0**53)
        fractional = ~bad & ~missing & finite & ~integral
        bad = bad | fractional
        ok = integral & ~bad
        ints = np.where(ok, arr, 0).astype(np.int64)
        values = pd.Series(pd.arrays.IntegerArray(ints, ~ok), index=numbers.index, copy=False)
        return ParsedColumn(values, missing, bad, reason, fractional)
    if not bad.any() and numbers.dtype == np.float64:
        return ParsedColumn(numbers, missing, bad, reason)  # unchanged: keep the Series
    arr = np.where(bad, np.nan, arr)
    return ParsedColumn(pd.Series(arr, index=numbers.index, copy=False), missing, bad, reason)


# --------------------------------------------------------------------------------------------
# Checking one table
# --------------------------------------------------------------------------------------------


def _type_message(spec: FieldSpec) -> str:
    if spec.type == "boolean":
        true = ", ".join(sorted({v.lower() for v in spec.true_values}))
        false = ", ".join(sorted({v.lower() for v in spec.false_values}))
        return (
            f"{_label(spec)} must be true or false (true: {true}; false: {false}; in the "
            "spellings listed in the schema)."
        )
    word = "a whole number" if spec.type == "integer" else "a number"
    return (
        f"{_label(spec)} must be {word}; this value is not a number. Check for units, comments "
        "or decimal commas typed into the cell."
    )


def _label(spec: FieldSpec) -> str:
    return f"{spec.name} ({spec.title})" if spec.title and spec.title != spec.name else spec.name


@dataclass
class CheckedTable:
    """A table after type parsing: typed columns, validity masks, raw values for reports."""

    name: str
    schema: TableSchema
    raw: RawTable
    typed: dict[str, pd.Series]
    valid: dict[str, np.ndarray]  # cell holds a valid value (not missing, not bad type)
    missing: dict[str, np.ndarray]  # cell is empty or a missing-value token
    raw_columns: dict[str, pd.Series]
    extra_columns: list[str]
    codes: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    uniques: dict[str, Any] = field(default_factory=dict)
    floats: dict[str, np.ndarray] = field(default_factory=dict)
    foreign_codes: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.raw.frame)


def _positions(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


def _report_cells(
    log: ProblemLog,
    table: CheckedTable,
    column: str,
    mask: np.ndarray,
    rule: str,
    message: str,
) -> None:
    if not mask.any():
        return
    pos = _positions(mask)
    raw = table.raw_columns.get(column)
    values = raw.iloc[pos] if raw is not None else None
    log.add(table.name, table.raw.rows[pos], column, values, rule, message, positions=pos)


def check_table(name: str, raw: RawTable, schema: TableSchema, log: ProblemLog) -> CheckedTable:
    """Parse and check one table: columns, types, field constraints, primary key, rules."""
    frame = raw.frame
    sources = raw.column_sources or [str(c) for c in frame.columns]
    names = [str(c) for c in frame.columns]
    first_position: dict[str, int] = {}
    for i, col in enumerate(names):
        if col in first_position:
            j = first_position[col]
            origin = (
                f" (read from columns {sources[j]!r} and {sources[i]!r})"
                if sources[j] != sources[i]
                else ""
            )
            log.add(
                name,
                raw.header_row,
                col,
                sources[i],
                "duplicate_column",
                f"column {col} appears more than once{origin}; only the first is used. "
                "Rename or delete the other column (CDISC and friendly names of the same "
                "column count as the same column).",
            )
        else:
            first_position[col] = i
    schema_names = schema.field_names
    extra = [c for c in first_position if c not in schema_names]
    for col in schema.required_fields:
        if col not in first_position:
            hint = difflib.get_close_matches(col, extra, n=1, cutoff=0.75)
            lowered = [c for c in extra if c.strip().lower() == col]
            did_you_mean = (
                f" A column {(lowered or hint)[0]!r} exists: rename it."
                if (lowered or hint)
                else ""
            )
            found = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
            log.add(
                name,
                raw.header_row,
                col,
                None,
                "missing_column",
                f"required column {col} is missing from {raw.origin} (columns found: "
                f"{found or 'none'}).{did_you_mean}",
            )

    typed: dict[str, pd.Series] = {}
    valid: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    raw_columns: dict[str, pd.Series] = {}
    for spec in schema.fields:
        if spec.name not in first_position:
            continue
        column = frame.iloc[:, first_position[spec.name]]
        raw_columns[spec.name] = column
        tokens = () if raw.missing_applied else schema.missing_values
        parsed = parse_column(column, spec, tokens)
        typed[spec.name] = parsed.values
        ok = ~parsed.missing
        if parsed.bad.any():
            ok &= ~parsed.bad
        valid[spec.name] = ok
        missing[spec.name] = parsed.missing
        if parsed.bad.any():
            fractional = parsed.fractional
            if fractional is None:
                fractional = np.zeros(len(parsed.bad), dtype=bool)
            for mask, message in (
                (parsed.bad & ~fractional, _type_message(spec)),
                (
                    fractional,
                    f"{_label(spec)} must be a whole number; check for a decimal typed by "
                    "mistake or a value in the wrong column.",
                ),
            ):
                if mask.any():
                    pos = _positions(mask)
                    log.add(
                        name,
                        raw.rows[pos],
                        spec.name,
                        column.iloc[pos],
                        "type",
                        message,
                        positions=pos,
                    )
    checked = CheckedTable(name, schema, raw, typed, valid, missing, raw_columns, extra)
    _check_field_constraints(checked, log)
    _check_primary_key(checked, log)
    _check_rules(checked, log)
    return checked


def _check_field_constraints(table: CheckedTable, log: ProblemLog) -> None:
    for spec in table.schema.fields:
        if spec.name not in table.typed:
            continue
        values = table.typed[spec.name]
        ok = table.valid[spec.name]
        raw_missing = table.missing[spec.name]
        if spec.required:
            _report_cells(
                log,
                table,
                spec.name,
                raw_missing,
                "required",
                f"{_label(spec)} is required but the cell is empty; fill it in or remove the row.",
            )
        if spec.enum is not None and ok.any():
            allowed = list(spec.enum)
            out = ok & ~isin_values(values, allowed)
            shown = ", ".join(str(v) for v in allowed)
            _report_cells(
                log,
                table,
                spec.name,
                out,
                "enum",
                f"{_label(spec)} must be one of: {shown} (exact spelling and case).",
            )
        if spec.type in ("number", "integer"):
            arr = _floats(table, spec.name)
            with np.errstate(invalid="ignore"):
                if spec.minimum is not None:
                    _report_cells(
                        log,
                        table,
                        spec.name,
                        ok & (arr < spec.minimum),
                        "minimum",
                        f"{_label(spec)} must be ≥ {_fmt(spec.minimum)}; check the units or a "
                        "data-entry slip.",
                    )
                if spec.maximum is not None:
                    _report_cells(
                        log,
                        table,
                        spec.name,
                        ok & (arr > spec.maximum),
                        "maximum",
                        f"{_label(spec)} must be ≤ {_fmt(spec.maximum)}; check the units or a "
                        "data-entry slip.",
                    )
        if spec.type == "string" and ok.any():
            if spec.pattern is not None:
                matched = _fullmatch(values, spec.pattern)
                _report_cells(
                    log,
                    table,
                    spec.name,
                    ok & ~matched,
                    "pattern",
                    f"{_label(spec)} must match the pattern {spec.pattern} "
                    f"({spec.description or 'see the schema'}).",
                )
            if spec.min_length is not None or spec.max_length is not None:
                lengths = values.str.len().to_numpy(dtype="float64", na_value=np.nan)
                if spec.min_length is not None:
                    _report_cells(
                        log,
                        table,
                        spec.name,
                        ok & (lengths < spec.min_length),
                        "minLength",
                        f"{_label(spec)} must have at least {spec.min_length} characters.",
                    )
                if spec.max_length is not None:
                    _report_cells(
                        log,
                        table,
                        spec.name,
                        ok & (lengths > spec.max_length),
                        "maxLength",
                        f"{_label(spec)} must have at most {spec.max_length} characters.",
                    )
        if spec.unique and ok.any():
            dup = ok & values.duplicated(keep=False).to_numpy(dtype=bool)
            _report_cells(
                log,
                table,
                spec.name,
                dup,
                "unique",
                f"{_label(spec)} must be unique; this value appears on more than one row.",
            )


def _fullmatch(values: pd.Series, pattern: str) -> np.ndarray:
    text = as_text(values)
    try:
        arr = pa.array(text, from_pandas=True)
        matched = pc.match_substring_regex(arr, f"^(?:{pattern})$")
        return np.asarray(matched.to_numpy(zero_copy_only=False), dtype=object) == True  # noqa: E712
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)


def _number_text(values: np.ndarray) -> pd.Series:
    """Numbers as text, vectorised; whole numbers without a decimal point."""
    if np.all(np.isfinite(values)) and np.all(values == np.floor(values)):
        return pd.Series(values.astype(np.int64).astype(str))
    return pd.Series(values.astype(str))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def factorize_column(series: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes (int64, -1 where missing) and the number of distinct values.

    Text stored by pyarrow is dictionary-encoded by :func:`pyarrow.compute.dictionary_encode`;
    other columns by :func:`pandas.factorize`.
    """
    codes, uniques = factorize_with_uniques(series)
    return codes, len(uniques)


def factorize_with_uniques(series: pd.Series) -> tuple[np.ndarray, Any]:
    """Like :func:`factorize_column`, also returning the distinct values (pyarrow or Index)."""
    if is_arrow_text(series):
        return _factorize_text_runs(arrow_array(series))
    if pd.api.types.is_integer_dtype(series.dtype) and len(series):
        # Small-range integers (visit numbers): the offset from the minimum is the code.
        if isinstance(series.dtype, np.dtype):
            ints, present = series.to_numpy(), None
        else:  # nullable Int64
            present = ~series.isna().to_numpy(dtype=bool)
            ints = series.to_numpy(dtype=np.int64, na_value=0)
        if present is None or present.any():
            chosen = ints if present is None else ints[present]
            low, high = int(chosen.min()), int(chosen.max())
            if high - low <= 4 * len(series) + 1024:
                codes = ints.astype(np.int64) - low
                if present is not None:
                    codes[~present] = -1
                return codes, pd.Index(np.arange(low, high + 1, dtype=np.int64))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques)


def _factorize_text_runs(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Exact factorisation of text, cheap when equal values sit together (rows grouped by
    subject): compare each value with the previous one, dictionary-encode only the first value
    of every run, and repeat its code over the run. Equal values in separate runs still get
    the same code (the encoding is over all run heads)."""
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.int64), pa.array([], type=arr.type)
    changed = pc.fill_null(pc.not_equal(arr[1:], arr[:-1]), True)
    starts = np.concatenate([[0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1])
    if len(starts) > n // 2:  # hardly any runs: encode every row directly
        encoded = pc.dictionary_encode(arr)
        indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return np.asarray(indices, dtype=np.int64), encoded.dictionary
    encoded = pc.dictionary_encode(arr.take(pa.array(starts)))
    run_codes = np.asarray(
        pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    return np.repeat(run_codes, np.diff(np.append(starts, n))), encoded.dictionary


def codes_among(series: pd.Series, uniques: Any) -> np.ndarray:
    """Position of each value of ``series`` in ``uniques`` (-1 where missing or absent)."""
    if isinstance(uniques, (pa.Array, pa.ChunkedArray)):
        if not is_arrow_text(series):
            series = as_text(series)
        arr = arrow_array(series)
        found = pc.index_in(arr, value_set=uniques.cast(arr.type))
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(uniques) == 0:
        return np.full(len(series), -1, dtype=np.int64)
    return np.asarray(pd.Index(uniques).get_indexer(pd.Index(series)), dtype=np.int64)


def combine_codes(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Mixed-radix combination of per-column codes: one int64 per row, -1 if any part is -1."""
    if len(parts) == 1:
        return parts[0][0]
    combined = np.zeros(len(parts[0][0]), dtype=np.int64)
    missing = np.zeros(len(combined), dtype=bool)
    span = 1  # number of distinct values ``combined`` can take so far
    for codes, radix in parts:
        radix = max(radix, 1)
        missing |= codes < 0
        if span * radix >= 2**62:
            # Very many distinct keys: re-number the partial key to keep it small.
            combined, uniques = pd.factorize(combined)
            combined = np.asarray(combined, dtype=np.int64)
            span = max(len(uniques), 1)
        combined = combined * radix + np.maximum(codes, 0)
        span *= radix
    combined[missing] = -1
    return combined


def index_in(series: pd.Series, universe: pd.Series) -> tuple[np.ndarray, int]:
    """Position of each value of ``series`` among the distinct values of ``universe``.

    Returns the codes (int64; -1 where missing or absent from ``universe``) and the number of
    distinct values of ``universe``; equal values of the two columns get equal codes.
    Uses :func:`pyarrow.compute.index_in` for text, :meth:`pandas.Index.get_indexer` else.
    """
    if is_arrow_text(series) and is_arrow_text(universe):
        arr = arrow_array(series)
        uniques = pc.unique(arrow_array(universe.dropna())).cast(arr.type)
        found = pc.index_in(arr, value_set=uniques)
        codes = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
        return np.asarray(codes, dtype=np.int64), len(uniques)
    index = pd.Index(pd.unique(universe.dropna()))
    if len(index) == 0:
        return np.full(len(series), -1, dtype=np.int64), 0
    codes = index.get_indexer(pd.Index(series))
    return np.asarray(codes, dtype=np.int64), len(index)


def joint_key_codes(
    left: Sequence[pd.Series], right: Sequence[pd.Series]
) -> tuple[np.ndarray, np.ndarray]:
    """Codes for composite keys of two tables such that equal keys get equal codes.

    ``right`` defines the universe of each key part; a ``left`` key with a part missing or
    absent from ``right`` gets -1 (as does a ``right`` key with a missing part).
    """
    left_parts = []
    right_parts = []
    for lcol, rcol in zip(left, right, strict=True):
        lcodes, radix = index_in(lcol, rcol)
        rcodes, _ = index_in(rcol, rcol)
        left_parts.append((lcodes, radix))
        right_parts.append((rcodes, radix))
    n_left = len(left[0])
    both = combine_codes(
        [
            (np.concatenate([lc, rc]), radix)
            for (lc, radix), (rc, _) in zip(left_parts, right_parts, strict=True)
        ]
    )
    return both[:n_left], both[n_left:]


def _floats(table: CheckedTable, column: str) -> np.ndarray:
    """Cached float64 values of a numeric column (NaN where missing or invalid; read-only)."""
    if column not in table.floats:
        values = table.typed[column]
        if values.dtype == np.float64:
            arr = values.to_numpy()
        elif isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":
            arr = values.to_numpy().astype(np.float64)  # no missing values possible
        else:
            arr = values.to_numpy(dtype="float64", na_value=np.nan)
        table.floats[column] = arr
    return table.floats[column]


def _column_codes(table: CheckedTable, column: str) -> tuple[np.ndarray, int]:
    """Cached codes of a valid column (-1 where missing or invalid)."""
    if column not in table.codes:
        codes, uniques = factorize_with_uniques(table.typed[column])
        codes = np.where(table.valid[column], codes, -1)
        table.codes[column] = (codes, len(uniques))
        table.uniques[column] = uniques
    return table.codes[column]


def _key_codes(table: CheckedTable, columns: Sequence[str]) -> np.ndarray:
    """Cached composite codes of valid keys (-1 where any part is missing or invalid)."""
    name = "\x00".join(columns)
    if name not in table.codes:
        codes = combine_codes([_column_codes(table, c) for c in columns])
        table.codes[name] = (codes, -1)
    return table.codes[name][0]


def duplicated_codes(codes: np.ndarray) -> np.ndarray:
    """Rows whose code (>= 0) occurs more than once (all of them, like ``keep=False``)."""
    ok = codes >= 0
    if not ok.any():
        return ok
    top = int(codes.max())
    if top <= 8 * len(codes) + 1024:
        counts = np.bincount(codes[ok], minlength=top + 1)
        return ok & (counts[np.maximum(codes, 0)] > 1)
    return ok & pd.Series(codes).duplicated(keep=False).to_numpy(dtype=bool)


def _check_primary_key(table: CheckedTable, log: ProblemLog) -> None:
    key = list(table.schema.primary_key)
    if not key or any(k not in table.typed for k in key) or table.n == 0:
        return
    codes = _key_codes(table, key)
    dup = duplicated_codes(codes)
    if not dup.any():
        return
    pos = _positions(dup)
    values = _joined_values([table.raw_columns[k].iloc[pos] for k in key])
    log.add(
        table.name,
        table.raw.rows[pos],
        ", ".join(key),
        values,
        "primary_key",
        f"the key ({', '.join(key)}) must be unique in {table.name}; this key appears on more "
        "than one row. Remove the duplicate rows or correct the key.",
        positions=pos,
    )


def _joined_values(parts: Sequence[pd.Series]) -> Any:
    if len(parts) == 1:
        return parts[0]
    text = [as_text(p).fillna("").to_numpy(dtype=object) for p in parts]
    out = text[0].astype(str)
    for t in text[1:]:
        out = np.char.add(np.char.add(out, ", "), t.astype(str))
    return out.astype(object)


# --------------------------------------------------------------------------------------------
# Custom rules (x-mesostats-rules)
# --------------------------------------------------------------------------------------------


def _check_rules(table: CheckedTable, log: ProblemLog) -> None:
    for rule in table.schema.rules:
        kind = rule.get("kind")
        checker = _RULE_CHECKERS.get(str(kind))
        if checker is None:
            from mesostats.data.schema import SchemaError

            raise SchemaError(
                f"table {table.name}: rule {rule.get('name')!r} has unknown kind {kind!r} "
                f"(known: {', '.join(sorted(_RULE_CHECKERS))})"
            )
        checker(table, rule, log)


def _rule_message(rule: Mapping[str, Any]) -> str:
    return str(rule.get("description", rule.get("name", "")))


def _rule_min_rows(table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog) -> None:
    minimum = int(rule.get("value", 1))
    if table.n < minimum:
        log.add(
            table.name,
            None,
            None,
            table.n,
            str(rule["name"]),
            f"{table.name} ({table.raw.origin}) has {table.n} rows; {_rule_message(rule)}",
        )


def _rule_field(table: CheckedTable, rule: Mapping[str, Any]) -> str | None:
    col = str(rule["field"])
    return col if col in table.typed else None


def _rule_not_equal(table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog) -> None:
    col = _rule_field(table, rule)
    if col is None:
        return
    arr = _floats(table, col)
    _report_cells(
        log,
        table,
        col,
        table.valid[col] & (arr == float(rule["value"])),
        str(rule["name"]),
        _rule_message(rule),
    )


def _rule_exclusive_minimum(table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog) -> None:
    col = _rule_field(table, rule)
    if col is None:
        return
    arr = _floats(table, col)
    with np.errstate(invalid="ignore"):
        mask = table.valid[col] & (arr <= float(rule["value"]))
    _report_cells(log, table, col, mask, str(rule["name"]), _rule_message(rule))


def _rule_not_in(table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog) -> None:
    col = _rule_field(table, rule)
    if col is None:
        return
    mask = table.valid[col] & isin_values(table.typed[col], list(rule["values"]))
    _report_cells(log, table, col, mask, str(rule["name"]), _rule_message(rule))


def _rule_required_if_present(
    table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog
) -> None:
    target = str(rule["field"])
    trigger = str(rule["if_present"])
    if trigger not in table.typed:
        return
    present = table.valid[trigger]
    if not present.any():
        return
    if target not in table.typed:
        log.add(
            table.name,
            table.raw.header_row,
            target,
            None,
            str(rule["name"]),
            f"column {target} is missing but {trigger} is filled on {int(present.sum())} rows; "
            f"{_rule_message(rule)}",
        )
        return
    missing = table.missing[target]
    _report_cells(log, table, target, present & missing, str(rule["name"]), _rule_message(rule))


def _group_codes(table: CheckedTable, group_by: Sequence[str]) -> np.ndarray | None:
    if any(g not in table.typed for g in group_by):
        return None
    if not group_by:
        return np.zeros(table.n, dtype=np.int64)
    return _key_codes(table, list(group_by))


def _rule_increasing_within(table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog) -> None:
    col = str(rule["field"])
    order_col = str(rule["order_by"])
    if col not in table.typed or order_col not in table.typed:
        return
    groups = _group_codes(table, rule.get("group_by", []))
    if groups is None:
        return
    usable = (groups >= 0) & table.valid[col] & table.valid[order_col]
    order = _floats(table, order_col)
    value = _floats(table, col)
    if usable.all():
        pos, g = np.arange(len(groups)), groups
    else:
        pos = np.flatnonzero(usable)
        g, order, value = groups[pos], order[pos], value[pos]
    if len(pos) < 2:
        return
    step_g = g[1:] - g[:-1]
    already_sorted = bool(np.all((step_g > 0) | ((step_g == 0) & (order[1:] >= order[:-1]))))
    if not already_sorted:
        perm = np.lexsort((value, order, g))
        pos, g, order, value = pos[perm], g[perm], order[perm], value[perm]
    same = (g[1:] == g[:-1]) & (order[1:] > order[:-1])
    broken = same & (value[1:] <= value[:-1])
    if not broken.any():
        return
    later = pos[1:][broken]
    earlier_value = value[:-1][broken]
    earlier_order = order[:-1][broken]
    head = f"{col} must increase with {order_col} within {', '.join(rule.get('group_by', []))}: "
    messages = (
        head
        + f"{order_col} "
        + _number_text(earlier_order)
        + f" has {col} "
        + _number_text(earlier_value)
        + f", not after; {_rule_message(rule)}"
    ).to_numpy(dtype=object)
    # one problem per offending (later) row; the message names the earlier visit.
    _report_positions(log, table, col, later, str(rule["name"]), messages)


def _report_positions(
    log: ProblemLog,
    table: CheckedTable,
    column: str,
    pos: np.ndarray,
    rule: str,
    message: str | Sequence[str] | np.ndarray,
) -> None:
    if len(pos) == 0:
        return
    raw = table.raw_columns.get(column)
    values = raw.iloc[pos] if raw is not None else None
    log.add(table.name, table.raw.rows[pos], column, values, rule, message, positions=pos)


def _rule_at_most_one_true(table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog) -> None:
    col = str(rule["field"])
    if col not in table.typed:
        return
    groups = _group_codes(table, rule.get("group_by", []))
    if groups is None:
        return
    flag = table.valid[col] & table.typed[col].fillna(False).to_numpy(dtype=bool) & (groups >= 0)
    if flag.sum() < 2:
        return
    counts = np.bincount(groups[flag], minlength=int(groups.max()) + 1)
    offending = flag & (counts[np.maximum(groups, 0)] > 1)
    _report_cells(log, table, col, offending, str(rule["name"]), _rule_message(rule))


def _rule_true_only_if_at_most(
    table: CheckedTable, rule: Mapping[str, Any], log: ProblemLog
) -> None:
    col = str(rule["field"])
    cond = str(rule["condition_field"])
    if col not in table.typed or cond not in table.typed:
        return
    flag = table.valid[col] & table.typed[col].fillna(False).to_numpy(dtype=bool)
    arr = _floats(table, cond)
    with np.errstate(invalid="ignore"):
        mask = flag & table.valid[cond] & (arr > float(rule["value"]))
    _report_cells(log, table, col, mask, str(rule["name"]), _rule_message(rule))


_RULE_CHECKERS = {
    "min_rows": _rule_min_rows,
    "not_equal": _rule_not_equal,
    "exclusive_minimum": _rule_exclusive_minimum,
    "not_in": _rule_not_in,
    "required_if_present": _rule_required_if_present,
    "increasing_within": _rule_increasing_within,
    "at_most_one_true": _rule_at_most_one_true,
    "true_only_if_at_most": _rule_true_only_if_at_most,
}


# --------------------------------------------------------------------------------------------
# Cross-table checks
# --------------------------------------------------------------------------------------------


def _check_foreign_keys(checked: Mapping[str, CheckedTable], log: ProblemLog) -> None:
    for table in checked.values():
        for fk in table.schema.foreign_keys:
            ref = checked.get(fk.reference_table)
            if ref is None:
                continue
            own_cols = list(fk.fields)
            ref_cols = list(fk.reference_fields)
            if any(c not in table.typed for c in own_cols) or any(
                c not in ref.typed for c in ref_cols
            ):
                continue
            own_ok = np.logical_and.reduce([table.valid[c] for c in own_cols])
            if not own_ok.any():
                continue
            found = _keys_found(table, own_cols, ref, ref_cols)
            dangling = own_ok & ~found
            if not dangling.any():
                continue
            pos = _positions(dangling)
            values = _joined_values([table.raw_columns[c].iloc[pos] for c in own_cols])
            own = ", ".join(own_cols)
            log.add(
                table.name,
                table.raw.rows[pos],
                own,
                values,
                "foreign_key",
                f"{own} is not a ({', '.join(ref_cols)}) of the {fk.reference_table} table; "
                f"add the missing {fk.reference_table} row or correct the key (check spelling, "
                "case and spaces).",
                positions=pos,
            )


def _keys_found(
    table: CheckedTable, own_cols: list[str], ref: CheckedTable, ref_cols: list[str]
) -> np.ndarray:
    """Whether each row's (valid) key exists among the valid keys of ``ref``."""
    if len(own_cols) == 1:
        # Look up each distinct value once, then spread the answer over the rows by code.
        own_codes, _ = _column_codes(table, own_cols[0])
        uniques = table.uniques[own_cols[0]]
        lookup = ref.typed[ref_cols[0]][ref.valid[ref_cols[0]]]
        if isinstance(uniques, (pa.Array, pa.ChunkedArray)):
            distinct = pd.Series(pd.arrays.ArrowStringArray(uniques.cast(pa.large_string())))
        else:
            distinct = pd.Series(uniques)
        if not is_arrow_text(distinct) and lookup.dtype != distinct.dtype:
            lookup = lookup.astype(distinct.dtype)
        known = np.append(isin_values(distinct, lookup), False)  # code -1 → not found
        return known[own_codes]
    own_parts = []
    ref_parts = []
    for own_col, ref_col in zip(own_cols, ref_cols, strict=True):
        ref_codes, radix = _column_codes(ref, ref_col)
        own_codes = codes_among(table.typed[own_col], ref.uniques[ref_col])
        own_codes[~table.valid[own_col]] = -1
        own_parts.append((own_codes, radix))
        ref_parts.append((ref_codes, radix))
    span = int(np.prod([float(radix) for _, radix in ref_parts]))
    if span < 2**62:
        # No renumbering: both sides combine with the same radices, so the referenced
        # table's (cached) composite codes can be compared with ours directly.
        own_key = combine_codes(own_parts)
        link_key = tuple([ref.name, *ref_cols])
        table.foreign_codes[link_key] = own_key
        return codes_isin(own_key, _key_codes(ref, ref_cols))
    n_own = table.n
    both = combine_codes(
        [
            (np.concatenate([o, r]), radix)
            for (o, radix), (r, _) in zip(own_parts, ref_parts, strict=True)
        ]
    )
    return codes_isin(both[:n_own], both[n_own:])


def codes_isin(codes: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """``codes >= 0`` and present among the non-negative ``lookup`` codes."""
    found = codes >= 0
    valid_lookup = lookup[lookup >= 0]
    top = max(int(codes.max(initial=-1)), int(valid_lookup.max(initial=-1)))
    if top <= 8 * (len(codes) + len(lookup)) + 1024:
        present = np.zeros(top + 1, dtype=bool)
        present[valid_lookup] = True
        found[found] = present[codes[found]]
        return found
    found[found] = pd.Series(codes[found]).isin(pd.Series(valid_lookup)).to_numpy(dtype=bool)
    return found


def _check_clashes(checked: Mapping[str, CheckedTable], log: ProblemLog) -> None:
    subjects = checked.get("subjects")
    if subjects is None or not subjects.extra_columns:
        return
    reserved = set(DERIVED_COLUMNS)
    sessions = checked.get("sessions")
    if sessions is not None:
        reserved |= {str(c) for c in sessions.raw.frame.columns}
        reserved |= set(sessions.schema.field_names)
    cocktails = checked.get("cocktails")
    ingredients: set[str] = set()
    if cocktails is not None and "ingredient" in cocktails.typed:
        ingredients = set(cocktails.typed["ingredient"].dropna().astype(str))
    for col in subjects.extra_columns:
        if col in reserved or col in ingredients:
            what = "an ingredient" if col in ingredients else "a sessions or derived column"
            log.add(
                "subjects",
                subjects.raw.header_row,
                col,
                col,
                "column_clash",
                f"extra column {col} of subjects has the name of {what}; subject columns are "
                "copied into the analysis tables, where it would collide. Rename the column.",
            )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def collect_problems(
    raw_tables: Mapping[str, RawTable],
    schema: StudySchema,
    *,
    read_problems: pd.DataFrame | None = None,
    absent_tables: Iterable[str] = (),
) -> tuple[pd.DataFrame, dict[str, CheckedTable]]:
    """Check every table and the keys between them; return all problems and parsed tables.

    Parameters
    ----------
    raw_tables : mapping of str to RawTable
        Tables as read. Tables of the schema not in this mapping are absent.
    schema : StudySchema
    read_problems : DataFrame, optional
        Problems found while reading (encodings, unreadable files), merged in.
    absent_tables : iterable of str
        Tables known to be absent and already reported by the reader (not reported again).

    Returns
    -------
    problems : DataFrame
        Columns ``table, row, column, value, rule, message``; empty when all is well.
    checked : dict of str to CheckedTable
    """
    log = ProblemLog(schema.table_names)
    if read_problems is not None:
        log.extend(read_problems)
    already = set(absent_tables)
    checked: dict[str, CheckedTable] = {}
    for name, table_schema in schema.tables.items():
        raw = raw_tables.get(name)
        if raw is None:
            if table_schema.required_table and name not in already:
                log.add(
                    name,
                    None,
                    None,
                    None,
                    "missing_table",
                    f"the {name} table is missing; it is required "
                    f"({table_schema.description.split('.')[0].lower()}).",
                )
            continue
        checked[name] = check_table(name, raw, table_schema, log)
    _check_foreign_keys(checked, log)
    _check_clashes(checked, log)
    return log.frame(), checked


def reference_positions(checked: Mapping[str, CheckedTable]) -> dict[tuple[str, str], np.ndarray]:
    """For composite foreign keys onto a primary key: the referenced row of every row.

    Returns ``{(table, referenced_table): positions}`` with 0-based positions into the
    referenced table (-1 where there is none), from the integer key codes the foreign-key
    check already built; e.g. the session of every adverse event, which the Study uses to
    count events per session without hashing the keys again.
    """
    links: dict[tuple[str, str], np.ndarray] = {}
    for table in checked.values():
        for fk in table.schema.foreign_keys:
            ref = checked.get(fk.reference_table)
            own_key = table.foreign_codes.get((fk.reference_table, *fk.reference_fields))
            if ref is None or own_key is None or fk.reference_fields != ref.schema.primary_key:
                continue
            ref_key = _key_codes(ref, list(fk.reference_fields))
            top = max(int(own_key.max(initial=-1)), int(ref_key.max(initial=-1)))
            if top > 8 * (len(own_key) + len(ref_key)) + 1024:
                continue
            where = np.full(top + 2, -1, dtype=np.int64)  # last slot: code -1
            valid = ref_key >= 0
            where[ref_key[valid]] = np.flatnonzero(valid)
            links[(table.name, ref.name)] = where[own_key]
    return links


def typed_frame(table: CheckedTable) -> pd.DataFrame:
    """The table with schema columns parsed to their types, extra columns kept as read.

    Required integer and boolean columns become ``int64`` / ``bool``; optional ones keep
    pandas' nullable ``Int64`` / ``boolean``; numbers are ``float64``; text is ``str``.
    The index holds the row labels (file line numbers or the input's index labels).
    """
    columns: dict[str, pd.Series] = {}
    first: dict[str, int] = {}
    for i, c in enumerate(table.raw.frame.columns):
        first.setdefault(str(c), i)
    for spec in table.schema.fields:
        if spec.name not in table.typed:
            continue
        values = table.typed[spec.name]
        if spec.type == "string":
            values = as_text(values)
        elif spec.type == "integer":
            required = spec.required and not values.isna().any()
            values = values.astype("int64" if required else "Int64")
        elif spec.required and spec.type == "boolean" and not values.isna().any():
            values = values.astype(bool)
        elif spec.type == "number":
            values = values.astype("float64")
        columns[spec.name] = values.reset_index(drop=True)
    for col in table.extra_columns:
        extra: pd.Series = table.raw.frame.iloc[:, first[col]]
        columns[col] = extra.reset_index(drop=True)
    # copy=False: no block consolidation; pandas' copy-on-write still protects the input.
    frame = pd.DataFrame(columns, copy=False)
    frame.index = pd.Index(table.raw.rows, name="row")
    return frame


def validate_tables(
    raw_tables: Mapping[str, RawTable],
    schema: StudySchema,
    *,
    read_problems: pd.DataFrame | None = None,
    absent_tables: Iterable[str] = (),
    links: dict[tuple[str, str], np.ndarray] | None = None,
) -> dict[str, pd.DataFrame]:
    """Validate the tables and return them typed, or raise one :class:`ValidationError`.

    ``links``, if given, is filled with :func:`reference_positions` (e.g. the session row of
    every adverse event).

    Returns
    -------
    dict of str to DataFrame
        One typed DataFrame per table present (see :func:`typed_frame`).

    Raises
    ------
    ValidationError
        Listing every problem found (all tables, all rules).
    """
    problems, checked = collect_problems(
        raw_tables, schema, read_problems=read_problems, absent_tables=absent_tables
    )
    if len(problems):
        raise ValidationError(problems)
    if links is not None:
        links.update(reference_positions(checked))
    return {name: typed_frame(table) for name, table in checked.items()}
