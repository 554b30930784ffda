"""The profile driver: for one parameter, walk out from the optimum in both directions,
minimising the other parameters at each step, until the signed root ζ passes the interval
bound (Bates et al. 2015, §5.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from mesostats.mixed.profile.objectives import _Objective
from mesostats.mixed.profile.parameters import _MAX_GRID

if TYPE_CHECKING:
    pass


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
