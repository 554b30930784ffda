"""Visit dates as clinics write them: the order of day, month and year in a date column.

A ``date`` field with ``format: "any"`` accepts ISO dates (``2025-04-03``) and the numeric
dates of spreadsheets (``03/04/2025``, ``03.04.2025``, ``03-04-2025``). Whether ``03/04/2025``
is the 3rd of April (France, Spain, Italy) or the 4th of March (United States) is decided
**once per column**: on a sample (the first values) and then confirmed on the whole column.
A first component above 12 shows day-first, a second component above 12 month-first; a
column showing both is one problem naming a line of each; a column where no value tells
(every component ≤ 12) is one problem saying how to declare the order
(``dialect={"dateOrder": "DMY"}``, or the field's ``format``). Nothing is guessed.

Why hand-written: pandas' ``dayfirst=True`` is a per-value *hint*: ``to_datetime`` silently
reads ``25/03/2025`` day-first and ``03/25/2025`` month-first in the same column, and reads
an all-ambiguous column in whichever order it was told, with no error. Here the values are
split once with a vectorised regular expression (pyarrow's RE2) and re-assembled as ISO
text, which pandas then parses with an explicit format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DATE_ORDERS",
    "DateOrder",
    "dates_to_iso",
    "detect_date_order",
    "order_problem",
]

#: The orders that ``dialect={"dateOrder": ...}`` declares.
DATE_ORDERS = ("DMY", "MDY", "YMD")
_SAMPLE = 1000
# year-first (ISO and 2025/04/03) or two leading components then a four-digit year; an
# optional time of day (spreadsheets write "03/04/2025 00:00") is ignored. RE2 (pyarrow) has
# no back-references: the two separators are compared afterwards.
_PATTERN = (
    r"^\s*(?P<a>\d{1,4})(?P<s1>[/.\-])(?P<b>\d{1,2})(?P<s2>[/.\-])(?P<c>\d{1,4})"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*$"
)


@dataclass(frozen=True)
class DateOrder:
    """What a date column showed: its order, or why none could be chosen.

    ``order`` is one of :data:`DATE_ORDERS` (None when the column mixes orders or never
    tells); ``day_first`` and ``month_first`` are the position of a value showing each order
    (None if none does); ``ambiguous`` holds the position of an undecided value.
    """

    order: str | None
    day_first: int | None = None
    month_first: int | None = None
    ambiguous: int | None = None


def _parts(text: pd.Series) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The three numeric components of each date (null where the text is not such a date)."""
    arr = pa.array(text, type=pa.string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    found = pc.extract_regex(arr, _PATTERN)
    # flatten(): the fields with the nulls of the struct (text that did not match)
    field = dict(zip(("a", "s1", "b", "s2", "c"), found.flatten(), strict=True))
    same = pc.fill_null(pc.equal(field["s1"], field["s2"]), False)
    a, b, c = (pc.if_else(same, field[k], None) for k in ("a", "b", "c"))
    return a, b, c


def _mask(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def detect_date_order(text: pd.Series, declared: str | None = None) -> DateOrder:
    """The order of the numeric dates in ``text`` (missing cells already NA).

    A declared order is taken as it is. Otherwise year-first values (four digits first) are
    read as ``YMD``; the others decide between ``DMY`` and ``MDY`` on the first
    :data:`_SAMPLE` values, then on the whole column (a contrary value anywhere is a mix).
    """
    if declared is not None:
        return DateOrder(declared)
    a, b, _ = _parts(text)
    numeric = _mask(pc.less_equal(pc.utf8_length(a), 2))
    if not numeric.any():
        return DateOrder("YMD")
    first = pc.cast(pc.if_else(numeric, a, None), pa.int64())
    second = pc.cast(pc.if_else(numeric, b, None), pa.int64())
    big_first, big_second = _mask(pc.greater(first, 12)), _mask(pc.greater(second, 12))
    dmy = big_first & ~big_second  # 13/13/2025 is no date at all (a type problem later)
    mdy = big_second & ~big_first
    dmy_pos = _first(dmy[:_SAMPLE]) if dmy[:_SAMPLE].any() else _first(dmy)
    mdy_pos = _first(mdy[:_SAMPLE]) if mdy[:_SAMPLE].any() else _first(mdy)
    if dmy_pos is not None and mdy_pos is not None:
        return DateOrder(None, dmy_pos, mdy_pos)
    if dmy_pos is not None:
        return DateOrder("DMY", day_first=dmy_pos)
    if mdy_pos is not None:
        return DateOrder("MDY", month_first=mdy_pos)
    return DateOrder(None, ambiguous=_first(numeric))


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def dates_to_iso(text: pd.Series, order: str) -> pd.Series:
    """The dates of ``text`` as ISO ``YYYY-MM-DD`` text in the given order (NA if not a date).

    A year-first value is read as year-month-day whatever the order of the others.
    """
    a, b, c = _parts(text)
    year_first = pc.fill_null(pc.equal(pc.utf8_length(a), 4), False)
    if order == "YMD":
        year, month, day = a, b, c
    elif order == "DMY":
        year, month, day = c, b, a
    else:
        year, month, day = c, a, b
    year = pc.if_else(year_first, a, year)
    month = pc.utf8_lpad(pc.if_else(year_first, b, month), 2, "0")
    day = pc.utf8_lpad(pc.if_else(year_first, c, day), 2, "0")
    iso = pc.binary_join_element_wise(year, month, day, "-")
    iso = pc.if_else(pc.fill_null(pc.equal(pc.utf8_length(year), 4), False), iso, None)
    return pd.Series(iso.to_numpy(zero_copy_only=False), index=text.index, dtype="str")


def order_problem(
    found: DateOrder, text: pd.Series, column: str, origin: str, rows: pd.Index
) -> str | None:
    """The one message for a column whose order is mixed or undecided (None when decided)."""
    if found.order is not None:
        return None
    where = f"column {column} of {origin}"
    if found.day_first is not None and found.month_first is not None:
        d, m = found.day_first, found.month_first
        return (
            f"dates in {where} mix day-first (line {rows[d]}: {text.iloc[d]!r}) and "
            f"month-first (line {rows[m]}: {text.iloc[m]!r}) orders; correct the dates "
            "written in the other order."
        )
    example = "" if found.ambiguous is None else f" (e.g. line {rows[found.ambiguous]}: "
    example += "" if found.ambiguous is None else f"{text.iloc[found.ambiguous]!r})"
    return (
        f"the dates in {where} are ambiguous{example}: no day or month above 12 tells whether "
        "they are day-first or month-first. Declare the order: load_study(..., "
        "dialect={'dateOrder': 'DMY'}) (or 'MDY'), \"dialect\": {\"dateOrder\": \"DMY\"} in "
        'datapackage.json, or the field\'s format, e.g. "format": "%d/%m/%Y".'
    )
