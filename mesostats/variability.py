""" "Varied results": how much a treatment's effect differs between people, with honest CIs.

:func:`variability` takes a regrowth fit (:class:`~mesostats.outcomes.RegrowthResults`), a
side-effect fit (:class:`~mesostats.outcomes.SideEffectResults`) or any
:class:`~mesostats.mixed.results.MixedResults`, and returns a :class:`Variability` with

* ``components`` — every between-person (between-group) SD, correlation and the residual SD
  with a 95 % confidence interval: profile likelihood (Bates et al. 2015, §5.1) or parametric
  bootstrap (Davison & Hinkley 1997), from :mod:`mesostats.mixed.profile`;
* ``icc`` (linear models) — the share of outcome variance that lies between people,
  ρ(W) = v(W) / (v(W) + σ²) with v(W) = z(W)ᵀΣz(W) the between-person variance at week W
  (z = (1, W) with a random slope, so the ICC depends on time; reported at week 0 and as
  :meth:`Variability.icc_at`) summed over every grouping factor (people and sites);
* ``median_odds_ratio`` (binomial models) — MOR = exp(√(2τ²)·Φ⁻¹(0.75)) (Merlo et al. 2006,
  *J. Epidemiol. Community Health* 60(4)): the median odds ratio between two people with the
  same covariates, the one more prone to the event against the one less prone;
* :meth:`Variability.prediction_interval` — the range of one *new* person's true change at
  week W under each cocktail (regrowth), or of a new person's per-session event probability
  (side effects): fixed part ± z·√(x̂ᵀV_βx̂ + z(W)ᵀΣz(W) [+ σ²]) (Skrondal & Rabe-Hesketh 2009,
  *JRSS A* 172(3), prediction of a new cluster);
* :meth:`Variability.responders` — the expected share of people whose true change at week W
  exceeds a threshold, Φ((μ_c − t)/√v(W)), with uncertainty from simulation of the
  estimates' sampling distribution;
* ``person_effects`` — each person's conditional modes (BLUPs) with conditional SDs and 95 %
  intervals, their own predicted change at week W, and a flag: clearly responded, clearly did
  not, or uncertain.

**Intervals of derived quantities.** The MOR and the latent-scale ICC of a binomial model are
monotone in the SD τ, so their intervals are the SD's interval transformed. The ICC of a
linear model at week 0 with a single grouping factor is λ²/(1 + λ²) for the relative
intercept SD λ = θ₁, so its profile interval is that of θ₁ (σ profiled out) transformed. In
other cases, ``ci_method="profile"`` gives a delta-method interval on the logit scale from the
asymptotic covariance of (θ, σ) (documented in ``method``), and ``ci_method="bootstrap"`` the
percentile interval of the bootstrap replicates. Responder shares: replicates of the
bootstrap when available, else draws of β ~ N(β̂, V_β) and (θ, σ) ~ N(estimate, asymptotic
covariance) (Gelman & Hill 2007, §7.2, "simulation of uncertainty").

**Person-level intervals** for the modes are mode ± z·(conditional SD) (lme4's ``condVar``,
conditional on the estimates). For a person's predicted change the fixed-part variance
x_iᵀV_βx_i is added to the conditional variance of z(W)ᵀb_i (as merTools'
``predictInterval``; the small covariance between β̂ and b̂ is neglected).

Hand-written because no Python library computes these for mixed models (statsmodels'
MixedLM has no profile CIs for variance components, no MOR and no new-cluster prediction).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.profile import (
    CONFINT_COLUMNS,
    VarianceBootstrap,
    VarianceProfile,
    blas_single_threaded,
    bootstrap_variance_components,
    profile_variance_components,
)
from mesostats.mixed.results import MixedResults

if TYPE_CHECKING:
    from mesostats.outcomes import RegrowthResults, SideEffectResults

__all__ = ["IntervalEstimate", "Variability", "median_odds_ratio", "variability"]

_Q75 = float(stats.norm.ppf(0.75))
_LATENT_LOGISTIC_VAR = math.pi**2 / 3.0
CI_METHODS = ("profile", "bootstrap")


def median_odds_ratio(sd: float | np.ndarray) -> float | np.ndarray:
    """Median odds ratio of a logit-scale random-intercept SD (Merlo et al. 2006).

    MOR = exp(√(2σ²)·Φ⁻¹(0.75)) ≈ exp(0.954·σ).

    Parameters
    ----------
    sd : float or array
        Between-group SD on the logit scale.

    Returns
    -------
    float or array
        The MOR (1 when the SD is 0).

    References
    ----------
    Merlo J, Chaix B, Ohlsson H, et al. (2006). A brief conceptual tutorial of multilevel
    analysis in social epidemiology. *J Epidemiol Community Health* 60(4):290–297.

    Examples
    --------
    >>> round(float(median_odds_ratio(1.0)), 4)
    2.5957
    """
    value = np.exp(np.sqrt(2.0 * np.square(sd)) * _Q75)
    return float(value) if np.ndim(value) == 0 else value


@dataclass(frozen=True)
class IntervalEstimate:
    """An estimate with its confidence interval and how it was obtained.

    ``float(x)`` gives the estimate.
    """

    name: str
    estimate: float
    ci_lower: float
    ci_upper: float
    level: float
    method: str
    note: str = ""

    def __float__(self) -> float:
        return float(self.estimate)

    def __repr__(self) -> str:
        return (
            f"<{self.name} {self.estimate:.4g} ({100 * self.level:g} % CI "
            f"{self.ci_lower:.4g} to {self.ci_upper:.4g}; {self.method})>"
        )


# --------------------------------------------------------------------------- context
@dataclass(frozen=True)
class _Context:
    """What a results object tells us beyond its MixedResults."""

    kind: str  # "regrowth", "side_effects" or "model"
    model: MixedResults
    data: pd.DataFrame | None
    subject: str | None
    time: str | None
    cocktail_design: pd.DataFrame | None
    cocktail_column: str | None
    shift: float  # subtracted from predictions (regrowth: the baseline centre → change)
    week: float | None
    week_note: str
    outcome: str
    study: Any = None


def _context(results: Any) -> _Context:
    from mesostats.outcomes import RegrowthResults, SideEffectResults

    if isinstance(results, RegrowthResults):
        week, note = _default_week(results.data, results.time)
        return _Context(
            kind="regrowth",
            model=results.model,
            data=results.data,
            subject=results.subject,
            time=results.time,
            cocktail_design=_real_cocktails(results.cocktail_design),
            cocktail_column="course_cocktail",
            shift=float(results.baseline_center),
            week=week,
            week_note=note,
            outcome=results.outcome,
            study=results.study,
        )
    if isinstance(results, SideEffectResults):
        return _Context(
            kind="side_effects",
            model=results.model,
            data=results.data,
            subject=results.subject,
            time=None,
            cocktail_design=_real_cocktails(results.cocktail_design),
            cocktail_column="cocktail_id",
            shift=0.0,
            week=None,
            week_note="",
            outcome="any side effect" if results.event is None else str(results.event),
            study=results.study,
        )
    if isinstance(results, MixedResults):
        return _Context(
            kind="model",
            model=results,
            data=None,
            subject=None,
            time=None,
            cocktail_design=None,
            cocktail_column=None,
            shift=0.0,
            week=None,
            week_note="",
            outcome=results.design.response_name,
        )
    raise ModelSpecError(
        f"variability() needs a RegrowthResults (ms.fit_regrowth), a SideEffectResults "
        f"(ms.fit_side_effects) or a MixedResults (ms.fit_lmm / ms.fit_glmm); got "
        f"{type(results).__name__}."
    )


def _real_cocktails(design: pd.DataFrame) -> pd.DataFrame:
    """Cocktails actually given (drops the "(none)" row of people not yet injected)."""
    keep = [str(c) != "(none)" for c in design.index]
    return design.loc[keep]


def _default_week(data: pd.DataFrame, time: str) -> tuple[float, str]:
    """The last scheduled post-baseline week: median week of the highest visit number."""
    weeks = data[time].to_numpy(dtype=float)
    if "visit" not in data.columns:
        w = float(np.nanmax(weeks))
        return w, f"week {w:.3g} (the latest post-baseline week in the data)"
    visits = data["visit"].to_numpy(dtype=float)
    last = float(np.nanmax(visits))
    at_last = weeks[visits == last]
    w = round(float(np.nanmedian(at_last)), 1)
    return w, (
        f"week {w:g}: the last scheduled post-baseline visit (visit {last:g}, median week of "
        f"its {at_last.size} measurements)"
    )


# --------------------------------------------------------------------------- helpers
def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def conditional_mode_table(model: MixedResults, level: float = 0.95) -> pd.DataFrame:
    """Every conditional mode (BLUP) with its conditional SD and Wald-type interval.

    Parameters
    ----------
    model : MixedResults
    level : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, level, term, mode, cond_sd, ci_lower, ci_upper`` (mode ± z·cond_sd, the
        conditional-variance intervals of lme4's ``ranef(condVar = TRUE)`` dotplots).
    """
    z = _z(level)
    parts = []
    for group, frame in model.ranef.items():
        sd = model.ranef_se[group]
        for term in frame.columns:
            m = frame[term].to_numpy(dtype=float)
            s = sd[term].to_numpy(dtype=float)
            parts.append(
                pd.DataFrame(
                    {
                        "group": group,
                        "level": [str(v) for v in frame.index],
                        "term": term,
                        "mode": m,
                        "cond_sd": s,
                        "ci_lower": m - z * s,
                        "ci_upper": m + z * s,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ModelSpecError(f"level must be a number between 0 and 1 (e.g. 0.95), got {level!r}.")
    return float(level)


def _check_week(week: Any) -> float:
    if isinstance(week, bool) or not isinstance(week, (int, float, np.integer, np.floating)):
        raise ModelSpecError(f"week must be a number (weeks since day 1), got {week!r}.")
    w = float(week)
    if not math.isfinite(w) or w < 0:
        raise ModelSpecError(f"week must be a finite number ≥ 0, got {week!r}.")
    return w


def _between_variance(
    model: MixedResults, zs: Sequence[np.ndarray], theta: np.ndarray, sigma: float | np.ndarray
) -> np.ndarray:
    """Σ_t z_tᵀ Σ_t(θ, σ) z_t per row: the between-group variance of a new person's response.

    ``theta`` may be one vector (n_theta,) → result (rows,), or draws (D, n_theta) with
    ``sigma`` (D,) → result (D, rows); Σ_t = σ²Λ_tΛ_tᵀ is built for every draw at once.
    """
    from mesostats.mixed.design import lower_triangle_indices

    design = model.design
    thetas = np.atleast_2d(np.asarray(theta, dtype=float))
    sig2 = np.square(np.broadcast_to(np.asarray(sigma, dtype=float), (thetas.shape[0],)))
    n_rows = zs[0].shape[0] if zs else 0
    total = np.zeros((thetas.shape[0], n_rows))
    for z, term, sl in zip(zs, design.terms, design.theta_slices, strict=True):
        rows, cols = lower_triangle_indices(term.q)
        lam = np.zeros((thetas.shape[0], term.q, term.q))
        lam[:, rows, cols] = thetas[:, sl]
        zl = np.einsum("ca,dab->dcb", z, lam)
        total += sig2[:, None] * np.einsum("dcb,dcb->dc", zl, zl)
    return total[0] if np.ndim(theta) == 1 else total


def _term_rows(model: MixedResults, values: dict[str, float], n: int = 1) -> list[np.ndarray]:
    """Random-effect covariates of a new person: 1 for an intercept, ``values[name]`` else 0."""
    out = []
    for term in model.design.terms:
        row = np.array(
            [1.0 if name == "Intercept" else float(values.get(name, 0.0)) for name in term.names]
        )
        out.append(np.tile(row, (n, 1)))
    return out


def _logit_ci(est: float, grad: np.ndarray, cov: np.ndarray, z: float) -> tuple[float, float]:
    """Delta-method interval of a proportion on the logit scale."""
    if not 0.0 < est < 1.0:
        return math.nan, math.nan
    var = float(grad @ cov @ grad)
    if not math.isfinite(var) or var < 0:
        return math.nan, math.nan
    se = math.sqrt(var) / (est * (1.0 - est))
    centre = math.log(est / (1.0 - est))
    lo, hi = centre - z * se, centre + z * se
    return 1.0 / (1.0 + math.exp(-lo)), 1.0 / (1.0 + math.exp(-hi))


# --------------------------------------------------------------------------- main object
class Variability:
    """How much results vary between people (see :func:`variability`).

    Attributes
    ----------
    components : DataFrame
        ``parameter, group, var1, var2, kind, estimate, ci_lower, ci_upper, level, method``:
        every SD (``kind="sd"``), correlation (``"cor"``) and the residual SD (``"sigma"``),
        lme4 names (``.sig01`` …, ``.sigma``).
    icc : IntervalEstimate or None
        Linear models: between-person share of variance at week 0 (with a random slope it
        changes with time: :meth:`icc_at`). Binomial models: latent-scale ICC
        τ²/(τ² + π²/3) (Snijders & Bosker 2012, §17.3). ``None`` for Poisson models.
    median_odds_ratio : IntervalEstimate or None
        Binomial models only (Merlo et al. 2006).
    week : float or None
        Default week W of the time-dependent summaries (regrowth): the last scheduled
        post-baseline week; ``week_note`` says how it was chosen.
    study : Study or None
        The study of a regrowth / side-effect fit (None for a bare MixedResults).
    ci_method, n_boot, seed : as given to :func:`variability`.
    profile, bootstrap : VarianceProfile / VarianceBootstrap or None
        The underlying interval computations.
    notes : tuple of str
    """

    def __init__(
        self,
        ctx: _Context,
        components: pd.DataFrame,
        *,
        ci_method: str,
        n_boot: int,
        seed: int,
        profile: VarianceProfile | None,
        bootstrap: VarianceBootstrap | None,
        notes: Sequence[str],
    ) -> None:
        self._ctx = ctx
        self.components = components
        self.ci_method = ci_method
        self.n_boot = n_boot
        self.seed = seed
        self.profile = profile
        self.bootstrap = bootstrap
        self._notes = list(notes)
        self.week = ctx.week
        self.week_note = ctx.week_note
        self.study = ctx.study
        self.icc = self._icc_week0()
        self.median_odds_ratio = self._median_odds_ratio()
        self._person_cache: dict[tuple[Any, ...], pd.DataFrame] = {}
        self._cond_cov: list[np.ndarray] | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        """Plain-language notes on how the numbers were obtained."""
        return tuple(self._notes)

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
        level = 0.95
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
    def _require_domain(self, what: str) -> _Context:
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

    # ------------------------------------------------------------------ prediction interval
    def prediction_interval(
        self,
        week: float | None = None,
        cocktail: str | Sequence[str] | None = None,
        level: float = 0.95,
        include_residual: bool = False,
    ) -> pd.DataFrame:
        """Range of one new person's response under each cocktail.

        Parameters
        ----------
        week : float, optional
            Regrowth: the week W (default: the last scheduled post-baseline week,
            ``self.week``). Side effects: must be None (no time term).
        cocktail : str or sequence of str, optional
            Cocktail id(s); default every cocktail given.
        level : float, default 0.95
        include_residual : bool, default False
            Regrowth: add the residual variance σ² (range of one *measured* value rather than
            the person's true change).

        Returns
        -------
        DataFrame
            Regrowth: ``cocktail, week, estimate`` (mean change from baseline of a person
            with the average baseline), ``ci_lower, ci_upper`` (CI of that mean), ``sd_fixed``
            (its standard error), ``sd_between`` (between-person SD at W: random intercept,
            slope, their covariance, and other grouping factors such as site),
            ``sd_residual``, ``sd_total``, ``pi_lower, pi_upper, level``.
            Side effects: ``cocktail, probability`` (a typical person, random effect 0),
            ``marginal_probability`` (population average), ``ci_lower, ci_upper``,
            ``sd_fixed, sd_between, sd_total`` (logit scale), ``pi_lower, pi_upper, level``
            (a new person's per-session event probability).

        Raises
        ------
        ModelSpecError
            A bare MixedResults, unknown cocktail, bad week or level, ``include_residual``
            for side effects.

        Notes
        -----
        x̂ᵀβ̂ ± z·√(x̂ᵀV_βx̂ + z(W)ᵀΣz(W) [+ σ²]) (prediction for a new cluster, Skrondal &
        Rabe-Hesketh 2009); side effects on the logit scale, then transformed.
        """
        ctx = self._require_domain("prediction_interval()")
        level = _check_level(level)
        w = self._resolve_week(week)
        if include_residual and ctx.kind == "side_effects":
            raise ModelSpecError(
                "include_residual applies to regrowth (a linear model); a side-effect model "
                "has no residual SD on the probability scale."
            )
        cocktails = self._cocktails(cocktail)
        model = self.model
        X, offset, zs = self._new_person_design(cocktails, w)
        eta = X @ model.params.to_numpy() + offset
        var_fixed = np.einsum("ij,jk,ik->i", X, model.vcov.to_numpy(), X)
        var_between = _between_variance(model, zs, np.asarray(model.theta), model.sigma)
        z = _z(level)
        sd_fixed = np.sqrt(var_fixed)
        sd_between = np.sqrt(var_between)
        if ctx.kind == "regrowth":
            est = eta - ctx.shift
            var_res = np.full(len(cocktails), model.sigma**2 if include_residual else 0.0)
            sd_total = np.sqrt(var_fixed + var_between + var_res)
            return pd.DataFrame(
                {
                    "cocktail": cocktails,
                    "week": w,
                    "estimate": est,
                    "ci_lower": est - z * sd_fixed,
                    "ci_upper": est + z * sd_fixed,
                    "sd_fixed": sd_fixed,
                    "sd_between": sd_between,
                    "sd_residual": np.sqrt(var_res),
                    "sd_total": sd_total,
                    "pi_lower": est - z * sd_total,
                    "pi_upper": est + z * sd_total,
                    "level": level,
                }
            )
        sd_total = np.sqrt(var_fixed + var_between)
        expit = stats.logistic.cdf
        nodes, weights = np.polynomial.hermite_e.hermegauss(40)
        marginal = (expit(eta[:, None] + sd_between[:, None] * nodes[None, :]) @ weights) / (
            math.sqrt(2.0 * math.pi)
        )
        return pd.DataFrame(
            {
                "cocktail": cocktails,
                "probability": expit(eta),
                "marginal_probability": marginal,
                "ci_lower": expit(eta - z * sd_fixed),
                "ci_upper": expit(eta + z * sd_fixed),
                "sd_fixed": sd_fixed,
                "sd_between": sd_between,
                "sd_total": sd_total,
                "pi_lower": expit(eta - z * sd_total),
                "pi_upper": expit(eta + z * sd_total),
                "level": level,
            }
        )

    # ------------------------------------------------------------------ responders
    def _parameter_draws(
        self, n_sim: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Draws of (β, θ, σ) from the estimates' sampling distribution."""
        model = self.model
        beta = model.params.to_numpy()
        theta = np.asarray(model.theta, dtype=float)
        gaussian = model.family == "gaussian"
        boot = self.bootstrap
        if boot is not None:
            ok = np.isfinite(boot.sigma) & np.all(np.isfinite(boot.theta), axis=1)
            ok &= np.all(np.isfinite(boot.beta), axis=1)
            if ok.sum() >= 2:
                return (
                    boot.beta[ok],
                    boot.theta[ok],
                    boot.sigma[ok],
                    f"parametric bootstrap replicates ({int(ok.sum())})",
                )
        B = rng.multivariate_normal(beta, model.vcov.to_numpy(), size=n_sim, method="eigh")
        cov = model.variance_parameter_cov
        lower = model.design.theta_lower
        k = len(theta)
        if cov is not None and cov.shape[0] in (k, k + 1):
            mean = np.append(theta, model.sigma) if cov.shape[0] == k + 1 else theta
            draws = rng.multivariate_normal(mean, cov.to_numpy(), size=n_sim, method="eigh")
            T = np.maximum(draws[:, :k], lower)
            S = np.abs(draws[:, k]) if cov.shape[0] == k + 1 else np.full(n_sim, model.sigma)
            how = "simulation: β ~ N(β̂, V_β), (θ, σ) ~ N(estimate, asymptotic covariance)"
        else:
            T = np.tile(theta, (n_sim, 1))
            S = np.full(n_sim, model.sigma)
            how = "simulation: β ~ N(β̂, V_β); variance parameters held at their estimates"
        if not gaussian:
            S = np.ones(n_sim)
        return B, T, S, how

    @blas_single_threaded
    def responders(
        self,
        threshold: float,
        *,
        week: float | None = None,
        level: float = 0.95,
        n_sim: int = 4000,
    ) -> pd.DataFrame:
        """Expected share of people per cocktail whose true response exceeds a threshold.

        Parameters
        ----------
        threshold : float
            Regrowth: a clinically meaningful change from baseline at week W, in outcome
            units (e.g. 10 hairs/cm²). Side effects: a per-session event probability in
            (0, 1); the share is that of people whose probability exceeds it.
        week : float, optional
            Regrowth only; default ``self.week``.
        level : float, default 0.95
        n_sim : int, default 4000
            Draws of the parameters for the interval (ignored when bootstrap replicates
            are available: they are used instead).

        Returns
        -------
        DataFrame
            ``cocktail, week, threshold, share, ci_lower, ci_upper, mean, sd_between, level,
            uncertainty`` (``mean`` = expected change, or logit of a typical person's
            probability; ``sd_between`` on the same scale).

        Notes
        -----
        share = Φ((μ_c − t)/√v(W)) for the normal between-person distribution of true
        changes N(μ_c, v(W)) implied by the model (side effects: of logits, t = logit of the
        threshold). The interval is the percentile interval of the share over draws of the
        parameters (Gelman & Hill 2007, §7.2), seeded by ``self.seed``.
        """
        ctx = self._require_domain("responders()")
        level = _check_level(level)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
            raise ModelSpecError(f"threshold must be a number, got {threshold!r}.")
        t = float(threshold)
        if ctx.kind == "side_effects":
            if not 0.0 < t < 1.0:
                raise ModelSpecError(
                    f"For side effects the threshold is a per-session event probability "
                    f"strictly between 0 and 1 (e.g. 0.2), got {threshold!r}."
                )
            t_scale = math.log(t / (1.0 - t))
        else:
            t_scale = t
        if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 100:
            raise ModelSpecError(f"n_sim must be an integer ≥ 100, got {n_sim!r}.")
        w = self._resolve_week(week)
        cocktails = self._cocktails(None)
        model = self.model
        X, offset, zs = self._new_person_design(cocktails, w)
        mean = X @ model.params.to_numpy() + offset - ctx.shift
        sd = np.sqrt(_between_variance(model, zs, np.asarray(model.theta), model.sigma))
        share = _share_above(mean, sd, t_scale)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed))
        B, T, S, how = self._parameter_draws(int(n_sim), rng)
        sim_mean = B @ X.T + offset[None, :] - ctx.shift  # (draws, cocktails)
        sim_sd = np.sqrt(_between_variance(model, zs, T, S))
        sim_share = _share_above(sim_mean, sim_sd, t_scale)
        a = (1.0 - level) / 2.0
        lo, hi = np.quantile(sim_share, [a, 1.0 - a], axis=0)
        return pd.DataFrame(
            {
                "cocktail": cocktails,
                "week": w,
                "threshold": t,
                "share": share,
                "ci_lower": lo,
                "ci_upper": hi,
                "mean": mean,
                "sd_between": sd,
                "level": level,
                "uncertainty": how,
            }
        )

    # ------------------------------------------------------------------ person effects
    def _conditional_covariances(self) -> list[np.ndarray]:
        """Per design term, (n_levels, q, q) conditional covariances of the random effects.

        The engine's ``ranef_cov`` blocks (lme4's ``condVar``: LMM from the factorisation at
        θ̂, GLMM from the Laplace approximation at the mode), cut per term. A fit without
        them (built elsewhere) falls back to the conditional SDs on the diagonal.
        """
        if self._cond_cov is not None:
            return self._cond_cov
        model = self.model
        design = model.design
        blocks = model.ranef_cov
        out: list[np.ndarray] = []
        offset: dict[str, int] = {}
        for t in design.terms:
            start = offset.get(t.group, 0)
            offset[t.group] = start + t.q
            if blocks is not None:
                cols = slice(start, start + t.q)
                out.append(np.ascontiguousarray(blocks[t.group][:, cols, cols]))
                continue
            sd = model.ranef_se[t.group][list(t.names)].to_numpy(dtype=float)
            cov = np.zeros((t.n_levels, t.q, t.q))
            idx = np.arange(t.q)
            cov[:, idx, idx] = sd**2
            out.append(cov)
        self._cond_cov = out
        return out

    @property
    def person_effects(self) -> pd.DataFrame:
        """Person-level BLUP table at the default week and threshold (see
        :meth:`person_effects_table`)."""
        return self.person_effects_table()

    def person_effects_table(
        self,
        threshold: float | None = None,
        *,
        week: float | None = None,
        level: float = 0.95,
    ) -> pd.DataFrame:
        """Each person's conditional modes with intervals, predicted response and a flag.

        Parameters
        ----------
        threshold : float, optional
            Regrowth: change from baseline at week W to compare with (default 0: did the
            person improve at all?). Side effects: a per-session event probability; default
            None compares the person's random intercept with 0 (more or less prone than a
            typical person on the same cocktail). Bare models: compared with each mode.
        week : float, optional
            Regrowth: week W of the predicted change (default ``self.week``).
        level : float, default 0.95

        Returns
        -------
        DataFrame
            Regrowth: ``subject_id, cocktail, intercept, intercept_sd, intercept_lower,
            intercept_upper, slope, slope_sd, slope_lower, slope_upper, baseline, change,
            change_sd, change_lower, change_upper, week, threshold, flag`` with flag
            ``"clearly responded"`` (interval above the threshold), ``"clearly did not"``
            (below) or ``"uncertain"``. Side effects: ``subject_id, cocktail, intercept,
            intercept_sd, intercept_lower, intercept_upper, probability, probability_lower,
            probability_upper, threshold, flag`` (``"clearly above"``, ``"clearly below"``,
            ``"uncertain"``). Bare MixedResults: ``group, level, term, mode, cond_sd,
            ci_lower, ci_upper, flag``.

        Notes
        -----
        Mode intervals are mode ± z·(conditional SD) (lme4 ``condVar``). The predicted change
        adds the fixed part's variance to the conditional variance of z(W)ᵀb_i (all of the
        person's grouping factors), see the module docstring.
        """
        level = _check_level(level)
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number))
        ):
            raise ModelSpecError(f"threshold must be a number or None, got {threshold!r}.")
        ctx = self._ctx
        w = self._resolve_week(week)
        key = (threshold, w, level)
        if key not in self._person_cache:
            if ctx.kind == "model":
                table = self._generic_person_table(threshold, level)
            elif ctx.kind == "regrowth":
                table = self._regrowth_person_table(threshold, w, level)
            else:
                table = self._side_effect_person_table(threshold, level)
            self._person_cache[key] = table
        return self._person_cache[key].copy()

    def _generic_person_table(self, threshold: float | None, level: float) -> pd.DataFrame:
        t = 0.0 if threshold is None else float(threshold)
        table = conditional_mode_table(self.model, level)
        lo, hi = table["ci_lower"].to_numpy(), table["ci_upper"].to_numpy()
        return table.assign(flag=_flags(lo, hi, t, "clearly above", "clearly below"))

    def _subject_rows(self) -> tuple[pd.DataFrame, np.ndarray, int]:
        """Last analysed row per person (in the order of the subject term's levels)."""
        ctx = self._ctx
        assert ctx.data is not None and ctx.subject is not None
        model = self.model
        term_index = next(i for i, t in enumerate(model.design.terms) if t.group == ctx.subject)
        term = model.design.terms[term_index]
        data = ctx.data.loc[model.design.row_index]
        last = data.groupby(ctx.subject, sort=False).tail(1)
        labels = pd.Index(last[ctx.subject].astype(str))
        order = labels.get_indexer(pd.Index([str(v) for v in term.levels]))
        return last.iloc[order].reset_index(drop=True), order, term_index

    def _mode_columns(
        self, term_index: int, z: float, prefix: dict[int, str]
    ) -> dict[str, np.ndarray]:
        model = self.model
        term = model.design.terms[term_index]
        modes = model.ranef[term.group][list(term.names)].to_numpy(dtype=float)
        sds = model.ranef_se[term.group][list(term.names)].to_numpy(dtype=float)
        out: dict[str, np.ndarray] = {}
        for j, name in prefix.items():
            if j < term.q:
                m, s = modes[:, j], sds[:, j]
            else:
                m = s = np.full(term.n_levels, np.nan)
            out[name] = m
            out[f"{name}_sd"] = s
            out[f"{name}_lower"] = m - z * s
            out[f"{name}_upper"] = m + z * s
        return out

    def _person_prediction(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Linear predictor with every BLUP, and its variance (fixed + conditional)."""
        model = self.model
        eta = model.predict(rows, include_random=True, scale="link").to_numpy(dtype=float)
        X = model.design.fixed_matrix(rows)
        var = np.einsum("ij,jk,ik->i", X, model.vcov.to_numpy(), X)
        cond = self._conditional_covariances()
        for term, cov in zip(model.design.terms, cond, strict=True):
            codes = term.level_codes(rows)
            Z = np.asarray(term.columns_for(rows), dtype=float)
            seen = codes >= 0
            contrib = np.zeros(len(rows))
            contrib[seen] = np.einsum("ij,ijk,ik->i", Z[seen], cov[codes[seen]], Z[seen])
            var = var + contrib
        return eta, var

    def _regrowth_person_table(
        self, threshold: float | None, week: float | None, level: float
    ) -> pd.DataFrame:
        ctx = self._ctx
        assert ctx.time is not None and week is not None and ctx.subject is not None
        z = _z(level)
        t = 0.0 if threshold is None else float(threshold)
        rows, _, k = self._subject_rows()
        term = self.model.design.terms[k]
        slope_j = term.names.index(ctx.time) if ctx.time in term.names else term.q
        cols = self._mode_columns(k, z, {0: "intercept", slope_j: "slope"})
        new = rows.copy()
        new[ctx.time] = float(week)
        eta, var = self._person_prediction(new)
        baseline = rows["baseline"].to_numpy(dtype=float)
        change = eta - baseline
        sd = np.sqrt(var)
        lo, hi = change - z * sd, change + z * sd
        table = pd.DataFrame(
            {
                ctx.subject: [str(v) for v in term.levels],
                "cocktail": rows[ctx.cocktail_column].astype(object).to_numpy()
                if ctx.cocktail_column in rows.columns
                else None,
                **cols,
                "baseline": baseline,
                "change": change,
                "change_sd": sd,
                "change_lower": lo,
                "change_upper": hi,
                "week": float(week),
                "threshold": t,
                "flag": _flags(lo, hi, t, "clearly responded", "clearly did not"),
            }
        )
        return table

    def _side_effect_person_table(self, threshold: float | None, level: float) -> pd.DataFrame:
        ctx = self._ctx
        assert ctx.subject is not None
        z = _z(level)
        rows, _, k = self._subject_rows()
        term = self.model.design.terms[k]
        cols = self._mode_columns(k, z, {0: "intercept"})
        eta, var = self._person_prediction(rows)
        sd = np.sqrt(var)
        expit = stats.logistic.cdf
        p, p_lo, p_hi = expit(eta), expit(eta - z * sd), expit(eta + z * sd)
        if threshold is None:
            flag = _flags(
                cols["intercept_lower"],
                cols["intercept_upper"],
                0.0,
                "clearly above",
                "clearly below",
            )
            t = math.nan
        else:
            t = float(threshold)
            if not 0.0 < t < 1.0:
                raise ModelSpecError(
                    f"For side effects the threshold is a per-session event probability "
                    f"strictly between 0 and 1 (or None), got {threshold!r}."
                )
            flag = _flags(p_lo, p_hi, t, "clearly above", "clearly below")
        return pd.DataFrame(
            {
                ctx.subject: [str(v) for v in term.levels],
                "cocktail": rows[ctx.cocktail_column].astype(object).to_numpy()
                if ctx.cocktail_column in rows.columns
                else None,
                **cols,
                "probability": p,
                "probability_lower": p_lo,
                "probability_upper": p_hi,
                "threshold": t,
                "flag": flag,
            }
        )

    # ------------------------------------------------------------------ display
    def _headline(self) -> list[tuple[str, str]]:
        lines: list[tuple[str, str]] = []
        model = self.model
        lines.append(("Model", f"{model.family} {model.method}: {model.formula}"))
        lines.append(("Intervals", self._interval_text()))
        if self.icc is not None:
            lines.append((self.icc.name, _interval_line(self.icc)))
        if self.median_odds_ratio is not None:
            lines.append(("Median odds ratio", _interval_line(self.median_odds_ratio)))
        if self.week is not None:
            lines.append(("Week W", self.week_note))
        return lines

    def _interval_text(self) -> str:
        if self.ci_method == "bootstrap":
            return f"parametric bootstrap, {self.n_boot} refits, seed {self.seed}"
        return "profile likelihood (95 %)"

    def summary_text(self) -> str:
        """Plain-text summary: components, ICC / MOR, prediction intervals, notes."""
        out = ["Varied results (between-person variation)"]
        out += [f"{k}: {v}" for k, v in self._headline()]
        out += ["", "Variance components:", _frame_text(self.components)]
        if self._ctx.kind != "model":
            out += [
                "",
                "Prediction interval for a new person:",
                _frame_text(self.prediction_interval()),
            ]
        if self.notes:
            out += ["", "Notes:", *(f"- {n}" for n in self.notes)]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.summary_text()

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = ['<div class="mesostats-variability"><h4>Varied results</h4><table>']
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self._headline()]
        parts.append("</table>")
        parts.append(_frame_html(self.components, "Variance components (SD, correlation)"))
        if self._ctx.kind != "model":
            caption = "Range of a new person's response"
            if self.week is not None:
                caption += f" at week {self.week:g}"
            parts.append(_frame_html(self.prediction_interval(), caption))
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in self.notes) + "</ul>")
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        sds = self.components[self.components["kind"] != "cor"]
        shown = ", ".join(
            f"{r.group}:{r.var1 if isinstance(r.var1, str) else 'sigma'}={r.estimate:.3g}"
            for r in sds.itertuples()
        )
        extra = ""
        if self.icc is not None:
            extra += f", {self.icc.name} {self.icc.estimate:.3g}"
        if self.median_odds_ratio is not None:
            extra += f", MOR {self.median_odds_ratio.estimate:.3g}"
        week = f", week {self.week:g}" if self.week is not None else ""
        return f"<Variability {self._ctx.kind}: SDs {shown}{extra}{week}; CIs {self.ci_method}>"


def _share_above(mean: np.ndarray, sd: np.ndarray, threshold: float) -> np.ndarray:
    """P(N(mean, sd²) > threshold), with a point mass when sd = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = (mean - threshold) / sd
    point = np.where(mean > threshold, 1.0, 0.0)
    return np.where(sd > 0, stats.norm.cdf(zscore), point)


def _flags(lo: np.ndarray, hi: np.ndarray, threshold: float, above: str, below: str) -> list[str]:
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    return [
        above if a > threshold else below if b < threshold else "uncertain"
        for a, b in zip(lo, hi, strict=True)
    ]


def _interval_line(x: IntervalEstimate) -> str:
    text = (
        f"{x.estimate:.3g} ({100 * x.level:g} % CI {x.ci_lower:.3g} to {x.ci_upper:.3g}; "
        f"{x.method})"
    )
    return text + (f" — {x.note}" if x.note else "")


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else f"{v:.4g}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _frame_text(frame: pd.DataFrame) -> str:
    header = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in rec] for rec in frame.itertuples(index=False)]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _frame_html(frame: pd.DataFrame, caption: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in rec) + "</tr>"
        for rec in frame.itertuples(index=False)
    )
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


# --------------------------------------------------------------------------- entry point
def _check_args(ci_method: str, n_boot: int, seed: int, n_jobs: int) -> None:
    if ci_method not in CI_METHODS:
        raise ModelSpecError(
            f"ci_method must be 'profile' (profile likelihood, as lme4's confint) or "
            f"'bootstrap' (parametric bootstrap), got {ci_method!r}."
        )
    for name, value, low in (("n_boot", n_boot, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ModelSpecError(f"{name} must be an integer ≥ {low}, got {value!r}.")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ModelSpecError(
            f"n_jobs must be a positive integer (or -1 for every core), got {n_jobs!r}."
        )


def variability(
    results: RegrowthResults | SideEffectResults | MixedResults,
    *,
    ci_method: str = "profile",
    n_boot: int = 200,
    seed: int = 0,
    n_jobs: int = 1,
) -> Variability:
    """How much results vary between people: SDs with CIs, ICC / MOR, ranges, responders.

    Parameters
    ----------
    results : RegrowthResults, SideEffectResults or MixedResults
        From :func:`mesostats.fit_regrowth`, :func:`mesostats.fit_side_effects`, or any
        :func:`mesostats.fit_lmm` / :func:`mesostats.fit_glmm` fit (then only the generic
        parts: components, icc / median_odds_ratio, person_effects).
    ci_method : {"profile", "bootstrap"}, default "profile"
        Intervals of the variance components: profile likelihood (lme4's
        ``confint(method = "profile")``, on the fit's own criterion) or parametric bootstrap
        percentiles.
    n_boot : int, default 200
        Bootstrap refits (``ci_method="bootstrap"``).
    seed : int, default 0
        Seeds the bootstrap (``SeedSequence(seed).spawn(n_boot)``: same numbers for any
        ``n_jobs``) and the simulation behind :meth:`Variability.responders`.
    n_jobs : int, default 1
        joblib workers for the bootstrap.

    Returns
    -------
    Variability

    Raises
    ------
    ModelSpecError
        Unsupported results object or bad option.

    Notes
    -----
    See the module docstring for every formula and reference. If profiling fails (e.g. a
    fit far from convergence), the intervals fall back to the bootstrap and a note says so.

    Examples
    --------
    >>> import mesostats as ms
    >>> v = ms.variability(ms.fit_regrowth(ms.example_study()))  # doctest: +SKIP
    >>> v.prediction_interval()  # doctest: +SKIP
    """
    _check_args(ci_method, n_boot, seed, n_jobs)
    ctx = _context(results)
    model = ctx.model
    notes: list[str] = []
    prof: VarianceProfile | None = None
    boot: VarianceBootstrap | None = None
    method = ci_method
    if ci_method == "profile":
        try:
            prof = profile_variance_components(model)
            components = prof.confint
            notes.extend(prof.messages)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            notes.append(
                f"Profile-likelihood intervals failed ({exc}); intervals come from a "
                f"parametric bootstrap ({n_boot} refits, seed {seed}) instead."
            )
            method = "bootstrap"
    if method == "bootstrap":
        boot = bootstrap_variance_components(model, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
        components = boot.confint
        if boot.n_failed:
            notes.append(f"{boot.n_failed} of {n_boot} bootstrap refits failed and were left out.")
    if model.family == "gaussian" and model.method == "REML" and method == "profile":
        notes.append(
            "Profile intervals use the REML criterion of the fit; lme4's confint() profiles "
            "the ML deviance instead (slightly narrower)."
        )
    if ctx.kind == "regrowth":
        notes.append(
            "Changes are from baseline for a person with the average baseline "
            f"({ctx.shift:.4g}); the between-person range adds the random intercept and slope "
            "(with their covariance) and any site variation."
        )
    if ctx.kind == "regrowth" and getattr(results, "design", "indicator") == "dose":
        notes.append(
            "Dose design: a new person is taken to receive 1 mL of the cocktail per session "
            "(exposure = concentration), so predictions are per 1 mL session volume."
        )
    components = components[CONFINT_COLUMNS].reset_index(drop=True)
    return Variability(
        ctx,
        components,
        ci_method=method,
        n_boot=n_boot,
        seed=seed,
        profile=prof,
        bootstrap=boot,
        notes=notes,
    )
