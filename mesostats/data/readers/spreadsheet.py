"""Parquet and XLSX files: tables whose cells keep the types they were stored with.

Parquet is read by :mod:`pyarrow.parquet` (rows labelled record number + 1, as in the same
table written as CSV); XLSX by openpyxl in read-only mode, from the worksheet named like the
table (else the first), rows labelled with their spreadsheet row number (header = row 1; empty
rows are skipped but counted). Cells that do not fit the schema are reported later with their
stored value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.readers.columns import drop_unnamed

__all__ = ["read_parquet_table", "read_xlsx_table"]


def read_parquet_table(path: Path, table: str, log: ProblemLog) -> RawTable | None:
    """Read a Parquet file with its stored types; rows labelled record number + 1."""
    try:
        frame = pq.read_table(path).to_pandas(ignore_metadata=True, split_blocks=True)
    except (pa.ArrowException, OSError, ValueError) as exc:  # what pyarrow raises on bad files
        _report_unreadable(path, "as Parquet", exc, table, log)
        return None
    frame.columns = pd.Index([str(c) for c in frame.columns], dtype=object)
    rows = pd.Index(np.arange(2, len(frame) + 2, dtype=np.int64))
    frame.index = pd.RangeIndex(len(frame))
    return drop_unnamed(RawTable(frame, rows, path.name, 1, list(frame.columns)), table, log)


def read_xlsx_table(
    path: Path, table: str, log: ProblemLog, *, sheet: str | None = None
) -> RawTable | None:
    """Read a worksheet (named like the table, else the first) with openpyxl."""
    import openpyxl  # (imported on first use: it takes a while to import)

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # corrupt files raise many types (zip, XML, KeyError, …)
        _report_unreadable(path, "as an Excel workbook", exc, table, log)
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
                log.add_one(
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
    except MemoryError:
        raise
    except Exception as exc:
        _report_unreadable(path, "as an Excel workbook", exc, table, log)
        return None
    finally:
        workbook.close()
    header = header or []
    data = {i: pd.Series([r[i] for r in records], dtype=object) for i in range(len(header))}
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(records)))
    frame.columns = pd.Index(header, dtype=object)
    raw = RawTable(frame, pd.Index(labels, dtype=np.int64), path.name, 1, list(header))
    return drop_unnamed(raw, table, log)


def _report_unreadable(path: Path, what: str, exc: Exception, table: str, log: ProblemLog) -> None:
    log.add_one(
        table,
        None,
        None,
        str(path.name),
        "unreadable",
        f"cannot read {path} {what} ({type(exc).__name__}: {exc}).",
    )
