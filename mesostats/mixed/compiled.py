"""Compiled formula pieces: what a formula costs to build once, reused on every refit.

A small fit spends more time turning the formula into matrices than fitting: formulaic
parses each right-hand side again and materialises it through pandas on every call
(~2–6 ms per piece), and a caller that refits one formula many times (power trials,
bootstrap, imputation, profiling) pays it every time. This module keeps, per process:

* the parsed formula (:func:`parsed_formula`; the variables of each formula piece are
  memoised in :mod:`mesostats.mixed.formula_eval`): pure functions of the text;
* a **numeric recipe** per formula piece (:func:`model_columns`): when formulaic's model
  spec of the piece has no stateful transform and every column is the intercept, one numeric
  column, or the product of two numeric columns, the columns are those products, computed
  with numpy directly. A recipe is learnt from formulaic's own output on the first data and
  kept only when it reproduces that output **exactly** (bit for bit); it is used later only
  when every variable it reads is a numeric (non-boolean) column, so categorical or text
  columns, ``C(x)``, ``I(...)``, ``center(x)`` and anything else always go through formulaic.
  The formulaic ``ModelSpec`` learnt with the recipe is returned with the columns (it is
  data-independent for such pieces), so predictions on new data code them the same way.

Why by hand: formulaic (Wright et al., https://github.com/matthewwardrop/formulaic) has a
reusable ``ModelSpec``, but materialising even a reused spec costs ~2 ms of pandas work; for
numeric products the arithmetic is one multiplication per column.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import model_matrix

from mesostats.formula import ParsedFormula, parse_formula
from mesostats.mixed.formula_eval import _frame_to_matrix

__all__ = ["model_columns", "parsed_formula"]

_MAX_RECIPES = 512


@functools.lru_cache(maxsize=256)
def parsed_formula(formula: str) -> ParsedFormula:
    """:func:`mesostats.formula.parse_formula`, memoised (the result is immutable)."""
    return parse_formula(formula)


@dataclass(frozen=True)
class _Recipe:
    """Columns of a numeric formula piece: names, and per column the variables multiplied."""

    names: tuple[str, ...]
    products: tuple[tuple[str, ...], ...]
    variables: tuple[str, ...]
    spec: Any  # formulaic ModelSpec, for new data (predictions)


_recipes: dict[str, _Recipe | None] = {}
_lock = threading.Lock()


def _is_numeric(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    )


def _evaluate(recipe: _Recipe, data: pd.DataFrame) -> np.ndarray:
    n = len(data)
    values = {v: data[v].to_numpy(dtype=float) for v in recipe.variables}
    out = np.empty((n, len(recipe.names)))
    for j, factors in enumerate(recipe.products):
        if not factors:
            out[:, j] = 1.0
        elif len(factors) == 1:
            out[:, j] = values[factors[0]]
        else:
            np.multiply(values[factors[0]], values[factors[1]], out=out[:, j])
    return out


def _learn(
    spec: Any, names: tuple[str, ...], matrix: np.ndarray, data: pd.DataFrame
) -> _Recipe | None:
    """The numeric recipe of a model spec, or None when the piece is not a numeric one."""
    try:
        if spec.transform_state:
            return None
        products: list[tuple[str, ...]] = []
        for structure in spec.structure:
            if len(structure.columns) != 1:
                return None
            factors: list[str] = []
            for factor in structure.term.factors:
                method = str(getattr(factor.eval_method, "value", factor.eval_method))
                expr = str(factor.expr)
                if method == "literal" and expr == "1":
                    continue
                if method != "lookup" or expr not in data.columns:
                    return None
                state = spec.encoder_state.get(expr)
                kind = str(getattr(state[0], "value", state[0])) if state else ""
                if kind != "numerical" or not _is_numeric(data[expr]):
                    return None
                factors.append(expr)
            if len(factors) > 2:
                return None
            products.append(tuple(factors))
        columns = tuple(str(c) for s in spec.structure for c in s.columns)
    except (AttributeError, TypeError, KeyError, IndexError):
        return None  # a formulaic version with another layout: always materialise
    if columns != names or len(products) != len(names):
        return None
    variables = tuple(dict.fromkeys(v for p in products for v in p))
    recipe = _Recipe(names=names, products=tuple(products), variables=variables, spec=spec)
    if not np.array_equal(_evaluate(recipe, data), matrix):
        return None
    return recipe


def model_columns(rhs: str, data: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray, Any]:
    """Column names, the ``(n, k)`` float matrix and the formulaic ``ModelSpec`` of ``rhs``.

    ``data`` must hold no missing value in the columns ``rhs`` reads (the callers set those
    rows aside first). Formulaic's errors propagate (the callers word them).
    """
    recipe = _recipes.get(rhs)
    if recipe is not None and all(
        v in data.columns and _is_numeric(data[v]) for v in recipe.variables
    ):
        return recipe.names, _evaluate(recipe, data), recipe.spec
    mm = model_matrix(rhs, data, na_action="raise", context={"np": np})
    names = tuple(str(c) for c in mm.columns)
    spec = mm.model_spec
    matrix = _frame_to_matrix(mm)
    if rhs not in _recipes:
        learnt = _learn(spec, names, matrix, data)
        with _lock:
            if len(_recipes) >= _MAX_RECIPES:
                _recipes.clear()
            _recipes[rhs] = learnt
    return names, matrix, spec
