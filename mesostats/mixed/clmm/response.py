"""The ordered response of a CLMM: category codes, the order of the levels, and its checks.

The order comes from, in this precedence: ``levels=`` (any values, listed lowest first);
a pandas *ordered* Categorical (its categories); whole numbers (their natural order).
Strings or an unordered Categorical without ``levels=`` are refused — their order cannot be
guessed. Every category in the order must occur in the fitted rows (a category with no
observation leaves its thresholds unidentified), and at least three must (two categories
are a binary outcome: ``fit_glmm(..., family="binomial")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError

__all__ = ["check_categories", "ordered_codes"]


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _order(series: pd.Series, column: str, levels: Sequence[Any] | None) -> list[Any]:
    if levels is not None:
        order = list(levels)
        if len(set(map(_label, order))) != len(order):
            raise ModelSpecError(f"levels={order!r} lists a category more than once.")
        return order
    if isinstance(series.dtype, pd.CategoricalDtype):
        if series.cat.ordered:
            return list(series.cat.categories)
        raise ModelSpecError(
            f"The response `{column}` is an unordered categorical "
            f"({', '.join(map(_label, series.cat.categories))}); fit_clmm needs the order of "
            f"its categories. Pass `levels=[lowest, ..., highest]`, or make it ordered: "
            f"`data['{column}'] = data['{column}'].cat.as_ordered()` (keeps the listed order)."
        )
    values = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return [False, True]
    if not pd.api.types.is_numeric_dtype(series):
        shown = ", ".join(map(repr, sorted(map(str, values.unique()))[:6]))
        raise ModelSpecError(
            f"The response `{column}` holds text ({shown}) with no order given; fit_clmm "
            "cannot guess which category is higher. Pass `levels=[lowest, ..., highest]` "
            f"(e.g. levels={sorted(map(str, values.unique()))[:3]!r}...), or store it as an "
            "ordered pandas Categorical."
        )
    arr = values.to_numpy(dtype=float)
    if not np.all(arr == np.round(arr)):
        bad = arr[arr != np.round(arr)][0]
        raise ModelSpecError(
            f"The response `{column}` has non-integer values (e.g. {bad:g}); an ordered "
            "response must be whole-number grades, an ordered Categorical, or given with "
            "`levels=`."
        )
    return sorted(np.unique(arr).tolist())


def ordered_codes(
    data: pd.DataFrame, column: str, levels: Sequence[Any] | None
) -> tuple[np.ndarray, list[str]]:
    """Codes 0 … K − 1 of every row (NaN where missing) and the K level labels, in order."""
    if column not in data.columns:
        raise ModelSpecError(
            f"The response of fit_clmm must be a column of the data; `{column}` is not one."
        )
    series = data[column]
    order = _order(series, column, levels)
    labels = [_label(v) for v in order]
    missing = series.isna().to_numpy()
    mapped = [_label(v) for v in series.astype(object).to_numpy()[~missing]]
    index = {lab: k for k, lab in enumerate(labels)}
    codes = np.full(len(series), np.nan)
    codes[~missing] = [index.get(v, -1) for v in mapped]
    unknown = codes == -1
    if unknown.any():
        extra = sorted({v for v in mapped if v not in index})
        raise ModelSpecError(
            f"The response `{column}` has value(s) {', '.join(map(repr, extra[:6]))} that are "
            f"not among the ordered levels {labels!r}. Add them to `levels=` in their place, "
            "or recode them."
        )
    return codes, labels


def check_categories(codes: np.ndarray, labels: list[str], column: str) -> None:
    """Refuse fewer than three observed categories or a category with no observation."""
    counts = np.bincount(codes, minlength=len(labels))
    present = [lab for lab, c in zip(labels, counts, strict=True) if c > 0]
    if len(present) < 3:
        raise ModelSpecError(
            f"The response `{column}` has {len(present)} observed categor"
            f"{'y' if len(present) == 1 else 'ies'} ({', '.join(map(repr, present))}) in the "
            "fitted rows; a cumulative link model needs at least 3. For two categories fit "
            "a binary model: `fit_glmm(..., family='binomial')`."
        )
    empty = [k for k, c in enumerate(counts) if c == 0]
    if empty:
        k = empty[0]
        lab = labels[k]
        neighbour = labels[k + 1] if k + 1 < len(labels) else labels[k - 1]
        names = ", ".join(repr(labels[j]) for j in empty)
        kept = [x for j, x in enumerate(labels) if j not in empty]
        raise ModelSpecError(
            f"Category {names} of the response `{column}` never occurs in the "
            f"{int(codes.size)} fitted rows, so the thresholds around it cannot be estimated. "
            f"Merge it with a neighbour: leave it out of the order (`levels={kept!r}`; no row "
            f"changes, since none has it), or recode rows of a neighbour into it on purpose "
            f"(e.g. `data['{column}'].replace({{{neighbour!r}: {lab!r}}})`) if that is what "
            "the scale means."
        )
