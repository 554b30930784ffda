"""Compiled formula pieces: what a formula costs to build once, reused on every refit.

A small fit spends more time turning the formula into matrices than fitting: formulaic
parses each right-hand side again and materialises it through pandas on every call
(~2–6 ms per piece), and a caller that refits one formula many times (power trials,
bootstrap, imputation, profiling) pays it every time. This module keeps, per process:

* the parsed formula (:func:`parsed_formula`; the variables of each formula piece are
  memoised in :mod:`mesostats.mixed.formula_eval`): pure functions of the text;
* a **recipe** per formula piece (:func:`model_columns`): when formulaic's model spec of
  the piece has no stateful transform and every term is the intercept, numeric columns (at
  most two multiplied) and categorical columns (pandas categoricals, or text columns whose
  sorted distinct values are the levels, as formulaic takes them) coded by treatment
  contrasts (first level the reference, ``x[T.b]``) or by one indicator per level
  (``x[b]``, where formulaic keeps full rank), the columns are those products of numeric
  values and level indicators, computed with numpy from the categorical codes (first factor
  varying fastest, as in formulaic). A recipe is learnt from formulaic's own output and
  kept only when it reproduces that output **exactly** (names, order and values bit for
  bit); it is used later only when every numeric variable it reads is a numeric
  (non-boolean) column and every categorical one is a pandas categorical or text column
  with the *same levels in the same order* (else formulaic materialises the piece and the
  recipe is learnt again from that output). Boolean or mixed-type columns, ``C(x)``,
  ``I(...)``, ``center(x)`` and anything else always go through formulaic. The formulaic
  ``ModelSpec`` learnt with the recipe is returned with the columns (it depends only on
  the levels, which match), so predictions on new data code them the same way.

Why by hand: formulaic (Wright et al., https://github.com/matthewwardrop/formulaic) has a
reusable ``ModelSpec``, but materialising even a reused spec costs ~2 ms of pandas work; for
numeric products and dummy columns the arithmetic is one comparison or multiplication per
column.
"""

from __future__ import annotations

import functools
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import model_matrix

from mesostats.formula import ParsedFormula, parse_formula
from mesostats.mixed.formula_eval import Columns, _frame_to_matrix, as_frame

__all__ = ["model_columns", "parsed_formula"]

_MAX_RECIPES = 512


@functools.lru_cache(maxsize=256)
def parsed_formula(formula: str) -> ParsedFormula:
    """:func:`mesostats.formula.parse_formula`, memoised (the result is immutable)."""
    return parse_formula(formula)


# a factor of a column: (variable, level index), the level index -1 for a numeric variable
_Factor = tuple[str, int]


@dataclass(frozen=True)
class _Recipe:
    """Columns of a formula piece: names, and per column the factors multiplied (numeric
    variables, and indicators of one level of a categorical variable)."""

    names: tuple[str, ...]
    products: tuple[tuple[_Factor, ...], ...]
    variables: tuple[str, ...]  # numeric variables read
    levels: tuple[tuple[str, tuple[Any, ...]], ...]  # categorical variables and their levels
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


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        return True
    return (
        pd.api.types.is_object_dtype(dtype)
        and pd.api.types.infer_dtype(series, skipna=False) == "string"
    )


def _levels_and_codes(series: pd.Series) -> tuple[tuple[Any, ...], np.ndarray] | None:
    """Levels and integer codes of a pandas categorical (its categories, in order) or of a
    text column (its distinct values, sorted: what formulaic takes as levels), else None."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return tuple(dtype.categories), np.asarray(series.array.codes)
    if _is_text(series):
        codes, uniques = pd.factorize(series, sort=True)
        return tuple(uniques), np.asarray(codes)
    return None


def _codes(recipe: _Recipe, data: Columns) -> dict[str, np.ndarray] | None:
    """Integer codes of the categorical variables, or None when a variable is missing, not
    a pandas categorical or text column, has other levels (in another order) than those
    learnt, or a missing value."""
    out: dict[str, np.ndarray] = {}
    for name, levels in recipe.levels:
        if name not in data.columns:
            return None
        coded = _levels_and_codes(data[name])
        if coded is None or coded[0] != levels:
            return None
        codes = coded[1]
        if len(codes) and codes.min() < 0:
            return None
        out[name] = codes
    return out


def _usable(
    recipe: _Recipe, data: Columns
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """(codes of the categorical variables, float values of the numeric ones), or None when
    the recipe does not apply to ``data`` (each column is looked up once: a pandas column
    access costs more than the arithmetic of a small design)."""
    numeric: dict[str, pd.Series] = {}
    for v in recipe.variables:
        if v not in data.columns:
            return None
        numeric[v] = data[v]
        if not _is_numeric(numeric[v]):
            return None
    codes = _codes(recipe, data)
    if codes is None:
        return None
    return codes, {v: series.to_numpy(dtype=float) for v, series in numeric.items()}


def _evaluate(
    recipe: _Recipe, n: int, codes: dict[str, np.ndarray], values: dict[str, np.ndarray]
) -> np.ndarray:
    out = np.empty((n, len(recipe.names)))
    for j, factors in enumerate(recipe.products):
        numeric = [values[v] for v, k in factors if k < 0]
        masks = [codes[v] == k for v, k in factors if k >= 0]
        column = out[:, j]
        if not numeric:
            column[:] = 1.0
        elif len(numeric) == 1:
            column[:] = numeric[0]
        else:
            np.multiply(numeric[0], numeric[1], out=column)
        if masks:
            mask = masks[0] if len(masks) == 1 else np.logical_and.reduce(masks)
            # formulaic multiplies by the 0/1 dummy: the same values, signed zeros included
            np.multiply(column, mask, out=column)
    return out


def _term_columns(
    factors: list[tuple[str, tuple[Any, ...] | None]], reduced: tuple[bool, ...]
) -> tuple[list[str], list[tuple[_Factor, ...]]]:
    """Names and factors of a term's columns under one coding (reduced = treatment contrasts
    with the first level as reference, else one indicator per level); the first factor
    varies fastest, as in formulaic."""
    pieces: list[list[tuple[str, _Factor]]] = []
    flags = iter(reduced)
    for name, levels in factors:
        if levels is None:
            pieces.append([(name, (name, -1))])
        elif next(flags):
            pieces.append([(f"{name}[T.{lv}]", (name, k)) for k, lv in enumerate(levels) if k])
        else:
            pieces.append([(f"{name}[{lv}]", (name, k)) for k, lv in enumerate(levels)])
    names: list[str] = []
    products: list[tuple[_Factor, ...]] = []
    for combo in itertools.product(*reversed(pieces)):
        parts = combo[::-1]
        names.append(":".join(p[0] for p in parts) or "Intercept")
        products.append(tuple(p[1] for p in parts))
    return names, products


def _factor_of(spec: Any, factor: Any, data: Columns) -> tuple[str, tuple[Any, ...] | None]:
    """A term factor as (variable, levels or None for numeric); ValueError when neither."""
    method = str(getattr(factor.eval_method, "value", factor.eval_method))
    expr = str(factor.expr)
    if method != "lookup" or expr not in data.columns:
        raise ValueError(expr)
    state = spec.encoder_state.get(expr)
    kind = str(getattr(state[0], "value", state[0])) if state else ""
    series = data[expr]
    if kind == "numerical" and _is_numeric(series):
        return expr, None
    coded = _levels_and_codes(series) if kind == "categorical" else None
    if coded is not None and tuple(state[1]["categories"]) == coded[0]:
        return expr, coded[0]
    raise ValueError(expr)


def _learn(spec: Any, names: tuple[str, ...], matrix: np.ndarray, data: Columns) -> _Recipe | None:
    """The recipe of a model spec, or None when the piece is not one of numeric variables,
    products of two of them and treatment-coded pandas categoricals (or their interactions)."""
    products: list[tuple[_Factor, ...]] = []
    factor_levels: list[tuple[str, tuple[Any, ...]]] = []
    try:
        if spec.transform_state:
            return None
        for structure in spec.structure:
            factors = [
                _factor_of(spec, f, data)
                for f in structure.term.factors
                if not (
                    str(getattr(f.eval_method, "value", f.eval_method)) == "literal"
                    and str(f.expr) == "1"
                )
            ]
            factor_levels.extend((v, lv) for v, lv in factors if lv is not None)
            n_cat = sum(levels is not None for _, levels in factors)
            if len(factors) - n_cat > 2 or n_cat > 4:
                return None
            wanted = [str(c) for c in structure.columns]
            for reduced in itertools.product((True, False), repeat=n_cat):
                term_names, term_products = _term_columns(factors, reduced)
                if term_names == wanted:
                    products.extend(term_products)
                    break
            else:
                return None
        columns = tuple(str(c) for s in spec.structure for c in s.columns)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):
        return None  # another kind of piece, or a formulaic version with another layout
    if columns != names or len(products) != len(names):
        return None
    variables = tuple(dict.fromkeys(v for p in products for v, k in p if k < 0))
    cats = tuple(dict.fromkeys(v for p in products for v, k in p if k >= 0))
    levels = tuple((v, dict(factor_levels)[v]) for v in cats)
    recipe = _Recipe(
        names=names, products=tuple(products), variables=variables, levels=levels, spec=spec
    )
    usable = _usable(recipe, data)
    if usable is None or not np.array_equal(_evaluate(recipe, len(data), *usable), matrix):
        return None
    return recipe


def model_columns(rhs: str, data: Columns) -> tuple[tuple[str, ...], np.ndarray, Any]:
    """Column names, the ``(n, k)`` float matrix and the formulaic ``ModelSpec`` of ``rhs``.

    ``data`` must hold no missing value in the columns ``rhs`` reads (the callers set those
    rows aside first). Formulaic's errors propagate (the callers word them).
    """
    recipe = _recipes.get(rhs)
    if recipe is not None:
        usable = _usable(recipe, data)
        if usable is not None:
            return recipe.names, _evaluate(recipe, len(data), *usable), recipe.spec
    mm = model_matrix(rhs, as_frame(data), na_action="raise", context={"np": np})
    names = tuple(str(c) for c in mm.columns)
    spec = mm.model_spec
    matrix = _frame_to_matrix(mm)
    if rhs not in _recipes or recipe is not None:
        # new piece, or a learnt one whose levels (or column types) differ here: learn
        # (again) from formulaic's output; a piece that was never learnable stays so
        learnt = _learn(spec, names, matrix, data)
        with _lock:
            if len(_recipes) >= _MAX_RECIPES:
                _recipes.clear()
            if learnt is not None or rhs not in _recipes:
                _recipes[rhs] = learnt
    return names, matrix, spec
