"""Denominator degrees of freedom of linear functions Lβ of the fixed effects.

A fitted model answers ``df_for(L)``: one df per row l of L, the df of the t test of lβ.
Three kinds cover every engine:

- :class:`VarianceGradientDF`: Satterthwaite (1946) df of the variance estimate l Φ(φ̂) lᵀ,
  ``df = 2 (l Φ lᵀ)² / (gᵀ A g)`` with g_k = l (∂Φ/∂φ_k) lᵀ and A the asymptotic covariance of
  φ̂ (lmerTest, Kuznetsova et al. 2017, *J. Stat. Softw.* 82(13); R's mmrm). For a single
  contrast the Kenward–Roger (1997, *Biometrics* 53:983) df reduce to this same expression with
  Φ the *unadjusted* covariance, ∂Φ/∂φ_k = −Φ P_k Φ and A = W (their equation for m with
  q = 1 gives m = 2/(uᵀWu), u_k = l Φ P_k Φ lᵀ / l Φ lᵀ), so one class serves both.
- :class:`ConstantDF`: one df for every contrast (residual df; z tests with ``np.inf``).
- :class:`CoefficientMinimumDF`: each coefficient has its own df and a contrast gets the
  smallest df among the coefficients it involves (R mmrm's "between-within" rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mesostats.exceptions import ModelSpecError

__all__ = [
    "CoefficientMinimumDF",
    "ConstantDF",
    "ContrastDFMixin",
    "VarianceGradientDF",
    "as_contrast_rows",
]


def as_contrast_rows(L: np.ndarray, p: int) -> np.ndarray:
    """``L`` as a float (m, p) array (a single vector becomes one row)."""
    arr = np.asarray(L, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != p:
        raise ValueError(f"L must have {p} columns (one per fixed effect), got shape {arr.shape}")
    return arr


def _read_only(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=float)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class VarianceGradientDF:
    """Satterthwaite-type df of l Φ lᵀ from its gradient in the variance parameters.

    Parameters
    ----------
    vcov : (p, p)
        Φ, the covariance of β̂ whose variability is measured (unadjusted under KR).
    jacobian : (k, p, p)
        ∂Φ/∂φ_k at the estimates.
    varpar_cov : (k, k)
        Asymptotic covariance A of φ̂.
    """

    vcov: np.ndarray
    jacobian: np.ndarray
    varpar_cov: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "vcov", _read_only(self.vcov))
        object.__setattr__(self, "jacobian", _read_only(self.jacobian))
        object.__setattr__(self, "varpar_cov", _read_only(self.varpar_cov))

    def __call__(self, L: np.ndarray) -> np.ndarray:
        """df (m,) of each row of ``L`` (m, p)."""
        L = as_contrast_rows(L, self.vcov.shape[0])
        var = np.einsum("mp,pq,mq->m", L, self.vcov, L)
        grad = np.einsum("mp,kpq,mq->mk", L, self.jacobian, L)
        denom = np.einsum("mk,kj,mj->m", grad, self.varpar_cov, grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = np.where(denom > 0, 2.0 * var**2 / np.where(denom > 0, denom, 1.0), np.inf)
        return np.asarray(df, dtype=float)


@dataclass(frozen=True, eq=False)
class ConstantDF:
    """The same df for every contrast (``np.inf`` for z tests)."""

    value: float
    p: int

    def __call__(self, L: np.ndarray) -> np.ndarray:
        """df (m,) of each row of ``L`` (m, p)."""
        L = as_contrast_rows(L, self.p)
        return np.full(L.shape[0], float(self.value))


@dataclass(frozen=True, eq=False)
class CoefficientMinimumDF:
    """Each row gets the smallest df among the coefficients with a non-zero weight."""

    coefficient_df: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "coefficient_df", _read_only(self.coefficient_df))

    def __call__(self, L: np.ndarray) -> np.ndarray:
        """df (m,) of each row of ``L`` (m, p)."""
        L = as_contrast_rows(L, self.coefficient_df.shape[0])
        involved = L != 0
        per = np.where(involved, self.coefficient_df[None, :], np.inf)
        return np.asarray(per.min(axis=1), dtype=float)


class ContrastDFMixin:
    """``df_for(L)`` for a results object with ``design`` (fixed_names, p), ``family``, ``_df``
    and ``_df_function`` (callable or None)."""

    design: Any
    family: str
    _df: np.ndarray
    _df_function: Callable[[np.ndarray], np.ndarray] | None

    def df_for(self, L: np.ndarray) -> np.ndarray:
        """Denominator df of each linear function Lβ under the fit's df method.

        Parameters
        ----------
        L : array (m, p) or (p,)
            One row per linear function of the fixed effects (columns as ``params``).

        Returns
        -------
        numpy.ndarray
            ``(m,)`` df: Satterthwaite or Kenward–Roger for an LMM (as the fit's ``df``),
            ``np.inf`` (z tests) for a GLMM. ``df_for(np.eye(p))`` is the ``df`` column of
            ``fixed_effects``.
        """
        arr = np.asarray(L, dtype=float)
        rows = arr[None, :] if arr.ndim == 1 else arr
        p = self.design.p
        if rows.ndim != 2 or rows.shape[1] != p:
            raise ModelSpecError(
                f"L must have {p} columns (one per fixed effect: "
                f"{', '.join(self.design.fixed_names)}), got shape {arr.shape}."
            )
        if self._df_function is not None:
            return np.asarray(self._df_function(rows), dtype=float)
        if self.family != "gaussian" or np.all(np.isinf(self._df)):
            return np.full(rows.shape[0], np.inf)
        raise ModelSpecError(
            "This result was built without a df function, so df for new linear functions "
            "are not available; refit with mesostats.fit_lmm."
        )
