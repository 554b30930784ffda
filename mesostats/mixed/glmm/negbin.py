"""Negative-binomial (NB2) GLMM: the log-link count model with Var(y) = μ + μ²/k.

Model (glmmTMB's ``nbinom2``; Brooks et al. 2017, *R Journal* 9(2); Hilbe 2011, *Negative
Binomial Regression*, ch. 8): ``log μ = Xβ + offset + ZΛ(θ)u``, ``u ~ N(0, I)``, and given u

    ℓ_i(η; k) = log Γ(y+k) − log Γ(k) − log y! + k log k + yη − (y+k) log(k + e^η).

**The binomial form.** For fixed k, the η-dependent part of ℓ_i is exactly a binomial–logit
log-likelihood with ``n_i = y_i + k`` "trials", proportion ``y_i/(y_i+k)`` and the offset
shifted by ``−log k``:

    yη − (y+k) log(k + e^η) = n [p̃ η' − log(1 + e^{η'})] − k log k,   η' = η − log k,

(the NB is a gamma mixture of Poissons whose kernel is that of a binomial with a logit link;
e.g. Hilbe 2011, §8.2). Its second η-derivative ``−(y+k)kμ/(k+μ)²`` is the *observed*
information, so the binomial engines' penalised IRLS, Laplace log-determinant and adaptive
Gauss–Hermite sums (:mod:`mesostats.mixed.laplace`, :mod:`mesostats.mixed.quadrature`) compute
the NB2 Laplace / AGQ marginal log-likelihood exactly as glmmTMB's Laplace does (TMB uses the
observed Hessian), with their exact gradients over (β, θ); only the constant
``Σ [log Γ(y+k) − log Γ(k) − log y!]`` is swapped in. No new linear algebra, only a new
objective (the family plugs into the shared engine, as ARCHITECTURE.md asks).

**The dispersion.** log k is a third block of the outer parameters: the approximate
log-likelihood is maximised jointly over (β, θ, log k) by the shared optimiser
(:func:`mesostats.mixed.glmm.optimise.maximise`). β and θ keep the engines' exact gradients;
the derivative in log k is exact for the Laplace approximation with one scalar random effect
(the common case; :meth:`NegBinLoglik._scalar_laplace`) and a central difference of the
objective otherwise (AGQ, vector or several random effects: step 1e-4, two warm-started
evaluations; the engines are written for a fixed response).
Standard errors come from the inverse negative Hessian over (β, θ, log k), as TMB's
``sdreport`` (Kristensen et al. 2016, *J. Stat. Softw.* 70(5)); SE(k) = k·SE(log k) (delta
method). log k is bounded above by :data:`LOG_K_MAX`: there the NB is a Poisson to within
rounding, and a fit that runs to it is reported in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy.special import digamma, gammaln

from mesostats.mixed.design import single_threaded_blas
from mesostats.mixed.glmm.core import (
    RandomTermArrays,
    _beta_block_covariance,
    _factorisation,
    _merge_terms,
    conditional_effects,
    make_objective,
    preconditioner,
)
from mesostats.mixed.glmm.objective import ApproximateLoglik, glm_irls
from mesostats.mixed.glmm.optimise import Optimum, maximise
from mesostats.mixed.laplace import CanonicalFamily, FloatArray, GeneralLaplace
from mesostats.mixed.quadrature import ScalarRandomEffect

__all__ = ["LOG_K_MAX", "NegBinCore", "NegBinLoglik", "fit_negbin_arrays"]

#: Upper bound of log k (k ≈ 1.2e6): beyond it the NB2 likelihood differs from the Poisson one
#: by less than the rounding of the binomial form (whose "trials" y + k grow with k).
LOG_K_MAX = 14.0
#: log k above which the k → ∞ boundary is tried too (see :func:`_maximise`).
_BOUNDARY_CHECK = float(np.log(1e3))
#: Step of the central difference in log k.
_LOG_K_STEP = 1e-4
_BINOMIAL = CanonicalFamily("binomial")


def nb_loglik_rows(y: FloatArray, eta: FloatArray, k: float) -> FloatArray:
    """NB2 log-likelihood of each row at linear predictor η (log link), dispersion k."""
    log_k_mu = np.logaddexp(np.log(k), eta)
    return np.asarray(
        gammaln(y + k)
        - gammaln(k)
        - gammaln(y + 1.0)
        + k * np.log(k)
        + y * eta
        - (y + k) * log_k_mu
    )


class NegBinLoglik:
    """(β, θ, log k) ↦ NB2 Laplace / AGQ log-likelihood and gradient (see module docstring).

    Has the interface of :class:`ApproximateLoglik` that the optimiser and the preconditioner
    use (``n_beta``, ``engine``, ``__call__``, ``gradient``, evaluation counters); the engine is
    a binomial one whose response is re-expressed for each k.
    """

    def __init__(
        self,
        y: FloatArray,
        weights: FloatArray,
        offset: FloatArray,
        X: FloatArray,
        factors: list,  # list[GroupingFactor]
        nagq: int,
        log_k: float,
    ) -> None:
        self.y = np.asarray(y, dtype=float)
        self.prior = np.asarray(weights, dtype=float)
        self.offset = np.asarray(offset, dtype=float)
        self.n = len(self.y)
        self.log_k = np.nan
        self.X = X
        self.nagq = nagq
        self._counts, inverse = np.unique(self.y, return_inverse=True)
        self._count_index = inverse.ravel()
        self._w_by_count = np.bincount(
            inverse.ravel(), weights=self.prior, minlength=len(self._counts)
        )
        self._log_count_fact = gammaln(self._counts + 1.0)
        inner: ApproximateLoglik = make_objective(
            _BINOMIAL, *self._binomial_form(log_k)[:3], X, factors, nagq
        )
        self.inner = inner
        self.engine = inner.engine
        self.n_beta = inner.n_beta
        self.n_theta = inner.n_theta + 1  # θ and log k: what the optimiser treats as non-β
        self.n_evaluations = 0
        self.newton_failures = 0
        self.set_log_k(log_k)

    def _binomial_form(self, log_k: float) -> tuple[FloatArray, FloatArray, FloatArray, float]:
        """(proportion, trials, offset, constant) of the binomial form at this k.

        The constant Σ w·[log Γ(y+k) − log Γ(k) − log y!] is summed over the distinct counts
        (a few hundred) rather than the rows: it is recomputed at every new k.
        """
        k = float(np.exp(log_k))
        trials = self.y + k
        # per distinct count the three terms nearly cancel: summing their (small) difference
        # keeps the rounding of the total near 1e-9 (the separate sums are ~1e8 at 20,000 × 10)
        per_count = gammaln(self._counts + k) - gammaln(k) - self._log_count_fact
        const = math.fsum(self._w_by_count * per_count)
        return self.y / trials, self.prior * trials, self.offset - log_k, const

    def set_log_k(self, log_k: float) -> None:
        """Re-express the engine's response for dispersion exp(log_k).

        The engines read their response from these attributes at every evaluation (and hold
        nothing derived from them but warm starts); an engine without one of them is refused
        rather than left evaluating the old response.
        """
        if log_k == self.log_k:
            return
        prop, trials, offset, const = self._binomial_form(log_k)
        engine = self.engine
        values: dict[str, object] = {"y": prop, "weights": trials, "offset": offset, "const": const}
        target: object = engine.data if isinstance(engine, GeneralLaplace) else engine
        if not isinstance(engine, GeneralLaplace):
            values["wy"] = trials * prop
        missing = [name for name in values if not hasattr(target, name)]
        if missing:  # pragma: no cover - guards against a change of the engines' layout
            raise RuntimeError(f"the GLMM engine has no response attribute(s) {missing}")
        for name, value in values.items():
            setattr(target, name, value)
        self.log_k = log_k

    def _value(self, x: FloatArray, gradient: bool) -> tuple[float, FloatArray | None]:
        self.set_log_k(float(x[-1]))
        before = self.inner.newton_failures
        ll, g = self.inner(x[:-1], gradient=gradient)
        self.newton_failures += self.inner.newton_failures - before
        return ll, g

    def __call__(self, x: FloatArray, gradient: bool = True) -> tuple[float, FloatArray | None]:
        self.n_evaluations += 1
        x = np.asarray(x, dtype=float)
        if not gradient:
            return self._value(x, False)
        if self.nagq == 1 and isinstance(self.engine, ScalarRandomEffect):
            return self._scalar_laplace(x)
        h = _LOG_K_STEP
        up, down = x.copy(), x.copy()
        up[-1] += h
        down[-1] -= h
        ll_up = self._value(up, False)[0]
        ll_down = self._value(down, False)[0]
        ll, g = self._value(x, True)  # last: the engine's state (modes) is at x
        if g is None:  # pragma: no cover - gradient=True always returns one
            raise RuntimeError("gradient missing")
        return ll, np.append(g, (ll_up - ll_down) / (2.0 * h))

    def _scalar_laplace(self, x: FloatArray) -> tuple[float, FloatArray]:
        """Laplace, one scalar random effect: value and exact gradient, log k included.

        With ``H_g = 1 + θ² Σ z² W_i`` (W = −∂²ℓ/∂η², the observed information), the
        envelope theorem at the modes û and the implicit-function theorem for dû/dk give

            dℓ/dk = Σ_i ∂ℓ_i/∂k|_η − ½ Σ_g (θ²/H_g) Σ_{i∈g} z_i² (∂W_i/∂k|_η + W_i' θ z_i dû_g/dk),
            dû_g/dk = (θ/H_g) Σ_{i∈g} z_i ∂r_i/∂k|_η,   r = ∂ℓ/∂η = k(y − μ)/(k + μ),

        with ``∂ℓ/∂k|_η = ψ(y+k) − ψ(k) + log k + 1 − log(k+μ) − (y+k)/(k+μ)``,
        ``∂W/∂k = μ(yμ − yk + 2kμ)/(k+μ)³``, ``W' = ∂W/∂η = (y+k)kμ(k−μ)/(k+μ)³`` and
        ``∂r/∂k = μ(y−μ)/(k+μ)²`` (each times the prior weight).
        """
        ll, g = self._value(x, True)
        if g is None:  # pragma: no cover - gradient=True always returns one
            raise RuntimeError("gradient missing")
        engine = self.engine
        assert isinstance(engine, ScalarRandomEffect)
        beta, theta, log_k = x[: self.n_beta], float(x[self.n_beta]), float(x[-1])
        k = float(np.exp(log_k))
        u = engine.conditional_modes(engine.linear_predictor(beta), theta)[0]  # cached: at x
        z, codes, y, w = engine.z, engine.codes, self.y, self.prior
        eta = self.X @ beta + self.offset + theta * z * u[codes]
        mu = np.exp(np.minimum(eta, 700.0))
        kmu = k + mu
        psi = (digamma(self._counts + k) - digamma(k))[self._count_index]
        d_ll = w * (psi + log_k + 1.0 - np.log(kmu) - (y + k) / kmu)
        info = w * (y + k) * k * mu / kmu**2
        d_info = w * mu * (y * mu - y * k + 2.0 * k * mu) / kmu**3
        info_eta = info * (k - mu) / kmu
        d_r = w * mu * (y - mu) / kmu**2
        n_groups = engine.n_groups
        hess = 1.0 + theta**2 * np.bincount(codes, weights=z * z * info, minlength=n_groups)
        du = theta * np.bincount(codes, weights=z * d_r, minlength=n_groups) / hess
        d_hess = theta**2 * np.bincount(
            codes, weights=z * z * (d_info + info_eta * theta * z * du[codes]), minlength=n_groups
        )
        d_k = float(np.sum(d_ll) - 0.5 * np.sum(d_hess / hess))
        return ll, np.append(g, k * d_k)

    def hessian(self, x: FloatArray) -> FloatArray | None:
        """No exact Hessian over (β, θ, log k): None, so the optimiser differences the
        gradient (the interface of :meth:`ApproximateLoglik.hessian`)."""
        return None

    def gradient(self, x: FloatArray) -> FloatArray:
        """Gradient at x (exact in (β, θ); in log k exact for the scalar Laplace, else a
        central difference)."""
        grad = self(x, gradient=True)[1]
        if grad is None:  # pragma: no cover
            raise RuntimeError("gradient requested but not computed")
        return grad


@dataclass
class NegBinCore:
    """Numbers of a fitted NB2 GLMM (design θ order) before they become MixedResults."""

    beta: FloatArray
    theta: FloatArray
    log_k: float
    vcov_beta: FloatArray
    vcov_theta: FloatArray | None  # θ block of the inverse Hessian
    se_log_k: float  # nan when k is on its bound or the Hessian is not negative definite
    loglik: float
    modes: list[FloatArray]
    cond_sd: list[FloatArray]
    cond_cov: list[FloatArray]
    factor_terms: list[list[int]]
    optimum: Optimum
    poisson_loglik: float  # the Poisson GLM start (no random effects)
    at_boundary: bool  # log k ran to LOG_K_MAX
    messages: list[str]
    factorisation: str  # OptSummary.factorisation


def _moment_log_k(y: FloatArray, mu: FloatArray) -> float:
    """Start for log k: moments of the Poisson-GLM residuals, E(y−μ)² − μ = μ²/k."""
    excess = float(np.sum((y - mu) ** 2 - mu))
    k0 = float(np.sum(mu**2)) / excess if excess > 0 else np.exp(LOG_K_MAX - 4.0)
    return float(np.clip(np.log(k0), -5.0, LOG_K_MAX - 4.0))


def _maximise(
    objective: NegBinLoglik,
    x0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    scale: FloatArray,
    freeze: np.ndarray,
) -> Optimum:
    """:func:`maximise` over (β, θ, log k), then the k → ∞ boundary when k ended large.

    The log-likelihood is flat in log k as k grows (its slope is O(1/k)), so a quasi-Newton
    run on data without overdispersion stops at some large interior k. When k > 1e3, (β, θ)
    are also maximised with log k held at :data:`LOG_K_MAX` (the Poisson limit), and that
    point is kept if its log-likelihood is lower by at most 1e-6 (the boundary snap of
    :func:`maximise`, done for an upper bound).
    """
    # NegBinLoglik has the interface of ApproximateLoglik that these two use
    shared = cast(ApproximateLoglik, objective)
    precond = preconditioner(shared, x0, lower, upper, scale)
    opt = maximise(shared, x0, lower, upper, scale, preconditioner=precond, freeze=freeze)
    if opt.x[-1] < _BOUNDARY_CHECK or opt.x[-1] >= LOG_K_MAX:
        return opt
    x_b = opt.x.copy()
    x_b[-1] = LOG_K_MAX
    lower_b = lower.copy()
    lower_b[-1] = LOG_K_MAX
    precond = preconditioner(shared, x_b, lower_b, upper, scale)
    at_bound = maximise(shared, x_b, lower_b, upper, scale, preconditioner=precond, freeze=freeze)
    # between k ≈ 1e5 and ∞ the log-likelihood changes by O(Σμ²/k), below its rounding and the
    # optimiser's tolerance: the boundary is kept unless the interior point is clearly better
    # (or is no proper maximum: its Hessian is then flat and rounding-signed in log k)
    improper = not np.isfinite(opt.newton_decrement) and at_bound.converged
    return at_bound if improper or at_bound.loglik >= opt.loglik - 1e-6 else opt


def fit_negbin_arrays(
    y: FloatArray,
    weights: FloatArray,
    offset: FloatArray,
    X: FloatArray,
    terms: list[RandomTermArrays],
    nagq: int = 1,
    separated: list[int] | None = None,
) -> NegBinCore:
    """Fit an NB2 GLMM on raw arrays (see the module docstring for the method).

    ``separated`` lists coefficients whose estimate diverges (every count 0 where an
    indicator is 1): they are held after the quasi-Newton stage and get an infinite variance,
    as in :func:`mesostats.mixed.glmm.core.fit_arrays`.
    """
    with single_threaded_blas():
        return _fit(y, weights, offset, X, terms, nagq, separated or [])


def _fit(
    y: FloatArray,
    weights: FloatArray,
    offset: FloatArray,
    X: FloatArray,
    terms: list[RandomTermArrays],
    nagq: int,
    separated: list[int],
) -> NegBinCore:
    poisson = CanonicalFamily("poisson")
    glm_beta, glm_cov, glm_ll = glm_irls(poisson, y, weights, offset, X)
    log_k0 = _moment_log_k(y, poisson.mean(X @ glm_beta + offset))
    factors, perm = _merge_terms(terms)
    n_beta = X.shape[1]
    theta_diag = np.array([i == j for f in factors for i, j in f.positions])
    n_theta = len(theta_diag)
    # the Poisson GLM's SEs understate the NB ones: widen the scale of β a little
    beta_scale = 2.0 * np.sqrt(np.clip(np.diag(glm_cov), 1e-12, None))
    beta_scale = np.where(np.isfinite(beta_scale), beta_scale, 1.0)
    x0 = np.concatenate([glm_beta, np.where(theta_diag, 1.0, 0.0), [log_k0]])
    lower = np.concatenate(
        [np.full(n_beta, -np.inf), np.where(theta_diag, 0.0, -np.inf), [-np.inf]]
    )
    upper = np.concatenate([np.full(n_beta + n_theta, np.inf), [LOG_K_MAX]])
    scale = np.concatenate([beta_scale, np.full(n_theta, 0.25), [0.25]])

    objective = NegBinLoglik(y, weights, offset, X, factors, 1, log_k0)
    freeze = np.zeros(len(x0), dtype=bool)
    freeze[separated] = True
    opt = _maximise(objective, x0, lower, upper, scale, freeze)
    if nagq > 1:
        objective = NegBinLoglik(y, weights, offset, X, factors, nagq, float(opt.x[-1]))
        # from the Laplace optimum (close to the AGQ one), unless θ ended on its bound
        # (θ = 0 is stationary for every AGQ objective); θ and log k are both bounded, so
        # the preconditioner is the block-diagonal one of `preconditioner`
        start = opt.x if np.all(opt.free[n_beta:-1]) else x0
        opt = _maximise(objective, start, lower, upper, scale, freeze)
    messages = list(opt.messages)
    x = opt.x
    beta, theta_engine, log_k = x[:n_beta], x[n_beta:-1], float(x[-1])
    failures = objective.newton_failures
    objective(x, gradient=False)
    if objective.newton_failures > failures:
        messages.append(
            "The inner Newton iterations for the conditional modes did not converge at the "
            f"optimum found (log-likelihood {opt.loglik:.6g}): the estimates and their "
            "standard errors are unreliable. Check for extreme counts; rescale covariates."
        )
        opt.converged = False
    at_boundary = log_k >= LOG_K_MAX - 1e-8

    free = opt.free & ~freeze
    idx = np.flatnonzero(free)
    free_beta = np.flatnonzero(free[:n_beta])
    vcov_theta: FloatArray | None = None
    se_log_k = np.nan
    try:
        chol = np.linalg.cholesky(-opt.hessian[np.ix_(idx, idx)])
        chol_inv = np.linalg.inv(chol)
        cov_free = np.asarray(chol_inv.T @ chol_inv)
        vcov = np.zeros((n_beta, n_beta))
        vcov[np.ix_(free_beta, free_beta)] = cov_free[: len(free_beta), : len(free_beta)]
        vcov[freeze[:n_beta], freeze[:n_beta]] = np.inf
        if np.all(free[n_beta:-1]):
            inv_perm = np.argsort(perm)
            nf = len(free_beta)
            block = cov_free[nf : nf + n_theta, nf : nf + n_theta]
            vcov_theta = block[np.ix_(inv_perm, inv_perm)]
        if free[-1]:
            se_log_k = float(np.sqrt(cov_free[-1, -1]))
    except np.linalg.LinAlgError:
        messages.append(
            "The Hessian over (β, θ, log k) is not negative definite at the optimum, so the "
            "standard errors come from the β block alone (θ and k held fixed); they are too "
            "small if those are uncertain. Simplify the random-effect structure."
        )
        vcov = _beta_block_covariance(-opt.hessian[:n_beta, :n_beta], freeze[:n_beta])
        opt.converged = False

    objective.set_log_k(log_k)
    inner = objective.inner
    modes, cond_sd, cond_cov = conditional_effects(inner, beta, theta_engine, factors, terms)
    theta = np.empty(n_theta)
    theta[perm] = theta_engine
    return NegBinCore(
        beta=beta,
        theta=theta,
        log_k=log_k,
        vcov_beta=vcov,
        vcov_theta=vcov_theta,
        se_log_k=se_log_k,
        loglik=opt.loglik,
        modes=modes,
        cond_sd=cond_sd,
        cond_cov=cond_cov,
        factor_terms=[list(f.term_ids) for f in factors],
        optimum=opt,
        poisson_loglik=glm_ll,
        at_boundary=at_boundary,
        messages=messages,
        factorisation=_factorisation(inner),
    )


def boundary_message(log_k: float) -> str:
    """The words for a dispersion that ran to its upper bound (no overdispersion)."""
    return (
        f"The negative-binomial dispersion k ran to {np.exp(log_k):.2g} (the boundary): the "
        "counts show no overdispersion beyond the random effects; a Poisson model "
        "(family='poisson') gives the same fit."
    )
