"""Deviance objectives over the sdcor parameters (LMM, GLMM) and the inner minimiser."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize

from mesostats.mixed.glmm import design_objective
from mesostats.mixed.lmm import ProfiledDeviance
from mesostats.mixed.profile.parameters import (
    _sdcor_bounds,
    _SdcorMap,
    sdcor_from_theta,
)

if TYPE_CHECKING:
    from mesostats.mixed.results import MixedResults


# --------------------------------------------------------------------------- objectives
class _Objective:
    """A deviance over a parameter vector x, with bounds and scales for the optimiser."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


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
