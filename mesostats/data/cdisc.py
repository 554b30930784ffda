"""CDISC (SDTM/ADaM) column names and coded values, read as mesostats' friendly names.

Tables laid out with CDISC (SDTM/ADaM) variable names are read through this mapping, in every
table where the column appears:

============  ==================  ==========================================================
CDISC name    mesostats column    values
============  ==================  ==========================================================
USUBJID       subject_id
SITEID        site
ARM           arm
SEX           sex                 F / M
AGE           age
AVISITN       visit
ADY           day
ABLFL         baseline_flag       Y / empty
AEDECOD       event               any case; spaces and hyphens read as ``_``
AETERM        verbatim
AESEV         severity            MILD / MODERATE / SEVERE, any case
AESER         serious             Y / N
AEREL         related             Y / N, RELATED / NOT RELATED, POSSIBLY / PROBABLY /
                                  DEFINITELY RELATED, UNRELATED, UNLIKELY RELATED, any case
============  ==================  ==========================================================

A table may mix CDISC and friendly names, but not both names of the same column (reported as
``duplicate_column``). Problems in these columns show the value after the mapping of values.

Why hand-written: the mapping is a small fixed table of this project's columns; no library
maps CDISC variables onto a project's own schema.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from mesostats.data.parse import RawTable, as_text
from mesostats.data.schema import TableSchema

__all__ = ["CDISC_COLUMNS", "CDISC_RECODED", "apply_cdisc"]

CDISC_COLUMNS: dict[str, str] = {
    "USUBJID": "subject_id",
    "SITEID": "site",
    "ARM": "arm",
    "SEX": "sex",
    "AGE": "age",
    "AVISITN": "visit",
    "ADY": "day",
    "ABLFL": "baseline_flag",
    "AEDECOD": "event",
    "AETERM": "verbatim",
    "AESEV": "severity",
    "AESER": "serious",
    "AEREL": "related",
}

_RELATED_TRUE = (
    "y",
    "yes",
    "related",
    "possibly related",
    "probably related",
    "definitely related",
    "possible",
    "probable",
    "definite",
)
_RELATED_FALSE = ("n", "no", "not related", "unrelated", "unlikely related", "unlikely", "none")

#: CDISC columns whose values are recoded (read as text, never typed while reading).
CDISC_RECODED = ("AESEV", "AEDECOD", "AEREL")


def apply_cdisc(raw: RawTable, table_schema: TableSchema) -> RawTable:
    """Rename CDISC columns to friendly names and normalise their coded values."""
    names = [str(c) for c in raw.frame.columns]
    fields = set(table_schema.field_names)
    renamed = [
        CDISC_COLUMNS[n] if n in CDISC_COLUMNS and CDISC_COLUMNS[n] in fields else n for n in names
    ]
    if renamed == names:
        return raw
    frame = raw.frame.copy(deep=False)
    replacements: dict[int, pd.Series] = {}
    for i, (old, new) in enumerate(zip(names, renamed, strict=True)):
        if old == new:
            continue
        column = frame.iloc[:, i]
        if old in CDISC_RECODED:
            replacements[i] = _normalise_cdisc_values(old, column)
    for i, series in replacements.items():
        frame.isetitem(i, series)
    frame.columns = pd.Index(renamed, dtype=object)
    return dataclasses.replace(raw, frame=frame, column_sources=raw.column_sources or names)


def _normalise_cdisc_values(cdisc_name: str, column: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return column
    text = as_text(column)
    lowered = text.str.strip().str.lower()
    if cdisc_name == "AESEV":
        return lowered
    if cdisc_name == "AEDECOD":
        return lowered.str.replace(r"[\s\-]+", "_", regex=True)
    out = text.copy()
    out[lowered.isin(_RELATED_TRUE).to_numpy(dtype=bool)] = "true"
    out[lowered.isin(_RELATED_FALSE).to_numpy(dtype=bool)] = "false"
    return out
