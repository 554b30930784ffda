"""Confidence intervals for variance components: profile likelihood and parametric bootstrap.

Both work on any fitted :class:`~mesostats.mixed.results.MixedResults` (engine level, no
knowledge of the field) and report each between-group SD, each correlation and the residual
SD (LMM) on lme4's ``sdcor`` scale, named as lme4 names them (``.sig01``, ``.sig02``, …,
``.sigma``; θ order: per term the lower triangle of its covariance column by column, the
diagonal giving SDs and the entries below it correlations).

**Profile likelihood** (Bates, Mächler, Bolker & Walker 2015, *J. Stat. Softw.* 67(1),
§5.1; lme4's ``profile`` / ``confint(method = "profile")``). For a parameter φ_k the deviance
is minimised over every other parameter with φ_k held fixed, giving the profile D(φ_k); the
signed root ζ(φ_k) = sign(φ_k − φ̂_k)·√(D(φ_k) − D̂) is stepped outward from the estimate on
a grid (steps of about half a standard error, doubled while ζ moves slowly) until
|ζ| ≥ z_{(1+level)/2}, and the crossing is then located by Brent's root finder on ζ itself
(no spline interpolation error). An SD whose profile at 0 stays within the χ²₁ cutoff gets
the lower bound 0; a correlation whose profile stays within it up to ±1 gets ±1.

* LMM: the criterion is the engine's profiled (RE)ML deviance
  (:class:`mesostats.mixed.lmm.ProfiledDeviance`: log-determinants and penalised residual sum
  of squares at θ, with their analytic θ-gradient) written with σ explicit,
  D(θ, σ) = log|L|² (+ log|R_X|² for REML) + m·log(2πσ²) + r²(θ)/σ², m = n (ML) or n − p
  (REML), as lme4's ``devfun2``. β is profiled out. By default the criterion of the fit is
  profiled (REML for a REML fit); ``criterion="ML"`` reproduces lme4, whose ``profile``
  always refits a REML model by ML (``devfun2`` calls ``refitML``).
* GLMM: the deviance −2·ℓ(β, θ) of the engine's approximate log-likelihood (Laplace or
  adaptive Gauss–Hermite, :func:`mesostats.mixed.glmm.make_objective`), minimised over β and
  the other variance parameters, as lme4 profiles ``glmer`` fits.

The inner minimisations use L-BFGS-B (Byrd et al. 1995) with the engines' exact gradients,
chained through the Jacobian of the map (SDs, correlations, σ) → θ (central differences of
that small closed-form map). Why hand-written: lme4's profiler has no Python counterpart
(statsmodels offers none for mixed models).

**Parametric bootstrap** (Davison & Hinkley 1997, *Bootstrap Methods and their
Application*, §2.2 and §5.3 percentile intervals; lme4's ``bootMer`` / ``confint(method =
"boot", boot.type = "perc")``). New responses are drawn from the fitted model — LMM:
y* = Xβ̂ + Zb* + ε*, b* ~ N(0, σ̂²Λ̂Λ̂ᵀ), ε* ~ N(0, σ̂²); binomial: successes* ~
Binomial(trials, logit⁻¹(Xβ̂ + Zb*)); Poisson: y* ~ Poisson(exp(Xβ̂ + Zb*)) — and the model is
refitted by the same engine (on the design's arrays: a :class:`MixedResults` does not carry
the data frame, and the engines' array entry points avoid re-parsing the formula). Replicate
``i`` uses the i-th child of ``numpy.random.SeedSequence(seed).spawn(n_boot)``, so the
replicates are identical for any ``n_jobs`` (joblib runs them in chunks).
"""

from __future__ import annotations

import dataclasses
import itertools
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
from mesostats.mixed.design import lower_triangle_indices
from mesostats.mixed.glmm import design_objective, fit_arrays, term_arrays
from mesostats.mixed.laplace import CanonicalFamily
from mesostats.mixed.lmm import ProfiledDeviance, optimise_theta

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign
    from mesostats.mixed.results import MixedResults

__all__ = [
    "VarianceBootstrap",
    "VarianceParameter",
    "VarianceProfile",
    "bootstrap_variance_components",
    "profile_variance_components",
    "sdcor_from_theta",
    "theta_from_sdcor",
    "variance_parameters",
]

CONFINT_COLUMNS = [
    "parameter",
    "group",
    "var1",
    "var2",
    "kind",
    "estimate",
    "ci_lower",
    "ci_upper",
    "level",
    "method",
]
_COR_LIMIT = 1.0 - 1e-10
_MAX_GRID = 60


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class VarianceParameter:
    """One variance parameter on lme4's ``sdcor`` scale.

    Attributes
    ----------
    name : str
        lme4's name: ``.sig01``, ``.sig02``, … in θ order, ``.sigma`` for the residual SD.
    group : str
        Grouping factor (``"Residual"`` for σ).
    var1, var2 : str or None
        Random-effect column(s): ``var2`` is set for a correlation.
    kind : {"sd", "cor", "sigma"}
    term, row, col : int
        Design term and position in its covariance matrix (−1 for σ).
    """

    name: str
    group: str
    var1: str | None
    var2: str | None
    kind: str
    term: int
    row: int
    col: int

    @property
    def label(self) -> str:
        """Readable label: ``sd(Intercept | Subject)``, ``cor(Intercept, Days | Subject)``."""
        if self.kind == "sigma":
            return "sd(Residual)"
        if self.kind == "cor":
            return f"cor({self.var1}, {self.var2} | {self.group})"
        return f"sd({self.var1} | {self.group})"


def variance_parameters(design: MixedDesign, family: str) -> tuple[VarianceParameter, ...]:
    """The ``sdcor`` parameters of a design in lme4's order (θ order, then σ for an LMM)."""

    out: list[VarianceParameter] = []
    k = 0
    for t, term in enumerate(design.terms):
        rows, cols = lower_triangle_indices(term.q)
        for r, c in zip(rows, cols, strict=True):
            k += 1
            name = f".sig{k:02d}"
            if r == c:
                out.append(VarianceParameter(name, term.group, term.names[r], None, "sd", t, r, c))
            else:  # var1/var2 as in variance_components: the earlier column first
                out.append(
                    VarianceParameter(
                        name, term.group, term.names[c], term.names[r], "cor", t, int(r), int(c)
                    )
                )
    if family == "gaussian":
        out.append(VarianceParameter(".sigma", "Residual", None, None, "sigma", -1, -1, -1))
    return tuple(out)


def _psd_cholesky(R: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite correlation matrix (zero pivots kept).

    q is the number of random effects per group (1–3 in practice), so a plain loop is fine.
    Returns None when R is not positive semi-definite.
    """
    q = R.shape[0]
    L = np.zeros_like(R)
    for j in range(q):
        d = R[j, j] - float(L[j, :j] @ L[j, :j])
        if d < -1e-12:
            return None
        d = math.sqrt(max(d, 0.0))
        L[j, j] = d
        for i in range(j + 1, q):
            s = R[i, j] - float(L[i, :j] @ L[j, :j])
            if d > 1e-14:
                L[i, j] = s / d
            elif abs(s) > 1e-9:
                return None
    return L


def sdcor_from_theta(
    design: MixedDesign, theta: np.ndarray, sigma: float, family: str
) -> np.ndarray:
    """θ and σ → the ``sdcor`` vector (SDs and correlations in θ order, then σ for an LMM).

    A correlation with an SD of 0 is undefined; it is reported as 0.
    """
    params = variance_parameters(design, family)
    out = np.zeros(len(params))
    blocks = design.lambda_blocks(np.asarray(theta, dtype=float))
    covs = [sigma**2 * lam @ lam.T for lam in blocks]
    for k, par in enumerate(params):
        if par.kind == "sigma":
            out[k] = sigma
            continue
        cov = covs[par.term]
        if par.kind == "sd":
            out[k] = math.sqrt(max(cov[par.row, par.row], 0.0))
        else:
            denom = math.sqrt(max(cov[par.row, par.row], 0.0) * max(cov[par.col, par.col], 0.0))
            out[k] = float(np.clip(cov[par.row, par.col] / denom, -1.0, 1.0)) if denom > 0 else 0.0
    return out


def theta_from_sdcor(
    design: MixedDesign, phi: np.ndarray, family: str
) -> tuple[np.ndarray, float] | None:
    """``sdcor`` vector → (θ, σ): Λ_t = diag(sd)·chol(R)/σ per term (lme4's ``Sv_to_Cv``).

    Returns None when a term's correlation matrix is not positive semi-definite.
    """
    return _SdcorMap(design, family).theta(np.asarray(phi, dtype=float))


# --------------------------------------------------------------------------- objectives
class _Objective:
    """A deviance over a parameter vector x, with bounds and scales for the optimiser."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


def _sdcor_bounds(
    params: Sequence[VarianceParameter], phi: np.ndarray, sigma_ref: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lower, upper, scale = [], [], []
    for par, value in zip(params, phi, strict=True):
        if par.kind == "cor":
            lower.append(-_COR_LIMIT)
            upper.append(_COR_LIMIT)
            scale.append(0.5)
        elif par.kind == "sigma":
            lower.append(1e-4 * max(value, 1e-300))
            upper.append(np.inf)
            scale.append(max(value, 1e-8))
        else:
            lower.append(0.0)
            upper.append(np.inf)
            scale.append(max(abs(value), 0.05 * sigma_ref))
    return np.array(lower), np.array(upper), np.array(scale)


class _SdcorMap:
    """φ (SDs, correlations, σ) → θ, Λ_t = diag(sd)·chol(R)/σ per term, with its Jacobian.

    The structure (which φ entries feed which term) is computed once; the Jacobian is
    analytic: ∂Λ/∂sd_i = e_i e_iᵀC/σ, ∂Λ/∂σ = −Λ/σ and, for a correlation, the derivative of
    the Cholesky factor dC = C·Φ(C⁻¹ dR C⁻ᵀ) (Φ = lower triangle with half the diagonal;
    Murray 2016, "Differentiation of the Cholesky decomposition", arXiv:1602.07527).
    """

    def __init__(self, design: MixedDesign, family: str) -> None:

        self.design = design
        self.family = family
        self.params = variance_parameters(design, family)
        self.gaussian = family == "gaussian"
        self.n_theta = design.n_theta
        self.blocks: list[
            tuple[int, slice, np.ndarray, np.ndarray, list[tuple[int, int, int]]]
        ] = []
        k = 0
        for term, sl in zip(design.terms, design.theta_slices, strict=True):
            rows, cols = lower_triangle_indices(term.q)
            entries = []
            for j in range(term.n_theta):
                par = self.params[k + j]
                entries.append((k + j, par.row, par.col))
            self.blocks.append((term.q, sl, rows, cols, entries))
            k += term.n_theta

    def _factors(self, phi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """Per term (sd, C = chol(R), R); None when some R is not positive semi-definite."""
        out = []
        for q, _sl, _rows, _cols, entries in self.blocks:
            sd = np.zeros(q)
            R = np.eye(q)
            for idx, r, c in entries:
                if r == c:
                    sd[r] = phi[idx]
                else:
                    R[r, c] = R[c, r] = phi[idx]
            C = _psd_cholesky(R)
            if C is None:
                return None
            out.append((sd, C, R))
        return out

    def theta(self, phi: np.ndarray) -> tuple[np.ndarray, float] | None:
        """θ and σ for φ (None when a correlation matrix is not positive semi-definite)."""
        sigma = float(phi[-1]) if self.gaussian else 1.0
        factors = self._factors(phi)
        if factors is None:
            return None
        theta = np.zeros(self.n_theta)
        for (_q, sl, rows, cols, _e), (sd, C, _R) in zip(self.blocks, factors, strict=True):
            theta[sl] = ((sd[:, None] * C) / sigma)[rows, cols]
        return theta, sigma

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        """∂θ/∂φ, shape (n_theta, len(φ))."""
        sigma = float(phi[-1]) if self.gaussian else 1.0
        J = np.zeros((self.n_theta, len(phi)))
        factors = self._factors(phi)
        if factors is None:
            return J
        for (q, sl, rows, cols, entries), (sd, C, _R) in zip(self.blocks, factors, strict=True):
            lam = (sd[:, None] * C) / sigma
            if self.gaussian:
                J[sl, -1] = -lam[rows, cols] / sigma
            try:
                Cinv = np.linalg.inv(C) if q > 1 else None
            except np.linalg.LinAlgError:
                Cinv = None
            for idx, r, c in entries:
                if r == c:
                    d = np.zeros((q, q))
                    d[r] = C[r] / sigma
                    J[sl, idx] = d[rows, cols]
                    continue
                if Cinv is None or not np.all(np.isfinite(Cinv)):
                    continue
                dR = np.zeros((q, q))
                dR[r, c] = dR[c, r] = 1.0
                inner = Cinv @ dR @ Cinv.T
                phi_l = np.tril(inner)
                phi_l[np.diag_indices(q)] *= 0.5
                dC = C @ phi_l
                J[sl, idx] = ((sd[:, None] * dC) / sigma)[rows, cols]
        return J


class _LmmSdcorObjective(_Objective):
    """(RE)ML deviance of an LMM in (SDs, correlations, σ), β profiled (lme4's devfun2)."""

    def __init__(self, results: MixedResults, reml: bool) -> None:

        self.problem = ProfiledDeviance(results.design, reml=reml)
        self.map = _SdcorMap(results.design, "gaussian")
        self.m = float(self.problem.dof)
        self.names = tuple(p.name for p in self.map.params)
        phi = sdcor_from_theta(results.design, results.theta, results.sigma, "gaussian")
        self.lower, self.upper, self.scale = _sdcor_bounds(self.map.params, phi, results.sigma)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        mapped = self.map.theta(x)
        if mapped is None:
            return math.inf, np.zeros_like(x)
        theta, sigma = mapped
        try:
            st = self.problem.state(theta)
        except (np.linalg.LinAlgError, FloatingPointError):  # θ far outside the data's range
            return math.inf, np.zeros_like(x)
        d_logdet, d_r2, _ = self.problem.deviance_parts_gradient(st)
        s2 = sigma * sigma
        logdet = st.logdet_L + (st.logdet_RX if self.problem.reml else 0.0)
        dev = logdet + self.m * math.log(2.0 * math.pi * s2) + st.r2 / s2
        grad_theta = d_logdet + d_r2 / s2
        grad = self.map.jacobian(x).T @ grad_theta
        grad[-1] += 2.0 * self.m / sigma - 2.0 * st.r2 / (s2 * sigma)
        return dev, grad


class _LmmThetaObjective(_Objective):
    """Profiled (RE)ML deviance of an LMM in θ (σ and β profiled out)."""

    def __init__(self, results: MixedResults, reml: bool) -> None:

        design = results.design
        self.problem = ProfiledDeviance(design, reml=reml)
        self.names = tuple(design.theta_names)
        diag = design.theta_is_diagonal
        self.lower = np.where(diag, 0.0, -np.inf)
        self.upper = np.full(design.n_theta, np.inf)
        self.scale = np.maximum(np.abs(np.asarray(results.theta)), 0.05)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            return self.problem.value_and_gradient(x)
        except (np.linalg.LinAlgError, FloatingPointError):
            return math.inf, np.zeros_like(x)


def _nagq(method: str) -> int:
    if method.startswith("AGQ(") and method.endswith(")"):
        return int(method[4:-1])
    return 1


def glmm_objective(results: MixedResults) -> tuple[Any, np.ndarray]:
    """The engine's approximate log-likelihood over (β, θ_engine) for a fitted GLMM's design.

    Returns the objective and ``perm`` with θ_engine = θ[perm] (the engine merges terms that
    share a grouping factor); see :func:`mesostats.mixed.glmm.design_objective`.
    """

    objective, perm = design_objective(results.design, results.family, _nagq(results.method))
    return objective, np.asarray(perm, dtype=np.intp)


class _GlmmSdcorObjective(_Objective):
    """GLMM deviance −2ℓ over (SDs, correlations, β)."""

    def __init__(self, results: MixedResults) -> None:
        design = results.design
        self.objective, self.perm = glmm_objective(results)
        self.map = _SdcorMap(design, results.family)
        self.k = len(self.map.params)
        self.names = tuple(p.name for p in self.map.params) + tuple(design.fixed_names)
        phi = sdcor_from_theta(design, results.theta, 1.0, results.family)
        lo, up, sc = _sdcor_bounds(self.map.params, phi, 1.0)
        se = np.sqrt(np.clip(np.diag(np.asarray(results.vcov)), 0.0, None))
        se = np.where(np.isfinite(se) & (se > 0), se, 1.0)
        self.lower = np.concatenate([lo, np.full(design.p, -np.inf)])
        self.upper = np.concatenate([up, np.full(design.p, np.inf)])
        self.scale = np.concatenate([sc, se])

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        phi, beta = x[: self.k], x[self.k :]
        mapped = self.map.theta(phi)
        if mapped is None:
            return math.inf, np.zeros_like(x)
        theta = mapped[0]
        ll, g = self.objective(np.concatenate([beta, theta[self.perm]]), gradient=True)
        if g is None or not np.isfinite(ll):
            return math.inf, np.zeros_like(x)
        nb = len(beta)
        g_theta = np.empty(len(theta))
        g_theta[self.perm] = g[nb:]
        grad = np.concatenate([self.map.jacobian(phi).T @ g_theta, g[:nb]])
        return -2.0 * float(ll), -2.0 * grad


# --------------------------------------------------------------------------- minimisation
def _minimise(
    obj: _Objective,
    x0: np.ndarray,
    fixed: int | None = None,
    value: float | None = None,
) -> tuple[np.ndarray, float]:
    """Minimise ``obj`` over x (one coordinate optionally held fixed): scaled L-BFGS-B."""
    x0 = np.clip(np.asarray(x0, dtype=float).copy(), obj.lower, obj.upper)
    if fixed is not None:
        x0[fixed] = float(value) if value is not None else x0[fixed]
    free = np.ones(len(x0), dtype=bool)
    if fixed is not None:
        free[fixed] = False
    if not free.any():
        return x0, obj(x0)[0]
    s = obj.scale[free]
    base = x0[free].copy()
    # the start is evaluated below and again by L-BFGS-B, and a restart begins at the last
    # point of the previous run: remember the latest evaluations (same numbers, fewer calls)
    recent: dict[bytes, tuple[float, np.ndarray]] = {}

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        key = np.asarray(z, dtype=float).tobytes()
        if key in recent:
            f, g = recent[key]
            return f, g.copy()
        x = x0.copy()
        x[free] = base + s * z
        f, g = obj(x)
        out = (1e300, np.zeros_like(z)) if not math.isfinite(f) else (f, g[free] * s)
        if len(recent) >= 4:
            recent.pop(next(iter(recent)))
        recent[key] = (out[0], out[1].copy())
        return out

    lo = (obj.lower[free] - base) / s
    up = (obj.upper[free] - base) / s
    bounds = [
        (a if np.isfinite(a) else None, b if np.isfinite(b) else None)
        for a, b in zip(lo, up, strict=True)
    ]
    best_z = np.zeros(int(free.sum()))
    best_f = fun(best_z)[0]
    for _ in range(2):  # restart once from the optimum if it still improved
        res = optimize.minimize(
            fun,
            best_z,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-7, "maxcor": 30},
        )
        f = float(res.fun)
        improved = best_f - f
        if f <= best_f:
            best_z, best_f = np.asarray(res.x, dtype=float), f
        if improved < 1e-10:
            break
    x = x0.copy()
    inside = base + s * best_z
    x[free] = np.clip(inside, obj.lower[free], obj.upper[free])
    if best_f < 1e300 and np.array_equal(x[free], inside):
        return x, best_f  # the value at exactly this x, computed in fun
    return x, float(obj(x)[0])


# --------------------------------------------------------------------------- profile driver
@dataclass
class _ParameterProfile:
    points: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (v, dev, x)
    bounds: list[float] = field(default_factory=lambda: [math.nan, math.nan])


class _Profiler:
    """Profiles one coordinate of an objective around its minimum (see module docstring)."""

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
    Bates et al. (2015), *J. Stat. Softw.* 67(1), §5.1 (see the module docstring): the
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


# --------------------------------------------------------------------------- bootstrap
@dataclass(frozen=True)
class VarianceBootstrap:
    """Parametric-bootstrap replicates of a mixed model and percentile intervals.

    Attributes
    ----------
    confint : DataFrame
        Same layout as :attr:`VarianceProfile.confint` (percentile intervals; ``estimate`` is
        the fitted value).
    replicates : DataFrame
        One row per replicate: every ``sdcor`` parameter (lme4 names), ``converged``.
    theta, sigma, beta : arrays
        Replicate θ (n_boot, n_theta), σ (n_boot,), β (n_boot, p); NaN rows for failed refits.
    seed, n_boot, n_failed : int
    """

    confint: pd.DataFrame
    replicates: pd.DataFrame
    theta: np.ndarray
    sigma: np.ndarray
    beta: np.ndarray
    seed: int
    n_boot: int
    n_failed: int

    def __repr__(self) -> str:
        return f"<VarianceBootstrap n_boot={self.n_boot} seed={self.seed} failed={self.n_failed}>"


@dataclass(frozen=True)
class _BootstrapModel:
    """Everything a worker needs to simulate from and refit a model (picklable)."""

    design: MixedDesign
    family: str
    reml: bool
    nagq: int
    beta: np.ndarray
    theta: np.ndarray
    sigma: float


def _simulate_response(model: _BootstrapModel, rng: np.random.Generator) -> np.ndarray:
    """One response vector drawn from the fitted model (see the module docstring)."""
    design = model.design
    eta = design.X @ model.beta + design.offset
    scale = model.sigma if model.family == "gaussian" else 1.0
    for term, lam in zip(design.terms, design.lambda_blocks(model.theta), strict=True):
        u = rng.standard_normal((term.n_levels, term.q))
        b = scale * u @ lam.T
        eta = eta + np.einsum("ij,ij->i", term.Z, b[term.codes])
    if model.family == "gaussian":
        return np.asarray(eta + model.sigma * rng.standard_normal(design.n))
    if model.family == "binomial":
        trials = np.asarray(np.rint(design.prior_weights), dtype=np.int64)
        p = 1.0 / (1.0 + np.exp(-eta))
        successes = rng.binomial(trials, p)
        return np.where(trials > 0, successes / np.maximum(trials, 1), 0.0)
    return np.asarray(rng.poisson(np.exp(eta)), dtype=float)


def _refit(model: _BootstrapModel, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """Refit the model to a new response with the engine; returns θ, σ, β, converged."""
    design = dataclasses.replace(model.design, y=y)
    if model.family == "gaussian":
        problem = ProfiledDeviance(design, reml=model.reml)
        opt = optimise_theta(problem, model.theta.copy())
        st = problem.state(opt.theta)
        sigma = math.sqrt(st.r2 / problem.dof)
        beta = problem.beta_ols + st.delta
        return np.asarray(opt.theta, dtype=float), sigma, np.asarray(beta), bool(opt.converged)

    terms = term_arrays(design)
    core = fit_arrays(
        CanonicalFamily(model.family),
        design.y,
        design.prior_weights,
        design.offset,
        design.X,
        terms,
        model.nagq,
    )
    return (
        np.asarray(core.theta, dtype=float),
        1.0,
        np.asarray(core.beta, dtype=float),
        bool(core.optimum.converged),
    )


@blas_single_threaded
def _bootstrap_chunk(
    model: _BootstrapModel, seeds: Sequence[np.random.SeedSequence]
) -> list[tuple[np.ndarray, float, np.ndarray, bool]]:
    out = []
    nan_theta = np.full(model.design.n_theta, np.nan)
    nan_beta = np.full(model.design.p, np.nan)
    for ss in seeds:
        rng = np.random.default_rng(ss)
        y = _simulate_response(model, rng)
        try:
            out.append(_refit(model, y))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ModelSpecError):
            out.append((nan_theta, math.nan, nan_beta, False))
    return out


def _check_bootstrap_args(n_boot: int, seed: int, n_jobs: int) -> None:
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 2:
        raise ModelSpecError(
            f"n_boot must be an integer ≥ 2 (e.g. 200 or more for 95 % intervals), got {n_boot!r}."
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ModelSpecError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ModelSpecError(
            f"n_jobs must be a positive integer (or -1 for every core), got {n_jobs!r}."
        )


def bootstrap_variance_components(
    results: MixedResults,
    *,
    n_boot: int = 200,
    seed: int = 0,
    n_jobs: int = 1,
    level: float = 0.95,
) -> VarianceBootstrap:
    """Parametric-bootstrap percentile intervals for the SDs, correlations and σ.

    Parameters
    ----------
    results : MixedResults
        A fit from :func:`mesostats.fit_lmm` or :func:`mesostats.fit_glmm`.
    n_boot : int, default 200
        Number of simulated data sets (each refitted).
    seed : int, default 0
        Replicate ``i`` uses child ``i`` of ``numpy.random.SeedSequence(seed).spawn(n_boot)``:
        the same seed gives the same replicates for any ``n_jobs``.
    n_jobs : int, default 1
        joblib workers (``-1`` = every core).
    level : float, default 0.95

    Returns
    -------
    VarianceBootstrap
        ``.confint`` (percentile intervals), ``.replicates`` (one row per refit) and the raw
        replicate θ, σ and β for derived quantities.

    Raises
    ------
    ModelSpecError
        Bad ``n_boot``, ``seed``, ``n_jobs`` or ``level``.

    Notes
    -----
    Davison & Hinkley (1997), §2.2, §5.3; lme4's ``bootMer`` with ``type = "parametric"``
    and ``use.u = FALSE`` (new random effects are drawn for every replicate). Refits that
    fail are kept as NaN and counted in ``n_failed``; percentiles use the others.
    """
    _check_bootstrap_args(n_boot, seed, n_jobs)
    level = _check_level(level)
    from joblib import Parallel, delayed  # heavy (loky, cloudpickle): only when bootstrapping

    design = results.design
    model = _BootstrapModel(
        design=design,
        family=results.family,
        reml=results.method == "REML",
        nagq=_nagq(results.method),
        beta=np.asarray(results.params.values, dtype=float),
        theta=np.asarray(results.theta, dtype=float),
        sigma=float(results.sigma),
    )
    children = np.random.SeedSequence(int(seed)).spawn(int(n_boot))
    n_chunks = 1 if n_jobs == 1 else min(int(n_boot), 4 * (abs(int(n_jobs)) if n_jobs > 0 else 8))
    bounds = np.linspace(0, n_boot, n_chunks + 1).astype(int)
    chunks = [children[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    if n_jobs == 1:
        parts = [_bootstrap_chunk(model, c) for c in chunks]
    else:
        parts = Parallel(n_jobs=int(n_jobs))(delayed(_bootstrap_chunk)(model, c) for c in chunks)
    flat = [r for part in parts for r in part]
    theta = np.array([r[0] for r in flat])
    sigma = np.array([r[1] for r in flat])
    beta = np.array([r[2] for r in flat])
    converged = np.array([r[3] for r in flat], dtype=bool)
    params = variance_parameters(design, results.family)
    names = [p.name for p in params]
    phi = np.full((n_boot, len(params)), np.nan)
    ok = np.isfinite(sigma) & np.all(np.isfinite(theta), axis=1)
    for i in np.flatnonzero(ok):
        phi[i] = sdcor_from_theta(design, theta[i], float(sigma[i]), results.family)
    replicates = pd.DataFrame(phi, columns=names)
    replicates["converged"] = converged
    alpha = (1.0 - level) / 2.0
    est = sdcor_from_theta(design, results.theta, results.sigma, results.family)
    rows = []
    n_ok = int(ok.sum())
    method = f"parametric bootstrap (percentile, {n_ok} of {n_boot} refits)"
    for j, p in enumerate(params):
        col = phi[ok, j]
        lo, hi = np.quantile(col, [alpha, 1.0 - alpha]) if n_ok else (math.nan, math.nan)
        rows.append(
            {
                "parameter": p.name,
                "group": p.group,
                "var1": p.var1,
                "var2": p.var2,
                "kind": p.kind,
                "estimate": float(est[j]),
                "ci_lower": float(lo),
                "ci_upper": float(hi),
                "level": level,
                "method": method,
            }
        )
    table = pd.DataFrame(rows, columns=CONFINT_COLUMNS)
    undefined = _undefined_correlations(table.copy(), params, est)
    table["estimate"] = undefined["estimate"]
    return VarianceBootstrap(
        confint=table,
        replicates=replicates,
        theta=theta,
        sigma=sigma,
        beta=beta,
        seed=int(seed),
        n_boot=int(n_boot),
        n_failed=int(n_boot - n_ok),
    )
