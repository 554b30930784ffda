"""Read a study from files or DataFrames, validate it, and return a :class:`Study`.

:func:`load_study` is the one entry point: :mod:`.sources` reads the tables (a folder of CSV,
Parquet or XLSX files, a ``datapackage.json``, a database, or a dict of DataFrames; CDISC
column names are read through :mod:`.cdisc`), :mod:`.validate` checks them against the schema, and
:class:`~mesostats.data.study.Study` holds the typed result.

Every problem met while reading — a missing table, an unreadable or ambiguous file, bytes that
are not UTF-8 (e.g. a Latin-1 or UTF-16 export), a line with the wrong number of fields — is
collected with the validation problems and raised as one
:class:`~mesostats.exceptions.ValidationError`; no other exception type escapes
:func:`load_study` for bad input. Input files are only read; the caller's DataFrames are never
modified (every change happens on new objects).

How values are read
-------------------
CSV files are first read with the schema types (:mod:`.readers.csv`, the fast path). If any
value does not parse, or validation finds any problem, the files are read again with **every
column as text**, so that every problem shows the value exactly as written in the file;
numbers are then parsed column by column (:mod:`.parse`). Parquet and XLSX keep the cell types
they store; cells that do not fit the schema are reported with their stored value.

Row labels (``row`` in problems and exclusions, and the index of the Study tables)
----------------------------------------------------------------------------------
- CSV: the 1-based **line number** where the record starts (header = line 1); a record that
  spans lines (a newline inside a double-quoted value) is labelled with its first line, blank
  lines are skipped but counted (:mod:`.readers.csv_layout`; files using bare ``\\r`` line ends
  get record numbers instead).
- XLSX: the spreadsheet row number (header = row 1); fully empty rows are skipped but counted.
- Parquet and inline datapackage data: record number + 1, as in the same table written as CSV.
- Databases: the value of the table's primary key (a tuple for a composite key); rows of a
  table without one are numbered from 1.
- DataFrames: the index label.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.cdisc import CDISC_COLUMNS
from mesostats.data.parse import RawTable
from mesostats.data.readers.csv import read_csv_table
from mesostats.data.readers.spreadsheet import read_parquet_table, read_xlsx_table
from mesostats.data.schema import StudySchema, resolve_schema
from mesostats.data.sources import read_tables
from mesostats.data.study import Study
from mesostats.data.validate import validate_tables
from mesostats.exceptions import ValidationError

__all__ = [
    "CDISC_COLUMNS",
    "load_study",
    "read_csv_table",
    "read_parquet_table",
    "read_tables",
    "read_xlsx_table",
]


def load_study(
    source: Any,
    *,
    schema: StudySchema | str | os.PathLike[str] | None = None,
    dialect: Mapping[str, str] | None = None,
    tables: Mapping[str, str] | None = None,
) -> Study:
    """Read, validate and return a study.

    Parameters
    ----------
    source : str, Path, SQLAlchemy URL, Engine or Connection, or dict of DataFrame
        A folder holding ``subjects``, ``cocktails``, ``sessions`` and optionally
        ``adverse_events`` as ``.csv``, ``.parquet`` or ``.xlsx``; a path to a
        ``datapackage.json``; a database (``"sqlite:///study.db"``, any SQLAlchemy URL, an
        Engine or Connection) holding those tables; or a dict of DataFrames with those keys
        (details in :mod:`mesostats.data.sources` and :mod:`mesostats.data.readers.sql`).
        CDISC column names are read too (the mapping is in :mod:`mesostats.data.cdisc`).
    schema : StudySchema or path, optional
        Schema to validate against (a :class:`~mesostats.data.schema.StudySchema` or a folder
        holding ``datapackage.json`` and table schemas); default: the schema shipped with
        mesostats (``data_schema/``).
    dialect : dict, optional
        The dialect of every CSV file, in Frictionless CSV Dialect keys: ``delimiter``
        (``","``, ``";"``, ``"\t"``), ``decimalChar`` (``"."`` or ``","``), ``groupChar``
        (thousands separator), ``encoding`` (``"utf-8"``, ``"cp1252"``, …) and ``dateOrder``
        (``"DMY"``, ``"MDY"`` or ``"YMD"``: the order of numeric dates such as ``03/04/2025``
        in date fields with ``format: "any"``; :mod:`mesostats.data.readers.dates`). What is
        not declared is detected (:mod:`mesostats.data.readers.csv_dialect`); a declaration
        the file contradicts is one problem naming the cause.
    tables : dict, optional
        For a database: the table (or a ``SELECT``) that holds each study table, e.g.
        ``{"sessions": "visits", "subjects": "SELECT * FROM patients WHERE consent"}``.
        Problems are labelled by the primary key the database declares.

    Returns
    -------
    Study
        Typed tables (index = source row label), exclusions and ingredient list; it keeps
        the schema it was validated against (``study.schema``).

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
    study_schema = resolve_schema(schema)
    raw_tables, read_problems, description = read_tables(
        source, study_schema, typed=True, dialect=dialect, tables=tables
    )
    links: dict[tuple[str, str], np.ndarray] = {}
    try:
        typed = _validate(raw_tables, read_problems, study_schema, links)
    except ValidationError:
        if not any(raw.typed_read for raw in raw_tables.values()):
            raise
        # Report raw text values: read the CSV files again with every column as text.
        raw_tables, read_problems, description = read_tables(
            source, study_schema, typed=False, dialect=dialect, tables=tables
        )
        typed = _validate(raw_tables, read_problems, study_schema, links)
    return Study.from_tables(typed, study_schema, source=description, links=links)


def _validate(
    tables: Mapping[str, RawTable],
    read_problems: pd.DataFrame,
    schema: StudySchema,
    links: dict[tuple[str, str], np.ndarray],
) -> dict[str, pd.DataFrame]:
    absent = set(read_problems["table"]) if len(read_problems) else set()
    if len(read_problems) and (read_problems["rule"] == "source").any():
        absent |= set(schema.table_names)  # the source itself failed: one problem says so
    return validate_tables(
        tables, schema, read_problems=read_problems, absent_tables=absent, links=links
    )
