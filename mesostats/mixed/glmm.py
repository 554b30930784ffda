"""Generalized linear mixed models: maximum (approximate) likelihood over (β, θ).

``fit_glmm`` fits a binomial–logit or Poisson–log GLMM with lme4 formula syntax:

1. *Start*: a GLM fit without random effects (IRLS) gives β₀; θ₀ = 1 (lme4's default start).
2. *Optimisation*: the Laplace (``nagq = 1``, :mod:`mesostats.mixed.laplace`) or adaptive
   Gauss–Hermite (``nagq > 1``, one scalar random effect, :mod:`mesostats.mixed.quadrature`)
   log-likelihood is maximised jointly over (β, θ), as in lme4's second stage (Bates et al.
   2015, *J. Stat. Softw.* 67(1), §5) and glmmTMB (Brooks et al. 2017, *R Journal* 9(2)).
   Both objectives come with exact gradients (implicit-function theorem at the conditional
   modes), so L-BFGS-B (Byrd et al. 1995) works with few evaluations; it runs on parameters
   preconditioned by an approximate information matrix (penalised-IRLS β block, θ column by
   one finite difference). It is followed by Newton steps on a Hessian obtained by central
   differences of the exact gradient, which reach the optimum to machine precision (glmer's
   Nelder–Mead / BOBYQA stops short, see ``tests/reference/README.md``). An AGQ fit starts at
   the Laplace optimum, preconditioned by the Laplace Hessian.
3. *Standard errors*: inverse of the negative Hessian of the approximate log-likelihood over
   (β, θ) at the optimum (central differences of the exact gradient), β block — what glmmTMB
   reports (TMB's ``sdreport``; Kristensen et al. 2016, *J. Stat. Softw.* 70(5)). With a
   variance on its boundary (θ = 0) the β block of the Hessian with θ held fixed is inverted
   instead.

Why hand-written: statsmodels has no maximum-likelihood GLMM (only variational Bayes / MAP,
whose between-person SD collapses), and no Python package offers lme4/glmmTMB's estimates.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from mesostats.exceptions import ConvergenceWarning, ModelSpecError, SingularFitWarning
from mesostats.mixed.design import MixedDesign, build_design, single_threaded_blas
from mesostats.mixed.finite_diff import hessian_from_gradient
from mesostats.mixed.laplace import (
    CanonicalFamily,
    FloatArray,
    GeneralLaplace,
    GeneralLaplaceData,
    IntArray,
)
from mesostats.mixed.quadrature import MAX_NODES, ScalarRandomEffect
from mesostats.mixed.results import MixedResults

__all__ = ["fit_glmm"]

SINGULAR_TOL = 1e-4  # lme4's isSingular() tolerance on the diagonal of Λ


# --------------------------------------------------------------------------- objectives
class ApproximateLoglik:
    """(β, θ) ↦ approximate log-likelihood and gradient; counts evaluations.

    Wraps :class:`ScalarRandomEffect` (one scalar term: Laplace or AGQ) or
    :class:`GeneralLaplace` (any other structure: Laplace).
    """

    def __init__(self, engine: ScalarRandomEffect | GeneralLaplace, n_beta: int, n_theta: int):
        self.engine = engine
        self.n_beta = n_beta
        self.n_theta = n_theta
        self.n_evaluations = 0
        self.newton_failures = 0

    def __call__(self, x: FloatArray, gradient: bool = True) -> tuple[float, FloatArray | None]:
        self.n_evaluations += 1
        beta, theta = x[: self.n_beta], x[self.n_beta :]
        if isinstance(self.engine, ScalarRandomEffect):
            ev = self.engine.evaluate(beta, float(theta[0]), gradient=gradient)
            ok = ev.converged
            ll, grad = ev.loglik, ev.gradient
        else:
            gev = self.engine.evaluate(beta, theta, gradient=gradient)
            ok = gev.pirls_converged
            ll, grad = gev.loglik, gev.gradient
        if not ok:
            self.newton_failures += 1
        return ll, grad

    def gradient(self, x: FloatArray) -> FloatArray:
        """Exact gradient at x."""
        grad = self(x, gradient=True)[1]
        if grad is None:  # pragma: no cover - gradient=True always returns one
            raise RuntimeError("gradient requested but not computed")
        return grad


# --------------------------------------------------------------------------- GLM start
def glm_irls(
    family: CanonicalFamily,
    y: FloatArray,
    weights: FloatArray,
    offset: FloatArray,
    X: FloatArray,
    max_iter: int = 50,
) -> tuple[FloatArray, FloatArray, float]:
    """Maximum-likelihood GLM by IRLS with step halving (McCullagh & Nelder 1989, §2.5).

    Returns β, the inverse Fisher information (its diagonal gives GLM standard errors) and the
    log-likelihood (with the normalising constant). Stops after ``max_iter`` iterations even
    under separation (β then large): it only provides a starting point.
    """
    beta = np.zeros(X.shape[1])
    eta = offset.copy()
    ybar = float(np.sum(weights * y) / np.sum(weights))
    if family.name == "binomial":
        ybar = min(max(ybar, 1e-4), 1 - 1e-4)
        beta0 = np.log(ybar / (1 - ybar))
    else:
        beta0 = np.log(max(ybar, 1e-8))
    # start from the intercept-only mean (as glm's mustart), via a least-squares fit of η
    beta = np.linalg.lstsq(X, np.full(len(y), beta0), rcond=None)[0]
    eta = X @ beta + offset

    def loglik(e: FloatArray) -> float:
        return float(np.sum(weights * (y * e - family.cumulant(e))))

    ll = loglik(eta)
    info = np.eye(X.shape[1])
    for _ in range(max_iter):
        mu = family.mean(eta)
        w = weights * family.variance_and_slope(mu)[0]
        score = X.T @ (weights * (y - mu))
        info = X.T @ (w[:, None] * X)
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(info, score, rcond=None)[0]
        t = 1.0
        for _ in range(30):
            new_eta = X @ (beta + t * step) + offset
            new_ll = loglik(new_eta)
            if new_ll >= ll - 1e-10 * abs(ll):
                break
            t *= 0.5
        beta = beta + t * step
        eta = new_eta
        converged = abs(new_ll - ll) < 1e-10 * (abs(ll) + 1.0)
        ll = new_ll
        if converged:
            break
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(info)
    return np.asarray(beta), np.asarray(cov), ll + family.log_normaliser(y, weights)


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
    16(5)) works on ξ with ``x = x0 + T ξ``: ``T`` is the upper-triangular ``preconditioner``
    (the inverse Cholesky factor of an approximate information matrix, bounded coordinates
    only scaled) or ``diag(scale)``. Coordinates with a finite lower bound that end within
    ``boundary_tol`` of it are set to the bound if that does not lower the log-likelihood.
    Newton steps with the Hessian of :func:`hessian_from_gradient` then polish the optimum
    (recomputed where the polish ended if it moved by more than 1e-3 scaled units, so the
    returned Hessian is the one at the optimum). Convergence is certified by the
    Newton decrement ``½ gᵀ(−H)⁻¹g`` (< 1e-8 log-likelihood units) and the scaled projected
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

    def neg(xi: FloatArray) -> tuple[float, FloatArray]:
        ll, g = evaluate(x0 + T @ xi)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(xi)
        return -ll, -(T.T @ g)

    d = np.diag(T)
    bounds = [
        (
            (lo - a) / t if np.isfinite(lo) else None,
            (up - a) / t if np.isfinite(up) else None,
        )
        for lo, up, a, t in zip(lower, upper, x0, d, strict=True)
    ]
    res = optimize.minimize(
        neg,
        np.zeros_like(x0),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6, "maxcor": 20},
    )
    x = np.clip(x0 + T @ res.x, lower, upper)
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
    n_quasi_newton = objective.n_evaluations

    steps = 1e-3 * scale
    hess = hessian_from_gradient(objective.gradient, x, steps, ~_held(x, None, lower, upper))
    x_hess = x.copy()
    x, decrement = _newton_polish(evaluate, x, hess, lower, upper)
    moved = np.max(np.abs(x - x_hess) / scale)
    if moved > 1e-3 or decrement == np.inf:
        hess = hessian_from_gradient(objective.gradient, x, steps, ~_held(x, None, lower, upper))
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


# --------------------------------------------------------------------------- core fit
@dataclass
class RandomTermArrays:
    """One random-effect term on raw arrays: group codes, raw columns Z (n × q), levels.

    Terms with the same non-empty ``group`` (e.g. the pieces of ``(x || g)``) are fitted as one
    grouping factor with a block-diagonal Λ.
    """

    codes: IntArray
    Z: FloatArray
    n_levels: int
    group: str = ""


@dataclass
class _Factor:
    """Terms sharing a grouping factor, merged: Z side by side, Λ block diagonal."""

    codes: IntArray
    Z: FloatArray
    n_levels: int
    positions: list[tuple[int, int]]  # θ entries (row, col) of Λ, in θ order
    term_ids: list[int]
    term_cols: list[slice]


def _merge_terms(terms: list[RandomTermArrays]) -> tuple[list[_Factor], IntArray]:
    """Grouping factors from terms, and ``perm`` with engine θ = design θ[perm]."""
    theta_start = np.cumsum([0] + [t.Z.shape[1] * (t.Z.shape[1] + 1) // 2 for t in terms])
    factors: list[_Factor] = []
    by_group: dict[str, _Factor] = {}
    for k, t in enumerate(terms):
        q = t.Z.shape[1]
        tri = [(i, j) for j in range(q) for i in range(j, q)]
        f = by_group.get(t.group) if t.group else None
        if f is None:
            f = _Factor(t.codes, t.Z, t.n_levels, tri, [k], [slice(0, q)])
            factors.append(f)
            if t.group:
                by_group[t.group] = f
        else:
            off = f.Z.shape[1]
            f.Z = np.column_stack([f.Z, t.Z])
            f.positions += [(off + i, off + j) for i, j in tri]
            f.term_ids.append(k)
            f.term_cols.append(slice(off, off + q))
    perm = [
        int(theta_start[k]) + m
        for f in factors
        for k in f.term_ids
        for m in range(terms[k].Z.shape[1] * (terms[k].Z.shape[1] + 1) // 2)
    ]
    return factors, np.asarray(perm, dtype=np.int64)


@dataclass
class GlmmCore:
    """Numbers of a fitted GLMM before they are dressed as MixedResults (design θ order)."""

    beta: FloatArray
    theta: FloatArray
    vcov_beta: FloatArray
    vcov_theta: FloatArray | None  # θ block of the inverse Hessian (None at a boundary)
    loglik: float
    modes: list[FloatArray]  # per term: b = Λ u as (n_levels, q)
    cond_sd: list[FloatArray]  # per term: conditional SDs of b, (n_levels, q)
    cond_cov: list[FloatArray]  # per grouping factor (engine order): (n_levels, q, q) of b
    factor_terms: list[list[int]]  # per grouping factor: its term indices (design order)
    optimum: Optimum
    glm_beta: FloatArray
    glm_loglik: float
    messages: list[str]


def make_objective(
    family: CanonicalFamily,
    y: FloatArray,
    weights: FloatArray,
    offset: FloatArray,
    X: FloatArray,
    factors: list[_Factor],
    nagq: int,
) -> ApproximateLoglik:
    """The approximate log-likelihood for this structure (scalar fast path when possible)."""
    if len(factors) == 1 and factors[0].Z.shape[1] == 1:
        f = factors[0]
        engine: ScalarRandomEffect | GeneralLaplace = ScalarRandomEffect(
            family, y, weights, offset, X, f.Z[:, 0], f.codes, f.n_levels, nagq
        )
        return ApproximateLoglik(engine, X.shape[1], 1)
    data = GeneralLaplaceData(
        family,
        y,
        weights,
        offset,
        X,
        [f.codes for f in factors],
        [f.Z for f in factors],
        [f.n_levels for f in factors],
        theta_positions=[f.positions for f in factors],
    )
    return ApproximateLoglik(GeneralLaplace(data), X.shape[1], data.n_theta)


def term_arrays(design: MixedDesign) -> list[RandomTermArrays]:
    """The design's random-effect terms as :class:`RandomTermArrays` (design order)."""
    return [
        RandomTermArrays(np.asarray(t.codes, dtype=np.int64), t.Z, t.n_levels, t.group)
        for t in design.terms
    ]


def design_objective(
    design: MixedDesign, family: str, nagq: int = 1
) -> tuple[ApproximateLoglik, IntArray]:
    """Approximate log-likelihood of a GLMM design over (β, θ_engine), and the θ permutation.

    Parameters
    ----------
    design : MixedDesign
        From :func:`mesostats.mixed.design.build_design`.
    family : {"binomial", "poisson"}
        Canonical family (logit / log link).
    nagq : int, default 1
        1 = Laplace approximation; > 1 = adaptive Gauss–Hermite quadrature (one scalar
        random effect only, as :func:`fit_glmm`).

    Returns
    -------
    objective : ApproximateLoglik
        ``objective.value(x)`` / ``.gradient(x)`` with ``x = (β, θ_engine)``; the same
        objective :func:`fit_glmm` maximises (Bates et al. 2015, *J. Stat. Softw.* 67(1);
        Pinheiro & Bates 1995 for AGQ).
    perm : numpy.ndarray
        ``θ_engine = θ_design[perm]`` (the engine merges terms that share a grouping factor,
        e.g. the pieces of ``(x || g)``).
    """
    factors, perm = _merge_terms(term_arrays(design))
    objective = make_objective(
        CanonicalFamily(_check_family(family)),
        design.y,
        design.prior_weights,
        design.offset,
        design.X,
        factors,
        _check_nagq(nagq),
    )
    return objective, perm


def preconditioner(
    objective: ApproximateLoglik,
    x0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    scale: FloatArray,
) -> FloatArray:
    """Upper-triangular T with ``TᵀMT ≈ I`` for an approximate information matrix M at x0.

    M's β block is the penalised-IRLS information (``beta_information``), its θ columns come
    from forward differences of the exact gradient (one evaluation per θ). With one θ, T is the
    inverse transposed Cholesky factor of M ordered (β, θ), so θ is only scaled (its bound
    stays a bound); with several θ the cross terms are dropped (block-diagonal T). Falls back
    to ``diag(scale)`` when M is not positive definite.
    """
    n_beta = objective.n_beta
    k = len(x0)
    beta0, theta0 = x0[:n_beta], x0[n_beta:]
    engine = objective.engine
    if isinstance(engine, ScalarRandomEffect):
        info = engine.beta_information(beta0, float(theta0[0]))
    else:
        info = engine.beta_information(beta0, theta0)
    m = np.zeros((k, k))
    m[:n_beta, :n_beta] = info
    g0 = objective.gradient(x0)
    for j in range(n_beta, k):
        if lower[j] == upper[j]:
            m[j, j] = 1.0 / scale[j] ** 2
            continue
        h = 1e-4 * scale[j]
        step = np.zeros(k)
        step[j] = h if x0[j] + h <= upper[j] else -h
        m[:, j] = -(objective.gradient(x0 + step) - g0) / step[j]
    m[n_beta:, :n_beta] = m[:n_beta, n_beta:].T
    if k - n_beta > 1 or np.any(np.diag(m)[n_beta:] <= 0):
        m[:n_beta, n_beta:] = 0.0
        m[n_beta:, :n_beta] = 0.0
        diag_theta = np.diag(m)[n_beta:]
        m[n_beta:, n_beta:] = np.diag(
            np.where(diag_theta > 0, diag_theta, 1.0 / scale[n_beta:] ** 2)
        )
    try:
        chol = np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return np.diag(scale)
    return np.asarray(np.linalg.inv(chol).T)


def fit_arrays(
    family: CanonicalFamily,
    y: FloatArray,
    weights: FloatArray,
    offset: FloatArray,
    X: FloatArray,
    terms: list[RandomTermArrays],
    nagq: int = 1,
    theta_fixed: FloatArray | None = None,
    separated: list[int] | None = None,
) -> GlmmCore:
    """Fit a GLMM on raw arrays (see the module docstring for the method).

    θ is in the order of ``terms`` (each term's lower triangle, column-major, as lme4).
    ``theta_fixed`` holds θ at given values (only β is estimated), e.g. θ = 0 for the GLM limit.
    ``separated`` lists coefficients whose estimate diverges (separation): they are held after
    the quasi-Newton stage and get an infinite variance; the others' covariance is that of the
    model without them.
    """
    with single_threaded_blas():  # many small LAPACK calls: BLAS threads only cost here
        return _fit_arrays(family, y, weights, offset, X, terms, nagq, theta_fixed, separated)


def _fit_arrays(
    family: CanonicalFamily,
    y: FloatArray,
    weights: FloatArray,
    offset: FloatArray,
    X: FloatArray,
    terms: list[RandomTermArrays],
    nagq: int,
    theta_fixed: FloatArray | None,
    separated: list[int] | None,
) -> GlmmCore:
    glm_beta, glm_cov, glm_ll = glm_irls(family, y, weights, offset, X)
    factors, perm = _merge_terms(terms)
    objective = make_objective(family, y, weights, offset, X, factors, 1)
    n_beta = X.shape[1]
    theta_diag = np.array([i == j for f in factors for i, j in f.positions])
    n_theta = len(theta_diag)
    beta_scale = np.sqrt(np.clip(np.diag(glm_cov), 1e-12, None))
    beta_scale = np.where(np.isfinite(beta_scale), beta_scale, 1.0)
    x0 = np.concatenate([glm_beta, np.where(theta_diag, 1.0, 0.0)])
    lower = np.concatenate([np.full(n_beta, -np.inf), np.where(theta_diag, 0.0, -np.inf)])
    upper = np.full(n_beta + n_theta, np.inf)
    scale = np.concatenate([beta_scale, np.full(n_theta, 0.25)])
    if theta_fixed is not None:
        x0[n_beta:] = lower[n_beta:] = upper[n_beta:] = np.asarray(theta_fixed)[perm]
    precond = preconditioner(objective, x0, lower, upper, scale)
    freeze = np.zeros(n_beta + n_theta, dtype=bool)
    freeze[list(separated or [])] = True
    opt = maximise(objective, x0, lower, upper, scale, preconditioner=precond, freeze=freeze)
    if nagq > 1:
        # AGQ from the Laplace optimum, preconditioned by the Laplace Hessian (they are close;
        # a Laplace evaluation costs 1/nagq of an AGQ one)
        # a point with θ = 0 is stationary for every AGQ objective (even in θ), so a Laplace
        # fit on the boundary hands over the first stage's start instead
        objective = make_objective(family, y, weights, offset, X, factors, nagq)
        start = opt.x
        try:
            if theta_fixed is None and not np.all(opt.free[n_beta:]):
                raise np.linalg.LinAlgError
            chol = np.linalg.cholesky(-opt.hessian)
            precond = np.asarray(np.linalg.inv(chol).T)
        except np.linalg.LinAlgError:
            start = x0 if theta_fixed is None else opt.x
            precond = preconditioner(objective, start, lower, upper, scale)
        opt = maximise(objective, start, lower, upper, scale, preconditioner=precond, freeze=freeze)
    messages = list(opt.messages)
    x = opt.x
    beta, theta_engine = x[:n_beta], x[n_beta:]
    failures = objective.newton_failures
    objective(x, gradient=False)
    if objective.newton_failures > failures:
        # the approximate log-likelihood (and so the optimum) rests on conditional modes that
        # were not found: never report it as converged
        messages.append(
            "The inner Newton iterations for the conditional modes (penalised IRLS) did not "
            f"converge at the optimum found (log-likelihood {opt.loglik:.6g}): the Laplace "
            "approximation there, the estimates and their standard errors are unreliable. "
            "Check for separation or extreme values; rescale covariates."
        )
        opt.converged = False

    # covariance: inverse of −H over the free (β, θ); with θ on a bound, the β block alone
    free = opt.free & ~freeze
    idx = np.flatnonzero(free)
    free_beta = np.flatnonzero(free[:n_beta])
    vcov_theta: FloatArray | None = None
    try:
        chol = np.linalg.cholesky(-opt.hessian[np.ix_(idx, idx)])  # fails unless −H ≻ 0
        chol_inv = np.linalg.inv(chol)
        cov_free = np.asarray(chol_inv.T @ chol_inv)
        vcov = np.zeros((n_beta, n_beta))
        vcov[np.ix_(free_beta, free_beta)] = cov_free[: len(free_beta), : len(free_beta)]
        vcov[freeze[:n_beta], freeze[:n_beta]] = np.inf
        if len(idx) == n_beta + n_theta:
            inv_perm = np.argsort(perm)
            vcov_theta = cov_free[n_beta:, n_beta:][np.ix_(inv_perm, inv_perm)]
    except np.linalg.LinAlgError:
        messages.append(
            "The Hessian over (β, θ) is not negative definite at the optimum, so the "
            "standard errors come from the β block alone (θ held fixed); they are too small "
            "if θ is uncertain. Simplify the random-effect structure."
        )
        vcov = _beta_block_covariance(-opt.hessian[:n_beta, :n_beta], freeze[:n_beta])
        if np.any(np.isnan(np.diag(vcov))):
            messages.append(
                "The information matrix of the fixed effects alone is not positive definite "
                "either: the standard errors of "
                f"{int(np.isnan(np.diag(vcov)).sum())} coefficient(s) are reported as NaN. "
                "The model is not identified at this optimum; simplify it."
            )
        opt.converged = False

    modes, cond_sd, cond_cov = conditional_effects(objective, beta, theta_engine, factors, terms)
    theta = np.empty(n_theta)
    theta[perm] = theta_engine
    return GlmmCore(
        beta=beta,
        theta=theta,
        vcov_beta=vcov,
        vcov_theta=vcov_theta,
        loglik=opt.loglik,
        modes=modes,
        cond_sd=cond_sd,
        cond_cov=cond_cov,
        factor_terms=[list(f.term_ids) for f in factors],
        optimum=opt,
        glm_beta=glm_beta,
        glm_loglik=glm_ll,
        messages=messages,
    )


def _beta_block_covariance(info: FloatArray, frozen: np.ndarray) -> FloatArray:
    """Covariance of β from its information block alone (θ held fixed).

    Coefficients held by separation get an infinite variance (as in the full-Hessian path);
    the others' covariance is the inverse of their information block. When that block is not
    positive definite, the pseudo-inverse is used and a coefficient whose variance comes out
    ≤ 0 or non-finite gets NaN (never a zero standard error, which would give p = 0).
    """
    n = info.shape[0]
    free = np.flatnonzero(~frozen)
    cov = np.zeros((n, n))
    cov[np.ix_(free, free)] = np.linalg.pinv(info[np.ix_(free, free)])
    idx = np.arange(n)
    bad = ~(np.diag(cov) > 0) | ~np.isfinite(np.diag(cov))
    bad[frozen] = False
    cov[bad, :] = np.nan
    cov[:, bad] = np.nan
    cov[idx[frozen], idx[frozen]] = np.inf
    return cov


def conditional_effects(
    objective: ApproximateLoglik,
    beta: FloatArray,
    theta: FloatArray,
    factors: list[_Factor],
    terms: list[RandomTermArrays],
) -> tuple[list[FloatArray], list[FloatArray], list[FloatArray]]:
    """Conditional modes b̂ = Λû per term, their conditional SDs (diag of ΛH⁻¹Λᵀ), and the
    conditional covariance blocks ΛH_g⁻¹Λᵀ per grouping factor (n_levels, q, q).

    H is the Hessian of the penalised log-likelihood in u at the mode (the Laplace /
    Gaussian approximation of the conditional distribution), as lme4's
    ``ranef(condVar = TRUE)`` (Bates et al. 2015, *J. Stat. Softw.* 67(1), sec. 5.1), also for
    AGQ fits. The covariance blocks are in the order of ``factors``.
    """
    engine = objective.engine
    if isinstance(engine, ScalarRandomEffect):
        ev = engine.evaluate(beta, float(theta[0]), gradient=False)
        th = abs(float(theta[0]))
        sd = th * ev.cond_sd[:, None]
        return [th * ev.u[:, None]], [sd], [(sd**2)[:, :, None]]
    gev = engine.evaluate(beta, theta, gradient=False)
    blocks = engine.conditional_covariance_blocks(beta, theta)
    lams = engine.data.lambda_blocks(theta)
    modes: list[FloatArray] = [np.empty(0)] * len(terms)
    sds: list[FloatArray] = [np.empty(0)] * len(terms)
    covs: list[FloatArray] = []
    start = 0
    for f, lam, block in zip(factors, lams, blocks, strict=True):
        q = f.Z.shape[1]
        uu = gev.u[start : start + f.n_levels * q].reshape(f.n_levels, q)
        b = uu @ lam.T
        cov_b = np.einsum("ab,gbc,dc->gad", lam, block, lam)
        covs.append(cov_b)
        sd = np.sqrt(np.clip(np.diagonal(cov_b, axis1=1, axis2=2), 0.0, None))
        for k, cols in zip(f.term_ids, f.term_cols, strict=True):
            modes[k] = b[:, cols]
            sds[k] = sd[:, cols]
        start += f.n_levels * q
    return modes, sds, covs


# --------------------------------------------------------------------------- checks
_FAMILY_ALIASES = {"binomial": "binomial", "poisson": "poisson"}


def _check_family(family: object) -> str:
    name = str(family).strip().lower() if isinstance(family, str) else None
    if name in _FAMILY_ALIASES:
        return _FAMILY_ALIASES[name]
    if name == "gaussian":
        raise ModelSpecError(
            "family='gaussian' is a linear mixed model: use `ms.fit_lmm(formula, data)`."
        )
    raise ModelSpecError(
        f"Unknown family {family!r}. fit_glmm fits family='binomial' (0/1 outcomes or "
        "cbind(successes, failures), logit link) or family='poisson' (counts, log link)."
    )


def _check_nagq(nagq: object) -> int:
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)):
        raise ModelSpecError(
            f"nagq must be a whole number between 1 and {MAX_NODES}, got {nagq!r}. Use nagq=1 "
            "(Laplace) or e.g. nagq=25 (adaptive Gauss–Hermite quadrature)."
        )
    if not 1 <= int(nagq) <= MAX_NODES:
        raise ModelSpecError(
            f"nagq must be between 1 and {MAX_NODES}, got {nagq}. Use nagq=1 (Laplace) or "
            "a moderate number of quadrature nodes such as 15 or 25."
        )
    return int(nagq)


def _check_quadrature_structure(design: MixedDesign, nagq: int) -> None:
    terms = design.terms
    if nagq == 1 or (len(terms) == 1 and terms[0].q == 1):
        return
    listing = " + ".join(f"({' + '.join(t.names)} | {t.group})" for t in terms)
    raise ModelSpecError(
        f"nagq={nagq} (adaptive Gauss–Hermite quadrature) needs exactly one scalar random "
        f"effect, such as `(1 | subject)`; this model has {listing}. Use nagq=1 (Laplace) "
        "for vector-valued or several random effects."
    )


def _separated_columns(design: MixedDesign, family: str) -> list[tuple[int, tuple[str, int]]]:
    """Indicator columns of X whose rows all have the boundary outcome: (column, (side, rows)).

    An indicator column (values 0/1, the intercept included) whose rows all have y = 0 (or,
    binomial, all y = 1) pushes its coefficient to ∓∞: (quasi-)complete separation (Albert &
    Anderson 1984, *Biometrika* 71(1)). When the intercept is separated (no events at all),
    only the intercept is reported.
    """
    X, y = design.X, design.y
    has_trials = design.prior_weights > 0
    found: list[tuple[int, tuple[str, int]]] = []
    for j in range(design.p):
        col = X[:, j]
        if not np.all((col == 0) | (col == 1)):
            continue
        rows = (col == 1) & has_trials
        if not rows.any():
            continue
        if np.all(y[rows] == 0):
            found.append((j, ("low", int(rows.sum()))))
        elif family == "binomial" and np.all(y[rows] == 1):
            found.append((j, ("high", int(rows.sum()))))
    intercept = [f for f in found if design.fixed_names[f[0]] == "Intercept"]
    return intercept or found


def _separation_message(name: str, side: str, n_rows: int, estimate: float, family: str) -> str:
    outcome = {"low": "0 (no events)" if family == "binomial" else "0", "high": "1 (all events)"}
    where = "every row" if name == "Intercept" else f"every row with `{name}` = 1"
    return (
        f"Separation: the outcome is {outcome[side]} in {where} ({n_rows} rows), so the "
        f"estimate of `{name}` ({estimate:.3g}) runs off towards "
        f"{'-' if side == 'low' else '+'}infinity; its standard error is reported as inf. "
        "Merge that level with another, drop the covariate, or use a penalised (Firth-type) "
        "or Bayesian fit."
    )


def _large_estimates(
    design: MixedDesign, beta: FloatArray, se: FloatArray, flagged: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Coefficients implying an effect of > 10 link units per SD of their covariate:
    (message, separation record) pairs."""
    messages: list[tuple[str, dict[str, Any]]] = []
    sd_x = design.X.std(axis=0)
    for j, name in enumerate(design.fixed_names):
        if name in flagged or name == "Intercept":
            continue
        scale = sd_x[j] if sd_x[j] > 0 else 1.0
        if abs(beta[j]) * scale > 10.0:
            text = (
                f"The estimate of `{name}` is {beta[j]:.3g} (SE {se[j]:.3g}), i.e. "
                f"{abs(beta[j]) * scale:.3g} link units per SD of the covariate: this points to "
                "(quasi-)complete separation (the covariate predicts the outcome perfectly). "
                "Check the cross-tabulation of outcome and covariate; consider a penalised fit."
            )
            record = {
                "kind": "quasi",
                "term": name,
                "side": "low" if beta[j] < 0 else "high",
                "estimate": float(beta[j]),
            }
            messages.append((text, record))
    return messages


def _group_separation(
    design: MixedDesign, family: str, theta: FloatArray
) -> list[tuple[str, dict[str, Any]]]:
    """A huge between-group SD together with groups whose outcomes all sit at one extreme:
    (message, separation record) pairs."""
    messages: list[tuple[str, dict[str, Any]]] = []
    counted = design.prior_weights > 0
    for term, lam in zip(design.terms, design.lambda_blocks(theta), strict=True):
        sd = np.sqrt(np.diag(lam @ lam.T))
        if not np.any(sd > 10.0):
            continue
        rows = np.bincount(term.codes, weights=counted, minlength=term.n_levels)
        above_zero = np.bincount(
            term.codes, weights=counted & (design.y > 0), minlength=term.n_levels
        )
        extreme = (rows > 0) & (above_zero == 0)
        if family == "binomial":
            below_one = np.bincount(
                term.codes, weights=counted & (design.y < 1), minlength=term.n_levels
            )
            extreme |= (rows > 0) & (below_one == 0)
        n_extreme = int(extreme.sum())
        labels = ", ".join(str(v) for v in term.levels[extreme][:5])
        more = f" and {n_extreme - 5} more" if n_extreme > 5 else ""
        text = (
            f"The random-effect SD for `{term.group}` is {float(sd.max()):.3g} on the link "
            f"scale, implausibly large: {n_extreme} of {term.n_levels} levels have outcomes all "
            f"at one extreme (e.g. {labels}{more}), which pushes their conditional modes "
            "towards ±infinity. Check the data of these groups, add group-level covariates, "
            "or constrain the SD (e.g. a Bayesian prior)."
        )
        record = {
            "kind": "group",
            "term": term.group,
            "levels": [str(v) for v in term.levels[extreme]],
            "sd": float(sd.max()),
        }
        messages.append((text, record))
    return messages


def _singular_messages(design: MixedDesign, theta: FloatArray) -> list[str]:
    """Variance components on their boundary (diagonal of Λ below lme4's 1e-4)."""
    messages = []
    for term, lam in zip(design.terms, design.lambda_blocks(theta), strict=True):
        diag = np.abs(np.diag(lam))
        if not np.any(diag < SINGULAR_TOL):
            continue
        cov = lam @ lam.T
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        zero = [i for i in range(term.q) if sd[i] < SINGULAR_TOL]
        for i in zero:
            name = term.names[i]
            kind = "Random-intercept SD" if name == "Intercept" else f"Random-slope SD of `{name}`"
            others = [n for n in term.names if n != name]
            if others:
                alt = " + ".join("1" if o == "Intercept" else o for o in others)
                alt = alt if "Intercept" in others else "0 + " + alt
                refit = f"refit with `({alt} | {term.group})`"
            else:
                refit = f"drop `(1 | {term.group})` (an ordinary GLM gives the same fixed effects)"
            messages.append(
                f"{kind} within `{term.group}` is {sd[i]:.3g} (θ on its boundary 0): the data "
                "show no between-group variation beyond what the binomial/Poisson noise "
                f"explains. Either {refit}, or keep the term if the design calls for it — "
                "estimates are valid, but the SD has no Wald interval."
            )
        if not zero:
            corr = cov / np.outer(sd, sd)
            i, j = (
                int(v) for v in np.unravel_index(np.argmax(np.abs(np.tril(corr, -1))), corr.shape)
            )
            messages.append(
                f"Correlation of `{term.names[j]}` and `{term.names[i]}` within `{term.group}` "
                f"is {corr[i, j]:.4f} (on the boundary ±1): the random effects are not "
                "separately identified. Refit with uncorrelated effects `(… || "
                f"{term.group})` or drop the random slope."
            )
    return messages


# --------------------------------------------------------------------------- public
def fit_glmm(
    formula: str, data: pd.DataFrame, *, family: str = "binomial", nagq: int = 1
) -> MixedResults:
    """Fit a generalized linear mixed model by maximum (approximate) likelihood.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"side_effect ~ minoxidil + week + (1 | subject_id)"``;
        ``cbind(successes, failures) ~ ...`` for binomial counts, ``offset(log(exposure))``,
        crossed ``(1 | a) + (1 | b)``, nested ``(1 | a/b)``, uncorrelated ``(x || g)``.
    data : pandas.DataFrame
        Any table with the columns the formula uses. Rows with a missing value in a used
        column are set aside (``results.excluded_rows``, :class:`ExclusionWarning`).
    family : {"binomial", "poisson"}, default "binomial"
        Binomial with logit link (0/1 or boolean response, or ``cbind``), or Poisson with
        log link (non-negative whole-number counts).
    nagq : int, default 1
        1 = Laplace approximation (any random-effect structure). 2…100 = adaptive
        Gauss–Hermite quadrature with that many nodes; needs a single scalar random effect
        (one grouping factor, e.g. ``(1 | subject_id)``).

    Returns
    -------
    MixedResults
        ``method`` is ``"Laplace"`` or ``"AGQ(n)"``; z tests (``df = inf``); ``loglik`` on
        lme4's scale (binomial includes log C(n, y)) for every ``nagq``; ``vcov`` from the
        Hessian over (β, θ) (as glmmTMB); ``ranef`` / ``ranef_se`` are conditional modes and
        conditional SDs.

    Raises
    ------
    ModelSpecError
        Unknown family, ``nagq`` outside 1…100, ``nagq > 1`` with a vector-valued or several
        random effects, a response the family cannot take (binomial outside 0/1, successes >
        trials, negative or fractional counts), and every formula/data problem of
        :func:`mesostats.mixed.design.build_design`.

    Warns
    -----
    ConvergenceWarning
        An optimality check failed (says which, with values), or (quasi-)complete separation
        (names the covariate or the groups).
    SingularFitWarning
        A random-effect SD is 0 or a correlation ±1 (names which, and what to try).

    Notes
    -----
    Laplace approximation and penalised IRLS of Bates, Mächler, Bolker & Walker (2015,
    *J. Stat. Softw.* 67(1)); adaptive Gauss–Hermite quadrature of Pinheiro & Bates (1995,
    *J. Comput. Graph. Stat.* 4(1)); joint optimisation over (β, θ) with exact gradients and a
    Newton polish, standard errors from the Hessian as in glmmTMB (Brooks et al. 2017,
    *R Journal* 9(2)). See the module docstring.

    Examples
    --------
    >>> import mesostats as ms
    >>> fit = ms.fit_glmm(
    ...     "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp
    ... )  # doctest: +SKIP
    >>> fit.fixed_effects  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    family_name = _check_family(family)
    n_nodes = _check_nagq(nagq)
    design = build_design(formula, data, family=family_name)
    _check_quadrature_structure(design, n_nodes)
    terms = term_arrays(design)
    separated = _separated_columns(design, family_name)
    core = fit_arrays(
        CanonicalFamily(family_name),
        design.y,
        design.prior_weights,
        design.offset,
        design.X,
        terms,
        n_nodes,
        separated=[j for j, _ in separated],
    )
    opt = core.optimum
    se = np.sqrt(np.clip(np.diag(core.vcov_beta), 0.0, None))

    convergence_msgs = list(core.messages)
    separation = [
        _separation_message(design.fixed_names[j], side, n_rows, core.beta[j], family_name)
        for j, (side, n_rows) in separated
    ]
    separation_records: list[dict[str, Any]] = [
        {
            "kind": "complete",
            "term": design.fixed_names[j],
            "side": side,
            "n_rows": n_rows,
            "estimate": float(core.beta[j]),
        }
        for j, (side, n_rows) in separated
    ]
    flagged = {design.fixed_names[j] for j, _ in separated}
    for text, record in _large_estimates(design, core.beta, se, flagged) + _group_separation(
        design, family_name, core.theta
    ):
        separation.append(text)
        separation_records.append(record)
    singular_msgs = _singular_messages(design, core.theta)
    for msg in convergence_msgs + separation:
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    for msg in singular_msgs:
        warnings.warn(msg, SingularFitWarning, stacklevel=2)
    return MixedResults(
        design,
        family=family_name,
        method="Laplace" if n_nodes == 1 else f"AGQ({n_nodes})",
        beta=core.beta,
        vcov=core.vcov_beta,
        theta=core.theta,
        sigma=1.0,
        loglik=core.loglik,
        df=np.full(design.p, np.inf),
        ranef=core.modes,
        ranef_sd=core.cond_sd,
        converged=opt.converged and not separation,
        singular=bool(singular_msgs),
        messages=[*convergence_msgs, *separation, *singular_msgs],
        variance_parameter_cov=core.vcov_theta,
        ranef_cov={
            design.terms[ids[0]].group: cov
            for ids, cov in zip(core.factor_terms, core.cond_cov, strict=True)
        },
        optimizer={
            "method": "L-BFGS-B (preconditioned) + Newton polish",
            "n_evaluations": opt.n_evaluations,
            "n_quasi_newton_evaluations": opt.n_quasi_newton,
            "newton_decrement": opt.newton_decrement,
            "gradient": opt.gradient.tolist(),
            "glm_loglik": core.glm_loglik,
            "separation": separation_records,
            "seconds": time.perf_counter() - t0,
        },
    )
