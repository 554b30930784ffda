"""The approximate log-likelihood objective over (β, θ) and the GLM start (IRLS).

See :mod:`mesostats.mixed.glmm` for the method.
"""

from __future__ import annotations

import numpy as np

from mesostats.mixed.laplace import (
    CanonicalFamily,
    FloatArray,
    GeneralLaplace,
)
from mesostats.mixed.quadrature import ScalarRandomEffect

__all__ = ["ApproximateLoglik", "glm_irls"]


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

    def hessian(self, x: FloatArray) -> FloatArray | None:
        """Exact Hessian at x where it is available (one scalar random effect, Laplace:
        :meth:`ScalarRandomEffect.laplace_hessian`); None otherwise (difference the gradient)."""
        engine = self.engine
        if isinstance(engine, ScalarRandomEffect) and engine.n_nodes == 1:
            return engine.laplace_hessian(x[: self.n_beta], float(x[self.n_beta]))
        return None

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
