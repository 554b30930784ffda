"""Numbers written with a ``,`` decimal mark or thousands separators, read as text columns.

pyarrow parses a ``,`` decimal mark itself (``ConvertOptions.decimal_point``, the fast path of
:mod:`.csv`) but not thousands separators, and when a value does not parse it only fails. When
a file is read as text, this module turns the schema's number columns into ``.``-decimal text
without separators (the form :mod:`..parse` reads), with pyarrow compute (no Python loop over
cells), and finds the one root cause behind many bad numbers:

- every decimal in the file uses the other mark than the one declared: **one** problem for the
  file, which is not read. A *detected* mark that no value of the file uses (the sample of
  its first lines held no decimal, e.g. integers first, or one overlong cell filled it) gives
  way to the mark the file does use, without a problem: the whole file confirms it;
- a column mixing both marks: **one** problem for the column, naming both marks with their
  first lines. The values with the minority mark are set aside as missing (the problem says
  how many and where), so that they are not reported again one by one as ``type`` problems.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesostats.data.problems import ProblemLog

__all__ = ["normalise_numbers"]


def _decimal_pattern(mark: str) -> str:
    return rf"^\s*[+-]?\d*{re.escape(mark)}\d+\s*$"


def _grouped_pattern(thousands: str, decimal: str) -> str:
    return rf"^\s*[+-]?\d{{1,3}}({re.escape(thousands)}\d{{3}})+({re.escape(decimal)}\d+)?\s*$"


def _first(column: pa.Array, mask: pa.Array, lines: np.ndarray) -> tuple[int, str, int]:
    """Line and value of the first cell in ``mask``, and how many cells are in it."""
    where = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    i = int(where[0])
    return int(lines[i]), str(column[i].as_py()), len(where)


def normalise_numbers(
    arrow_table: pa.Table,
    names: list[str],
    number_columns: set[str],
    decimal: str,
    thousands: str | None,
    lines: np.ndarray,
    declared_by: str | None,
    table: str,
    origin: str,
    log: ProblemLog,
) -> pa.Table | None:
    """Number columns (text) in ``.``-decimal form; wrong or mixed marks reported once.

    ``declared_by`` names where the decimal mark was declared (None when it was detected).
    Returns None when every decimal of the file uses the other mark than the declared one: the
    file is not read (one problem), since each of its numbers would be wrong. A detected mark
    that no value uses is replaced by the other one.
    """
    other = "." if decimal == "," else ","
    right_total = 0
    wrong: dict[int, tuple[pa.Array, pa.Array]] = {}
    columns = list(arrow_table.columns)
    for i, name in enumerate(names):
        if name not in number_columns or not pa.types.is_string(columns[i].type):
            continue
        column = columns[i].combine_chunks() if columns[i].num_chunks != 1 else columns[i].chunk(0)
        grouped = pa.array(np.zeros(len(column), dtype=bool))
        if thousands is not None:
            grouped = pc.fill_null(
                pc.match_substring_regex(column, _grouped_pattern(thousands, decimal)), False
            )
            column = pc.if_else(grouped, pc.replace_substring(column, thousands, ""), column)
        bad = pc.fill_null(pc.match_substring_regex(column, _decimal_pattern(other)), False)
        bad = pc.and_(bad, pc.invert(grouped))
        right = pc.fill_null(pc.match_substring_regex(column, _decimal_pattern(decimal)), False)
        right_total += int(pc.sum(right).as_py() or 0)
        if decimal == ",":
            column = pc.if_else(right, pc.replace_substring(column, ",", "."), column)
        if pc.any(bad).as_py():
            wrong[i] = (columns[i].combine_chunks(), bad)
            column = pc.if_else(bad, pa.scalar(None, pa.string()), column)
        columns[i] = pa.chunked_array([column])
    if not wrong:
        return pa.Table.from_arrays(columns, names=arrow_table.column_names)
    if right_total == 0 and declared_by is None:
        # detected, not declared: every decimal of the file uses the other mark, and none
        # uses the detected one, so the sample decided nothing; read the file's own mark
        return normalise_numbers(
            arrow_table,
            names,
            number_columns,
            other,
            None if thousands == other else thousands,
            lines,
            declared_by,
            table,
            origin,
            log,
        )
    if right_total == 0:
        i, (original, bad) = next(iter(wrong.items()))
        line, value, _ = _first(original, bad, lines)
        count = sum(int(pc.sum(b).as_py() or 0) for _, b in wrong.values())
        where = f"not {decimal!r} as declared in {declared_by}"
        log.add_one(
            table,
            line,
            names[i],
            value,
            "dialect",
            f"{origin} writes decimals with {other!r} (e.g. {value!r} on line {line}, column "
            f"{names[i]}; {count} values), {where}; they were not read. Declare "
            f"decimalChar {other!r} (datapackage.json dialect, or load_study(..., "
            f"dialect={{'decimalChar': {other!r}}})).",
            position=line,
        )
        return None
    else:
        for i, (original, bad) in wrong.items():
            line, value, count = _first(original, bad, lines)
            log.add_one(
                table,
                line,
                names[i],
                value,
                "mixed_decimal_marks",
                f"column {names[i]} of {origin} mixes decimal marks: {count} values use "
                f"{other!r} (first on line {line}: {value!r}) where the file uses {decimal!r}; "
                f"those {count} values were not read. Write every value with {decimal!r} (if "
                f"{other!r} separates thousands, declare groupChar {other!r}).",
                position=line,
            )
    return pa.Table.from_arrays(columns, names=arrow_table.column_names)
