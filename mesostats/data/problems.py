"""The problem log: every problem found while reading and validating a study, in one table.

Readers record problems one at a time (an unreadable file, a line with too many fields);
checks record them a column at a time (every row of a column that breaks a rule, as arrays).
Both go into one :class:`ProblemLog`, whose :meth:`ProblemLog.frame` is the ``problems`` table
of :class:`~mesostats.exceptions.ValidationError`: columns ``table, row, column, value, rule,
message``, ordered by table (schema order), then by row.

Rows are ordered by their label when every located problem of the log has a line number (files),
else by their position in the table (DataFrames, whose index labels need not sort); the
position travels with each problem in the private ``_pos`` column until then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import PROBLEM_COLUMNS

__all__ = ["ProblemLog", "as_object_array"]

_POSITION = "_pos"


class ProblemLog:
    """Accumulates problems (one at a time, or a column at a time) and sorts them at the end.

    Parameters
    ----------
    table_order : sequence of str
        Table names in the order their problems are listed; other tables come last.
    """

    def __init__(self, table_order: Sequence[str] = ()) -> None:
        self.table_order = list(table_order)
        self._chunks: list[pd.DataFrame] = []
        self._pending: list[tuple[Any, ...]] = []  # single problems not yet in a chunk

    def add(
        self,
        table: str,
        rows: Any,
        column: str | None,
        values: Any,
        rule: str,
        message: str | Sequence[str] | np.ndarray,
        positions: Any = None,
    ) -> None:
        """Record problems; ``rows``/``values``/``message`` are scalars or equal-length arrays.

        ``positions`` are the 0-based positions of the rows in their table (for sorting).
        """
        row_arr = as_object_array(rows)
        n = len(row_arr)
        if n == 0:
            return
        self._flush()
        pos = (
            np.full(n, -1, dtype=np.int64)
            if positions is None
            else np.asarray(positions, dtype=np.int64)
        )
        self._chunks.append(
            pd.DataFrame(
                {
                    "table": np.full(n, table, dtype=object),
                    "row": row_arr,
                    "column": np.full(n, column, dtype=object),
                    "value": as_object_array(values, n),
                    "rule": np.full(n, rule, dtype=object),
                    "message": as_object_array(message, n),
                    _POSITION: pos,
                }
            )
        )

    def add_one(
        self,
        table: str,
        row: object,
        column: str | None,
        value: object,
        rule: str,
        message: str,
        position: int = -1,
    ) -> None:
        """Record one problem; ``value`` is kept as it is, even when it is a list or array."""
        self._pending.append((table, row, column, value, rule, message, position))

    def extend(self, other: pd.DataFrame) -> None:
        """Add problems already in table form (e.g. :meth:`records` of another log)."""
        if len(other):
            self._flush()
            chunk = other.reindex(columns=PROBLEM_COLUMNS).astype(object)
            if _POSITION in other:
                chunk[_POSITION] = other[_POSITION].to_numpy(dtype=np.int64)
            else:
                chunk[_POSITION] = -1
            self._chunks.append(chunk)

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks) + len(self._pending)

    def records(self) -> pd.DataFrame:
        """The problems in the order they were recorded, with their ``_pos`` column."""
        self._flush()
        if not self._chunks:
            return pd.DataFrame(
                {c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS}
                | {_POSITION: pd.Series(dtype=np.int64)}
            )
        return pd.concat(self._chunks, ignore_index=True)

    def frame(self) -> pd.DataFrame:
        """All problems, ordered by table (``table_order``), then row; public columns only."""
        problems = self.records()
        if not len(problems):
            return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})
        order = {name: i for i, name in enumerate(self.table_order)}
        table_rank = problems["table"].map(order).fillna(len(order)).to_numpy(dtype=np.int64)
        # Within a table: by row when rows are line numbers (files), else by position.
        numeric_rows = pd.to_numeric(
            pd.Series([r if type(r) is int else None for r in problems["row"]], dtype=object),
            errors="coerce",
        ).to_numpy(dtype="float64", na_value=np.nan)
        positions = problems[_POSITION].to_numpy(dtype=np.int64)
        by_row = bool(np.isfinite(numeric_rows[positions >= 0]).all())
        within = np.where(np.isfinite(numeric_rows) & by_row, numeric_rows, positions)
        idx = np.lexsort((np.arange(len(problems)), within, table_rank))
        out = problems.iloc[idx][PROBLEM_COLUMNS].reset_index(drop=True)
        return out.astype(object)

    def _flush(self) -> None:
        """Turn the single problems recorded so far into one chunk (keeps recording order)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        columns = list(zip(*pending, strict=True))
        data: dict[str, Any] = {}
        for name, cells in zip(PROBLEM_COLUMNS, columns, strict=False):
            arr = np.empty(len(pending), dtype=object)
            arr[:] = list(cells)
            data[name] = arr
        data[_POSITION] = np.asarray(columns[-1], dtype=np.int64)
        self._chunks.append(pd.DataFrame(data))


def as_object_array(values: Any, n: int | None = None) -> np.ndarray:
    """``values`` as an object array (missing as ``None``); a scalar is repeated ``n`` times."""
    if isinstance(values, (pd.Index, pd.Series, pd.api.extensions.ExtensionArray)):
        arr = np.array(pd.Series(values).astype(object).to_numpy(), dtype=object, copy=True)
        arr[pd.isna(arr)] = None
        return arr
    if isinstance(values, np.ndarray):
        arr = np.array(values, dtype=object, copy=True)
        if arr.size and values.dtype.kind == "f":
            arr[np.isnan(values)] = None
        return arr
    if isinstance(values, (list, tuple)):
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        return arr
    size = 1 if n is None else n
    arr = np.empty(size, dtype=object)
    arr[:] = [values] * size
    return arr
