"""The cocktails table (recipes) given beside a REDCap or CDISC export.

Recipes are study design, not patient data: REDCap projects and CDISC datasets have no place
for them, so :func:`~mesostats.data.redcap.load_redcap` and
:func:`~mesostats.data.cdisc_study.load_cdisc` take them as ``cocktails=``: a CSV, Parquet or
XLSX file (read by :mod:`.readers`, rows labelled as in :func:`load_study`) or a DataFrame
(rows keep their index labels; never modified).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.readers.csv import read_csv_table
from mesostats.data.readers.spreadsheet import read_parquet_table, read_xlsx_table
from mesostats.data.schema import StudySchema

__all__ = ["read_cocktails"]


def read_cocktails(
    cocktails: Any, schema: StudySchema, log: ProblemLog, source: str
) -> RawTable | None:
    """The raw cocktails table, or ``None`` with a problem saying how to pass it."""
    if cocktails is None:
        log.add_one(
            "cocktails",
            None,
            None,
            None,
            "missing_table",
            f"the cocktails table is missing: {source} holds no recipes; pass "
            "cocktails= (a CSV, Parquet or XLSX file, or a DataFrame with cocktail_id, "
            "ingredient, concentration and unit).",
        )
        return None
    if isinstance(cocktails, pd.DataFrame):
        frame = cocktails.copy(deep=False)
        frame.columns = pd.Index([str(c) for c in cocktails.columns], dtype=object)
        frame.index = pd.RangeIndex(len(frame))
        return RawTable(frame, cocktails.index, "DataFrame", None, list(frame.columns))
    path = Path(cocktails)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return read_parquet_table(path, "cocktails", log)
    if suffix == ".xlsx":
        return read_xlsx_table(path, "cocktails", log)
    return read_csv_table(path, "cocktails", log, schema=schema.tables["cocktails"])
