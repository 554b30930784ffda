"""The reference grid of a fitted model and the weighted averages that give marginal means.

Follows Searle, Speed & Milliken (1980, *Am. Stat.* 34:216, "Population marginal means in the
linear model") and Lenth (2016, *J. Stat. Softw.* 69(1), "Least-squares means: the R package
lsmeans"), as emmeans builds it:

* the grid holds every combination of the levels of the fixed part's factors (all levels seen
  in the fitted rows; ``at`` may restrict them) and each numeric covariate at its mean over the
  fitted rows (or the value(s) ``at`` gives);
* for each combination of the ``specs`` (and ``by``) levels, the rows of X over the other
  factors are averaged with weights: ``"equal"`` (each combination alike), ``"proportional"``
  (each combination of the averaged factors by its frequency in the fitted rows, the same for
  every mean), ``"outer"`` (the product of each averaged factor's own marginal frequencies) or
  ``"cells"`` (by the frequency of each cell of *this* mean: the fitted rows' raw average in a
  cell-means model).

The result is the matrix L (one row per mean) with ``mean = L β``. Rows are ordered as
emmeans orders them: the first spec varies fastest, then the next, then the ``by`` variables.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.formula_eval import _close_matches
from mesostats.mixed.marginal.view import ModelView

__all__ = ["WEIGHTS", "MarginalGrid", "marginal_grid"]

WEIGHTS = ("equal", "proportional", "outer", "cells")


@dataclass(frozen=True, eq=False)
class MarginalGrid:
    """Linear functions of β for the means: L, the averaged offset and the row labels."""

    L: np.ndarray
    offset: np.ndarray
    labels: pd.DataFrame  # one column per spec / by variable, categorical, one row per mean
    averaged_over: tuple[str, ...]
    cells: np.ndarray  # (n_means, n_averaged, p): X of each grid row averaged into a mean
    weights: np.ndarray  # (n_means, n_averaged): the averaging weights (L = Σ_a w X)


def _is_factor(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _levels(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return list(series.cat.categories)
    return sorted(series.dropna().unique().tolist())


def _as_list(value: str | Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out = [str(v) for v in value]
    if not out and what == "specs":
        raise ModelSpecError("specs is empty: name at least one factor, e.g. specs='cocktail'.")
    return out


def _grid_values(
    view: ModelView, at: Mapping[str, Any]
) -> tuple[dict[str, list[Any]], dict[str, bool]]:
    """Values of every grid variable and whether it is a factor."""
    frame = view.frame
    values: dict[str, list[Any]] = {}
    factor: dict[str, bool] = {}
    variables = list(view.fixed_variables) + list(view.offset_variables)
    unknown = [k for k in at if k not in variables]
    if unknown:
        raise ModelSpecError(
            f"`at` names {', '.join(map(repr, unknown))}, which the fixed part of the model does "
            f"not use (it uses {', '.join(variables)})."
        )
    for name in variables:
        series = frame[name]
        is_factor = _is_factor(series)
        factor[name] = is_factor
        if is_factor:
            levels = _levels(series)
            if name in at:
                wanted = list(np.atleast_1d(np.asarray(at[name], dtype=object)))
                bad = [w for w in wanted if w not in levels]
                if bad:
                    raise ModelSpecError(
                        f"`at` gives level(s) {bad} for `{name}`, which the fitted rows do not "
                        f"have (levels: {levels})."
                    )
                levels = [lv for lv in levels if lv in wanted]
            values[name] = levels
        elif name in at:
            values[name] = [float(v) for v in np.atleast_1d(np.asarray(at[name], dtype=float))]
        else:
            values[name] = [float(series.mean())]
    return values, factor


def _check_targets(
    targets: list[str], values: dict[str, list[Any]], factor: dict[str, bool]
) -> None:
    for name in targets:
        if name not in values:
            raise ModelSpecError(
                f"`{name}` is not a variable of the model's fixed part "
                f"({', '.join(values)}).{_close_matches(name, list(values))}"
            )
        if not factor[name] and len(values[name]) < 2:
            raise ModelSpecError(
                f"`{name}` is a numeric covariate; marginal means are per factor level. Give it "
                f"values with at={{'{name}': [...]}} or make it a categorical column."
            )
    if len(set(targets)) != len(targets):
        raise ModelSpecError(f"specs and by name a variable twice: {targets}.")


def _grid_frame(names: list[str], values: dict[str, list[Any]], view: ModelView) -> pd.DataFrame:
    """All combinations, the *last* name varying fastest, with the fitted rows' dtypes."""
    combos = list(itertools.product(*(values[n] for n in names)))
    frame = pd.DataFrame(combos, columns=names) if names else pd.DataFrame(index=[0])
    for n in names:
        dtype = view.frame[n].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            frame[n] = pd.Categorical(frame[n], dtype=dtype)
        elif pd.api.types.is_bool_dtype(dtype):
            frame[n] = frame[n].astype(bool)
    return frame


def _cell_counts(view: ModelView, names: list[str], grid: pd.DataFrame) -> np.ndarray:
    if not names:
        return np.full(len(grid), float(len(view.frame)))
    counts = view.frame.groupby(names, observed=True, dropna=False).size()
    key = (
        pd.MultiIndex.from_frame(grid[names].astype(object))
        if len(names) > 1
        else pd.Index(grid[names[0]].astype(object))
    )
    return counts.reindex(key, fill_value=0).to_numpy(dtype=float)


def _weights(kind: str, counts: np.ndarray, averaged_dims: list[int]) -> np.ndarray:
    """Weights (targets × averaged combinations), rows summing to 1 (NaN for an empty mean)."""
    n_t, n_a = counts.shape
    if kind == "equal":
        w = np.ones((n_t, n_a))
    elif kind == "proportional":
        w = np.broadcast_to(counts.sum(axis=0), (n_t, n_a)).copy()
    elif kind == "outer":
        table = counts.sum(axis=0).reshape(averaged_dims)
        total = table.sum()
        w1 = np.ones(())
        for d in range(len(averaged_dims)):
            margin = table.sum(axis=tuple(i for i in range(table.ndim) if i != d)) / total
            w1 = np.multiply.outer(w1, margin)
        w = np.broadcast_to(np.ravel(w1), (n_t, n_a)).copy()
    else:  # cells
        w = counts.copy()
    sums = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return w / sums


def marginal_grid(
    view: ModelView,
    specs: str | Sequence[str],
    by: str | Sequence[str] | None = None,
    at: Mapping[str, Any] | None = None,
    weights: str = "equal",
) -> MarginalGrid:
    """L for the marginal means of ``specs`` (per ``by``), as described in the module docstring."""
    if weights not in WEIGHTS:
        raise ModelSpecError(f"weights must be one of {', '.join(WEIGHTS)}; got {weights!r}.")
    spec_names = _as_list(specs, "specs")
    by_names = _as_list(by, "by")
    values, factor = _grid_values(view, dict(at or {}))
    targets = spec_names + by_names
    _check_targets(targets, values, factor)
    others = [n for n in values if n not in targets]
    averaged = [n for n in others if len(values[n]) > 1]
    if weights != "equal":
        numeric = [n for n in averaged if not factor[n]]
        if numeric:
            raise ModelSpecError(
                f"weights={weights!r} counts fitted rows per factor level, but the grid also "
                f"averages over several values of the covariate(s) {numeric}. Use "
                "weights='equal' or give those covariates one value in `at`."
            )
    # emmeans' order: first spec fastest → product over reversed targets
    order = list(reversed(targets)) + others
    grid = _grid_frame(order, values, view)
    n_t = int(np.prod([len(values[n]) for n in targets]))
    n_a = len(grid) // n_t
    X = np.asarray(view.fixed_matrix(grid), dtype=float).reshape(n_t, n_a, -1)
    offset = np.asarray(view.offset_for(grid), dtype=float).reshape(n_t, n_a)
    factor_names = [n for n in order if factor[n]]
    counts = _cell_counts(view, factor_names, grid).reshape(n_t, n_a)
    w = _weights(weights, counts, [len(values[n]) for n in others])
    L = np.einsum("ta,tap->tp", w, X)
    labels = grid.iloc[::n_a][list(targets)].reset_index(drop=True)
    for n in targets:
        if factor[n]:
            labels[n] = pd.Categorical(labels[n].astype(object), categories=values[n])
    L.setflags(write=False)
    off = np.einsum("ta,ta->t", w, offset)
    off.setflags(write=False)
    X.setflags(write=False)
    w.setflags(write=False)
    return MarginalGrid(
        L=L, offset=off, labels=labels, averaged_over=tuple(averaged), cells=X, weights=w
    )
