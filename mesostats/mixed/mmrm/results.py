"""MMRMResults: the immutable result of :func:`mesostats.fit_mmrm`.

Conventions follow R's mmrm 0.3.14: ``loglik`` is the maximised (RE)ML log-likelihood;
``aic = −2 loglik + 2k`` and ``bic = −2 loglik + k log(n_subjects)`` with k the length of θ
(mmrm counts only the variance parameters, for ML fits too); ``deviance = −2 loglik``.
Fixed effects get t tests and 95 % intervals at the df of the fit's df method (the same table
layout as :class:`mesostats.mixed.results.MixedResults`). The fit keeps its
:class:`~mesostats.mixed.mmrm.problem.MMRMProblem` and θ̂, so any inference can be recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mesostats._display import (
    Summary,
    SummaryDisplay,
    Table,
    format_number,
)
from mesostats._records import FrozenRecord
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.mmrm.predict import conditional_mean, population_mean
from mesostats.mixed.mmrm.problem import MMRMProblem
from mesostats.mixed.results_base import FixedEffectsFacts
from mesostats.mixed.simulate_methods import MMRMSimulateMixin
from mesostats.mixed.summary import coefficient_table
from mesostats.mixed.wald import wald_table

__all__ = ["MMRMResults"]

_LEVEL = 0.95


def _read_only(a: Any) -> np.ndarray:
    out = np.array(a, dtype=float)
    out.setflags(write=False)
    return out


class MMRMResults(FixedEffectsFacts, FrozenRecord, MMRMSimulateMixin, SummaryDisplay):
    """Fitted MMRM (immutable). Built by :func:`mesostats.fit_mmrm`.

    Attributes
    ----------
    problem : MMRMProblem
        Data, design and covariance model (what the df/vcov code needs).
    formula : str
    method : {"REML", "ML"}
    df_method : str
        ``"kenward-roger"``, ``"satterthwaite"``, ``"residual"``, ...
    vcov_method : str or None
        ``None`` (model-based) or an empirical covariance name.
    loglik : float
    converged : bool
    family, link : str
        ``"gaussian"`` and ``"identity"``.
    """

    family = "gaussian"
    link = "identity"

    def __init__(
        self,
        problem: MMRMProblem,
        *,
        theta: np.ndarray,
        beta: np.ndarray,
        vcov: np.ndarray,
        loglik: float,
        df_for: Callable[[np.ndarray], np.ndarray],
        df_method: str,
        vcov_method: str | None,
        converged: bool,
        messages: Sequence[str] = (),
        theta_cov: np.ndarray | None = None,
        optimizer: Mapping[str, Any] | None = None,
    ) -> None:
        sets = object.__setattr__
        sets(self, "problem", problem)
        sets(self, "formula", problem.formula)
        sets(self, "method", "REML" if problem.reml else "ML")
        sets(self, "df_method", df_method)
        sets(self, "vcov_method", vcov_method)
        sets(self, "loglik", float(loglik))
        sets(self, "converged", bool(converged))
        sets(self, "_messages", tuple(str(m) for m in messages))
        sets(self, "_theta", _read_only(theta))
        sets(self, "_beta", _read_only(beta))
        sets(self, "_vcov", _read_only(vcov))
        sets(self, "_theta_cov", None if theta_cov is None else _read_only(theta_cov))
        sets(self, "_df_for", df_for)
        sets(self, "_optimizer", dict(optimizer or {}))
        sets(self, "_fixed_effects", self._fixed_effects_table())

    # declared for type checkers
    problem: MMRMProblem
    formula: str
    method: str
    df_method: str
    vcov_method: str | None
    loglik: float
    converged: bool
    _messages: tuple[str, ...]
    _theta: np.ndarray
    _beta: np.ndarray
    _vcov: np.ndarray
    _theta_cov: np.ndarray | None
    _df_for: Callable[[np.ndarray], np.ndarray]
    _optimizer: dict[str, Any]
    _fixed_effects: pd.DataFrame

    # ------------------------------------------------------------------ counts and criteria
    # nobs, aic, bic, deviance, theta, messages, optimizer_info, excluded_rows: FitFacts
    # (through FixedEffectsFacts)
    @property
    def _fitted_rows(self) -> MMRMProblem:
        return self.problem

    def _criterion_counts(self) -> tuple[int, int]:
        """mmrm's convention: k = n_theta, BIC's n = n_subjects."""
        return self.n_theta, self.n_subjects

    @property
    def n_subjects(self) -> int:
        """Number of subjects with at least one fitted row."""
        return self.problem.n_subjects

    @property
    def n_theta(self) -> int:
        """Number of variance parameters."""
        return self.problem.n_theta

    @property
    def theta_cov(self) -> pd.DataFrame:
        """Inverse Hessian of −loglik in θ (mmrm's ``theta_vcov``)."""
        names = list(self.problem.theta_names)
        cov = self._theta_cov if self._theta_cov is not None else np.full((len(names),) * 2, np.nan)
        return pd.DataFrame(np.array(cov), index=names, columns=names)

    # ------------------------------------------------------------------ fixed effects
    @property
    def params(self) -> pd.Series:
        """Fixed-effect estimates."""
        return pd.Series(
            np.array(self._beta), index=list(self.problem.fixed_names), name="estimate"
        )

    # vcov, fixed_effects: FixedEffectsFacts
    def df_for(self, L: np.ndarray) -> np.ndarray:
        """Denominator df of each row of L (m, p) under the fit's df method."""
        rows = np.asarray(L, dtype=float)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.problem.p:
            raise ModelSpecError(
                f"L must have {self.problem.p} columns (one per fixed effect), got shape "
                f"{rows.shape}."
            )
        return np.asarray(self._df_for(rows), dtype=float).reshape(rows.shape[0])

    def _fixed_effects_table(self) -> pd.DataFrame:
        df = self.df_for(np.eye(self.problem.p))
        return wald_table(self.problem.fixed_names, np.array(self._beta), self._vcov, df, _LEVEL)

    # ------------------------------------------------------------------ covariance
    def _labels(self) -> list[str]:
        if self.problem.structure.spatial:
            return ["0", "1"]
        return list(self.problem.visit_levels)

    def _per_group(self, corr: bool) -> pd.DataFrame | dict[str, pd.DataFrame]:
        labels = self._labels()
        out: dict[str, pd.DataFrame] = {}
        for g, level in enumerate(self.problem.group_levels):
            S = self.problem.group_sigma(self._theta, g)
            if corr:
                sd = np.sqrt(np.diag(S))
                S = S / np.outer(sd, sd)
            out[level] = pd.DataFrame(S, index=labels, columns=labels)
        if self.problem.term.group is None:
            return out[self.problem.group_levels[0]]
        return out

    @property
    def covariance(self) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Fitted within-subject covariance, visit × visit (dict group → DataFrame when
        grouped; ``sp_exp``: two times at unit distance, as mmrm's ``VarCorr``)."""
        return self._per_group(corr=False)

    @property
    def correlation(self) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Fitted within-subject correlation, laid out as :attr:`covariance`."""
        return self._per_group(corr=True)

    # ------------------------------------------------------------------ new data
    @property
    def model_frame(self) -> pd.DataFrame:
        """Fitted rows with every variable of the fixed part (categoricals with levels)."""
        return self.problem.model_frame.copy()

    def fixed_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """X for new rows, with the fit's coding (categories, contrasts)."""
        return self.problem.fixed_matrix(frame)

    @property
    def fitted(self) -> pd.Series:
        """Population-level fitted values Xβ of the fitted rows."""
        return pd.Series(self.problem.X @ self._beta, index=self.problem.row_index, name="fitted")

    @property
    def residuals(self) -> pd.Series:
        """``y − Xβ`` of the fitted rows."""
        r = self.problem.y - self.problem.X @ self._beta
        return pd.Series(r, index=self.problem.row_index, name="residual")

    def predict(
        self, newdata: pd.DataFrame | None = None, *, conditional: bool = False
    ) -> pd.Series:
        """Predictions for the fitted rows or for new rows.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict (``None``: the fitted rows). Needs the fixed-part variables, and
            with ``conditional`` the visit (time) and subject columns.
        conditional : bool
            False (default): population means Xβ. True: means conditional on the subject's
            fitted rows, E[y_n | y_o] = X_nβ + Σ_no Σ_oo⁻¹(y_o − X_oβ) (R mmrm's
            ``conditional = TRUE``), e.g. for a subject's missed visits; subjects not in the
            fit get Xβ.

        Returns
        -------
        pandas.Series
            Indexed like ``newdata``; NaN where a needed value is missing.
        """
        if newdata is None:
            if not conditional:
                return self.fitted.rename("predicted")
            return pd.Series(
                np.array(self.problem.y), index=self.problem.row_index, name="predicted"
            )
        if conditional:
            values = conditional_mean(self.problem, self._theta, self._beta, newdata)
        else:
            values = population_mean(self.problem, self._beta, newdata)
        return pd.Series(values, index=newdata.index, name="predicted")

    # ------------------------------------------------------------------ display
    def summary(self) -> Summary:
        """Model facts, the fitted covariance and the fixed-effects table (engine style)."""

        def num(v: Any, digits: int = 4) -> str:
            return format_number(v, style="engine", digits=digits)

        pr = self.problem
        info = [
            ("Formula", self.formula),
            (
                "Covariance",
                f"{pr.structure.name} ({pr.n_theta} parameters"
                + (f", {pr.n_groups} groups)" if pr.term.group else ")"),
            ),
            ("Observations", f"{self.nobs} rows, {self.n_subjects} subjects"),
            ("logLik", num(self.loglik)),
            ("AIC", num(self.aic)),
            ("BIC", num(self.bic)),
            ("Deviance", num(self.deviance)),
            ("df method", self.df_method),
            ("vcov", self.vcov_method or "model-based"),
            ("Converged", "yes" if self.converged else "NO"),
        ]
        if len(pr.excluded_rows):
            info.append(("Rows not fitted", f"{len(pr.excluded_rows)} (see excluded_rows)"))
        tables = []
        cov = self.covariance
        blocks = cov.items() if isinstance(cov, dict) else [("", cov)]
        for name, frame in blocks:
            rows = [(str(i), *(num(v) for v in frame.loc[i])) for i in frame.index]
            caption = f"Covariance ({name})" if name else "Covariance"
            tables.append(
                Table.of(
                    ["", *map(str, frame.columns)],
                    rows,
                    caption=caption,
                    numeric=(False, *[True] * frame.shape[1]),
                )
            )
        tables.append(coefficient_table(self._fixed_effects, "Fixed effects", "t"))
        title = f"MMRM fit by {'REML' if pr.reml else 'maximum likelihood'}"
        return Summary(
            title,
            info=tuple(info),
            tables=tuple(tables),
            notes=self._messages,
            notes_title="Messages",
        )

    def __repr__(self) -> str:
        return (
            f"<MMRMResults {self.method} {self.problem.structure.name}: {self.nobs} rows, "
            f"{self.n_subjects} subjects, logLik {self.loglik:.4f}>"
        )
