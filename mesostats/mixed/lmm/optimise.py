"""Minimising the profiled deviance over θ: L-BFGS-B, Newton polish, optimality checks.

See :func:`optimise_theta`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize

from mesostats.mixed.design import MixedDesign, lower_triangle_indices
from mesostats.mixed.finite_diff import hessian_from_gradient, relative_steps
from mesostats.mixed.linalg import chol_lower, tri_solve

if TYPE_CHECKING:  # typing only: the deviance does not depend on the optimiser
    from mesostats.mixed.lmm.block_hessian import BlockHessian
    from mesostats.mixed.lmm.gradient import ProfiledDeviance
    from mesostats.mixed.lmm.hessian import DenseHessian

    AnalyticHessian = BlockHessian | DenseHessian

__all__ = ["optimise_theta", "screen_start"]

#: at most this many Newton steps on the dense analytic Hessian before L-BFGS-B takes over
_NEWTON_ITERATIONS = 50


# --------------------------------------------------------------------------- optimisation
@dataclass
class _OptimResult:
    theta: np.ndarray
    deviance: float
    gradient: np.ndarray
    converged: bool
    messages: list[str]
    n_evaluations: int
    hessian: np.ndarray
    newton_decrement: float | None = None  # on the free coordinates; None if H is not PD
    method: str = "L-BFGS-B (analytic gradient) + Newton polish"


def _fd_hessian(fun: Any, theta: np.ndarray, base_step: float = 1e-4) -> np.ndarray:
    """Hessian by central differences of the gradient ``fun(θ)[1]`` (2·len(θ) calls).

    Steps ``base_step · max(|θ_j|, 0.1)``. Boundary coordinates are differenced too (the
    deviance is defined, and even, for a negative diagonal of Λ), as lmerTest's numerical
    Hessian does.
    """
    return hessian_from_gradient(lambda t: fun(t)[1], theta, relative_steps(theta, base_step, 0.1))


def _free_coordinates(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Coordinates not held at their bound by a gradient pointing outwards."""
    at_bound = (theta <= lower + 1e-10) & np.isfinite(lower)
    return ~(at_bound & (grad >= 0))


def _interior_probes(design: MixedDesign, theta: np.ndarray) -> list[np.ndarray]:
    """Interior points next to a θ with a zero diagonal in some Λ block (empty if none).

    For each such block, with Σ = ΛΛᵀ (relative covariance), the probes are the Cholesky
    factors of Σ + c²s²·vvᵀ for v = e_j (each zero-diagonal row j, s its SD or the block's
    largest) and v = the eigenvector of Σ's smallest eigenvalue (s the largest SD), at
    c ∈ {0.01, 0.03, 0.1, 0.3, 1, 3}: extra variance along the degenerate direction, at scales
    from far below to above the block's own.
    """
    probes: list[np.ndarray] = []
    blocks = design.lambda_blocks(theta)
    for term, sl, lam in zip(design.terms, design.theta_slices, blocks, strict=True):
        zero_rows = [j for j in range(term.q) if abs(lam[j, j]) <= 1e-10]
        if not zero_rows:
            continue
        sigma = lam @ lam.T
        sds = np.sqrt(np.clip(np.diag(sigma), 0.0, None))
        top = float(sds.max()) if sds.max() > 1e-8 else 1.0
        directions = []
        for j in zero_rows:
            e = np.zeros(term.q)
            e[j] = 1.0
            directions.append((e, float(sds[j]) if sds[j] > 1e-8 else top))
        if term.q > 1:
            directions.append((np.linalg.eigh(sigma)[1][:, 0], top))
        rows, cols = lower_triangle_indices(term.q)
        for v, scale in directions:
            for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
                trial_sigma = sigma + (c * scale) ** 2 * np.outer(v, v)
                try:
                    chol = np.linalg.cholesky(trial_sigma)
                except np.linalg.LinAlgError:
                    continue
                trial = theta.copy()
                trial[sl] = chol[rows, cols]
                if np.all(np.isfinite(trial)):
                    probes.append(trial)
    return probes


def optimise_theta(problem: ProfiledDeviance, theta0: np.ndarray) -> _OptimResult:
    """Minimise the profiled deviance over θ: L-BFGS-B, Newton polish, optimality checks.

    Convergence is declared when, on the coordinates not held at a bound, the Hessian is
    positive definite and the Newton decrement gᵀH⁻¹g/2 (the deviance still to gain) is below
    1e-6, and no coordinate at a bound has a gradient pointing into the interior.
    The returned Hessian (profiled deviance, all coordinates) is reused for Satterthwaite df.

    **Boundary certification.** A zero diagonal of Λ can be a saddle, not a minimum: the
    deviance is even in the last diagonal element of each block (flipping the sign of a
    column of Λ leaves ΛΛᵀ unchanged), so its gradient there is exactly zero for every value
    of the other coordinates and gradient methods that reach it (L-BFGS-B projects a step
    onto the bound) never leave, even when the deviance decreases into the interior at second
    order. So when the result has a zero diagonal, the deviance is evaluated at interior
    probes (:func:`_interior_probes`: added variance along the degenerate direction at
    several scales, a finite-step check); if one is lower, the optimiser restarts from the
    best probe and the better result is kept (up to three rounds). The fast path (interior
    result) is unchanged. lme4's derivative-free BOBYQA escapes such saddles through its
    interpolation model (Powell 2009, Cambridge report DAMTP 2009/NA06).
    """
    opt = _optimise_from(problem, theta0)
    design = problem.design
    lower = design.theta_lower

    def deviance(theta: np.ndarray) -> float:
        # the probes need the value only: the factorisation without the gradient (the same
        # number value_and_gradient returns, at about half the cost)
        return float(problem.state(theta).deviance)

    def on_boundary(theta: np.ndarray) -> bool:
        return bool(((theta <= lower + 1e-10) & np.isfinite(lower)).any())

    best_probe = math.inf  # lowest deviance at the interior probes of the current result
    for round_ in range(4):
        if not (np.isfinite(opt.deviance) and on_boundary(opt.theta)):
            break
        probes = _interior_probes(design, opt.theta)
        values = [deviance(t) for t in probes]
        opt.n_evaluations += len(probes)
        best_probe = min(values, default=math.inf)
        noise = max(1e-10, 1e-13 * abs(opt.deviance))
        if round_ == 3 or not best_probe < opt.deviance - noise:
            break
        other = _optimise_from(problem, probes[int(np.argmin(values))])
        other.n_evaluations += opt.n_evaluations
        if not other.deviance < opt.deviance:
            opt.n_evaluations = other.n_evaluations
            break
        opt, best_probe = other, math.inf
    if best_probe < opt.deviance - 1e-6:
        opt.converged = False
        opt.messages.append(
            "Optimiser stopped on a boundary (a zero diagonal of Λ) although the deviance is "
            f"{opt.deviance - best_probe:.3g} lower at a nearby interior point (a saddle, not a "
            "minimum). Rescale the covariates or simplify the random-effects structure."
        )
    return opt


def _lbfgs(fun: Any, theta0: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The L-BFGS-B stage of :func:`_optimise_from`: its end point, clipped to the bounds."""
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    res = optimize.minimize(
        fun,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        # stop when the relative decrease is ~1e-12; the Newton polish below finishes the job
        # (pushing L-BFGS-B further only makes its line search chase rounding noise)
        options={"maxiter": 2000, "ftol": 1e-12, "gtol": 0.0, "maxcor": 20},
    )
    return np.maximum(np.asarray(res.x, dtype=float), lower)


def screen_start(problem: ProfiledDeviance, theta0: np.ndarray) -> tuple[float, int]:
    """Deviance at the end of the L-BFGS-B stage from ``theta0``, and the evaluations used.

    A cheap check of a second start: the full run (Newton polish, finite-difference Hessian,
    boundary certification) is worth making only from a start whose plain L-BFGS-B run ends
    below the optimum already found.
    """
    count = {"n": 0}

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        count["n"] += 1
        return problem.value_and_gradient(theta)

    theta = _lbfgs(fun, theta0, problem.design.theta_lower)
    count["n"] += 1
    return float(problem.state(theta).deviance), count["n"]


def _guarded(dense: AnalyticHessian, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``dense.evaluate(θ)``, or an infinite deviance where its Woodbury products lose
    positive definiteness to rounding (far-out θ): a rejected step, or L-BFGS-B takes over."""
    try:
        return dense.evaluate(theta)
    except np.linalg.LinAlgError:
        return math.inf, np.full(theta.size, np.nan), np.full((theta.size, theta.size), np.nan)


def _newton_dense(
    dense: AnalyticHessian, theta0: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, int, bool]:
    """Projected Newton iterations with a trust region on the dense analytic (d, ∇, ∇²).

    On the coordinates not held at a bound, the step is the Newton step, or where the
    Hessian is not positive definite the step for the Hessian shifted to be so
    (Levenberg–Marquardt); a step longer than the trust radius Δ is shortened to Δ (θ is a
    relative SD, so Δ = 1 to start). Δ shrinks when the deviance falls by less than a quarter
    of the quadratic model's prediction and grows when it falls by more than three quarters
    at the radius (Nocedal & Wright 2006, *Numerical Optimization*, §4.1). A step that does
    not lower the deviance is rejected. Returns the end point, the evaluations used and
    whether it converged (positive-definite Hessian and a Newton decrement below 1e-10):
    otherwise the caller finishes with L-BFGS-B from the end point.
    """
    theta = np.maximum(np.asarray(theta0, dtype=float), lower)
    dev, grad, H = _guarded(dense, theta)
    n_eval = 1
    radius = 1.0
    for _ in range(_NEWTON_ITERATIONS):
        if not (np.isfinite(dev) and np.all(np.isfinite(grad)) and np.all(np.isfinite(H))):
            return theta, n_eval, False
        free = _free_coordinates(theta, grad, lower)
        if not free.any():
            return theta, n_eval, True
        all_free = bool(free.all())
        Hf = H if all_free else H[np.ix_(free, free)]
        gf = grad if all_free else grad[free]
        evals, evecs = np.linalg.eigh(Hf)
        top = max(float(np.abs(evals).max()), 1e-300)
        shifted = evals.min() <= 1e-8 * top
        shift = (-evals.min() + 1e-3 * top) if shifted else 0.0
        step_f = -(evecs @ ((evecs.T @ gf) / (evals + shift)))
        length = float(np.sqrt(step_f @ step_f))
        if not shifted and length <= radius and float(-gf @ step_f) / 2.0 < 1e-10:
            return _snap_to_bounds(dense, theta, dev, lower), n_eval + 1, True
        at_radius = length > radius
        if at_radius:
            step_f *= radius / length
        predicted = -float(gf @ step_f + 0.5 * step_f @ Hf @ step_f)
        if all_free:
            step = step_f
        else:
            step = np.zeros_like(theta)
            step[free] = step_f
        trial = np.maximum(theta + step, lower)
        tdev, tgrad, tH = _guarded(dense, trial)
        n_eval += 1
        actual = dev - tdev
        ratio = actual / predicted if predicted > 0 else -1.0
        if ratio < 0.25:
            radius = 0.25 * min(length, radius)
        elif ratio > 0.75 and at_radius:
            radius *= 2.0
        if actual > 0:
            theta, dev, grad, H = trial, tdev, tgrad, tH
        elif radius < 1e-10:
            return theta, n_eval, False
    return theta, n_eval, False


def _snap_to_bounds(
    dense: AnalyticHessian, theta: np.ndarray, dev: float, lower: np.ndarray
) -> np.ndarray:
    """Diagonal entries of Λ within 1e-6 of 0 set to 0 when that does not raise the deviance.

    Where the deviance is flat in a variance (a quartic minimum at 0, the usual singular
    fit) Newton steps approach 0 only linearly; L-BFGS-B lands on the bound by projection.
    """
    near = np.isfinite(lower) & (theta > lower) & (theta - lower < 1e-6)
    if not near.any():
        return theta
    trial = np.where(near, lower, theta)
    if _guarded(dense, trial)[0] <= dev + 1e-12 * max(1.0, abs(dev)):
        return trial
    return theta


def _optimise_from(problem: ProfiledDeviance, theta0: np.ndarray) -> _OptimResult:
    """One run of :func:`optimise_theta` from ``theta0``, without boundary certification.

    Small designs (``problem.dense_hessian()`` available) start with Newton steps on the
    analytic Hessian; L-BFGS-B runs only where those do not converge, and from where they
    stopped. Either way the Newton polish on the blocked deviance and gradient follows.
    """
    lower = problem.design.theta_lower
    count = {"n": 0}

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        count["n"] += 1
        return problem.value_and_gradient(theta)

    dense = problem.dense_hessian() if hasattr(problem, "dense_hessian") else None
    if dense is not None:

        def hessian(theta: np.ndarray) -> np.ndarray:
            count["n"] += 0 if dense.is_cached(theta) else 1
            try:
                return dense.evaluate(theta)[2]
            except np.linalg.LinAlgError:  # rounding at far-out θ: differences of the gradient
                return _fd_hessian(fun, theta)

        theta, n_newton, newton_converged = _newton_dense(dense, theta0, lower)
        count["n"] += n_newton
        method = "Newton (analytic Hessian, trust region) + Newton polish"
        if not newton_converged:
            theta = _lbfgs(fun, theta, lower)
            method = "Newton (analytic Hessian) + L-BFGS-B + Newton polish"
    else:

        def hessian(theta: np.ndarray) -> np.ndarray:
            return _fd_hessian(fun, theta)

        theta = _lbfgs(fun, theta0, lower)
        method = "L-BFGS-B (analytic gradient) + Newton polish"
    dev, grad = fun(theta)
    # below this the deviance differences are rounding noise (a few ulps of |d|)
    noise = 1e-13 * max(1.0, abs(dev))
    H = hessian(theta)
    theta_at_hessian = theta.copy()
    for _ in range(12):
        free = _free_coordinates(theta, grad, lower)
        if not free.any():
            break
        Hf = H[np.ix_(free, free)]
        gf = grad[free]
        try:
            chol = chol_lower(Hf)  # scipy's cho_factor/cho_solve: the same LAPACK arithmetic
        except np.linalg.LinAlgError:
            break
        step = np.zeros_like(theta)
        step[free] = -tri_solve(chol.T, tri_solve(chol, gf, lower=True), lower=False)
        if float(-gf @ step[free]) / 2.0 < max(1e-11, noise):
            break
        alpha = 1.0
        improved = False
        for _ls in range(12):
            trial = np.maximum(theta + alpha * step, lower)
            tdev, tgrad = fun(trial)
            if tdev < dev:
                theta, dev, grad = trial, tdev, tgrad
                improved = True
                break
            alpha *= 0.5
        if not improved:
            break
        moved = np.abs(theta - theta_at_hessian) / (np.abs(theta_at_hessian) + 0.1)
        if dense is not None or moved.max() > 1e-3:  # far from where H was taken: refresh it
            H = hessian(theta)
            theta_at_hessian = theta.copy()
    if not np.array_equal(theta, theta_at_hessian):
        moved = np.abs(theta - theta_at_hessian) / (np.abs(theta_at_hessian) + 0.1)
        if moved.max() > 1e-5:
            H = hessian(theta)
    # ------------------------------------------------------------------ final checks
    messages: list[str] = []
    converged = True
    names = problem.design.theta_names
    at_bound = (theta <= lower + 1e-10) & np.isfinite(lower)
    wrong_way = at_bound & (grad < -1e-4)
    if wrong_way.any():
        i = int(np.flatnonzero(wrong_way)[0])
        converged = False
        messages.append(
            f"Optimiser stopped at the boundary of {names[i]} = {theta[i]:.3g} although the "
            f"deviance still decreases into the interior (gradient {grad[i]:.3g})."
        )
    free = _free_coordinates(theta, grad, lower)
    decrement: float | None = None if free.any() else 0.0
    if not (np.isfinite(dev) and np.all(np.isfinite(grad)) and np.all(np.isfinite(H))):
        # NaN compares False everywhere below: without this check it would pass as converged
        converged = False
        messages.append(
            f"The deviance ({dev:.6g}) or its gradient/Hessian is not finite at θ = "
            f"{np.array2string(theta, precision=4)}: the fit is not valid. Check the data for "
            "extreme values or rescale the response and covariates."
        )
    elif free.any():
        Hf = H[np.ix_(free, free)]
        gf = grad[free]
        eig = np.linalg.eigvalsh(Hf)
        if eig.min() <= 0:
            converged = False
            worst = names[int(np.flatnonzero(free)[np.argmax(np.abs(np.linalg.eigh(Hf)[1][:, 0]))])]
            messages.append(
                "The Hessian of the deviance at the optimum is not positive definite "
                f"(smallest eigenvalue {eig.min():.3g}, mostly along {worst}): the variance "
                "parameters are not well identified. Simplify the random-effects structure."
            )
        else:
            decrement = float(gf @ np.linalg.solve(Hf, gf)) / 2.0
            if decrement > max(1e-6, 100.0 * noise):
                converged = False
                messages.append(
                    f"Optimiser stopped {decrement:.2g} deviance units short of the optimum "
                    f"(Newton decrement; max |gradient| {np.max(np.abs(gf)):.3g})."
                )
    return _OptimResult(
        theta=theta,
        deviance=dev,
        gradient=grad,
        converged=converged,
        messages=messages,
        n_evaluations=count["n"],
        hessian=H,
        newton_decrement=decrement,
        method=method,
    )
