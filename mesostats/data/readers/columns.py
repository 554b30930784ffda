"""Columns without a name in a file's header, shared by every file reader.

A trailing delimiter on every line (a common spreadsheet export) makes an empty column with no
name: it is dropped. An unnamed column that holds values is dropped too, and reported with its
first value, so nothing is lost without a recorded reason.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog

__all__ = ["drop_unnamed"]


def drop_unnamed(raw: RawTable, table: str, log: ProblemLog) -> RawTable:
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
            log.add_one(
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
