"""Per-table checks: column names, value types, field constraints and the primary key.

One table at a time, in named phases that each record their problems in the
:class:`~mesostats.data.problems.ProblemLog`:

1. :func:`check_columns`: duplicated columns (also after CDISC renaming) and required columns
   that are absent;
2. :func:`parse_table`: every schema column parsed to its type (``type`` problems), giving a
   :class:`CheckedTable`;
3. :func:`check_field_constraints`: Table Schema constraints (``required``, ``enum``,
   ``minimum``/``maximum``, ``pattern``, ``minLength``/``maxLength``, ``unique``);
4. :func:`check_primary_key`.

Every check is a column operation: a boolean mask over the rows, never a Python loop over
rows (frictionless-py, the reference Table Schema validator, checks cell by cell in Python:
minutes for a million sessions, where this takes a fraction of a second). A value that fails
its type is reported once, as ``type``; later checks see it as missing. :class:`CheckedTable`
also caches what the cross-row rules (:mod:`.rules`) and the cross-table checks
(:mod:`.crosstable`) reuse: float values and integer key codes.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mesostats.data.keys import combine_codes, duplicated_codes, factorize_with_uniques
from mesostats.data.parse import ParsedColumn, RawTable, as_text, isin_values, parse_column
from mesostats.data.problems import ProblemLog
from mesostats.data.readers.dates import order_problem
from mesostats.data.schema import FieldSpec, TableSchema

__all__ = [
    "CheckedTable",
    "check_columns",
    "check_field_constraints",
    "check_primary_key",
    "field_label",
    "joined_values",
    "parse_table",
]


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

    def float_values(self, column: str) -> np.ndarray:
        """Cached float64 values of a numeric column (NaN where missing or invalid; read-only)."""
        if column not in self.floats:
            values = self.typed[column]
            if values.dtype == np.float64:
                arr = values.to_numpy()
            elif isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":
                arr = values.to_numpy().astype(np.float64)  # no missing values possible
            else:
                arr = values.to_numpy(dtype="float64", na_value=np.nan)
            self.floats[column] = arr
        return self.floats[column]

    def column_codes(self, column: str) -> tuple[np.ndarray, int]:
        """Cached codes of a valid column (-1 where missing or invalid) and their count."""
        if column not in self.codes:
            codes, uniques = factorize_with_uniques(self.typed[column])
            codes = np.where(self.valid[column], codes, -1)
            self.codes[column] = (codes, len(uniques))
            self.uniques[column] = uniques
        return self.codes[column]

    def key_codes(self, columns: Sequence[str]) -> np.ndarray:
        """Cached composite codes of valid keys (-1 where any part is missing or invalid)."""
        name = "\x00".join(columns)
        if name not in self.codes:
            codes = combine_codes([self.column_codes(c) for c in columns])
            self.codes[name] = (codes, -1)
        return self.codes[name][0]

    def report(
        self,
        log: ProblemLog,
        column: str,
        where: np.ndarray,
        rule: str,
        message: str | Sequence[str] | np.ndarray,
    ) -> None:
        """Record a problem for each row ``where`` says (a boolean mask, or positions)."""
        pos = np.flatnonzero(where) if where.dtype == bool else where
        if len(pos) == 0:
            return
        raw = self.raw_columns.get(column)
        values = raw.iloc[pos] if raw is not None else None
        log.add(self.name, self.raw.rows[pos], column, values, rule, message, positions=pos)


def field_label(spec: FieldSpec) -> str:
    """The field's name with its title, as messages name it."""
    return f"{spec.name} ({spec.title})" if spec.title and spec.title != spec.name else spec.name


# --------------------------------------------------------------------------------------------
# Phase 1: columns
# --------------------------------------------------------------------------------------------


def check_columns(
    name: str,
    raw: RawTable,
    schema: TableSchema,
    log: ProblemLog,
    derivable: Collection[str] = (),
) -> tuple[dict[str, int], list[str]]:
    """Report duplicated and missing required columns (but not ``derivable`` ones).

    Returns the position of the first column of each name and the names that no schema field
    has (extra columns, kept as read).
    """
    sources = raw.column_sources or [str(c) for c in raw.frame.columns]
    names = [str(c) for c in raw.frame.columns]
    first_position: dict[str, int] = {}
    for i, col in enumerate(names):
        if col not in first_position:
            first_position[col] = i
            continue
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
    schema_names = schema.field_names
    extra = [c for c in first_position if c not in schema_names]
    for col in schema.required_fields:
        if col not in first_position and col not in derivable:
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
    return first_position, extra


# --------------------------------------------------------------------------------------------
# Phase 2: types
# --------------------------------------------------------------------------------------------


def parse_table(
    name: str,
    raw: RawTable,
    schema: TableSchema,
    first_position: dict[str, int],
    extra: list[str],
    log: ProblemLog,
) -> CheckedTable:
    """Parse every schema column present to its type; report values not of the type."""
    typed: dict[str, pd.Series] = {}
    valid: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    raw_columns: dict[str, pd.Series] = {}
    tokens = () if raw.missing_applied else schema.missing_values
    for spec in schema.fields:
        if spec.name not in first_position:
            continue
        column = raw.frame.iloc[:, first_position[spec.name]]
        raw_columns[spec.name] = column
        parsed = parse_column(column, spec, tokens, raw.date_order)
        typed[spec.name] = parsed.values
        ok = ~parsed.missing
        problem = (
            None
            if parsed.date_order is None
            else order_problem(parsed.date_order, as_text(column), spec.name, raw.origin, raw.rows)
        )
        if problem is not None:
            ok &= False
            log.add_one(name, raw.header_row, spec.name, None, "dialect", problem)
        if parsed.bad.any():
            ok &= ~parsed.bad
            _report_type_problems(name, raw, column, spec, parsed, log)
        valid[spec.name] = ok
        missing[spec.name] = parsed.missing
    return CheckedTable(name, schema, raw, typed, valid, missing, raw_columns, extra)


def _report_type_problems(
    name: str,
    raw: RawTable,
    column: pd.Series,
    spec: FieldSpec,
    parsed: ParsedColumn,
    log: ProblemLog,
) -> None:
    fractional = parsed.fractional
    if fractional is None:
        fractional = np.zeros(len(parsed.bad), dtype=bool)
    for mask, message in (
        (parsed.bad & ~fractional, _type_message(spec)),
        (
            fractional,
            f"{field_label(spec)} must be a whole number; check for a decimal typed by "
            "mistake or a value in the wrong column.",
        ),
    ):
        if mask.any():
            pos = np.flatnonzero(mask)
            log.add(
                name, raw.rows[pos], spec.name, column.iloc[pos], "type", message, positions=pos
            )


def _type_message(spec: FieldSpec) -> str:
    if spec.type == "boolean":
        true = ", ".join(sorted({v.lower() for v in spec.true_values}))
        false = ", ".join(sorted({v.lower() for v in spec.false_values}))
        return (
            f"{field_label(spec)} must be true or false (true: {true}; false: {false}; in the "
            "spellings listed in the schema)."
        )
    if spec.type == "date":
        shape = {"default": "YYYY-MM-DD", "any": "a date such as 2025-04-03 or 03/04/2025"}
        return (
            f"{field_label(spec)} must be a date ({shape.get(spec.format, spec.format)}); this "
            "value is not one (or not a real calendar day)."
        )
    word = "a whole number" if spec.type == "integer" else "a number"
    return (
        f"{field_label(spec)} must be {word}; this value is not a number. Check for units, "
        "comments or decimal commas typed into the cell."
    )


# --------------------------------------------------------------------------------------------
# Phase 3: field constraints
# --------------------------------------------------------------------------------------------


def check_field_constraints(table: CheckedTable, log: ProblemLog) -> None:
    """Table Schema constraints of every field present, on its valid values."""
    for spec in table.schema.fields:
        if spec.name not in table.typed:
            continue
        if spec.required:
            table.report(
                log,
                spec.name,
                table.missing[spec.name],
                "required",
                f"{field_label(spec)} is required but the cell is empty; fill it in or remove "
                "the row.",
            )
        if not table.valid[spec.name].any():
            continue
        if spec.enum is not None:
            _check_enum(table, spec, log)
        if spec.type in ("number", "integer"):
            _check_range(table, spec, log)
        if spec.type == "string":
            _check_text(table, spec, log)
        if spec.unique:
            dup = table.valid[spec.name] & table.typed[spec.name].duplicated(keep=False).to_numpy(
                dtype=bool
            )
            table.report(
                log,
                spec.name,
                dup,
                "unique",
                f"{field_label(spec)} must be unique; this value appears on more than one row.",
            )


def _check_enum(table: CheckedTable, spec: FieldSpec, log: ProblemLog) -> None:
    allowed = list(spec.enum or ())
    out = table.valid[spec.name] & ~isin_values(table.typed[spec.name], allowed)
    shown = ", ".join(str(v) for v in allowed)
    table.report(
        log,
        spec.name,
        out,
        "enum",
        f"{field_label(spec)} must be one of: {shown} (exact spelling and case).",
    )


def _check_range(table: CheckedTable, spec: FieldSpec, log: ProblemLog) -> None:
    hint = "check the units or a data-entry slip."
    limits = []
    if spec.minimum is not None:
        limits.append(
            ("minimum", spec.minimum, f"{field_label(spec)} must be ≥ {_fmt(spec.minimum)}; {hint}")
        )
    if spec.maximum is not None:
        limits.append(
            ("maximum", spec.maximum, f"{field_label(spec)} must be ≤ {_fmt(spec.maximum)}; {hint}")
        )
    _report_outside(table, spec, log, table.float_values(spec.name), limits)


def _check_text(table: CheckedTable, spec: FieldSpec, log: ProblemLog) -> None:
    ok = table.valid[spec.name]
    values = table.typed[spec.name]
    if spec.pattern is not None:
        table.report(
            log,
            spec.name,
            ok & ~_fullmatch(values, spec.pattern),
            "pattern",
            f"{field_label(spec)} must match the pattern {spec.pattern} "
            f"({spec.description or 'see the schema'}).",
        )
    limits = []
    if spec.min_length is not None:
        limits.append(
            (
                "minLength",
                spec.min_length,
                f"{field_label(spec)} must have at least {spec.min_length} characters.",
            )
        )
    if spec.max_length is not None:
        limits.append(
            (
                "maxLength",
                spec.max_length,
                f"{field_label(spec)} must have at most {spec.max_length} characters.",
            )
        )
    if limits:
        lengths = values.str.len().to_numpy(dtype="float64", na_value=np.nan)
        _report_outside(table, spec, log, lengths, limits)


def _report_outside(
    table: CheckedTable,
    spec: FieldSpec,
    log: ProblemLog,
    measured: np.ndarray,
    limits: Sequence[tuple[str, float, str]],
) -> None:
    """Report valid cells whose ``measured`` value (number, length) is outside a limit.

    ``limits`` holds ``(rule, bound, message)``; a rule named ``min…`` is a lower bound (the
    value must be ≥ it), any other an upper bound (≤).
    """
    ok = table.valid[spec.name]
    with np.errstate(invalid="ignore"):
        for rule, bound, message in limits:
            outside = measured < bound if rule.startswith("min") else measured > bound
            table.report(log, spec.name, ok & outside, rule, message)


def _fullmatch(values: pd.Series, pattern: str) -> np.ndarray:
    text = as_text(values)
    try:
        arr = pa.array(text, from_pandas=True)
        matched = pc.match_substring_regex(arr, f"^(?:{pattern})$")
        return np.asarray(matched.to_numpy(zero_copy_only=False), dtype=object) == True  # noqa: E712
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# --------------------------------------------------------------------------------------------
# Phase 4: primary key
# --------------------------------------------------------------------------------------------


def check_primary_key(table: CheckedTable, log: ProblemLog) -> None:
    """Every row of a duplicated primary key (rows with a missing key part are left out)."""
    key = list(table.schema.primary_key)
    if not key or any(k not in table.typed for k in key) or table.n == 0:
        return
    dup = duplicated_codes(table.key_codes(key))
    if not dup.any():
        return
    pos = np.flatnonzero(dup)
    values = joined_values([table.raw_columns[k].iloc[pos] for k in key])
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


def joined_values(parts: Sequence[pd.Series]) -> Any:
    """The raw values of a composite key as one text per row (``"S001, 3"``)."""
    if len(parts) == 1:
        return parts[0]
    text = [as_text(p).fillna("").to_numpy(dtype=object) for p in parts]
    out = text[0].astype(str)
    for t in text[1:]:
        out = np.char.add(np.char.add(out, ", "), t.astype(str))
    return out.astype(object)
