"""Typed parsing of table columns: text (or stored cells) to the schema's field types.

A column arrives as read: text from CSV files, stored types from Parquet, XLSX and
DataFrames. :func:`parse_column` turns it into the field's type in one vectorised pass
(pyarrow's cast for clean text, :func:`pandas.to_numeric` otherwise) and says, per cell,
whether it was missing (empty or a ``missingValues`` token) or not of the type, so that the
checks can report the raw value. Table Schema's own reference implementation
(frictionless-py) casts cell by cell in Python, far too slow for a million sessions.

Also here: :class:`RawTable` (a table as read, before any check) and the text helpers the
other modules share (:func:`as_text`, :func:`isin_values` on pyarrow text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mesostats.data.readers.dates import DateOrder, dates_to_iso, detect_date_order
from mesostats.data.schema import FieldSpec

__all__ = [
    "ParsedColumn",
    "RawTable",
    "arrow_array",
    "as_text",
    "is_arrow_text",
    "isin_values",
    "parse_column",
]


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
    date_order : str, optional
        The declared order of numeric dates (``"DMY"``, ``"MDY"``, ``"YMD"``; CSV
        ``dateOrder``) for ``date`` fields with ``format: "any"``; None = detect it.
    """

    frame: pd.DataFrame
    rows: pd.Index
    origin: str = "DataFrame"
    header_row: object = None
    column_sources: list[str] | None = None
    missing_applied: bool = False
    typed_read: bool = False
    date_order: str | None = None


@dataclass
class ParsedColumn:
    """A column parsed to its schema type."""

    values: pd.Series  # typed, NA where missing or invalid
    missing: np.ndarray  # bool: the cell is empty / a missing-value token
    bad: np.ndarray  # bool: the cell has a value that is not of the field's type
    bad_reason: str = ""
    fractional: np.ndarray | None = None  # bool: numbers that are not whole (integer fields)
    date_order: DateOrder | None = None  # format "any": the order found (or why none)


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


def parse_column(
    series: pd.Series,
    spec: FieldSpec,
    missing_values: Sequence[str],
    date_order: str | None = None,
) -> ParsedColumn:
    """Parse one column to the type of ``spec``, flagging missing and invalid cells.

    Numbers are parsed by pyarrow's vectorised cast when every cell is clean text, else by
    :func:`pandas.to_numeric` with ``errors="coerce"``; integers accept integral decimals such
    as ``"3.0"`` (spreadsheets write them); booleans accept the field's ``trueValues`` and
    ``falseValues`` (and 0/1 numbers). Dates are parsed by :func:`pandas.to_datetime` with an
    explicit format: ISO for ``format: "default"``, the field's strptime pattern, or for
    ``"any"`` the column's order (``date_order`` as declared, else detected by
    :mod:`.readers.dates`).
    """
    if spec.type == "date":
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            values = series.astype("datetime64[ns]").dt.normalize()
            missing = values.isna().to_numpy(dtype=bool)
            return ParsedColumn(values, missing, np.zeros(len(series), dtype=bool))
        return _parse_date(series, spec, missing_values, date_order)
    if _is_native(series, spec.type):
        return _parse_native(series, spec)
    if spec.type == "boolean" and pd.api.types.is_numeric_dtype(series.dtype):
        return _parse_zero_one(series)
    return _parse_text(series, spec, missing_values)


def _parse_native(series: pd.Series, spec: FieldSpec) -> ParsedColumn:
    """A column already stored with the field's type (Parquet, XLSX, DataFrames, typed CSV)."""
    ftype = spec.type
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


def _parse_zero_one(series: pd.Series) -> ParsedColumn:
    """A boolean field stored as numbers: 0 and 1 are false and true, others are invalid."""
    numbers = series.astype("float64")
    missing = numbers.isna().to_numpy(dtype=bool)
    ok = numbers.isin([0.0, 1.0]).to_numpy(dtype=bool)
    bad = ~missing & ~ok
    values = pd.Series(pd.array(np.where(ok, numbers == 1.0, False), dtype="boolean"))
    values.index = series.index
    values[~ok] = pd.NA
    return ParsedColumn(values, missing, bad, "is not one of 0/1 or true/false")


def _parse_text(series: pd.Series, spec: FieldSpec, missing_values: Sequence[str]) -> ParsedColumn:
    """A column read as text (or odd objects): missing-value tokens, then the field's type."""
    ftype = spec.type
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


def _parse_date(
    series: pd.Series, spec: FieldSpec, missing_values: Sequence[str], date_order: str | None
) -> ParsedColumn:
    """A date column read as text: ISO, the field's pattern, or the detected order."""
    text = as_text(series)
    missing = _missing_mask(text, missing_values)
    clean = text.where(~missing).str.strip()
    found = None
    if spec.format == "any":
        found = detect_date_order(clean, date_order)
        if found.order is None:  # mixed or undecided: one problem for the column
            values = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
            return ParsedColumn(values, missing, np.zeros(len(series), dtype=bool), "", None, found)
        clean = dates_to_iso(clean, found.order)
    pattern = "%Y-%m-%d" if spec.format in ("default", "any") else spec.format
    values = pd.to_datetime(clean, format=pattern, errors="coerce").astype("datetime64[ns]")
    bad = ~missing & values.isna().to_numpy(dtype=bool)
    return ParsedColumn(values, missing, bad, "is not a date", None, found)


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
