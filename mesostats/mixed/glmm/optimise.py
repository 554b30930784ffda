"""Maximising the approximate log-likelihood: preconditioned L-BFGS-B, Newton polish.

See :func:`maximise` and :mod:`mesostats.mixed.glmm` for the method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from mesostats.mixed.boundary import SINGULAR_TOL
from mesostats.mixed.finite_diff import hessian_from_gradient
from mesostats.mixed.glmm.objective import ApproximateLoglik
from mesostats.mixed.laplace import (
    FloatArray,
)

__all__ = ["Optimum", "maximise"]


# --------------------------------------------------------------------------- optimiser
@dataclass
class Optimum:
    """Where the approximate log-likelihood was maximised, and how well."""

    x: FloatArray
    loglik: float
    gradient: FloatArray
    hessian: FloatArray  # of the log-likelihood over the free coordinates (0 elsewhere)
    free: np.ndarray  # bool: coordinates not held at a bound
    converged: bool
    newton_decrement: float
    n_evaluations: int
    n_quasi_newton: int
    seconds: float
    messages: list[str] = field(default_factory=list)


class _CachedObjective:
    """Evaluations of (log-likelihood, gradient) remembered by x (the optimiser revisits)."""

    def __init__(self, objective: ApproximateLoglik) -> None:
        self.objective = objective
        self.cache: dict[bytes, tuple[float, FloatArray]] = {}

    def __call__(self, x: FloatArray) -> tuple[float, FloatArray]:
        key = x.tobytes()
        if key not in self.cache:
            ll, g = self.objective(x, gradient=True)
            if g is None:  # pragma: no cover - gradient=True always returns one
                raise RuntimeError("gradient missing")
            if not np.isfinite(ll) or not np.all(np.isfinite(g)):
                ll, g = -np.inf, np.zeros_like(x)
            if len(self.cache) > 64:
                self.cache.clear()
            self.cache[key] = (ll, g)
        return self.cache[key]


def _held(x: FloatArray, g: FloatArray | None, lower: FloatArray, upper: FloatArray) -> np.ndarray:
    """Coordinates held at a bound: at it, unless the gradient points inside by more than
    rounding (1e-6; the gain from moving would be ~1e-12); always when ``g`` is None or when
    the two bounds coincide."""
    at_lo = np.isfinite(lower) & (x <= lower)
    at_up = np.isfinite(upper) & (x >= upper)
    if g is None:
        return at_lo | at_up
    return (at_lo & (g <= 1e-6)) | (at_up & (g >= -1e-6)) | (at_lo & at_up)


def _newton_polish(
    evaluate: _CachedObjective,
    x: FloatArray,
    hess: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    max_steps: int = 10,
) -> tuple[FloatArray, float]:
    """Newton steps with a fixed Hessian (chord method), coordinates at a bound held there.

    A coordinate at its lower bound stays fixed unless the gradient points inside. Each step
    is halved until the log-likelihood does not decrease. Returns the new x and the Newton
    decrement ``½ gᵀ(−H)⁻¹g`` at it (the log-likelihood still to gain; ``inf`` when ``H`` is
    not negative definite on the free coordinates).
    """
    ll, g = evaluate(x)
    decrement = np.inf
    for _ in range(max_steps + 1):
        idx = np.flatnonzero(~_held(x, g, lower, upper))
        try:
            chol = np.linalg.cholesky(-hess[np.ix_(idx, idx)])
        except np.linalg.LinAlgError:
            return x, np.inf
        step_f = np.linalg.solve(chol.T, np.linalg.solve(chol, g[idx]))
        decrement = 0.5 * float(g[idx] @ step_f)
        if decrement < 1e-14:
            break
        step = np.zeros_like(x)
        step[idx] = step_f
        t = 1.0
        for _ in range(30):
            x_new = np.clip(x + t * step, lower, upper)
            ll_new, g_new = evaluate(x_new)
            if ll_new >= ll - 1e-13 * max(1.0, abs(ll)):
                break
            t *= 0.5
        else:
            break
        x, ll, g = x_new, ll_new, g_new
    return x, decrement


#: probes inside a lower bound, in units of the coordinate's scale (see :func:`_off_boundary`)
_PROBES = (1.0, 0.1)


def _quasi_newton(
    evaluate: _CachedObjective,
    start: FloatArray,
    T: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
) -> tuple[FloatArray, Any]:
    """L-BFGS-B on ξ with ``x = start + T ξ`` (bounded coordinates of ``T`` only scaled)."""

    def neg(xi: FloatArray) -> tuple[float, FloatArray]:
        ll, g = evaluate(start + T @ xi)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(xi)
        return -ll, -(T.T @ g)

    d = np.diag(T)
    bounds = [
        (
            (lo - a) / t if np.isfinite(lo) else None,
            (up - a) / t if np.isfinite(up) else None,
        )
        for lo, up, a, t in zip(lower, upper, start, d, strict=True)
    ]
    res = optimize.minimize(
        neg,
        np.zeros_like(start),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6, "maxcor": 20},
    )
    return np.clip(start + T @ res.x, lower, upper), res


def _off_boundary(
    evaluate: _CachedObjective,
    x: FloatArray,
    ll: float,
    lower: FloatArray,
    upper: FloatArray,
    scale: FloatArray,
) -> FloatArray | None:
    """A point inside the bounds that is higher than ``x``, or None.

    For each coordinate at a finite lower bound (a variance parameter at 0), the objective is
    evaluated at ``lower + s · scale`` for s in :data:`_PROBES`. At 0 the gradient in such a
    coordinate vanishes by symmetry (the approximate log-likelihood depends on it through Λ Λᵀ
    only), so a gradient method that reaches 0 stays there even when the maximum is inside;
    lme4 avoids this with a derivative-free optimiser (BOBYQA), glmmTMB by working on log SDs.
    """
    at = np.flatnonzero(np.isfinite(lower) & (x <= lower) & (upper > lower))
    for j in at:
        for s in _PROBES:
            probe = x.copy()
            probe[j] = min(lower[j] + s * scale[j], upper[j])
            ll_p, _ = evaluate(probe)
            if np.isfinite(ll_p) and ll_p > ll + 1e-8 * max(1.0, abs(ll)):
                return probe
    return None


#: smallest eigenvalue of the exact −Hessian scaled to unit diagonal (a correlation-type
#: matrix) for it to be used: below it the estimates are collinear to ~1e-6 (not identified)
_WELL_CONDITIONED = 1e-6


def _hessian(
    objective: ApproximateLoglik, x: FloatArray, scale: FloatArray, free: np.ndarray
) -> FloatArray:
    """Hessian of the log-likelihood at x over the ``free`` coordinates (0 elsewhere).

    Exact where the objective has one (``objective.hessian``) and it is clearly negative
    definite on the free coordinates (positive diagonal of −H, smallest eigenvalue of −H
    scaled to unit diagonal ≥ :data:`_WELL_CONDITIONED`); otherwise central differences of
    the exact gradient with steps ``1e-3 · scale`` (:func:`hessian_from_gradient`), so a
    fit with (nearly) unidentified estimates is handled as before the exact Hessian (with
    the same warnings).
    """
    exact = objective.hessian(x)
    if exact is not None and np.all(np.isfinite(exact)):
        idx = np.flatnonzero(free)
        info = -exact[np.ix_(idx, idx)]
        diag = np.diag(info)
        if np.all(diag > 0):
            root = np.sqrt(diag)
            if np.linalg.eigvalsh(info / np.outer(root, root))[0] >= _WELL_CONDITIONED:
                return np.where(np.outer(free, free), exact, 0.0)
    return hessian_from_gradient(objective.gradient, x, 1e-3 * scale, free)


def maximise(
    objective: ApproximateLoglik,
    x0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    scale: FloatArray,
    *,
    preconditioner: FloatArray | None = None,
    freeze: np.ndarray | None = None,
    boundary_tol: float = SINGULAR_TOL,
) -> Optimum:
    """Maximise ``objective`` over lower ≤ x ≤ upper: L-BFGS-B, boundary snap, Newton polish.

    The quasi-Newton stage (L-BFGS-B; Byrd, Lu, Nocedal & Zhu 1995, *SIAM J. Sci. Comput.*
    16(5)) works on ξ with ``x = x0 + T ξ``: ``T`` is the upper-triangular
    ``preconditioner`` (the inverse Cholesky factor of an approximate information matrix,
    bounded coordinates only scaled) or ``diag(scale)``. Coordinates with a finite lower
    bound that end within ``boundary_tol`` of it are set to the bound if that does not lower
    the log-likelihood; a coordinate left at its lower bound is probed inside
    (:func:`_off_boundary`) and the quasi-Newton stage restarted from a higher probe. Newton
    steps with the exact Hessian (one scalar random effect, Laplace) or that of
    :func:`hessian_from_gradient` then polish the optimum
    (recomputed where the polish ended if it moved by more than 1e-3 scaled units, so the
    returned Hessian is the one at the optimum). Convergence is certified by the Newton
    decrement ``½ gᵀ(−H)⁻¹g`` (< 1e-8 log-likelihood units) and the scaled projected
    gradient (< 1e-3). Coordinates in ``freeze`` (e.g. coefficients of separated covariates,
    whose maximum is at infinity) are held where the quasi-Newton stage left them.
    """
    start = time.perf_counter()
    messages: list[str] = []
    evaluate = _CachedObjective(objective)
    bounded = np.isfinite(lower) | np.isfinite(upper)

    T = np.diag(scale) if preconditioner is None else preconditioner
    off = T - np.diag(np.diag(T))
    if np.any(off[bounded] != 0.0):
        raise ValueError("bounded coordinates may only be scaled by the preconditioner")

    x, res = _quasi_newton(evaluate, x0, T, lower, upper)
    if freeze is not None:
        lower = np.where(freeze, x, lower)
        upper = np.where(freeze, x, upper)
    ll, g = evaluate(x)

    # boundary snap: a variance parameter that ended next to 0
    near = np.isfinite(lower) & (x - lower < boundary_tol) & (x != lower)
    if np.any(near):
        x_b = np.where(near, lower, x)
        ll_b, _ = evaluate(x_b)
        if ll_b >= ll - 1e-10:
            x = x_b
            ll = ll_b
    # a variance parameter at 0 is a stationary point whatever the data (the log-likelihood
    # is even in it), so the quasi-Newton stage cannot leave it: probe inside, and restart
    # from there when the probe is higher
    probe = _off_boundary(evaluate, x, ll, lower, upper, scale)
    if probe is not None:
        x_r, res_r = _quasi_newton(evaluate, probe, T, lower, upper)
        ll_r, _ = evaluate(x_r)
        if ll_r > ll:
            x, res, ll = x_r, res_r, ll_r
    n_quasi_newton = objective.n_evaluations

    hess = _hessian(objective, x, scale, ~_held(x, None, lower, upper))
    x_hess = x.copy()
    x, decrement = _newton_polish(evaluate, x, hess, lower, upper)
    moved = np.max(np.abs(x - x_hess) / scale)
    if moved > 1e-3 or decrement == np.inf:
        hess = _hessian(objective, x, scale, ~_held(x, None, lower, upper))
        x, decrement = _newton_polish(evaluate, x, hess, lower, upper, max_steps=3)
    ll, g = evaluate(x)
    free = ~_held(x, None, lower, upper)
    projected = np.where(_held(x, g, lower, upper), 0.0, g)
    grad_max = float(np.max(np.abs(projected * scale)))
    converged = bool(decrement < 1e-8 and grad_max < 1e-3)
    if decrement == np.inf:
        messages.append(
            "The Hessian of the log-likelihood over (β, θ) is not negative definite at the "
            "point found: this is not a proper maximum (check for separation or an "
            "over-parameterised random-effect structure)."
        )
    elif not converged:
        messages.append(
            f"Convergence check failed: Newton decrement {decrement:.2e} (should be < 1e-8 "
            f"log-likelihood units), scaled gradient {grad_max:.2e} (should be < 1e-3); "
            f"L-BFGS-B ended with: {res.message}. Rescale covariates (centre, divide by an SD) "
            "or simplify the random-effect structure."
        )
    return Optimum(
        x=x,
        loglik=ll,
        gradient=g,
        hessian=hess,
        free=free,
        converged=converged,
        newton_decrement=decrement,
        n_evaluations=objective.n_evaluations,
        n_quasi_newton=n_quasi_newton,
        seconds=time.perf_counter() - start,
        messages=messages,
    )
