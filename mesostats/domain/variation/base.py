"""The state of a :class:`~mesostats.domain.variation.Variability` and its headline numbers:
variance-component lookup, ICC (with profile, delta-method or bootstrap intervals), median
odds ratio, and the design rows of a new person. Formulas: :mod:`mesostats.domain.variation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mesostats._records import FrozenRecord
from mesostats.domain.variation.context import VariationContext
from mesostats.domain.variation.quantities import (
    _LATENT_LOGISTIC_VAR,
    IntervalEstimate,
    _between_variance,
    _check_level,
    _check_week,
    _logit_ci,
    _term_rows,
    _z,
    median_odds_ratio,
)
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.profile import (
    VarianceBootstrap,
    VarianceProfile,
    profile_variance_components,
)
from mesostats.mixed.results import MixedResults

#: Level of the headline intervals (variance components, ICC at week 0, MOR), as lme4's
#: ``confint``; other levels are asked of :meth:`icc_at`, ``prediction_interval`` etc.
COMPONENT_LEVEL = 0.95


class VariabilityBase(FrozenRecord):
    """State, components, ICC and MOR of a :class:`Variability` (the base of its mixins)."""

    def __init__(
        self,
        ctx: VariationContext,
        components: pd.DataFrame,
        *,
        ci_method: str,
        n_boot: int,
        seed: int,
        profile: VarianceProfile | None,
        bootstrap: VarianceBootstrap | None,
        notes: Sequence[str],
    ) -> None:
        state = {
            "_ctx": ctx,
            "components": components,
            "ci_method": ci_method,
            "n_boot": n_boot,
            "seed": seed,
            "profile": profile,
            "bootstrap": bootstrap,
            "_notes": tuple(notes),
            "week": ctx.week,
            "week_note": ctx.week_note,
            "study": ctx.study,
            # caches of derived tables (filled on first use; the attributes never change)
            "_person_cache": {},
            "_cond_cov": [],
        }
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "icc", self._icc_week0())
        object.__setattr__(self, "median_odds_ratio", self._median_odds_ratio())

    @property
    def notes(self) -> tuple[str, ...]:
        """Plain-language notes on how the numbers were obtained."""
        return self._notes

    @property
    def model(self) -> MixedResults:
        """The underlying mixed model."""
        return self._ctx.model

    # ------------------------------------------------------------------ components lookup
    def _component(self, group: str, var1: str, kind: str = "sd") -> pd.Series | None:
        comp = self.components
        hit = comp[(comp["group"] == group) & (comp["var1"] == var1) & (comp["kind"] == kind)]
        return None if hit.empty else hit.iloc[0]

    def _subject_group(self) -> str:
        model = self.model
        if self._ctx.subject is not None and self._ctx.subject in model.ngroups:
            return self._ctx.subject
        return model.design.terms[0].group

    # ------------------------------------------------------------------ ICC
    def _icc_value(
        self, week: float, variable: str | None, theta: np.ndarray, sigma: float
    ) -> float:
        model = self.model
        values = {variable: week} if variable else {}
        v = float(_between_variance(model, _term_rows(model, values), theta, sigma)[0])
        if model.family == "gaussian":
            return v / (v + sigma**2)
        return v / (v + _LATENT_LOGISTIC_VAR)

    def _icc_delta(self, week: float, variable: str | None, level: float) -> tuple[float, float]:
        model = self.model
        cov = model.variance_parameter_cov
        if cov is None:
            return math.nan, math.nan
        theta = np.asarray(model.theta, dtype=float)
        gaussian = model.family == "gaussian"
        x0 = np.append(theta, model.sigma) if gaussian else theta.copy()
        if cov.shape[0] != len(x0):
            return math.nan, math.nan

        def icc(x: np.ndarray) -> float:
            return self._icc_value(week, variable, x[: len(theta)], x[-1] if gaussian else 1.0)

        est = icc(x0)
        grad = np.zeros(len(x0))
        for j in range(len(x0)):
            h = 1e-6 * max(abs(x0[j]), 1e-3)
            up, dn = x0.copy(), x0.copy()
            up[j] += h
            dn[j] -= h
            grad[j] = (icc(up) - icc(dn)) / (2 * h)
        return _logit_ci(est, grad, cov.to_numpy(), _z(level))

    def _icc_bootstrap(
        self, week: float, variable: str | None, level: float
    ) -> tuple[float, float]:
        boot = self.bootstrap
        assert boot is not None
        ok = np.isfinite(boot.sigma) & np.all(np.isfinite(boot.theta), axis=1)
        model = self.model
        rows = _term_rows(model, {variable: week} if variable else {})
        v = _between_variance(model, rows, boot.theta[ok], boot.sigma[ok])[:, 0]
        noise = boot.sigma[ok] ** 2 if model.family == "gaussian" else _LATENT_LOGISTIC_VAR
        values = v / (v + noise)
        if values.size == 0:
            return math.nan, math.nan
        a = (1.0 - level) / 2.0
        lo, hi = np.quantile(values, [a, 1.0 - a])
        return float(lo), float(hi)

    def _single_intercept_profile(self, level: float) -> tuple[float, float] | None:
        """ICC at week 0 = λ²/(1 + λ²) with one grouping factor: transform θ₁'s profile CI."""
        model = self.model
        terms = model.design.terms
        if model.family != "gaussian" or len(terms) != 1 or terms[0].names[0] != "Intercept":
            return None
        name = model.design.theta_names[0]
        prof = profile_variance_components(model, which=[name], level=level, scale="theta")
        row = prof.confint.iloc[0]
        lo, hi = float(row["ci_lower"]), float(row["ci_upper"])
        return lo**2 / (1 + lo**2), hi**2 / (1 + hi**2)

    def _icc_week0(self) -> IntervalEstimate | None:
        model = self.model
        if model.family == "poisson":
            return None
        level = COMPONENT_LEVEL  # the headline ICC goes with the 95 % component intervals
        est = self._icc_value(0.0, None, np.asarray(model.theta), model.sigma)
        gaussian = model.family == "gaussian"
        name = "ICC" if gaussian else "latent-scale ICC"
        what = (
            "share of outcome variance between people at week 0"
            if gaussian
            else "share of latent (logit-scale) variance between people, τ²/(τ² + π²/3)"
        )
        if len(model.design.terms) > 1:
            groups = ", ".join(dict.fromkeys(t.group for t in model.design.terms))
            what += f" (summing every grouping factor: {groups})"
        slope = any(n != "Intercept" for t in model.design.terms for n in t.names)
        if gaussian and slope:
            what += "; with random slopes it depends on time — see icc_at(week)"
        if not gaussian and len(model.design.terms) == 1 and model.design.terms[0].q == 1:
            sd_row = self.components.iloc[0]
            lo_sd, hi_sd = float(sd_row["ci_lower"]), float(sd_row["ci_upper"])
            lo = lo_sd**2 / (lo_sd**2 + _LATENT_LOGISTIC_VAR)
            hi = hi_sd**2 / (hi_sd**2 + _LATENT_LOGISTIC_VAR)
            return IntervalEstimate(name, est, lo, hi, level, f"{sd_row['method']} of τ", what)
        if self.ci_method == "bootstrap" and self.bootstrap is not None:
            lo, hi = self._icc_bootstrap(0.0, None, level)
            return IntervalEstimate(
                name, est, lo, hi, level, str(self.components["method"][0]), what
            )
        single = self._single_intercept_profile(level) if gaussian else None
        if single is not None:
            crit = "REML" if model.method == "REML" else "ML"
            return IntervalEstimate(
                name, est, single[0], single[1], level, f"profile ({crit}) of θ₁ = τ/σ", what
            )
        lo, hi = self._icc_delta(0.0, None, level)
        return IntervalEstimate(name, est, lo, hi, level, "delta method (logit scale)", what)

    def icc_at(
        self, week: float | Sequence[float], *, variable: str | None = None, level: float = 0.95
    ) -> pd.DataFrame:
        """ICC of a linear model at given weeks (with a random slope it changes with time).

        Parameters
        ----------
        week : float or sequence of float
            Value(s) of the time variable.
        variable : str, optional
            Name of the time variable in the random-effect terms; default the results' time
            column (``"week"``). Needed for a bare MixedResults.
        level : float, default 0.95

        Returns
        -------
        DataFrame
            ``week, icc, ci_lower, ci_upper, level, method``.

        Raises
        ------
        ModelSpecError
            Not a linear mixed model, or no time variable known.

        Notes
        -----
        ρ(W) = v(W)/(v(W) + σ²), v(W) = Σ_t z_t(W)ᵀΣ_t z_t(W); CI by the bootstrap replicates
        (``ci_method="bootstrap"``) or the delta method on the logit scale.
        """
        model = self.model
        if model.family != "gaussian":
            raise ModelSpecError(
                "icc_at() applies to linear mixed models; for a binomial model use "
                "median_odds_ratio (or the latent-scale icc)."
            )
        variable = variable or self._ctx.time
        if variable is None:
            raise ModelSpecError(
                "icc_at() needs the name of the time variable of the random slope: pass "
                "variable='Days' (for example)."
            )
        level = _check_level(level)
        weeks = np.atleast_1d(np.asarray(week, dtype=float))
        rows = []
        for w in weeks:
            _check_week(float(w))
            est = self._icc_value(float(w), variable, np.asarray(model.theta), model.sigma)
            if self.ci_method == "bootstrap" and self.bootstrap is not None:
                lo, hi = self._icc_bootstrap(float(w), variable, level)
                method = "parametric bootstrap (percentile)"
            else:
                lo, hi = self._icc_delta(float(w), variable, level)
                method = "delta method (logit scale)"
            rows.append((float(w), est, lo, hi, level, method))
        return pd.DataFrame(
            rows, columns=["week", "icc", "ci_lower", "ci_upper", "level", "method"]
        )

    # ------------------------------------------------------------------ MOR
    def _median_odds_ratio(self) -> IntervalEstimate | None:
        model = self.model
        if model.family != "binomial":
            return None
        group = self._subject_group()
        row = self._component(group, "Intercept")
        if row is None:
            return None
        est = float(median_odds_ratio(float(row["estimate"])))
        lo = float(median_odds_ratio(float(row["ci_lower"])))
        hi = float(median_odds_ratio(float(row["ci_upper"])))
        note = (
            f"median odds ratio between two random people ({group}) with the same covariates: "
            "the odds of the more prone person over the less prone one"
        )
        return IntervalEstimate(
            "median odds ratio",
            est,
            lo,
            hi,
            float(row["level"]),
            f"{row['method']} of the SD",
            note,
        )

    # ------------------------------------------------------------------ new-person design
    def _require_domain(self, what: str) -> VariationContext:
        ctx = self._ctx
        if ctx.kind == "model":
            raise ModelSpecError(
                f"{what} needs the cocktails of a study: call variability() on the result of "
                "ms.fit_regrowth or ms.fit_side_effects (a bare MixedResults has components, "
                "icc / median_odds_ratio and person_effects only)."
            )
        return ctx

    def _resolve_week(self, week: float | None) -> float | None:
        ctx = self._ctx
        if ctx.kind == "side_effects":
            if week is not None:
                raise ModelSpecError(
                    "The side-effect model has no time term (the per-session event "
                    "probability does not change with week here); call without week."
                )
            return None
        if week is None:
            return ctx.week
        return _check_week(week)

    def _cocktails(self, cocktail: str | Sequence[str] | None) -> list[str]:
        ctx = self._ctx
        assert ctx.cocktail_design is not None
        available = [str(c) for c in ctx.cocktail_design.index]
        if cocktail is None:
            return available
        wanted = [cocktail] if isinstance(cocktail, str) else [str(c) for c in cocktail]
        unknown = [c for c in wanted if c not in available]
        if unknown:
            raise ModelSpecError(
                f"Unknown cocktail(s) {', '.join(repr(c) for c in unknown)}; the cocktails "
                f"given in this study are {', '.join(available)}."
            )
        return wanted

    def _new_person_rows(self, cocktails: list[str], week: float | None) -> pd.DataFrame:
        """One row per cocktail describing a new person (average baseline) at ``week``."""
        ctx = self._ctx
        assert ctx.data is not None and ctx.cocktail_design is not None
        rows = ctx.data.iloc[np.zeros(len(cocktails), dtype=int)].reset_index(drop=True)
        design = ctx.cocktail_design.loc[cocktails]
        for col in design.columns:
            rows[col] = design[col].to_numpy(dtype=float)
        if ctx.kind == "regrowth":
            assert ctx.time is not None and week is not None
            rows[ctx.time] = float(week)
            if "baseline_centered" in rows.columns:
                rows["baseline_centered"] = 0.0
            if "baseline" in rows.columns:
                rows["baseline"] = ctx.shift
        return rows

    def _new_person_design(
        self, cocktails: list[str], week: float | None
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(X, offset, Z per term) of a new person under each cocktail."""
        model = self.model
        rows = self._new_person_rows(cocktails, week)
        X = model.design.fixed_matrix(rows)
        offset = model.design.offset_for(rows)
        zs = [np.asarray(term.columns_for(rows), dtype=float) for term in model.design.terms]
        return X, offset, zs
