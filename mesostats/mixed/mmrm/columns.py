"""The data columns of an MMRM, each read and coded once.

An MMRM reads a handful of columns several times over: the visit factor is a covariance
coordinate and a fixed-effect factor, the subject column groups rows, every text column must
be factorised, and the missing-value pattern of all of them decides which rows are fitted.
Going through pandas for each of these (select, ``isna``, row filter, sort, factorise per
use) costs milliseconds on a 200-subject trial, more than the fit itself. Here each column is
looked up once, a text or categorical column factorised once into integer codes (``-1`` where
missing) with its levels — sorted distinct values for text, the categories for a categorical,
which is how formulaic and R's ``factor`` take them — and the fitted rows are then taken from
those codes with numpy; unused levels are dropped on the fitted rows, as R does.

:meth:`ColumnCoder.fixed_frame` returns the fitted rows of the fixed-part variables in fit
order, text columns as pandas categoricals with those levels, which
:func:`mesostats.mixed.compiled.model_columns` codes from the category codes without
factorising again (the same columns as formulaic gives for the text).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ExclusionWarning
from mesostats.mixed.compiled import _is_text
from mesostats.mixed.design import _set_aside_missing, _warn_set_aside

__all__ = ["ColumnCoder", "MissingRows", "kept_levels"]


@dataclass(frozen=True, eq=False)
class MissingRows:
    """The rows set aside for a missing value: which columns (``missing``, one row per
    set-aside row), their index labels, and the column names."""

    names: tuple[str, ...]
    missing: np.ndarray
    labels: pd.Index

    def table(self) -> pd.DataFrame:
        """``excluded_rows``: ``row``, ``columns``, ``reason``, as
        :func:`~mesostats.mixed.design._set_aside_missing` writes it (built from the pattern
        on first use; the fit itself does not need it)."""
        pattern = pd.DataFrame(
            np.where(self.missing, np.nan, 0.0), index=self.labels, columns=pd.Index(self.names)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExclusionWarning)
            return _set_aside_missing(pattern, list(self.names))[1]

    def warn(self, n_rows: int, stacklevel: int) -> None:
        """The ``ExclusionWarning`` of :func:`~mesostats.mixed.design._set_aside_missing`."""
        if not len(self.labels):
            return
        counts = self.missing.sum(axis=0)
        _warn_set_aside(self.names, counts, len(self.labels), n_rows, stacklevel=stacklevel + 1)


def kept_levels(
    codes: np.ndarray, levels: pd.Index, rows: np.ndarray
) -> tuple[np.ndarray, pd.Index]:
    """Codes of ``rows`` with the levels that occur there (unused levels dropped, order kept)."""
    sub = codes[rows]
    if len(levels) == 0:
        return sub.astype(np.intp), levels
    present = np.bincount(sub, minlength=len(levels)) > 0
    if present.all():
        return sub.astype(np.intp), levels
    remap = np.cumsum(present) - 1
    return remap[sub].astype(np.intp), levels[present]


class ColumnCoder:
    """Columns of ``data`` looked up and coded on first use (see the module docstring)."""

    def __init__(self, data: pd.DataFrame) -> None:
        self.data = data
        self._series: dict[str, pd.Series] = {}
        self._factors: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._is_factor: dict[str, bool] = {}

    def series(self, name: str) -> pd.Series:
        """The column ``name``."""
        s = self._series.get(name)
        if s is None:
            s = self._series[name] = self.data[name]
        return s

    def is_factor(self, name: str) -> bool:
        """Whether the column is a pandas categorical or text."""
        out = self._is_factor.get(name)
        if out is None:
            s = self.series(name)
            out = self._is_factor[name] = isinstance(s.dtype, pd.CategoricalDtype) or _is_text(s)
        return out

    def factor(self, name: str) -> tuple[np.ndarray, pd.Index]:
        """Codes (``-1`` where missing) over all rows and the levels of the column."""
        out = self._factors.get(name)
        if out is None:
            s = self.series(name)
            if isinstance(s.dtype, pd.CategoricalDtype):
                out = (np.asarray(s.array.codes, dtype=np.intp), pd.Index(s.cat.categories))
            elif _is_text(s):
                # factorize's own sort goes through pandas' safe_sort (twice the time of the
                # factorisation for arrow strings): sort the distinct values instead
                codes, levels = pd.factorize(s, sort=False)
                order = np.argsort(np.asarray(levels, dtype=object), kind="stable")
                rank = np.empty(len(order) + 1, dtype=np.intp)
                rank[order] = np.arange(len(order))
                rank[-1] = -1  # missing stays missing
                out = (rank[codes], pd.Index(levels).take(order))
            else:
                codes, levels = pd.factorize(s, sort=True)
                out = (np.asarray(codes, dtype=np.intp), pd.Index(levels))
            self._factors[name] = out
        return out

    def missing(self, name: str) -> np.ndarray:
        """Boolean mask of the rows where the column is missing (pandas' ``isna``)."""
        s = self.series(name)
        kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else ""
        if kind == "f":
            return np.isnan(s.to_numpy())
        if kind in "iub" and kind:
            return np.zeros(len(s), dtype=bool)
        if name in self._factors or self.is_factor(name):
            return self.factor(name)[0] < 0
        return np.asarray(s.isna().to_numpy(), dtype=bool)

    def numeric(self, name: str) -> np.ndarray | None:
        """The column as floats when it is numeric (not boolean), else None."""
        s = self.series(name)
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            return None
        return np.asarray(s.to_numpy(dtype=float, na_value=np.nan))

    def take(self, name: str, rows: np.ndarray) -> Any:
        """The values of the column at the positions ``rows`` (its own dtype)."""
        s = self.series(name)
        if isinstance(s.dtype, np.dtype):
            return s.to_numpy()[rows]
        return s.array.take(rows)

    def fixed_frame(self, names: list[str], rows: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """The rows ``rows`` (positions, in fit order) of the columns ``names``: factors as
        categoricals with the levels of those rows, numeric numpy columns as arrays, any
        other column taken as it is."""
        columns: dict[str, Any] = {}
        for name in names:
            s = self.series(name)
            if self.is_factor(name):
                codes, levels = kept_levels(*self.factor(name), rows)
                ordered = bool(getattr(s.dtype, "ordered", False))
                dtype = pd.CategoricalDtype(levels, ordered=ordered)
                columns[name] = pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
            else:
                columns[name] = self.take(name, rows)
        return pd.DataFrame(columns, index=index, copy=False)
