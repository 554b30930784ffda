"""Validation of study tables against their schema: every problem, one error.

This module runs the checks in order and gathers what they find; the checks themselves are in
:mod:`.checks` (one table: columns, types, field constraints, primary key), :mod:`.rules`
(``x-mesostats-rules``) and :mod:`.crosstable` (foreign keys, column clashes), on columns
parsed by :mod:`.parse` and keys encoded by :mod:`.keys`; problems go to one
:class:`~mesostats.data.problems.ProblemLog`.

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
Visit dates (:mod:`.study_day`)
    ``day`` derived from ``date`` when absent (before the rules run); ``day_matches_date`` (a
    written day that disagrees with its date, once per subject); ``dialect`` (a date column
    mixing day-first and month-first orders, or too ambiguous to tell: once per column).

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
the file (header = line 1; see :mod:`mesostats.data.readers.csv_layout` for how embedded
newlines are handled), or the DataFrame index label. Column-level problems carry the header's label
(line 1 for files, ``None`` for DataFrames); table-level problems carry ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from mesostats.data.checks import (
    CheckedTable,
    check_columns,
    check_field_constraints,
    check_primary_key,
    parse_table,
)
from mesostats.data.crosstable import (
    DERIVED_COLUMNS,
    check_clashes,
    check_foreign_keys,
    reference_positions,
)
from mesostats.data.keys import (
    codes_among,
    codes_isin,
    combine_codes,
    duplicated_codes,
    factorize_column,
    factorize_with_uniques,
    index_in,
    joint_key_codes,
)
from mesostats.data.parse import (
    ParsedColumn,
    RawTable,
    arrow_array,
    as_text,
    is_arrow_text,
    isin_values,
    parse_column,
)
from mesostats.data.problems import ProblemLog
from mesostats.data.rules import RULE_CHECKERS, check_rules
from mesostats.data.schema import StudySchema, TableSchema
from mesostats.data.study_day import derivable_columns, derive_study_day
from mesostats.exceptions import ValidationError

# Besides its own four functions, this module still offers the names it held before the split
# into parse / keys / checks / rules / crosstable, so that existing imports keep working.
__all__ = [
    "DERIVED_COLUMNS",
    "RULE_CHECKERS",
    "CheckedTable",
    "ParsedColumn",
    "ProblemLog",
    "RawTable",
    "arrow_array",
    "as_text",
    "check_table",
    "codes_among",
    "codes_isin",
    "collect_problems",
    "combine_codes",
    "duplicated_codes",
    "factorize_column",
    "factorize_with_uniques",
    "index_in",
    "is_arrow_text",
    "isin_values",
    "joint_key_codes",
    "parse_column",
    "reference_positions",
    "typed_frame",
    "validate_tables",
]

_RULE_CHECKERS = RULE_CHECKERS  # the former private name, still read by old callers


def check_table(name: str, raw: RawTable, schema: TableSchema, log: ProblemLog) -> CheckedTable:
    """Parse and check one table: columns, types, derived study days (:mod:`.study_day`),
    field constraints, primary key, rules."""
    present = [str(c) for c in raw.frame.columns]
    derivable = derivable_columns(schema, present)
    first_position, extra = check_columns(name, raw, schema, log, derivable)
    checked = parse_table(name, raw, schema, first_position, extra, log)
    derive_study_day(checked, log)
    check_field_constraints(checked, log)
    check_primary_key(checked, log)
    check_rules(checked, log)
    return checked


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
    check_foreign_keys(checked, log)
    check_clashes(checked, log)
    return log.frame(), checked


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
        elif spec.type == "date":
            values = values.astype("datetime64[ns]")
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
