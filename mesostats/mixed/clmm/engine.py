"""From a design to an optimum: choose the engine, start, maximise, normalise θ, read off SEs.

One scalar random effect (any ``nagq``) goes to :class:`.scalar.ScalarOrdinal`, anything else
(Laplace only) to :class:`.dense.DenseOrdinal`. Starting values: thresholds F⁻¹ of the
cumulative category proportions (projected onto the threshold structure), β = 0, Λ = I
(lme4's start). The log-likelihood is maximised by :func:`.optimise.newton_maximise`.
Covariance of the estimates: the inverse of the negative Hessian of the approximate
log-likelihood over (α, β, θ) at the optimum, as ``clmm`` and glmmTMB report it; a θ on its
boundary (an SD of 0) is held fixed and gets no standard error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mesostats.mixed.boundary import SINGULAR_TOL
from mesostats.mixed.clmm.dense import DenseOrdinal, TermBlock
from mesostats.mixed.clmm.links import Link
from mesostats.mixed.clmm.optimise import NewtonResult, newton_maximise
from mesostats.mixed.clmm.scalar import ScalarOrdinal
from mesostats.mixed.clmm.thresholds import ThresholdStructure
from mesostats.mixed.design import MixedDesign, lower_triangle_indices

__all__ = ["EngineFit", "fit_engine"]


@dataclass
class EngineFit:
    """What the engine hands to the results: estimates, covariance, modes, optimiser record."""

    params: np.ndarray  # (α, β, θ)
    vcov: np.ndarray  # over (α, β, θ); NaN rows/columns for θ on the boundary
    loglik: float
    modes: list[np.ndarray]  # per design term: (n_levels, q) conditional modes of b
    cond_cov: list[np.ndarray]  # per design term: (n_levels, q, q) conditional covariances
    optimum: NewtonResult
    factorisation: str
    messages: list[str]


def _term_blocks(design: MixedDesign) -> list[TermBlock]:
    blocks, offset = [], 0
    for term in design.terms:
        blocks.append(TermBlock(term.Z, term.codes, term.n_levels, offset))
        offset += term.n_levels * term.q
    return blocks


def _start(
    y: np.ndarray, link: Link, structure: ThresholdStructure, p: int, theta0: np.ndarray
) -> np.ndarray:
    k = structure.jacobian.shape[0] + 1
    cum = np.cumsum(np.bincount(y, minlength=k))[:-1] / y.size
    alpha = structure.start(link.quantile(cum))
    return np.concatenate([alpha, np.zeros(p), theta0])


def _sign_flips(design: MixedDesign, theta: np.ndarray) -> np.ndarray:
    """±1 per θ entry that makes every diagonal of Λ non-negative (Λ → ΛD, same ΛΛᵀ)."""
    signs = np.ones(theta.size)
    for term, sl in zip(design.terms, design.theta_slices, strict=True):
        rows, cols = lower_triangle_indices(term.q)
        block = theta[sl]
        diag_sign = np.ones(term.q)
        for r, c, v in zip(rows, cols, block, strict=True):
            if r == c and v < 0:
                diag_sign[c] = -1.0
        signs[sl] = diag_sign[cols]
    return signs


def _objective(
    engine: ScalarOrdinal | DenseOrdinal,
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        state = engine.evaluate(x)
        return state.loglik, state.gradient

    return objective


def laplace_modes(engine: ScalarOrdinal, x: np.ndarray) -> np.ndarray:
    """Conditional modes at x (a warm start for the quadrature engine)."""
    return engine.evaluate(x, gradient=False).u


def fit_engine(
    design: MixedDesign,
    y: np.ndarray,
    X: np.ndarray,
    link: Link,
    structure: ThresholdStructure,
    n_nodes: int,
) -> EngineFit:
    """Maximise the Laplace / AGQ log-likelihood of a CLMM on a built design."""
    scalar = len(design.terms) == 1 and design.terms[0].q == 1
    x0 = _start(y, link, structure, X.shape[1], design.theta_start())
    engine: ScalarOrdinal | DenseOrdinal
    if scalar:
        term = design.terms[0]
        z = term.Z[:, 0].copy()
        engine = ScalarOrdinal(link, y, X, z, term.codes, term.n_levels, structure.jacobian, 1)
        if n_nodes > 1:  # start quadrature at the Laplace optimum, with its Hessian
            laplace = newton_maximise(_objective(engine), x0)
            engine = ScalarOrdinal(
                link, y, X, z, term.codes, term.n_levels, structure.jacobian, n_nodes
            )
            engine._u = laplace_modes(engine, laplace.x)
            opt = newton_maximise(_objective(engine), laplace.x, hessian0=laplace.hessian)
        else:
            opt = newton_maximise(_objective(engine), x0)
    else:
        engine = DenseOrdinal(link, y, X, _term_blocks(design), structure.jacobian)
        opt = newton_maximise(_objective(engine), x0)
    n_fixed = structure.n_alpha + X.shape[1]
    signs = np.concatenate([np.ones(n_fixed), _sign_flips(design, opt.x[n_fixed:])])
    x = opt.x * signs
    hess = opt.hessian * np.outer(signs, signs)
    opt.x, opt.gradient, opt.hessian = x, opt.gradient * signs, hess
    messages = [] if opt.converged else [f"The optimiser stopped: {opt.message}."]

    free = np.ones(x.size, dtype=bool)
    free[n_fixed:] = ~(design.theta_is_diagonal & (np.abs(x[n_fixed:]) < SINGULAR_TOL))
    vcov = np.full((x.size, x.size), np.nan)
    info = -hess[np.ix_(free, free)]
    try:
        np.linalg.cholesky(info)
        vcov[np.ix_(free, free)] = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        messages.append(
            "The Hessian of the log-likelihood is not negative definite at the optimum, so "
            "standard errors are not available; the model may be over-parameterised."
        )

    # conditional modes and covariances at the (sign-normalised) optimum
    if isinstance(engine, ScalarOrdinal):
        engine._u, engine._last = np.zeros(engine.G), None
        state = engine.evaluate(x, gradient=False)
        tau = float(x[-1])
        modes = [(tau * state.u)[:, None]]
        cond_cov = [(tau * tau / state.hessian_u)[:, None, None]]
        factorisation = "scalar"
    else:
        engine._u = np.zeros(engine.q)
        dstate = engine.evaluate(x, gradient=False)
        assert dstate.h_inverse is not None
        modes, cond_cov = [], []
        for t, lam in zip(engine.terms, engine.lambda_blocks(x[n_fixed:]), strict=True):
            sl = slice(t.offset, t.offset + t.n_levels * t.q)
            u_t = dstate.u[sl].reshape(t.n_levels, t.q)
            modes.append(u_t @ lam.T)
            hinv = dstate.h_inverse[sl, sl]
            blocks = np.stack(
                [hinv[k * t.q : (k + 1) * t.q, k * t.q : (k + 1) * t.q] for k in range(t.n_levels)]
            )
            cond_cov.append(np.einsum("ab,kbc,dc->kad", lam, blocks, lam))
        factorisation = "dense"
    return EngineFit(
        params=x,
        vcov=vcov,
        loglik=opt.loglik,
        modes=modes,
        cond_cov=cond_cov,
        optimum=opt,
        factorisation=factorisation,
        messages=messages,
    )
