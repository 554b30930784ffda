"""The GLMM fit on arrays: random-effect terms, objectives, start, fit, conditional modes.

See :mod:`mesostats.mixed.glmm` for the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.design import MixedDesign, single_threaded_blas
from mesostats.mixed.factors import GroupingFactor, grouping_factors
from mesostats.mixed.glmm.checks import _check_family, _check_nagq
from mesostats.mixed.glmm.objective import ApproximateLoglik, glm_irls
from mesostats.mixed.glmm.optimise import Optimum, maximise
from mesostats.mixed.laplace import (
    CanonicalFamily,
    FloatArray,
    GeneralLaplace,
    GeneralLaplaceData,
    IntArray,
)
from mesostats.mixed.quadrature import ScalarRandomEffect

__all__ = ["RandomTermArrays", "design_objective", "fit_arrays", "make_objective", "term_arrays"]


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


#: The GLMM's grouping factor is the shared one (:mod:`mesostats.mixed.factors`).
_Factor = GroupingFactor


def _merge_terms(terms: list[RandomTermArrays]) -> tuple[list[GroupingFactor], IntArray]:
    """Grouping factors from terms, and ``perm`` with engine θ = design θ[perm]."""
    factors = grouping_factors(terms)
    perm = np.concatenate([f.theta_ids for f in factors]).astype(np.int64)
    return factors, perm


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
    factorisation: str  # OptSummary.factorisation: "scalar", "dense Schur" or "sparse"


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
        ``objective(x)`` / ``objective.gradient(x)`` with ``x = (β, θ_engine)``; the same
        objective :func:`fit_glmm` maximises (Bates et al. 2015, *J. Stat. Softw.* 67(1);
        Pinheiro & Bates 1995 for AGQ).
    perm : numpy.ndarray
        ``θ_engine = θ_design[perm]`` (the engine merges terms that share a grouping factor,
        e.g. the pieces of ``(x || g)``).
    """
    family = _check_family(family)
    if family == "negative_binomial":
        raise ModelSpecError(
            "Profile and likelihood-ratio computations over (β, θ) are not available for "
            "negative-binomial fits yet (their objective also has the dispersion k); use the "
            "Wald intervals of `fixed_effects`."
        )
    factors, perm = _merge_terms(term_arrays(design))
    objective = make_objective(
        CanonicalFamily(family),
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
    return _upper_inverse(chol)


def _upper_inverse(chol: np.ndarray) -> FloatArray:
    """``inv(chol)ᵀ`` for a lower-triangular ``chol``, exactly upper triangular (the general
    inverse leaves rounding-level entries below the diagonal, ~1e-12 on badly scaled fits,
    which would mix a bounded θ with β: :func:`maximise` refuses that)."""
    return np.asarray(np.triu(np.linalg.inv(chol).T), dtype=np.float64)


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
    """Fit a GLMM on raw arrays (see :mod:`mesostats.mixed.glmm` for the method).

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
            precond = _upper_inverse(chol)
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
        factorisation=_factorisation(objective),
    )


def _factorisation(objective: ApproximateLoglik) -> str:
    """How the objective factorises ΛᵀZᵀWZΛ + I (OptSummary.factorisation)."""
    engine = objective.engine
    if isinstance(engine, GeneralLaplace):
        return "sparse" if engine.sparse else "dense Schur"
    return "scalar"


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
