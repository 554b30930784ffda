"""Evaluating formula pieces on a DataFrame: variables, grouping factors, expressions, offsets.

Helpers of :func:`mesostats.mixed.design.build_design` (the used columns of the fitted rows,
rows with a missing value set aside) and of ``MixedResults.predict``.
"""

from __future__ import annotations

import difflib
import functools
import re
import warnings
from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from mesostats.exceptions import ExclusionWarning, ModelSpecError


# --------------------------------------------------------------------------- columns
class UsedColumns:
    """The columns a formula uses, on the fitted rows, as the formula helpers read them.

    Each pandas column is looked up once and kept (pandas builds a new Series on every
    ``frame[name]``); the DataFrame of those columns is built only when asked for
    (:attr:`frame`: formulaic's fallback, ``model_frame``). The columns are pandas'
    copy-on-write views of the caller's table, so a later change to that table does not
    reach them. Measured on sleepstudy (cold caches): the formula-to-matrices step
    ~0.2 ms faster than copying the used columns into a new DataFrame first.

    Reads as a DataFrame does for ``name in columns``, ``[name]``, ``len``, ``index``.
    """

    __slots__ = ("_frame", "_series", "_source_columns", "columns", "index")

    def __init__(
        self,
        series: dict[str, pd.Series],
        index: pd.Index,
        *,
        source_columns: pd.Index | None = None,
        frame: pd.DataFrame | None = None,
    ) -> None:
        self._series = series
        self.columns: tuple[str, ...] = tuple(series)
        self.index = index
        self._source_columns = source_columns  # the labels' Index the names were read from
        self._frame = frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> UsedColumns:
        """The columns of ``frame`` (its names unique), read from it when first asked for."""
        out = cls({}, frame.index, frame=frame)
        out.columns = tuple(frame.columns)
        return out

    def __getitem__(self, name: str) -> pd.Series:
        series = self._series.get(name)
        if series is None:
            assert self._frame is not None, name
            series = self._series[name] = self._frame[name]
        return series

    def __len__(self) -> int:
        return len(self.index)

    @property
    def frame(self) -> pd.DataFrame:
        """The used columns as a DataFrame (built on first access, then kept)."""
        if self._frame is None:
            arrays = {k: self[name].array for k, name in enumerate(self.columns)}
            frame = pd.DataFrame(arrays, index=self.index, copy=False)
            source = self._source_columns
            frame.columns = (
                list(self.columns)
                if source is None
                else source.take([cast(int, source.get_loc(c)) for c in self.columns])
            )
            self._frame = frame
        return self._frame

    def without_unused_categories(self) -> UsedColumns:
        """The same columns with the unused categories of categorical columns dropped (as
        R's ``model.frame``); ``self`` when no column is categorical."""
        cats = [c for c in self.columns if isinstance(self[c].dtype, pd.CategoricalDtype)]
        if not cats:
            return self
        series = {c: self[c] for c in self.columns}
        for c in cats:
            series[c] = series[c].cat.remove_unused_categories()
        source = self._frame.columns if self._frame is not None else self._source_columns
        return UsedColumns(series, self.index, source_columns=source)


def as_frame(data: pd.DataFrame | UsedColumns) -> pd.DataFrame:
    """``data`` as a DataFrame (what formulaic is given)."""
    return data.frame if isinstance(data, UsedColumns) else data


#: what the formula helpers read: a DataFrame or the fit's :class:`UsedColumns`
Columns = pd.DataFrame | UsedColumns


# --------------------------------------------------------------------------- helpers
def _close_matches(name: str, columns: Sequence[str]) -> str:
    matches = difflib.get_close_matches(name, [str(c) for c in columns], n=3, cutoff=0.6)
    if not matches:
        lowered = {str(c).lower(): str(c) for c in columns}
        if name.lower() in lowered:
            matches = [lowered[name.lower()]]
    if matches:
        return " Did you mean " + " or ".join(f"`{m}`" for m in matches) + "?"
    shown = ", ".join(f"`{c}`" for c in list(columns)[:20])
    more = " …" if len(columns) > 20 else ""
    return f" The data has columns {shown}{more}."


_ANSI = re.compile(r"\x1b\[[0-9;]*m|[⧛⧚]")


def _reason(exc: Exception) -> str:
    """formulaic's error text without terminal colour codes, on one line."""
    return " ".join(_ANSI.sub("", str(exc)).split())


@functools.lru_cache(maxsize=1024)
def _required_variables(rhs: str) -> frozenset[str]:
    """formulaic's parse of a right-hand side, memoised (a pure function of the text)."""
    return frozenset(str(v) for v in Formula(rhs).required_variables)


def _formula_variables(rhs: str, where: str) -> set[str]:
    try:
        return set(_required_variables(rhs))
    except Exception as exc:  # formulaic raises several parser error types
        raise ModelSpecError(f"Cannot parse the {where} `{rhs}`: {_reason(exc)}") from exc


def _expression_variables(expr: str, where: str) -> set[str]:
    return _formula_variables(f"0 + I({expr})", where)


def _group_labels(data: Columns, columns: tuple[str, ...]) -> pd.Index:
    if len(columns) == 1:
        return pd.Index(data[columns[0]])
    parts = [data[c].astype(str).to_numpy(dtype=object) for c in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + ":" + part
    return pd.Index(joined)


#: the longest text column :func:`_sorted_factorize` sorts with numpy
_SMALL_TEXT = 5000


def _sorted_factorize(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(series, sort=True)`` (codes as int64; a column with missing values
    takes pandas' route).

    For a numeric or pandas-extension dtype the distinct values are found unsorted and then
    sorted (their argsort, as pandas' own ``safe_sort`` does for these dtypes), which skips
    ``safe_sort``'s general-purpose checks (a third of the time on a short text column);
    object columns, whose mixed types ``safe_sort`` orders specially, take pandas' route.
    A short text column (pandas' ``str`` dtype, at most ``_SMALL_TEXT`` rows, no missing
    value) is sorted by numpy instead (``np.unique`` of its Python strings: the same
    code-point order as pandas' sort of the UTF-8 values; ~2× faster than pandas' hashing
    and sorting on a few hundred rows, but a comparison sort, hence the cap).
    """
    if (
        isinstance(series.dtype, pd.StringDtype)
        and len(series) <= _SMALL_TEXT
        and not series.array.isna().any()
    ):
        uniq, inverse = np.unique(series.to_numpy(dtype=object), return_inverse=True)
        return inverse.astype(np.int64).reshape(-1), pd.Index(uniq, dtype=series.dtype)
    codes, uniques = pd.factorize(series, sort=False)
    if len(uniques) < 2 or uniques.dtype == object or (codes < 0).any():
        codes, uniques = pd.factorize(series, sort=True)
        return np.asarray(codes, dtype=np.int64), uniques
    sorter = np.asarray(uniques.argsort())
    rank = np.empty(len(sorter), dtype=np.int64)
    rank[sorter] = np.arange(len(sorter))
    return rank[codes], uniques.take(sorter)


def _grouping_factor(data: Columns, columns: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Level codes and labels of a grouping factor (an interaction when several columns).

    Levels are sorted (or kept in category order), unused ones dropped, like R's ``factor``.
    Interaction labels join the values with ``:`` in the order of ``columns``.
    """
    codes_list = []
    level_list = []
    for col in columns:
        series = data[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.cat.remove_unused_categories()
            codes = np.asarray(series.cat.codes, dtype=np.int64)
            levels = pd.Index(series.cat.categories)
        else:
            codes, levels = _sorted_factorize(series)
        codes_list.append(codes)
        level_list.append(levels)
    if len(columns) == 1:
        return codes_list[0].astype(np.intp), level_list[0]
    combined = np.zeros(len(data), dtype=np.int64)
    for codes, levels in zip(codes_list, level_list, strict=True):
        combined = combined * len(levels) + codes
    uniq, inverse = np.unique(combined, return_inverse=True)
    labels = []
    remainder = uniq
    digits = []
    for levels in reversed(level_list):
        digits.append(remainder % len(levels))
        remainder = remainder // len(levels)
    digits.reverse()
    text = [
        np.asarray(levels.astype(str), dtype=object)[d]
        for levels, d in zip(level_list, digits, strict=True)
    ]
    joined = text[0]
    for part in text[1:]:
        joined = joined + ":" + part
    labels = pd.Index(joined)
    return inverse.astype(np.intp), labels


def _evaluate_expression(expr: str, data: Columns, where: str) -> np.ndarray:
    if expr in data.columns:
        series = data[expr]
        if not (
            pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)
        ):
            raise ModelSpecError(
                f"The {where} `{expr}` is not numeric (dtype {series.dtype}, e.g. value "
                f"{series.iloc[0]!r}). Convert it to numbers (or 0/1) before fitting."
            )
        return np.asarray(series.to_numpy(dtype=float, na_value=np.nan))
    try:
        # non-finite or NaN results (log(0), log(-1)) are reported by the callers with the rows
        with np.errstate(all="ignore"):
            mm = model_matrix(
                f"0 + I({expr})", as_frame(data), na_action="ignore", context={"np": np}
            )
    except Exception as exc:
        raise ModelSpecError(f"Cannot evaluate the {where} `{expr}`: {_reason(exc)}") from exc
    if mm.shape[1] != 1:
        raise ModelSpecError(
            f"The {where} `{expr}` is not numeric: it gives {mm.shape[1]} columns "
            f"({', '.join(map(str, mm.columns))}). Convert it to numbers before fitting."
        )
    return np.asarray(mm.to_numpy(dtype=float)[:, 0])


def _constant(value: float, n: int) -> np.ndarray:
    """A read-only length-n array of one value that takes no memory (a broadcast view)."""
    return np.broadcast_to(np.float64(value), (n,))


def _frame_to_matrix(frame: pd.DataFrame) -> np.ndarray:
    """Move a model-matrix frame into a C-ordered float array, one column at a time.

    Each column is dropped from the frame once copied, so a large design never needs the
    frame and the array in memory at the same time (formulaic returns one block per column).
    """
    n, p = frame.shape
    out = np.empty((n, p))
    for j, name in enumerate(list(frame.columns)):
        out[:, j] = frame.pop(name).to_numpy(dtype=float)
    return out


def _evaluate_offsets(offsets: tuple[str, ...], data: Columns) -> np.ndarray:
    if not offsets:
        return _constant(0.0, len(data))
    total = np.zeros(len(data))
    for expr in offsets:
        values = _evaluate_expression(expr, data, "offset")
        bad = ~np.isfinite(values)
        if bad.any():
            where = np.flatnonzero(bad)
            rows = ", ".join(repr(data.index[j]) for j in where[:5])
            more = f" and {len(where) - 5} more" if len(where) > 5 else ""
            raise ModelSpecError(
                f"offset({expr}) is not finite in {int(bad.sum())} row(s) "
                f"(index {rows}{more}); e.g. log of an exposure or area <= 0. "
                "Check the exposure column or drop those rows."
            )
        total = total + values
    return total


# --------------------------------------------------------------------------- fitted rows
#: ``excluded_rows`` when no row is set aside: copied where it is handed out
#: (``results.excluded_rows`` returns a copy; a design keeps this one and never changes it)
_NO_EXCLUSIONS = pd.DataFrame(
    {c: pd.Series([], dtype=object) for c in ("row", "columns", "reason")}
)


def _used_rows(data: pd.DataFrame, used: list[str]) -> tuple[UsedColumns, pd.DataFrame]:
    """:func:`_set_aside_missing` for :func:`build_design`: the used columns of the kept rows
    as :class:`UsedColumns`. When no used value is missing (and the column names are plain
    and unique) the caller's columns are read once each and no DataFrame is built."""
    columns = data.columns
    if columns.is_unique and not isinstance(columns, pd.MultiIndex):
        series = {c: data[c] for c in used}
        missing = np.logical_or.reduce([np.asarray(s.array.isna()) for s in series.values()])
        if not missing.any():
            return UsedColumns(series, data.index, source_columns=columns), _NO_EXCLUSIONS
    frame, excluded = _set_aside_missing(data, used, stacklevel=5)
    return UsedColumns.from_frame(frame), excluded


def _set_aside_missing(
    data: pd.DataFrame, used: list[str], *, stacklevel: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off rows with a missing value in a used column; list them with the reason (one
    text per distinct set of missing columns, spread to the rows)."""
    # by position when the names are unique (get_loc each: an Index of the names costs ~50 µs)
    unique = data.columns.is_unique  # get_loc is then an int
    positions = [cast(int, data.columns.get_loc(c)) for c in used] if unique else None
    frame = data[used] if positions is None else data.take(positions, axis=1)
    missing = frame.isna().to_numpy()
    mask = missing.any(axis=1)
    if not mask.any():
        return frame, _NO_EXCLUSIONS.copy()
    miss = missing[mask]
    if len(used) <= 62:
        key = miss @ (np.int64(1) << np.arange(len(used), dtype=np.int64))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        sets = miss[first]
    else:
        sets, inverse = np.unique(miss, axis=0, return_inverse=True)
    cols = np.asarray(used, dtype=object)
    which = np.array([", ".join(cols[row]) for row in sets], dtype=object)[inverse.ravel()]
    row = np.asarray(frame.index[mask].astype(object))
    excluded = pd.DataFrame(
        {"row": row, "columns": which, "reason": "missing value in " + which}, dtype=object
    )
    _warn_set_aside(used, miss.sum(axis=0), int(mask.sum()), len(frame), stacklevel=stacklevel)
    return frame.iloc[np.flatnonzero(~mask)], excluded


def _warn_set_aside(
    names: Sequence[str], counts: np.ndarray, n_set_aside: int, n_rows: int, *, stacklevel: int
) -> None:
    """The ``ExclusionWarning`` for ``n_set_aside`` of ``n_rows`` rows set aside, with the
    missing count of each column in ``names`` (``counts``); ``stacklevel`` counts from the
    caller of this function, as for ``warnings.warn``."""
    detail = ", ".join(f"{c} ({int(k)})" for c, k in zip(names, counts, strict=True) if k > 0)
    warnings.warn(
        f"{n_set_aside} of {n_rows} rows were not fitted because a column the model "
        f"uses is missing there: {detail}. They are listed in `results.excluded_rows`.",
        ExclusionWarning,
        stacklevel=stacklevel + 1,
    )
