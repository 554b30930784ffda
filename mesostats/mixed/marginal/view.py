"""What marginal means need from a fitted model, read the same way from every engine.

:func:`model_view` turns a results object into a :class:`ModelView`: fixed effects β and their
covariance V, the fitted rows (to find factor levels, covariate means and cell counts), the
variables of the fixed part, a function building X for new rows, the offset for new rows, the
denominator df of any set of linear functions ``L β`` and the link.

Accepted results: :class:`~mesostats.mixed.results.MixedResults` (``fit_lmm``, ``fit_glmm``;
fixed part and fitted rows from ``results.design``) and any object with ``params``, ``vcov``,
``fixed_matrix(frame)``, ``model_frame``, ``df_for(L)``, ``family`` and ``link`` (``fit_mmrm``,
``fit_clmm``), whose fixed-part variables come from ``fixed_variables`` or its ``formula``.

Denominator df: ``results.df_for(L)`` when the results have it (Satterthwaite or
Kenward–Roger per linear function). Without it, infinite df for GLMMs (z intervals, as lme4
and emmeans) and, for an LMM, the per-coefficient df when each row of L picks one coefficient;
any other L raises :class:`ModelSpecError` (no second df implementation here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.formula import split_top_level
from mesostats.mixed.formula_eval import _expression_variables, _formula_variables

__all__ = ["ModelView", "model_view"]


@dataclass(frozen=True, eq=False)
class ModelView:
    """The pieces of a fitted model that marginal means use (read-only)."""

    beta: np.ndarray
    vcov: np.ndarray
    names: tuple[str, ...]
    frame: pd.DataFrame
    fixed_variables: tuple[str, ...]
    offset_variables: tuple[str, ...]
    fixed_matrix: Callable[[pd.DataFrame], np.ndarray]
    offset_for: Callable[[pd.DataFrame], np.ndarray]
    df_for: Callable[[np.ndarray], np.ndarray]
    family: str
    link: str


def _no_offset(frame: pd.DataFrame) -> np.ndarray:
    return np.zeros(len(frame))


def _fixed_rhs_without_covariance(formula: str) -> str:
    """Fixed part of an mmrm-style formula: drop ``us(visit | subject)``-like terms."""
    rhs = split_top_level(formula, "~")[-1]
    kept = [
        piece
        for piece in split_top_level(rhs, "+")
        if "|" not in piece and not piece.strip().startswith("offset(")
    ]
    return " + ".join(p.strip() for p in kept) or "1"


def _per_coefficient_df(df: np.ndarray, family: str) -> Callable[[np.ndarray], np.ndarray]:
    def df_for(L: np.ndarray) -> np.ndarray:
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if family != "gaussian" or np.all(np.isinf(df)):
            return np.full(L.shape[0], np.inf)
        nonzero = L != 0
        single = nonzero.sum(axis=1) == 1
        if not single.all():
            raise ModelSpecError(
                "These results have no `df_for` method, so the denominator df of a "
                "combination of several coefficients (an LS mean or a contrast) is not "
                "available. Refit with a mesostats version whose MixedResults has `df_for` "
                "(Satterthwaite / Kenward–Roger per linear function)."
            )
        return np.asarray(df[np.argmax(nonzero, axis=1)], dtype=float)

    return df_for


def _mixed_results_view(results: Any) -> ModelView:
    design = results.design
    frame = getattr(design, "model_frame", None)
    if frame is None:
        raise ModelSpecError("These results do not keep their fitted rows (design.model_frame).")
    fixed = tuple(sorted(_formula_variables(design.parsed.fixed, "fixed part")))
    offsets: set[str] = set()
    for expr in design.parsed.offsets:
        offsets |= _expression_variables(expr, "offset")
    df_for = getattr(results, "df_for", None)
    if df_for is None:
        df_for = _per_coefficient_df(np.asarray(results.fixed_effects["df"]), results.family)
    return ModelView(
        beta=np.asarray(results.params, dtype=float),
        vcov=np.asarray(results.vcov, dtype=float),
        names=tuple(map(str, results.params.index)),
        frame=frame,
        fixed_variables=fixed,
        offset_variables=tuple(sorted(offsets - set(fixed))),
        fixed_matrix=design.fixed_matrix,
        offset_for=design.offset_for if design.parsed.offsets else _no_offset,
        df_for=df_for,
        family=results.family,
        link=results.link,
    )


def _generic_view(results: Any) -> ModelView:
    missing = [
        name
        for name in ("params", "vcov", "fixed_matrix", "model_frame", "df_for", "link")
        if not hasattr(results, name)
    ]
    if missing:
        raise ModelSpecError(
            f"marginal_means needs results of fit_lmm, fit_glmm, fit_mmrm or fit_clmm; got "
            f"{type(results).__name__}, which lacks {', '.join(missing)}."
        )
    fixed = getattr(results, "fixed_variables", None)
    if fixed is None:
        formula = str(results.formula)
        rhs = _fixed_rhs_without_covariance(formula)
        fixed = sorted(_formula_variables(rhs, "fixed part"))
    return ModelView(
        beta=np.asarray(results.params, dtype=float),
        vcov=np.asarray(results.vcov, dtype=float),
        names=tuple(map(str, results.params.index)),
        frame=results.model_frame,
        fixed_variables=tuple(fixed),
        offset_variables=(),
        fixed_matrix=results.fixed_matrix,
        offset_for=getattr(results, "offset_for", _no_offset),
        df_for=results.df_for,
        family=str(getattr(results, "family", "gaussian")),
        link=str(results.link),
    )


def model_view(results: Any) -> ModelView:
    """The :class:`ModelView` of fitted results (see the module docstring)."""
    ordinal = getattr(results, "family", None) == "ordinal"  # fit_clmm: X without intercept
    if not ordinal and hasattr(results, "design") and hasattr(results.design, "parsed"):
        return _mixed_results_view(results)
    return _generic_view(results)
