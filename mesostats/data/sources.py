"""Where a study comes from: a folder, a ``datapackage.json``, a database or DataFrames.

:func:`read_tables` turns a source into one :class:`~mesostats.data.parse.RawTable` per table
(columns as read, CDISC names already mapped by :mod:`.cdisc`), with every problem met on the
way (a missing table, an unreadable or ambiguous file, …) in a problems table:

- a **folder** holding ``subjects``, ``cocktails``, ``sessions`` and (optionally)
  ``adverse_events`` as ``.csv``, ``.parquet`` or ``.xlsx`` files (file names are matched
  without regard to case; two files for the same table are a problem); the files are read side
  by side in threads (the work happens in pyarrow / openpyxl C code);
- a **datapackage.json** (Frictionless Data Package) whose resources are named after the
  tables; each resource's ``path`` (relative, inside the package folder), ``format``,
  ``encoding`` and ``dialect`` (Frictionless CSV Dialect ``delimiter``, plus ``decimalChar`` and
  ``groupChar``) are honoured, and inline ``data`` is read too (rows
  labelled record number + 1, as in the same table written as CSV). The data are validated
  against mesostats' schemas, not against schemas the package carries;
- a **database**: a SQLAlchemy URL string or URL, Engine or Connection, read by
  :mod:`.readers.sql` (``tables=`` maps a table to another name or a ``SELECT``);
- a **dict of DataFrames** with those keys (``adverse_events`` may be left out); rows keep
  their index labels, and the caller's DataFrames are never modified.

The file formats are read by :mod:`.readers`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.cdisc import apply_cdisc
from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.readers.csv import read_csv_table
from mesostats.data.readers.csv_dialect import CsvDialect, dialect_from_mapping
from mesostats.data.readers.spreadsheet import read_parquet_table, read_xlsx_table
from mesostats.data.readers.sql import is_database_source, read_database
from mesostats.data.schema import StudySchema, TableSchema

__all__ = ["read_tables"]

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx"}


def read_tables(
    source: Any,
    schema: StudySchema,
    *,
    typed: bool = False,
    dialect: Any = None,
    tables: Mapping[str, str] | None = None,
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
    log = ProblemLog(schema.table_names)
    csv_dialect = dialect_from_mapping(dialect, "dialect=", "study", log)
    if is_database_source(source):
        found, description = read_database(source, schema, log, tables=tables)
    elif isinstance(source, Mapping):
        found = _from_dataframes(source, schema, log)
        description = "dict of DataFrames"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            found = _read_folder(path, schema, log, typed, csv_dialect)
            description = f"folder {path}"
        elif path.is_file() and path.suffix.lower() == ".json":
            found = _read_datapackage(path, schema, log, typed, csv_dialect)
            description = f"datapackage {path}"
        else:
            what = "does not exist" if not path.exists() else "is not a folder or a .json file"
            log.add_one(
                "study",
                None,
                None,
                str(path),
                "source",
                f"{path} {what}; pass a folder holding subjects/cocktails/sessions tables, "
                "a datapackage.json, a database URL, or a dict of DataFrames.",
            )
            found, description = {}, str(path)
    else:
        log.add_one(
            "study",
            None,
            None,
            type(source).__name__,
            "source",
            f"cannot load a study from a {type(source).__name__}; pass a folder path, a "
            "datapackage.json path, a database URL or Engine, or a dict of DataFrames.",
        )
        found, description = {}, repr(type(source))
    renamed = {
        name: apply_cdisc(raw, schema.tables[name])
        for name, raw in found.items()
        if name in schema.tables
    }
    return renamed, log.records(), description


def _read_file(
    path: Path,
    fmt: str,
    table: str,
    log: ProblemLog,
    *,
    schema: TableSchema | None = None,
    typed: bool = False,
    dialect: CsvDialect | None = None,
) -> RawTable | None:
    if fmt == "csv":
        raw = read_csv_table(path, table, log, schema=schema, typed=typed, dialect=dialect)
        if raw is not None and dialect is not None:
            raw.date_order = dialect.date_order  # read by parse.py for date fields
        return raw
    if fmt == "parquet":
        return read_parquet_table(path, table, log)
    return read_xlsx_table(path, table, log)


def _read_folder(
    folder: Path, schema: StudySchema, log: ProblemLog, typed: bool, dialect: CsvDialect
) -> dict[str, RawTable]:
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        log.add_one("study", None, None, str(folder), "unreadable", f"cannot list {folder}: {exc}")
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
                log.add_one(
                    name,
                    None,
                    None,
                    None,
                    "missing_table",
                    f"no {name}.csv, {name}.parquet or {name}.xlsx in {folder} (found: {shown}).",
                )
            continue
        if len(candidates) > 1:
            log.add_one(
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
        return _read_file(
            path, fmt, name, log, schema=schema.tables[name], typed=typed, dialect=dialect
        )

    # The readers spend their time in pyarrow / openpyxl C code: read the files side by side.
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        results = dict(zip(jobs, pool.map(read, jobs), strict=True))
    return {name: raw for name, raw in results.items() if raw is not None}


def _read_datapackage(
    descriptor_path: Path,
    schema: StudySchema,
    log: ProblemLog,
    typed: bool,
    dialect: CsvDialect,
) -> dict[str, RawTable]:
    try:
        with open(descriptor_path, encoding="utf-8") as handle:
            package = json.load(handle)
        resources = package["resources"]
        if not isinstance(resources, list):
            raise TypeError("resources is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.add_one(
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
                log.add_one(
                    name,
                    None,
                    None,
                    None,
                    "missing_table",
                    f"{descriptor_path.name} has no resource named {name} (resources: "
                    f"{', '.join(sorted(by_name)) or 'none'}).",
                )
            continue
        raw = _read_resource(resource, root, name, log, schema.tables[name], typed, dialect)
        if raw is not None:
            tables[name] = raw
    return tables


def _read_resource(
    resource: Mapping[str, Any],
    root: Path,
    name: str,
    log: ProblemLog,
    table_schema: TableSchema,
    typed: bool,
    dialect: CsvDialect,
) -> RawTable | None:
    if "data" in resource and "path" not in resource:
        return _inline_data(resource["data"], name, log)
    located = _resource_file(resource, root, name, log)
    if located is None:
        return None
    path, fmt = located
    declared = (
        dict(resource.get("dialect") or {}) if isinstance(resource.get("dialect"), dict) else {}
    )
    if resource.get("encoding"):
        declared["encoding"] = resource["encoding"]
    where = f"datapackage.json (resource {name})"
    resource_dialect = dialect.merged(dialect_from_mapping(declared, where, name, log))
    return _read_file(
        path, fmt, name, log, schema=table_schema, typed=typed, dialect=resource_dialect
    )


def _resource_file(
    resource: Mapping[str, Any], root: Path, name: str, log: ProblemLog
) -> tuple[Path, str] | None:
    """The file of a resource and its format; None (reported) unless it is a readable local
    file inside the package folder."""
    rel = resource.get("path")
    if not isinstance(rel, str) or not rel:
        log.add_one(
            name,
            None,
            None,
            repr(rel),
            "unreadable",
            f"resource {name}: path must be a single relative file path (got {rel!r}).",
        )
        return None
    if "://" in rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        log.add_one(
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
        log.add_one(
            name,
            None,
            None,
            fmt,
            "unreadable",
            f"resource {name}: format {fmt!r} is not supported (csv, parquet, xlsx).",
        )
        return None
    if not path.is_file():
        log.add_one(
            name, None, None, rel, "missing_table", f"resource {name}: file {path} does not exist."
        )
        return None
    return path, fmt


def _inline_data(data: Any, name: str, log: ProblemLog) -> RawTable | None:
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        frame = pd.DataFrame.from_records(data).astype(object)
    elif isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        header = [str(h) for h in data[0]]
        body = data[1:]
        if any(len(r) != len(header) for r in body):
            log.add_one(
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
        log.add_one(
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
    tables: Mapping[Any, Any], schema: StudySchema, log: ProblemLog
) -> dict[str, RawTable]:
    out: dict[str, RawTable] = {}
    known = set(schema.table_names)
    for key, value in tables.items():
        if key not in known:
            log.add_one(
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
            log.add_one(
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
