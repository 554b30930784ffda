"""The getters every mixed-model results class shares, written once.

:class:`~mesostats.mixed.results.MixedResults` (LMM, GLMM),
:class:`~mesostats.mixed.clmm.results.CLMMResults` and
:class:`~mesostats.mixed.mmrm.results.MMRMResults` report the same facts of a fit the same way:
the number of fitted rows, the rows set aside, the information criteria, θ, the fit's messages
and the optimiser's diagnostics. :class:`FitFacts` holds these getters; each class says only
what differs: what it was fitted on (a design or an MMRM problem) and which parameter count k
and which n its AIC and BIC use (lme4 and ordinal: every parameter and the rows; R's mmrm: θ
only and the subjects); :class:`DesignFitFacts` adds what the models fitted on a mixed design
share, :class:`FixedEffectsFacts` the ``vcov`` and ``fixed_effects`` of the LMM/GLMM and
MMRM fits. The random-effect tables of the models with random terms (LMM, GLMM,
CLMM) are built here once too: :func:`variance_component_rows`, :func:`per_group_frames`.

Conventions: ``deviance = −2 loglik``, ``aic = −2 loglik + 2k``, ``bic = −2 loglik + k log n``.
Nothing a caller does to what a getter hands out changes the fit: tables, lists and dicts are
copies, θ is the fit's own read-only array (each class stores it with ``write=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign, RandomTerm

__all__ = [
    "VARCORR_COLUMNS",
    "DesignFitFacts",
    "FitFacts",
    "FixedEffectsFacts",
    "per_group_frames",
    "variance_component_rows",
]


class FittedRows(Protocol):
    """What a fit was computed on: a :class:`~mesostats.mixed.design.MixedDesign` or an
    :class:`~mesostats.mixed.mmrm.problem.MMRMProblem`."""

    @property
    def n(self) -> int: ...

    @property
    def excluded_rows(self) -> pd.DataFrame: ...

    @property
    def fixed_names(self) -> tuple[str, ...]: ...


class FitFacts:
    """Mixin: ``nobs``, ``aic``, ``bic``, ``deviance``, ``theta``, ``messages``,
    ``optimizer_info`` and ``excluded_rows`` of a fitted mixed model.

    Needs ``loglik``, ``_theta``, ``_messages``, ``_optimizer``, and the two hooks
    :attr:`_fitted_rows` and :meth:`_criterion_counts`.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def loglik(self) -> float: ...  # an attribute, or CLMMResults' property

    _theta: np.ndarray
    _messages: Sequence[str]
    _optimizer: dict[str, Any]

    @property
    def _fitted_rows(self) -> FittedRows:  # provided by each results class
        raise NotImplementedError

    def _criterion_counts(self) -> tuple[int, int]:  # provided by each results class
        """(k, n) of AIC and BIC: parameters counted and the n of ``log n``."""
        raise NotImplementedError

    @property
    def nobs(self) -> int:
        """Number of fitted rows."""
        return self._fitted_rows.n

    @property
    def aic(self) -> float:
        """Akaike information criterion, ``−2 loglik + 2k`` (k: the parameters the model's
        convention counts, see the class: ``n_params``, or ``n_theta`` for an MMRM)."""
        k, _ = self._criterion_counts()
        return -2.0 * self.loglik + 2.0 * k

    @property
    def bic(self) -> float:
        """Bayesian information criterion, ``−2 loglik + k log(n)`` (k as for :attr:`aic`;
        n: ``nobs``, or ``n_subjects`` for an MMRM, as R's mmrm)."""
        k, n = self._criterion_counts()
        return -2.0 * self.loglik + k * math.log(n)

    @property
    def deviance(self) -> float:
        """``−2 · loglik``."""
        return -2.0 * self.loglik

    @property
    def theta(self) -> np.ndarray:
        """Covariance parameters θ (read-only): relative covariance parameters (Λ entries,
        lme4's order; SDs for scalar terms) for LMM, GLMM and CLMM fits, R mmrm's
        parameterisation for an MMRM."""
        return self._theta

    @property
    def messages(self) -> list[str]:
        """Warnings raised during the fit (convergence, boundary), as text."""
        return list(self._messages)

    @property
    def optimizer_info(self) -> dict[str, Any]:
        """Diagnostics of the optimiser (evaluations, iterations, final gradient, ...)."""
        return dict(self._optimizer)

    @property
    def excluded_rows(self) -> pd.DataFrame:
        """Rows not fitted (a missing value), with the reason (row, columns, reason)."""
        return self._fitted_rows.excluded_rows.copy()


class FixedEffectsFacts(FitFacts):
    """:class:`FitFacts` plus ``vcov`` and ``fixed_effects`` of a fit whose covariance matrix
    is that of β alone (MixedResults, MMRMResults; CLMMResults reads β's block of the
    covariance of (α, β, θ) and keeps its own). Needs ``_vcov`` and ``_fixed_effects``."""

    __slots__ = ()

    _vcov: np.ndarray

    if TYPE_CHECKING:

        @property
        def _fixed_effects(self) -> pd.DataFrame: ...  # an attribute, or built on first use

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects (an MMRM's under its vcov method:
        model-based, or the empirical one it was fitted with)."""
        names = list(self._fitted_rows.fixed_names)
        return pd.DataFrame(np.array(self._vcov), index=names, columns=names)

    @property
    def fixed_effects(self) -> pd.DataFrame:
        """Estimate, std_error, statistic (t, or z at infinite df), df, p_value and the 95 %
        Wald interval (ci_lower, ci_upper) per fixed effect."""
        return self._fixed_effects.copy()


class DesignFitFacts(FitFacts):
    """:class:`FitFacts` of a model fitted on a :class:`~mesostats.mixed.design.MixedDesign`
    (LMM, GLMM, CLMM), plus ``ngroups``: AIC and BIC count the class's ``n_params`` and
    ``nobs`` rows (lme4's and ordinal's convention)."""

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def n_params(self) -> int: ...  # provided by each results class

    @property
    def _fitted_rows(self) -> MixedDesign:  # provided by each results class
        raise NotImplementedError

    def _criterion_counts(self) -> tuple[int, int]:
        return self.n_params, self.nobs

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels per grouping factor."""
        return self._fitted_rows.ngroups


#: columns of ``variance_components`` (R's ``as.data.frame(VarCorr(fit))``)
VARCORR_COLUMNS = ["group", "var1", "var2", "vcov", "sdcor"]


def variance_component_rows(
    terms: Sequence[RandomTerm], blocks: Sequence[np.ndarray]
) -> list[tuple[str, str | None, str | None, float, float]]:
    """Rows of ``variance_components`` for the random terms: per term its variances with SDs,
    then its covariances with correlations (NaN where an SD is 0); ``blocks`` are the terms'
    covariance matrices, in design order."""
    rows: list[tuple[str, str | None, str | None, float, float]] = []
    for term, cov in zip(terms, blocks, strict=True):
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        for i, name in enumerate(term.names):
            rows.append((term.group, name, None, float(cov[i, i]), float(sd[i])))
        for i in range(term.q):
            for j in range(i + 1, term.q):
                denom = sd[i] * sd[j]
                corr = float(cov[i, j] / denom) if denom > 0 else math.nan
                rows.append((term.group, term.names[i], term.names[j], float(cov[i, j]), corr))
    return rows


def per_group_frames(
    terms: Sequence[RandomTerm], arrays: Sequence[np.ndarray]
) -> dict[str, pd.DataFrame]:
    """Per grouping factor, one DataFrame (index = level, columns = the terms' names) of the
    per-term ``(n_levels, q)`` arrays (``ranef``, ``ranef_se``); terms of the same factor side
    by side, in design order."""
    out: dict[str, pd.DataFrame] = {}
    for term, arr in zip(terms, arrays, strict=True):
        frame = pd.DataFrame(np.array(arr), index=term.levels.copy(), columns=list(term.names))
        frame.index.name = term.group
        if term.group in out:
            frame = pd.concat([out[term.group], frame], axis=1)
        out[term.group] = frame
    return out
