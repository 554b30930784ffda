"""CLMMResults: the immutable result of a cumulative link mixed model.

Tables follow :class:`mesostats.mixed.results.MixedResults` where the quantities are the same
(``fixed_effects`` with z tests and Wald intervals, ``variance_components`` in the layout of
R's ``as.data.frame(VarCorr(fit))``, ``ranef`` / ``ranef_se``), plus ``thresholds`` (the cut
points θ_j with SEs from J V Jᵀ) and ``threshold_parameters`` (α: equal to the thresholds
when flexible; ordinal's ``threshold.1``/``spacing`` or ``central``/``spacing.k`` otherwise).
``loglik`` is the maximised Laplace / AGQ log-likelihood; ``aic = −2 loglik + 2k`` and
``bic = −2 loglik + k log n`` with k = thresholds parameters + fixed effects + length of θ,
as ``clmm``. Latent-scale convention: P(Y ≤ j) = F(θ_j − xᵀβ − zᵀb).

``params`` / ``vcov`` are β and its covariance (the columns of :meth:`CLMMResults.fixed_matrix`),
as in ``MixedResults``, so marginal means read every engine alike; ``coefficients`` and
``full_vcov`` hold ordinal's full set (α, β) and (α, β, θ).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from mesostats.mixed.clmm.links import get_link
from mesostats.mixed.clmm.predict import category_probabilities
from mesostats.mixed.clmm.simulate import CLMMSimulateMixin
from mesostats.mixed.clmm.thresholds import ThresholdStructure
from mesostats.mixed.design import MixedDesign
from mesostats.mixed.results_base import (
    VARCORR_COLUMNS,
    DesignFitFacts,
    per_group_frames,
    variance_component_rows,
)
from mesostats.mixed.summary import coefficient_table
from mesostats.mixed.wald import wald_table

__all__ = ["CLMMResults"]

_WALD_LEVEL = 0.95
_TYPES = ("prob", "class", "linear")


def _num(value: Any, digits: int = 4) -> str:
    return format_number(value, style="engine", digits=digits)


class CLMMResults(DesignFitFacts, CLMMSimulateMixin, FrozenRecord, SummaryDisplay):
    """Fitted cumulative link mixed model (immutable); built by :func:`mesostats.fit_clmm`."""

    family = "ordinal"

    def __init__(
        self,
        *,
        design: MixedDesign,
        levels: list[str],
        structure: ThresholdStructure,
        link: str,
        method: str,
        params: np.ndarray,
        vcov: np.ndarray,
        loglik: float,
        modes: list[np.ndarray],
        cond_cov: list[np.ndarray],
        intercept_position: int,
        model_frame: pd.DataFrame,
        converged: bool,
        singular: bool,
        messages: list[str],
        optimizer: Mapping[str, Any],
    ) -> None:
        na, p = structure.n_alpha, design.p
        sets = object.__setattr__
        sets(self, "_design", design)
        sets(self, "_levels", list(levels))
        sets(self, "_structure", structure)
        sets(self, "_link", link)
        sets(self, "_method", method)
        sets(self, "_alpha", np.array(params[:na]))
        sets(self, "_beta", np.array(params[na : na + p]))
        theta = np.array(params[na + p :])
        theta.setflags(write=False)  # handed out as it is by ``theta`` (FitFacts)
        sets(self, "_theta", theta)
        sets(self, "_full_vcov", np.array(vcov))
        sets(self, "_loglik", float(loglik))
        sets(self, "_modes", [np.array(m) for m in modes])
        sets(self, "_cond_cov", [np.array(c) for c in cond_cov])
        sets(self, "_intercept_position", intercept_position)
        sets(self, "_model_frame", model_frame)
        sets(self, "_converged", bool(converged))
        sets(self, "_singular", bool(singular))
        sets(self, "_messages", list(messages))
        sets(self, "_optimizer", dict(optimizer))
        J = structure.jacobian
        V = self._full_vcov
        z, level = np.inf, _WALD_LEVEL
        fixed = wald_table(design.fixed_names, self._beta, V[na : na + p, na : na + p], z, level)
        alpha = wald_table(structure.alpha_names, self._alpha, V[:na, :na], z, level, "parameter")
        cuts = wald_table(
            structure.cut_names, J @ self._alpha, J @ V[:na, :na] @ J.T, z, level, "threshold"
        )
        sets(self, "_fixed_table", fixed)
        sets(self, "_alpha_table", alpha)
        sets(self, "_threshold_table", cuts)

    # ------------------------------------------------------------------ facts
    @property
    def design(self) -> MixedDesign:
        """The design the model was fitted on (X without the intercept column)."""
        return self._design

    @property
    def formula(self) -> str:
        """The model formula."""
        return self._design.formula

    @property
    def link(self) -> str:
        """The link: ``"logit"``, ``"probit"`` or ``"cloglog"``."""
        return self._link

    @property
    def method(self) -> str:
        """``"Laplace"`` or ``"AGQ(k)"``."""
        return self._method

    @property
    def threshold(self) -> str:
        """Threshold structure: ``"flexible"``, ``"equidistant"`` or ``"symmetric"``."""
        return self._structure.kind

    @property
    def levels(self) -> list[str]:
        """Response categories, lowest first."""
        return list(self._levels)

    @property
    def _fitted_rows(self) -> MixedDesign:
        return self._design

    @property
    def n_params(self) -> int:
        """Threshold parameters + fixed effects + θ entries."""
        return int(self._alpha.size + self._beta.size + self._theta.size)

    @property
    def loglik(self) -> float:
        """Maximised Laplace / AGQ log-likelihood."""
        return self._loglik

    @property
    def converged(self) -> bool:
        """Whether the optimiser converged with a negative definite Hessian."""
        return self._converged

    @property
    def singular(self) -> bool:
        """Whether a random-effect SD is on its boundary (0)."""
        return self._singular

    # ------------------------------------------------------------------ estimates
    @property
    def fixed_effects(self) -> pd.DataFrame:
        """β on the latent scale (positive = higher categories): estimate, SE, z, p, CI."""
        return self._fixed_table.copy()

    @property
    def thresholds(self) -> pd.DataFrame:
        """Cut points θ_j (``"1|2"``, …) with SEs, z, p and Wald CIs."""
        return self._threshold_table.copy()

    @property
    def threshold_parameters(self) -> pd.DataFrame:
        """The threshold parameters α (θ = J α) as ordinal names them, with SEs."""
        return self._alpha_table.copy()

    @property
    def threshold_jacobian(self) -> pd.DataFrame:
        """J with thresholds θ = J α (rows: cut points, columns: threshold parameters)."""
        return pd.DataFrame(
            np.array(self._structure.jacobian),
            index=list(self._structure.cut_names),
            columns=list(self._structure.alpha_names),
        )

    @property
    def params(self) -> pd.Series:
        """Fixed effects β (the columns of :meth:`fixed_matrix`), as ``MixedResults.params``."""
        return pd.Series(self._beta.copy(), index=list(self._design.fixed_names), name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of β (block of the inverse negative Hessian over (α, β, θ))."""
        na, p = self._alpha.size, self._beta.size
        names = list(self._design.fixed_names)
        block = self._full_vcov[na : na + p, na : na + p]
        return pd.DataFrame(np.array(block), index=names, columns=names)

    @property
    def coefficients(self) -> pd.Series:
        """Threshold parameters then fixed effects: ordinal's ``coef(clmm)``."""
        names = [*self._structure.alpha_names, *self._design.fixed_names]
        return pd.Series(np.concatenate([self._alpha, self._beta]), index=names, name="estimate")

    @property
    def full_vcov(self) -> pd.DataFrame:
        """Covariance of (α, β, θ): the inverse negative Hessian of the log-likelihood (NaN
        rows and columns for a θ on its boundary). Its (α, β) block is ``vcov(clmm)``'s."""
        names = [
            *self._structure.alpha_names,
            *self._design.fixed_names,
            *self._design.theta_names,
        ]
        return pd.DataFrame(np.array(self._full_vcov), index=names, columns=names)

    @property
    def model_frame(self) -> pd.DataFrame:
        """The fitted rows of the columns the model uses (the response as given)."""
        return self._model_frame.copy()

    @property
    def variance_parameter_cov(self) -> pd.DataFrame:
        """Covariance of θ (NaN for an entry on its boundary)."""
        k = self._alpha.size + self._beta.size
        names = list(self._design.theta_names)
        return pd.DataFrame(np.array(self._full_vcov[k:, k:]), index=names, columns=names)

    def covariance_blocks(self) -> list[np.ndarray]:
        """Per design term, the covariance ΛΛᵀ of its random effects."""
        return [lam @ lam.T for lam in self._design.lambda_blocks(self._theta)]

    @property
    def variance_components(self) -> pd.DataFrame:
        """Variances, SDs, covariances and correlations (R's ``as.data.frame(VarCorr(fit))``)."""
        rows = variance_component_rows(self._design.terms, self.covariance_blocks())
        return pd.DataFrame(rows, columns=VARCORR_COLUMNS)

    def df_for(self, L: np.ndarray) -> float:
        """Denominator df of a contrast of β: infinite (z tests)."""
        return float(np.inf)

    def fixed_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """X for new rows (the fit's coding), without the intercept column."""
        X = self._design.fixed_matrix(frame)
        return np.delete(X, self._intercept_position, axis=1)

    # ------------------------------------------------------------------ random effects
    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of b per grouping factor (index = level, columns = terms)."""
        return per_group_frames(self._design.terms, self._modes)

    @property
    def ranef_se(self) -> dict[str, pd.DataFrame]:
        """Conditional SDs of b (Laplace: from the curvature at the mode), as ``ranef``."""
        sds = [np.sqrt(np.einsum("kii->ki", c)) for c in self._cond_cov]
        return per_group_frames(self._design.terms, sds)

    @property
    def ranef_cov(self) -> dict[str, np.ndarray]:
        """Conditional covariance blocks per group: (n_levels, q, q)."""
        return {t.group: c.copy() for t, c in zip(self._design.terms, self._cond_cov, strict=True)}

    # ------------------------------------------------------------------ prediction
    def _location(
        self, newdata: pd.DataFrame | None, include_random: bool
    ) -> tuple[np.ndarray, np.ndarray, pd.Index]:
        design = self._design
        if newdata is None:
            X = design.X
            parts = [(t.Z, t.codes) for t in design.terms]
            index = design.row_index
        else:
            try:
                X = self.fixed_matrix(newdata)
                parts = [(t.columns_for(newdata), t.level_codes(newdata)) for t in design.terms]
            except ModelSpecError:
                raise
            except Exception as exc:
                raise ModelSpecError(
                    f"Cannot build the model rows for newdata: {exc}. It needs the columns "
                    f"the formula uses ({', '.join(design.used_columns[1:])}) without missing "
                    "values, with categories seen in the fit."
                ) from exc
            index = newdata.index
        eta = X @ self._beta
        var = np.zeros(eta.size)
        for (Z, codes), b, cov in zip(parts, self._modes, self.covariance_blocks(), strict=True):
            known = (codes >= 0) if include_random else np.zeros(codes.size, dtype=bool)
            if known.any():
                eta = eta + np.where(known, np.sum(Z * b[np.where(known, codes, 0)], axis=1), 0.0)
            var = var + np.where(known, 0.0, np.einsum("ni,ij,nj->n", Z, cov, Z))
        return eta, var, index

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: str = "prob",
        include_random: bool = False,
    ) -> pd.DataFrame | pd.Series:
        """Predictions for ``newdata`` (the fitted rows when ``None``).

        ``type="prob"``: DataFrame of category probabilities (one column per level),
        marginal over the random effects, or with each person's conditional mode when
        ``include_random=True`` (levels not seen in the fit are integrated over).
        ``"class"``: the most probable category. ``"linear"``: the latent location xᵀβ
        (+ zᵀb̂ with ``include_random``).
        """
        if type not in _TYPES:
            raise ModelSpecError(
                f"type must be one of {', '.join(map(repr, _TYPES))}, got {type!r}."
            )
        eta, var, index = self._location(newdata, include_random)
        if type == "linear":
            return pd.Series(eta, index=index, name="linear_predictor")
        cuts = self._structure.thresholds(self._alpha)
        probs = category_probabilities(get_link(self._link), cuts, eta, var)
        frame = pd.DataFrame(probs, index=index, columns=list(self._levels))
        if type == "class":
            return pd.Series(
                np.asarray(self._levels, dtype=object)[np.argmax(probs, axis=1)],
                index=index,
                name="class",
            )
        return frame

    # ------------------------------------------------------------------ display
    def summary(self) -> Summary:
        """ordinal's ``summary(clmm)`` layout: facts, random effects, thresholds, β."""
        groups = ", ".join(f"{g}: {k}" for g, k in self.ngroups.items())
        info = (
            ("Formula", self.formula),
            ("Link / threshold", f"{self.link} / {self.threshold}"),
            ("Observations", str(self.nobs)),
            ("Groups", groups or "none (no random effects)"),
            ("logLik", _num(self.loglik)),
            ("AIC", _num(self.aic)),
            ("BIC", _num(self.bic)),
            ("Converged", "yes" if self.converged else "NO"),
            ("Singular", "yes" if self.singular else "no"),
        )
        rows = []
        for r in self.variance_components.itertuples(index=False):
            if isinstance(r.var2, str):
                rows.append((str(r.group), f"{r.var1} ~ {r.var2}", "", "", _num(r.sdcor, 3)))
            else:
                rows.append((str(r.group), str(r.var1), _num(r.vcov), _num(r.sdcor), ""))
        rand = Table.of(
            ("Group", "Name", "Variance", "Std.Dev.", "Corr."),
            rows,
            caption="Random effects",
            numeric=(False, False, True, True, True),
        )
        kind = "mixed model" if self._design.terms else "model"
        return Summary(
            title=(
                f"Cumulative link {kind} fit by maximum likelihood "
                f"({self.method}) [link {self.link}, threshold {self.threshold}]"
            ),
            info=info,
            tables=(
                *((rand,) if self._design.terms else ()),
                coefficient_table(self._alpha_table, "Threshold coefficients", "z", with_df=False),
                coefficient_table(
                    self._fixed_table, "Fixed effects (latent scale)", "z", with_df=False
                ),
            ),
            notes=tuple(self._messages),
            notes_title="Messages",
        )

    def __repr__(self) -> str:
        return (
            f"<CLMMResults {self.formula!r}: {self.method}, link {self.link}, "
            f"{self.nobs} obs, logLik {self.loglik:.4f}>"
        )
