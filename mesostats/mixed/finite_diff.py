"""Finite differences: one central-difference gradient and one Hessian from a gradient.

Used wherever an exact derivative is not available: the Hessian of the profiled deviance
(LMM, from its analytic gradient), of the Laplace/AGQ log-likelihood (GLMM), the
Satterthwaite variance-parameter Hessian (Richardson-extrapolated), the gradient of the
sparse-path deviance, and the delta-method gradients of derived quantities (ICC in
``variability``: ``central_gradient(f, x, relative_steps(x, 1e-6, 1e-3))``).

Central differences D(h) = (f(x + h) − f(x − h)) / 2h have error O(h²); with
``richardson=True`` the result is (4 D(h/2) − D(h)) / 3, error O(h⁴) (Richardson 1911, as
numDeriv's ``jacobian`` does), at twice the cost. Steps are per coordinate,
``relative_steps(x, scale, floor) = scale · max(|x_j|, floor)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["central_gradient", "hessian_from_gradient", "relative_steps"]


def relative_steps(x: np.ndarray, scale: float, floor: float) -> np.ndarray:
    """Per-coordinate steps ``scale · max(|x_j|, floor)``."""
    return scale * np.maximum(np.abs(np.asarray(x, dtype=float)), floor)


def central_gradient(
    fun: Callable[[np.ndarray], float | np.ndarray],
    x: np.ndarray,
    steps: np.ndarray,
    *,
    richardson: bool = False,
) -> np.ndarray:
    """Central-difference derivative of a scalar or array function along each coordinate.

    Returns an array of shape ``(len(x), *shape of fun(x))``: row j is ∂fun/∂x_j.
    """
    x = np.asarray(x, dtype=float)
    return np.asarray([_partial(fun, x, j, float(steps[j]), richardson) for j in range(x.size)])


def hessian_from_gradient(
    gradient: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    steps: np.ndarray,
    free: np.ndarray | None = None,
    *,
    richardson: bool = False,
) -> np.ndarray:
    """Hessian by central differences of a gradient, symmetrised.

    Column j is the central difference of the gradient along x_j (Richardson-extrapolated on
    request). Only the ``free`` coordinates are differenced; the others' rows and columns are
    zero. Boundary coordinates are differenced across the bound, so the function must be
    defined there (the profiled deviance is, and is even in each diagonal of Λ).
    """
    x = np.asarray(x, dtype=float)
    k = x.size
    free_idx = np.arange(k) if free is None else np.flatnonzero(free)
    hess = np.zeros((k, k))
    for j in free_idx:
        hess[:, j] = _partial(gradient, x, int(j), float(steps[j]), richardson)
    hess = 0.5 * (hess + hess.T)
    if free is not None:
        hess = np.where(np.outer(free, free), hess, 0.0)
    return hess


def _partial(
    fun: Callable[[np.ndarray], float | np.ndarray],
    x: np.ndarray,
    j: int,
    h: float,
    richardson: bool,
) -> np.ndarray:
    """∂fun/∂x_j by a central difference with step h (Richardson-extrapolated on request)."""
    values = []
    for step in (h, h / 2.0) if richardson else (h,):
        up, down = x.copy(), x.copy()
        up[j] += step
        down[j] -= step
        values.append((np.asarray(fun(up)) - np.asarray(fun(down))) / (2.0 * step))
    return (4.0 * values[1] - values[0]) / 3.0 if richardson else values[0]
