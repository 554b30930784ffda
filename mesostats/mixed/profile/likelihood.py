"""Profile-likelihood intervals for variance components (see :mod:`mesostats.mixed.profile`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from mesostats._parallel import blas_single_threaded
from mesostats.exceptions import ConvergenceWarning, ModelSpecError
from mesostats.mixed.lmm import ProfiledDeviance, optimise_theta
from mesostats.mixed.profile.objectives import (
    _GlmmSdcorObjective,
    _LmmSdcorObjective,
    _LmmThetaObjective,
    _minimise,
    _Objective,
)
from mesostats.mixed.profile.parameters import (
    _MAX_GRID,
    CONFINT_COLUMNS,
    VarianceParameter,
    sdcor_from_theta,
    variance_parameters,
)

if TYPE_CHECKING:
    from mesostats.mixed.results import MixedResults


# --------------------------------------------------------------------------- profile driver
@dataclass
class _ParameterProfile:
    points: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (v, dev, x)
    bounds: list[float] = field(default_factory=lambda: [math.nan, math.nan])


class _Profiler:
    """Profiles one coordinate of an objective around its minimum (see mixed.profile)."""

    def __init__(self, obj: _Objective, x_hat: np.ndarray, d_min: float, z_crit: float):
        self.obj = obj
        self.x_hat = x_hat
        self.d_min = d_min
        self.z_crit = z_crit
        self.lowest = (d_min, x_hat)

    def _deviance_at(self, k: int, v: float, prof: _ParameterProfile) -> float:
        if prof.points:
            nearest = min(prof.points, key=lambda p: abs(p[0] - v))
            start = nearest[2]
        else:
            start = self.x_hat
        x, d = _minimise(self.obj, start, k, v)
        prof.points.append((v, d, x))
        if d < self.lowest[0]:
            self.lowest = (d, x)
        return d

    def _zeta(self, k: int, v: float, prof: _ParameterProfile) -> float:
        d = self._deviance_at(k, v, prof)
        est = self.x_hat[k]
        return math.copysign(math.sqrt(max(d - self.d_min, 0.0)), v - est) if v != est else 0.0

    def profile(self, k: int) -> _ParameterProfile:
        prof = _ParameterProfile()
        est = float(self.x_hat[k])
        lo, up = float(self.obj.lower[k]), float(self.obj.upper[k])
        prof.points.append((est, self.d_min, self.x_hat.copy()))
        # standard-error guess from the curvature of the profile next to the estimate
        h = 1e-2 * float(self.obj.scale[k])
        probe = est + h if est + h <= up else est - h
        z = abs(self._zeta(k, probe, prof))
        se = abs(probe - est) / z if z > 1e-8 else float(self.obj.scale[k])
        for i, direction in enumerate((-1.0, 1.0)):
            limit = lo if direction < 0 else up
            prof.bounds[i] = self._walk(k, est, direction, limit, se, prof)
        return prof

    def _walk(
        self, k: int, est: float, direction: float, limit: float, se: float, prof: _ParameterProfile
    ) -> float:
        target = direction * self.z_crit
        if est == limit:
            return limit
        step = 0.8 * se
        prev_v, prev_z = est, 0.0
        for _ in range(_MAX_GRID):
            v = prev_v + direction * step
            at_limit = (v - limit) * direction >= 0
            if at_limit:
                v = limit
            z = self._zeta(k, v, prof)
            if abs(z) >= self.z_crit:
                return self._crossing(k, prev_v, v, target, prof)
            if at_limit:
                return limit
            if abs(z - prev_z) < 0.25:
                step *= 2.0
            prev_v, prev_z = v, z
        return math.nan

    def _crossing(
        self, k: int, a: float, b: float, target: float, prof: _ParameterProfile
    ) -> float:
        def f(v: float) -> float:
            return self._zeta(k, v, prof) - target

        fa = f(a) if a != self.x_hat[k] else -target
        fb = f(b)
        if fa * fb > 0:  # non-monotone profile: fall back to the grid point
            return b
        tol = 1e-6 * max(abs(a), abs(b), float(self.obj.scale[k]))
        return float(optimize.brentq(f, a, b, xtol=tol, rtol=1e-10, maxiter=100))


# --------------------------------------------------------------------------- public: profile
@dataclass(frozen=True)
class VarianceProfile:
    """Profile-likelihood intervals of variance parameters and the profiles themselves.

    Attributes
    ----------
    confint : DataFrame
        ``parameter, group, var1, var2, kind, estimate, ci_lower, ci_upper, level, method``,
        one row per profiled parameter (``estimate`` at the optimum of the profiled criterion).
    curve : DataFrame
        ``parameter, value, zeta, deviance``: every point evaluated (sorted by value), for
        plots of ζ against the parameter.
    criterion : str
        ``"REML"``, ``"ML"`` or ``"Laplace"``/``"AGQ(k)"`` — the deviance that was profiled.
    deviance : float
        The minimum of that deviance.
    messages : tuple of str
        Notes (e.g. a lower deviance found while profiling).
    """

    confint: pd.DataFrame
    curve: pd.DataFrame
    criterion: str
    deviance: float
    messages: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"<VarianceProfile {self.criterion}: {len(self.confint)} parameter(s), "
            f"level {self.confint['level'].iloc[0] if len(self.confint) else 0.95}>"
        )


def _select(names: Sequence[str], which: Sequence[str] | None, labels: dict[str, str]) -> list[int]:
    if which is None:
        return list(range(len(names)))
    out = []
    for w in which:
        if w in names:
            out.append(list(names).index(w))
        elif w in labels:
            out.append(list(names).index(labels[w]))
        else:
            raise ModelSpecError(
                f"Unknown variance parameter {w!r}; this model has "
                f"{', '.join(names)} (or by label: {', '.join(labels)})."
            )
    return out


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.0 < float(level) < 1.0):
        raise ModelSpecError(f"level must be a number between 0 and 1 (e.g. 0.95), got {level!r}.")
    return float(level)


@blas_single_threaded
def profile_variance_components(
    results: MixedResults,
    *,
    which: Sequence[str] | None = None,
    level: float = 0.95,
    criterion: str | None = None,
    scale: str = "sdcor",
) -> VarianceProfile:
    """Profile-likelihood confidence intervals for the SDs, correlations and σ of a mixed model.

    Parameters
    ----------
    results : MixedResults
        A fit from :func:`mesostats.fit_lmm` or :func:`mesostats.fit_glmm`.
    which : sequence of str, optional
        Parameters to profile, by lme4 name (``".sig01"``, ``".sigma"``) or label
        (``"sd(Days | Subject)"``); default all.
    level : float, default 0.95
        Confidence level.
    criterion : {"REML", "ML"}, optional
        LMM only: the deviance to profile. Default: the fit's own criterion. lme4's
        ``confint(fit, method = "profile")`` profiles the ML deviance even for a REML fit;
        pass ``criterion="ML"`` to reproduce it.
    scale : {"sdcor", "theta"}
        ``"sdcor"`` (default): SDs, correlations and σ as lme4. ``"theta"`` (LMM): the relative
        covariance parameters θ (σ profiled out), named by ``design.theta_names``.

    Returns
    -------
    VarianceProfile
        ``.confint`` (one row per parameter) and ``.curve`` (the profile ζ).

    Raises
    ------
    ModelSpecError
        Unknown parameter name, bad ``level``/``criterion``/``scale``.

    Warns
    -----
    ConvergenceWarning
        Profiling found a deviance more than ``PROFILE_GAIN_TOL`` (1e-4) below the optimum
        (the fit had not converged); says both deviances and where.

    Notes
    -----
    Bates et al. (2015), *J. Stat. Softw.* 67(1), §5.1 (see :mod:`mesostats.mixed.profile`): the
    interval is where the signed square root of the profiled deviance difference crosses
    ±z_{(1+level)/2}; an SD whose deviance at 0 is within the χ²₁ cutoff has lower bound 0.

    Examples
    --------
    >>> prof = profile_variance_components(fit, criterion="ML")  # doctest: +SKIP
    >>> prof.confint[["parameter", "ci_lower", "ci_upper"]]  # doctest: +SKIP
    """
    level = _check_level(level)
    if scale not in ("sdcor", "theta"):
        raise ModelSpecError(f"scale must be 'sdcor' or 'theta', got {scale!r}.")
    gaussian = results.family == "gaussian"
    if criterion is not None and criterion not in ("REML", "ML"):
        raise ModelSpecError(f"criterion must be 'REML' or 'ML' (LMM only), got {criterion!r}.")
    if criterion is not None and not gaussian:
        raise ModelSpecError(
            f"criterion={criterion!r} applies to linear mixed models only; a "
            f"{results.family} GLMM is profiled on its {results.method} deviance."
        )
    if scale == "theta" and not gaussian:
        raise ModelSpecError("scale='theta' is available for linear mixed models only.")
    design = results.design
    messages: list[str] = []
    params = variance_parameters(design, results.family)
    if gaussian:
        crit = criterion or ("REML" if results.method == "REML" else "ML")
        reml = crit == "REML"
        obj: _Objective
        if scale == "theta":
            obj = _LmmThetaObjective(results, reml)
            x0 = np.asarray(results.theta, dtype=float).copy()
        else:
            obj = _LmmSdcorObjective(results, reml)
            x0 = sdcor_from_theta(design, results.theta, results.sigma, "gaussian")
        if (crit == "REML") != (results.method == "REML"):
            x0 = _refit_theta_start(results, reml, scale)
    else:
        crit = results.method
        obj = _GlmmSdcorObjective(results)
        x0 = np.concatenate(
            [sdcor_from_theta(design, results.theta, 1.0, results.family), results.params.values]
        )
    x_hat, d_min = _minimise(obj, x0)
    labels: dict[str, str]
    if scale == "theta":
        labels = {}
        n_profiled = design.n_theta
    else:
        labels = {p.label: p.name for p in params}
        n_profiled = len(params)
    idx = _select(obj.names[:n_profiled], which, labels)
    z_crit = float(stats.norm.ppf(0.5 + level / 2.0))
    profiler = _Profiler(obj, x_hat, d_min, z_crit)
    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    method = f"profile ({crit})"
    for k in idx:
        prof = profiler.profile(k)
        if scale == "theta":
            meta = {
                "parameter": obj.names[k],
                "group": design.theta_names[k].split("[")[0],
                "var1": None,
                "var2": None,
                "kind": "theta",
            }
        else:
            p = params[k]
            meta = {
                "parameter": p.name,
                "group": p.group,
                "var1": p.var1,
                "var2": p.var2,
                "kind": p.kind,
            }
        rows.append(
            {
                **meta,
                "estimate": float(x_hat[k]),
                "ci_lower": prof.bounds[0],
                "ci_upper": prof.bounds[1],
                "level": level,
                "method": method,
            }
        )
        for v, d, _ in prof.points:
            zeta = math.copysign(math.sqrt(max(d - d_min, 0.0)), v - x_hat[k])
            curve.append({"parameter": meta["parameter"], "value": v, "zeta": zeta, "deviance": d})
    messages += _lower_deviance_messages(obj.names, x_hat, d_min, *profiler.lowest)
    for msg in messages:
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    confint = _undefined_correlations(pd.DataFrame(rows, columns=CONFINT_COLUMNS), params, x_hat)
    curve_df = (
        pd.DataFrame(curve, columns=["parameter", "value", "zeta", "deviance"])
        .drop_duplicates(subset=["parameter", "value"])
        .sort_values(["parameter", "value"], kind="stable")
        .reset_index(drop=True)
    )
    return VarianceProfile(confint, curve_df, crit, d_min, tuple(messages))


#: Deviance gain (−2 log-likelihood units) beyond which a lower point found while profiling
#: means the optimum was not reached. The profile's inner L-BFGS-B minimisations stop at a
#: relative change of 1e-12 per step but only reach the minimum to ~1e-6 deviance units
#: (flat directions, bounds), so smaller gains are optimiser noise. A gain g moves the signed
#: root ζ at an interval end (|ζ| ≈ 1.96) by about g / (2·1.96): for g ≤ 1e-4 that is
#: < 3e-5, far below the 3 significant digits the intervals are reported with.
PROFILE_GAIN_TOL = 1e-4


def _lower_deviance_messages(
    names: Sequence[str], x_hat: np.ndarray, d_min: float, d_low: float, x_low: np.ndarray
) -> list[str]:
    """A message when profiling found a deviance more than PROFILE_GAIN_TOL below the optimum."""
    gain = d_min - d_low
    if not gain > PROFILE_GAIN_TOL:
        return []
    moved = np.flatnonzero(~np.isclose(x_low, x_hat, rtol=1e-6, atol=1e-9))
    where = ", ".join(f"{names[i]} {x_hat[i]:.6g} → {x_low[i]:.6g}" for i in moved[:6])
    return [
        f"Profiling found a deviance of {d_low:.8g}, {gain:.3g} below the optimum used "
        f"({d_min:.8g}; tolerance {PROFILE_GAIN_TOL:g}), at {where or 'nearly the same point'}: "
        "the fit had not fully converged and the intervals are approximate. Refit (e.g. from "
        "these values, or with a simpler random-effect structure) and check the convergence "
        "messages."
    ]


def _undefined_correlations(
    confint: pd.DataFrame, params: Sequence[VarianceParameter], phi: np.ndarray
) -> pd.DataFrame:
    """A correlation whose SDs include a 0 is undefined: estimate NaN, interval [−1, 1]."""
    sd_of = {(p.term, p.row): phi[k] for k, p in enumerate(params) if p.kind == "sd"}
    by_name = {p.name: p for p in params}
    for i, name in enumerate(confint["parameter"]):
        p = by_name.get(str(name))
        if p is None or p.kind != "cor":
            continue
        if min(sd_of[(p.term, p.row)], sd_of[(p.term, p.col)]) <= 0.0:
            confint.loc[i, ["estimate", "ci_lower", "ci_upper"]] = [math.nan, -1.0, 1.0]
    return confint


def _refit_theta_start(results: MixedResults, reml: bool, scale: str) -> np.ndarray:
    """Optimum of the other LMM criterion (REML fit profiled by ML, or vice versa)."""

    problem = ProfiledDeviance(results.design, reml=reml)
    opt = optimise_theta(problem, np.asarray(results.theta, dtype=float))
    if scale == "theta":
        return np.asarray(opt.theta, dtype=float)
    st = problem.state(opt.theta)
    sigma = math.sqrt(st.r2 / problem.dof)
    return sdcor_from_theta(results.design, opt.theta, sigma, "gaussian")
