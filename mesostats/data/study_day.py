"""Study days from visit dates: the CDISC rule, for sessions exported with dates, not days.

Clinics export the visit **date**; the analyses need the study day (CDISC ADY). When a table
has a ``date`` field (type ``date``) and its ``day`` column is absent, :func:`derive_study_day`
fills ``day`` before the field constraints and the ``x-mesostats-rules`` run, so every rule
on ``day`` (no day 0, increasing with visit, baseline on or before day 1) checks the derived
days as it would check written ones:

- the reference date (CDISC RFSTDTC) is the subject's first injection session: the earliest
  date of a row whose ``cocktail_id`` is filled;
- study day = date − reference + 1 on or after the reference date, date − reference before
  it (there is no day 0);
- a subject never injected has no reference date: its rows get no day (missing) and
  :class:`~mesostats.data.study.Study` lists them in ``exclusions``; nothing is dropped;
- a row without a date gets one ``required`` problem on ``date``.

When both ``day`` and ``date`` are present, ``day`` is used as written; a subject whose
written days disagree with the days counted from its dates gets one ``day_matches_date``
problem (at its first disagreeing visit).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from mesostats.data.checks import CheckedTable
from mesostats.data.problems import ProblemLog
from mesostats.data.schema import TableSchema

__all__ = ["NO_REFERENCE_REASON", "derivable_columns", "derive_study_day"]

DAY, DATE, INJECTED, SUBJECT = "day", "date", "cocktail_id", "subject_id"
NO_REFERENCE_REASON = (
    "no study day: the subject has no injection session (cocktail_id), whose date is the "
    "reference date of study days"
)
_NONE = np.iinfo(np.int64).max


def derivable_columns(schema: TableSchema, present: Collection[str]) -> set[str]:
    """Required columns that may be absent because they are derived (``day`` from ``date``)."""
    types = {f.name: f.type for f in schema.fields}
    if (
        types.get(DAY) == "integer"
        and types.get(DATE) == "date"
        and SUBJECT in types
        and INJECTED in types
        and DAY not in present
        and DATE in present
    ):
        return {DAY}
    return set()


def _cdisc_days(table: CheckedTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Study day of each row from its date, whether it has one, and the reference day number."""
    dates = table.typed[DATE]
    has_date = table.valid[DATE]
    stamps = dates.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    days = np.where(has_date, stamps.astype(np.int64), 0)
    if SUBJECT in table.typed:
        codes, n = table.column_codes(SUBJECT)
    else:
        codes, n = np.full(table.n, -1, dtype=np.int64), 0
    known = codes >= 0
    injected = has_date & known
    if INJECTED in table.typed:
        injected &= table.valid[INJECTED]
    else:
        injected &= False
    reference = np.full(max(n, 1), _NONE, dtype=np.int64)
    np.minimum.at(reference, codes[injected], days[injected])
    ref = reference[np.where(known, codes, 0)]
    ok = has_date & known & (ref != _NONE)
    delta = np.where(ok, days - np.where(ok, ref, 0), 0)
    return np.where(delta >= 0, delta + 1, delta), ok, ref


def derive_study_day(table: CheckedTable, log: ProblemLog) -> None:
    """Add the derived ``day`` column to ``table`` when its sessions have dates but no days;
    when both are given, report once per subject a written day that disagrees with its date."""
    if not derivable_columns(table.schema, table.typed):
        if DAY in table.typed and DATE in table.typed and table.typed[DATE].dtype.kind == "M":
            _check_agreement(table, log)
        return
    study_day, ok, _ = _cdisc_days(table)
    table.typed[DAY] = pd.Series(
        pd.arrays.IntegerArray(study_day.astype(np.int64), ~ok),
        index=table.typed[DATE].index,
        copy=False,
    )
    table.valid[DAY] = ok
    table.missing[DAY] = np.zeros(table.n, dtype=bool)  # never-injected rows: exclusions
    table.report(
        log,
        DATE,
        table.missing[DATE],
        "required",
        "date (visit date) is required on every row when the table has no day column: the "
        "study day is derived from it.",
    )


def _check_agreement(table: CheckedTable, log: ProblemLog) -> None:
    """One ``day_matches_date`` problem per subject whose written day disagrees with its date."""
    study_day, ok, ref = _cdisc_days(table)
    written = table.float_values(DAY)
    wrong = ok & table.valid[DAY] & (written != study_day)
    if not wrong.any():
        return
    codes = table.column_codes(SUBJECT)[0]
    pos = np.flatnonzero(wrong)
    pos = pos[np.unique(codes[pos], return_index=True)[1]]  # the first row of each subject
    start = (ref[pos].astype("datetime64[D]")).astype(str)
    messages = [
        f"day {int(written[i])} disagrees with date: counted from the subject's first "
        f"injection ({first}) the visit is study day {int(study_day[i])}; correct the day or "
        "the date (only the subject's first disagreeing visit is listed)."
        for i, first in zip(pos, start, strict=True)
    ]
    table.report(log, DAY, pos, "day_matches_date", np.asarray(messages, dtype=object))
