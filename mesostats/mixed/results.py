"""MixedResults: the immutable result of a linear or generalized linear mixed model.

Engines (``mixed.lmm``, ``mixed.glmm``) fit and hand plain numbers to :class:`MixedResults`;
this module turns them into the tables of API.md: fixed effects with Wald intervals, the
variance components in the layout of R's ``as.data.frame(VarCorr(fit))``, conditional modes
and their conditional SDs, information criteria, predictions and a printable summary. It is
family-agnostic: ``gaussian`` (identity link, a residual row, t tests with Satterthwaite df),
``binomial`` (logit), ``poisson`` and ``negative_binomial`` (log) (no residual row, z tests).

Conventions (as lme4): ``loglik`` is the maximised (RE)ML criterion as a log-likelihood;
``aic = -2 loglik + 2k`` and ``bic = -2 loglik + k log(n)`` with k = number of fixed effects +
length of θ (+ 1 for σ in an LMM), also for REML fits; ``deviance = -2 loglik``.
Confidence intervals of fixed effects are 95 % Wald intervals that agree with the p-values:
``estimate ± q · std_error`` with q the t quantile at the given df (Satterthwaite for LMMs, as
lmerTest's tests; emmeans reports the same intervals) or the normal quantile when df is
infinite (GLMM z tests; lme4's ``confint(method = "Wald")``). With few groups the normal
quantile undercovers (measured: 92 % for an intercept with 40 groups), and an interval that
excludes 0 while p > 0.05 confuses readers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mesostats._display import Summary, SummaryDisplay
from mesostats.exceptions import ModelSpecError
from mesostats.formula import parse_formula
from mesostats.mixed.contrast_df import ContrastDFMixin
from mesostats.mixed.design import MixedDesign
from mesostats.mixed.families import LINKS as _LINKS
from mesostats.mixed.families import inverse_link as _inverse_link
from mesostats.mixed.formula_eval import _expression_variables, _formula_variables
from mesostats.mixed.results_base import (
    VARCORR_COLUMNS,
    DesignFitFacts,
    FixedEffectsFacts,
    per_group_frames,
    variance_component_rows,
)
from mesostats.mixed.results_cache import LazyTables
from mesostats.mixed.simulate_methods import MixedSimulateMixin
from mesostats.mixed.summary import mixed_summary
from mesostats.mixed.wald import wald_columns, wald_table

__all__ = ["MixedResults"]

_WALD_LEVEL = 0.95


class MixedResults(
    DesignFitFacts,
    FixedEffectsFacts,
    LazyTables,
    ContrastDFMixin,
    MixedSimulateMixin,
    SummaryDisplay,
):
    """Fitted linear or generalized linear mixed model (immutable).

    Built by the engines; users get it from :func:`mesostats.fit_lmm` or
    :func:`mesostats.fit_glmm`.

    Parameters
    ----------
    design : MixedDesign
        The design the model was fitted on.
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
    method : str
        ``"REML"``, ``"ML"``, ``"Laplace"`` or ``"AGQ(k)"``.
    beta : array (p,)
        Fixed effects.
    vcov : array (p, p)
        Covariance matrix of ``beta``.
    theta : array
        Relative covariance parameters in lme4 order (design.theta_slices).
    sigma : float
        Residual SD (LMM); 1.0 for GLMMs.
    loglik : float
        Maximised log-likelihood (REML criterion for REML fits).
    df : array (p,)
        Denominator df per fixed effect (Satterthwaite); ``np.inf`` gives z tests.
    ranef : sequence of arrays
        Per design term, ``(n_levels, q)`` conditional modes on the data scale, b = Λu
        (lme4's ``ranef``; for an LMM u is on the σ scale as in lme4).
    ranef_sd : sequence of arrays
        Per design term, ``(n_levels, q)`` conditional SDs (lme4's ``condVar``).
    ranef_cov : mapping, optional
        Per grouping factor, ``(n_levels, k, k)`` conditional covariance blocks, columns as in
        ``ranef[group]`` (all terms of that group, in design order).
    converged, singular : bool
    messages : sequence of str
        Every warning issued during the fit (convergence, singularity), kept with the result.
    variance_parameter_cov : array, optional
        Asymptotic covariance of (θ, σ) (LMM: 2·H⁻¹ from the deviance Hessian, lmerTest).
    optimizer : dict, optional
        Free-form diagnostics of the optimiser (evaluations, gradient norm, ...).
    df_function : callable ``L (m, p) -> (m,)``, optional
        df of linear functions Lβ under the fit's df method (:meth:`df_for`).
    df_method : {"satterthwaite", "kenward-roger"}, default "satterthwaite"
        The method behind ``df`` and :meth:`df_for`.
    dispersion : (float, float), optional
        Negative binomial: the dispersion k (Var = μ + μ²/k) and its standard error; the
        attributes ``dispersion`` and ``dispersion_se`` (``None`` for other families).
    """

    def __init__(
        self,
        design: MixedDesign,
        *,
        family: str,
        method: str,
        beta: np.ndarray,
        vcov: np.ndarray,
        theta: np.ndarray,
        sigma: float,
        loglik: float,
        df: np.ndarray,
        ranef: Sequence[np.ndarray],
        ranef_sd: Sequence[np.ndarray],
        converged: bool,
        singular: bool,
        messages: Sequence[str] = (),
        variance_parameter_cov: np.ndarray | None = None,
        optimizer: Mapping[str, Any] | None = None,
        ranef_cov: Mapping[str, np.ndarray] | None = None,
        df_function: Callable[[np.ndarray], np.ndarray] | None = None,
        df_method: str = "satterthwaite",
        dispersion: tuple[float, float] | None = None,
    ) -> None:
        if family not in _LINKS:
            raise ValueError(f"family must be one of {sorted(_LINKS)}, got {family!r}")
        p = design.p
        beta = np.array(beta, dtype=float).reshape(p)
        vcov = np.array(vcov, dtype=float).reshape(p, p)
        theta = np.array(theta, dtype=float).reshape(design.n_theta)
        df = np.broadcast_to(np.asarray(df, dtype=float), (p,)).copy()
        if len(ranef) != len(design.terms) or len(ranef_sd) != len(design.terms):
            raise ValueError("ranef and ranef_sd need one array per design term")
        modes = [
            np.array(b, dtype=float).reshape(t.n_levels, t.q)
            for b, t in zip(ranef, design.terms, strict=True)
        ]
        sds = [
            np.array(s, dtype=float).reshape(t.n_levels, t.q)
            for s, t in zip(ranef_sd, design.terms, strict=True)
        ]
        for arr in (beta, vcov, theta, df, *modes, *sds):
            arr.setflags(write=False)
        sets = object.__setattr__
        sets(self, "design", design)
        sets(self, "family", family)
        sets(self, "method", method)
        sets(self, "formula", design.formula)
        sets(self, "sigma", float(sigma))
        sets(self, "loglik", float(loglik))
        sets(self, "converged", bool(converged))
        sets(self, "singular", bool(singular))
        sets(self, "_messages", tuple(str(m) for m in messages))
        sets(self, "_beta", beta)
        sets(self, "_vcov", vcov)
        sets(self, "_theta", theta)
        sets(self, "_df", df)
        sets(self, "_modes", tuple(modes))
        sets(self, "_mode_sds", tuple(sds))
        sets(self, "_optimizer", dict(optimizer or {}))
        sets(self, "_df_function", df_function)
        sets(self, "df_method", str(df_method))
        vp = None
        if variance_parameter_cov is not None:
            vp = np.array(variance_parameter_cov, dtype=float)
            vp.setflags(write=False)
        sets(self, "_varpar_cov", vp)
        covs: dict[str, np.ndarray] | None = None
        if ranef_cov is not None:
            covs = {}
            widths: dict[str, int] = {}
            for term in design.terms:
                widths[term.group] = widths.get(term.group, 0) + term.q
            for group, arr in ranef_cov.items():
                c = np.array(arr, dtype=float)
                k = widths[group]
                if c.shape != (design.ngroups[group], k, k):
                    raise ValueError(f"ranef_cov[{group!r}] has shape {c.shape}")
                c.setflags(write=False)
                covs[group] = c
        sets(self, "_ranef_cov", covs)
        sets(self, "dispersion", None if dispersion is None else float(dispersion[0]))
        sets(self, "dispersion_se", None if dispersion is None else float(dispersion[1]))
        eta_fixed = design.X @ beta + design.offset
        eta = eta_fixed.copy()
        for term, b in zip(design.terms, modes, strict=True):
            eta += np.einsum("ij,ij->i", term.Z, b[term.codes])
        eta_fixed.setflags(write=False)
        eta.setflags(write=False)
        sets(self, "_eta_fixed", eta_fixed)
        sets(self, "_eta", eta)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"MixedResults is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"MixedResults is immutable; cannot delete {name!r}")

    # declared for type checkers
    design: MixedDesign
    family: str
    dispersion: float | None
    dispersion_se: float | None
    method: str
    formula: str
    sigma: float
    loglik: float
    converged: bool
    singular: bool
    _messages: tuple[str, ...]
    _beta: np.ndarray
    _vcov: np.ndarray
    _theta: np.ndarray
    _df: np.ndarray
    _modes: tuple[np.ndarray, ...]
    _mode_sds: tuple[np.ndarray, ...]
    _optimizer: dict[str, Any]
    _varpar_cov: np.ndarray | None
    _ranef_cov: dict[str, np.ndarray] | None
    _eta_fixed: np.ndarray
    _eta: np.ndarray

    # ------------------------------------------------------------------ counts and criteria
    # nobs, ngroups, aic, bic, deviance, theta, messages, optimizer_info, excluded_rows:
    # DesignFitFacts
    @property
    def _fitted_rows(self) -> MixedDesign:
        return self.design

    @property
    def n_params(self) -> int:
        """Parameters counted by AIC/BIC: fixed effects + θ (+ σ for an LMM, + k for NB)."""
        extra = 1 if self.family in ("gaussian", "negative_binomial") else 0
        return self.design.p + self.design.n_theta + extra

    @property
    def link(self) -> str:
        """Link function name (identity, logit, log)."""
        return _LINKS[self.family]

    # ------------------------------------------------------------------ fixed effects
    @property
    def params(self) -> pd.Series:
        """Fixed-effect estimates as a Series."""
        return pd.Series(self._beta, index=list(self.design.fixed_names), name="estimate")

    # vcov, fixed_effects: FixedEffectsFacts
    def _fixed_effects_table(self) -> pd.DataFrame:
        return wald_table(self.design.fixed_names, self._beta, self._vcov, self._df, _WALD_LEVEL)

    def _fixed_effect_columns(self) -> dict[str, np.ndarray]:
        """The columns of :attr:`fixed_effects` as arrays in ``design.fixed_names`` order
        (the same numbers, without building the table)."""
        return wald_columns(self._beta, self._vcov, self._df, _WALD_LEVEL)

    # ------------------------------------------------------------------ variance components
    def covariance_blocks(self) -> list[np.ndarray]:
        """Per design term, the covariance matrix of its random effects, σ²·ΛΛᵀ."""
        return [self.sigma**2 * (lam @ lam.T) for lam in self.design.lambda_blocks(self._theta)]

    @property
    def variance_components(self) -> pd.DataFrame:
        """Variances, SDs, covariances and correlations (R's ``as.data.frame(VarCorr(fit))``)."""
        return self._variance_components.copy()

    def _variance_components_table(self) -> pd.DataFrame:
        return pd.DataFrame(self._variance_component_rows(), columns=VARCORR_COLUMNS)

    def _variance_component_rows(self) -> list[tuple[str, str | None, str | None, float, float]]:
        """The rows of :attr:`variance_components` as tuples (for callers that only read a
        few numbers and need no table)."""
        rows = variance_component_rows(self.design.terms, self.covariance_blocks())
        if self.family == "gaussian":
            rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return rows

    @property
    def variance_parameter_cov(self) -> pd.DataFrame | None:
        """Asymptotic covariance of (θ, σ) (LMM), or ``None`` when not computed."""
        if self._varpar_cov is None:
            return None
        names = [*self.design.theta_names]
        if self._varpar_cov.shape[0] == len(names) + 1:
            names.append("sigma")
        return pd.DataFrame(np.array(self._varpar_cov), index=names, columns=names)

    # ------------------------------------------------------------------ random effects
    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes (BLUPs) per grouping factor: index = level, columns = terms."""
        return per_group_frames(self.design.terms, self._modes)

    @property
    def ranef_cov(self) -> dict[str, np.ndarray] | None:
        """Conditional covariance blocks per group (lme4's ``condVar``), or ``None``.

        dict group → array (n_levels, k, k), rows/columns in the order of
        ``ranef[group].columns``; ``None`` when the engine did not provide them.
        """
        if self._ranef_cov is None:
            return None
        return dict(self._ranef_cov)

    @property
    def ranef_se(self) -> dict[str, pd.DataFrame]:
        """Conditional SDs of the random effects (lme4's ``condVar``), same layout as ranef."""
        return per_group_frames(self.design.terms, self._mode_sds)

    # ------------------------------------------------------------------ fitted values
    @property
    def fitted(self) -> pd.Series:
        """Fitted values of the fitted rows (with random effects), on the response scale."""
        return pd.Series(
            _inverse_link(self.family, self._eta), index=self.design.row_index, name="fitted"
        )

    @property
    def residuals(self) -> pd.Series:
        """Response residuals ``y - fitted`` (binomial ``cbind``: observed − fitted proportion)."""
        mu = _inverse_link(self.family, self._eta)
        return pd.Series(self.design.y - mu, index=self.design.row_index, name="residual")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        scale: str = "response",
    ) -> pd.Series:
        """Predictions for the fitted rows or for new rows.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict; ``None`` = the fitted rows. Needs the columns of the fixed part
            (and, with ``include_random``, the random terms and grouping factors).
        include_random : bool
            Add the conditional modes of each row's groups. A level not seen in the fit gets
            no random effect, i.e. the population-level prediction for that group.
        scale : {"response", "link"}
            ``"response"`` applies the inverse link (probabilities, rates); ``"link"`` returns
            the linear predictor.

        Returns
        -------
        pandas.Series
            Indexed like ``newdata`` (or the fitted rows). Rows of ``newdata`` with a missing
            value in a column the prediction needs get NaN.
        """
        if scale not in ("response", "link"):
            raise ModelSpecError(f"scale must be 'response' or 'link', got {scale!r}.")
        if newdata is None:
            eta = np.array(self._eta if include_random else self._eta_fixed)
            index = self.design.row_index
        else:
            eta, index = self._predict_new(newdata, include_random)
        values = eta if scale == "link" else _inverse_link(self.family, eta)
        return pd.Series(values, index=index, name="predicted")

    def _predict_new(self, newdata: pd.DataFrame, include_random: bool) -> tuple[np.ndarray, Any]:
        if not isinstance(newdata, pd.DataFrame):
            raise ModelSpecError(
                f"newdata must be a pandas DataFrame, got {type(newdata).__name__}."
            )
        parsed = parse_formula(self.formula)
        needed = set(_formula_variables(parsed.fixed, "fixed part"))
        for expr in parsed.offsets:
            needed |= _expression_variables(expr, "offset")
        if include_random:
            for term in self.design.terms:
                needed |= _formula_variables(term.expr, "random term")
                needed |= set(term.group_columns)
        missing_cols = sorted(c for c in needed if c not in newdata.columns)
        if missing_cols:
            raise ModelSpecError(
                "newdata lacks column(s) "
                + ", ".join(f"`{c}`" for c in missing_cols)
                + " that the prediction needs."
            )
        cols = sorted(needed)
        complete = (
            ~newdata[cols].isna().any(axis=1).to_numpy()
            if cols
            else np.ones(len(newdata), dtype=bool)
        )
        eta = np.full(len(newdata), np.nan)
        if complete.any():
            rows = newdata.loc[complete] if not complete.all() else newdata
            try:
                X = self.design.fixed_matrix(rows)
            except Exception as exc:
                raise ModelSpecError(
                    f"Cannot build the fixed part for newdata: {exc}. New rows must use the "
                    "categories seen in the fit."
                ) from exc
            part = X @ self._beta + self.design.offset_for(rows)
            if include_random:
                for term, b in zip(self.design.terms, self._modes, strict=True):
                    Z = term.columns_for(rows)
                    codes = term.level_codes(rows)
                    seen = codes >= 0
                    contrib = np.zeros(len(rows))
                    contrib[seen] = np.einsum("ij,ij->i", Z[seen], b[codes[seen]])
                    part = part + contrib
            eta[complete] = part
        return eta, newdata.index

    # ------------------------------------------------------------------ display
    def summary(self) -> Summary:
        """Printable summary in lme4's ``summary`` layout (``as_text()``, ``as_html()``)."""
        return mixed_summary(self)

    def __repr__(self) -> str:
        groups = ", ".join(f"{g}={k}" for g, k in self.ngroups.items())
        kind = "LMM" if self.family == "gaussian" else f"GLMM {self.family}"
        flags = "" if self.converged else ", NOT converged"
        flags += ", singular" if self.singular else ""
        return (
            f"<MixedResults {kind} {self.method}: {self.formula} | n={self.nobs}, "
            f"groups: {groups}, logLik={self.loglik:.4f}{flags}>"
        )
