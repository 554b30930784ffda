"""CDISC dataset files: SAS transport (``.xpt``) and Dataset-JSON, read as DataFrames.

:func:`read_datasets` reads every dataset of a source: a folder of ``.xpt`` and/or ``.json``
files (one dataset per file, named by the dataset's own name, else the file name), or a dict of
DataFrames keyed by dataset name (``{"ADSL": adsl, …}``). Character variables come back as
``str`` with blanks as missing, numeric ones as ``float64``; rows are labelled by their
observation number (1-based, SAS's ``_N_``), or by the DataFrame's index labels.

- SAS transport v5/v8 (the FDA's submission format) is read by pyreadstat (ReadStat's C
  reader); it is an optional dependency, imported when an ``.xpt`` file is met.
- Dataset-JSON (CDISC Dataset-JSON 1.1: top-level ``name``, ``columns`` with ``name`` and
  ``dataType``, ``rows``; and 1.0: ``clinicalData``/``referenceData`` → ``itemGroupData`` →
  ``items`` and ``itemData``, whose first item ``ITEMGROUPDATASEQ`` is the record number) is
  plain JSON, read with the standard library; numbers are typed by ``dataType``.

A file that cannot be read is a problem (table = the file name), never an exception.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mesostats.data.parse import as_text
from mesostats.data.problems import ProblemLog

__all__ = ["Dataset", "read_datasets"]

_NUMERIC = {"integer", "decimal", "float", "double"}


@dataclass(frozen=True)
class Dataset:
    """One CDISC dataset as read; ``frame.index`` holds observation numbers (1, 2, …)."""

    name: str
    frame: pd.DataFrame
    origin: str


def read_datasets(source: Any, log: ProblemLog) -> dict[str, Dataset]:
    """Every dataset of ``source`` (folder or dict of DataFrames), keyed by upper-case name."""
    if isinstance(source, Mapping):
        out = {}
        for key, frame in source.items():
            if not isinstance(frame, pd.DataFrame):
                log.add_one(
                    str(key),
                    None,
                    None,
                    type(frame).__name__,
                    "not_a_table",
                    f"datasets[{key!r}] must be a pandas DataFrame, got {type(frame).__name__}.",
                )
                continue
            normalised = _normalised(frame, frame.index)
            out[str(key).upper()] = Dataset(str(key).upper(), normalised, "DataFrame")
        return out
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        out = {}
        for path in sorted(Path(source).iterdir()):
            suffix = path.suffix.lower()
            if suffix not in (".xpt", ".json") or path.name.startswith("."):
                continue
            dataset = _read_xpt(path, log) if suffix == ".xpt" else _read_json(path, log)
            if dataset is None:
                continue
            if dataset.name in out:
                log.add_one(
                    dataset.name,
                    None,
                    None,
                    path.name,
                    "ambiguous_table",
                    f"dataset {dataset.name} is in two files ({out[dataset.name].origin} and "
                    f"{path.name}); keep one.",
                )
                continue
            out[dataset.name] = dataset
        return out
    log.add_one(
        "study",
        None,
        None,
        str(source),
        "source",
        f"cannot read CDISC datasets from {source!r}: pass a folder of .xpt or Dataset-JSON "
        "files, or a dict of DataFrames keyed by dataset name (ADSL, ADAE, …).",
    )
    return {}


def _read_xpt(path: Path, log: ProblemLog) -> Dataset | None:
    try:
        import pyreadstat  # optional heavy dependency: only needed for SAS transport files
    except ImportError:  # pragma: no cover - pyreadstat is a dependency of mesostats
        log.add_one(
            path.name,
            None,
            None,
            None,
            "unreadable",
            f"{path.name}: reading SAS transport files needs pyreadstat (pip install pyreadstat).",
        )
        return None
    try:
        frame, meta = pyreadstat.read_xport(str(path))
    except Exception as exc:  # ReadStat raises its own error types for damaged files
        log.add_one(
            path.name,
            None,
            None,
            None,
            "unreadable",
            f"cannot read {path.name} as SAS transport: {exc}",
        )
        return None
    name = str(meta.table_name or path.stem).strip().upper() or path.stem.upper()
    return Dataset(name, _normalised(frame), path.name)


def _read_json(path: Path, log: ProblemLog) -> Dataset | None:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        name, columns, types, rows = _dataset_json(document)
        frame = pd.DataFrame(rows, columns=columns, dtype=object)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.add_one(
            path.name,
            None,
            None,
            None,
            "unreadable",
            f"cannot read {path.name} as CDISC Dataset-JSON: {exc}",
        )
        return None
    for column, dtype in zip(columns, types, strict=True):
        if dtype in _NUMERIC:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return Dataset(str(name).upper(), _normalised(frame), path.name)


def _dataset_json(document: Any) -> tuple[str, list[str], list[str], list[list[Any]]]:
    """Name, column names, data types and rows of a Dataset-JSON 1.1 or 1.0 document."""
    if "columns" in document and "rows" in document:  # 1.1
        columns = [str(c["name"]) for c in document["columns"]]
        types = [str(c.get("dataType", "string")) for c in document["columns"]]
        return str(document["name"]), columns, types, list(document["rows"])
    data = document.get("clinicalData") or document.get("referenceData")
    if not isinstance(data, dict):
        raise KeyError("neither 'columns'/'rows' (1.1) nor 'clinicalData' (1.0)")
    groups = data["itemGroupData"]
    if len(groups) != 1:
        raise ValueError(f"expected one item group per file, found {len(groups)}")
    group = next(iter(groups.values()))
    items = group["items"]
    columns = [str(i["name"]) for i in items]
    types = [str(i.get("type", "string")) for i in items]
    rows = list(group["itemData"])
    if columns and columns[0] == "ITEMGROUPDATASEQ":
        columns, types, rows = columns[1:], types[1:], [r[1:] for r in rows]
    return str(group["name"]), columns, types, rows


def _normalised(frame: pd.DataFrame, index: pd.Index | None = None) -> pd.DataFrame:
    """Text as ``str`` with blanks missing, numbers as ``float64``; index = obs number (or the
    DataFrame's own index labels)."""
    out: dict[str, pd.Series] = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            out[str(column)] = values.astype("float64").reset_index(drop=True)
            continue
        text = as_text(values).str.strip().reset_index(drop=True)
        empty = (text == "").to_numpy(dtype=bool, na_value=False)
        out[str(column)] = text.mask(empty) if empty.any() else text
    result = pd.DataFrame(out)
    result.index = pd.RangeIndex(1, len(frame) + 1) if index is None else index
    return result
