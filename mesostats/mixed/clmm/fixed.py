"""Cumulative link model without random effects (ordinal::clm's model): Newton, exact Hessian.

P(Y ≤ j) = F(θ_j − xᵀβ), θ = J α. With a = θ_y − η and c = θ_{y−1} − η per observation and
ℓ = log(F(a) − F(c)) (:func:`.ordinal.ordinal_terms`), the score and the exact Hessian over
(α, β) are sums of per-observation terms:

    ∂ℓ/∂θ_y = ℓ_a,  ∂ℓ/∂θ_{y−1} = ℓ_c,  ∂ℓ/∂β = ℓ_η x,
    ∂²ℓ/∂θ_y² = ℓ_aa,  ∂²ℓ/∂θ_{y−1}² = ℓ_cc,  ∂²ℓ/∂θ_y∂θ_{y−1} = ℓ_ac,
    ∂²ℓ/∂β∂θ_y = ∂ℓ_η/∂a x,  ∂²ℓ/∂β∂θ_{y−1} = ∂ℓ_η/∂c x,  ∂²ℓ/∂β∂βᵀ = ℓ_ηη x xᵀ,

(the outer thresholds ±∞ contribute nothing), mapped to α by Jᵀ. The log-likelihood is
concave for log-concave F (Pratt 1981, *JASA* 76), so plain Newton with step halving
converges from the starting values; this is ``clm``'s algorithm (Christensen 2019,
*Cumulative link models for ordinal regression with the R package ordinal*, appendix A).
Written here because no Python library fits clm's threshold structures with its names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesostats.mixed.clmm.links import INFINITY, Link
from mesostats.mixed.clmm.optimise import NewtonResult
from mesostats.mixed.clmm.ordinal import ordinal_terms, threshold_sums
from mesostats.mixed.clmm.thresholds import ThresholdStructure

__all__ = ["FixedFit", "fit_fixed"]

_MAX_STEP = 2.0


@dataclass
class FixedFit:
    """Estimates (α, β), their covariance, log-likelihood and the Newton record."""

    params: np.ndarray
    vcov: np.ndarray
    loglik: float
    optimum: NewtonResult
    messages: list[str]


class _FixedOrdinal:
    def __init__(self, link: Link, y: np.ndarray, X: np.ndarray, J: np.ndarray) -> None:
        self.link, self.y, self.X, self.J = link, y, X, J
        self.n_cut, self.na = J.shape

    def _evaluate(self, x: np.ndarray, order: int) -> tuple[float, np.ndarray, np.ndarray]:
        na, y, X = self.na, self.y, self.X
        cuts = self.J @ x[:na]
        empty = np.empty(0)
        if np.any(np.diff(cuts) <= 0):
            return -np.inf, empty, empty
        eta = X @ x[na:]
        ext = np.concatenate([[-INFINITY], cuts, [INFINITY]])
        t = ordinal_terms(self.link, ext[y + 1] - eta, ext[y] - eta, 2 if order else 1)
        f = float(np.sum(t.loglik))
        if order == 0 or not np.isfinite(f):
            return f, empty, empty
        assert t.l1_a is not None and t.l1_c is not None and t.l2 is not None
        k = self.n_cut
        up = y < k  # observations with a finite upper threshold (index y)
        lo = y > 0  # … with a finite lower threshold (index y − 1)
        g_cut = threshold_sums(y, t.la, t.lc, k)
        grad = np.concatenate([self.J.T @ g_cut, X.T @ t.l1])
        lac = -t.la * t.lc
        laa = -t.l1_a - lac
        lcc = -t.l1_c - lac
        # threshold × threshold block (cut points), then through J
        H_cut = np.zeros((k, k))
        np.add.at(H_cut, (y[up], y[up]), laa[up])
        np.add.at(H_cut, (y[lo] - 1, y[lo] - 1), lcc[lo])
        both = up & lo
        np.add.at(H_cut, (y[both], y[both] - 1), lac[both])
        np.add.at(H_cut, (y[both] - 1, y[both]), lac[both])
        # threshold × β block
        H_cb = np.zeros((k, X.shape[1]))
        np.add.at(H_cb, y[up], t.l1_a[up, None] * X[up])
        np.add.at(H_cb, y[lo] - 1, t.l1_c[lo, None] * X[lo])
        H_bb = (X * t.l2[:, None]).T @ X
        J = self.J
        hess = np.block([[J.T @ H_cut @ J, J.T @ H_cb], [H_cb.T @ J, H_bb]])
        return f, grad, hess

    def newton(self, x0: np.ndarray, max_iter: int = 100, tol: float = 1e-12) -> NewtonResult:
        x = x0.copy()
        f, g, H = self._evaluate(x, 2)
        count, message, converged, decrement, iterations = 1, "", False, np.inf, 0
        for it in range(1, max_iter + 1):
            iterations = it
            try:
                step = np.linalg.solve(-H, g)
            except np.linalg.LinAlgError:
                message = "the Hessian is singular"
                break
            decrement = 0.5 * float(g @ step)
            if not decrement >= 0:
                message = "the Hessian is not negative definite"
                break
            if decrement < tol:
                converged, message = True, "converged"
                break
            longest = float(np.max(np.abs(step)))
            if longest > _MAX_STEP:
                step *= _MAX_STEP / longest
            t = 1.0
            for _ in range(60):
                f_new = self._evaluate(x + t * step, 0)[0]
                count += 1
                if np.isfinite(f_new) and f_new >= f - 1e-12 * abs(f):
                    break
                t *= 0.5
            else:
                message = "step halving failed: no ascent along the Newton direction"
                break
            x = x + t * step
            f, g, H = self._evaluate(x, 2)
            count += 1
        else:
            message = f"no convergence in {max_iter} Newton iterations"
        return NewtonResult(
            x=x,
            loglik=f,
            gradient=g,
            hessian=H,
            iterations=iterations,
            n_evaluations=count,
            newton_decrement=decrement,
            converged=converged,
            message=message,
        )


def fit_fixed(y: np.ndarray, X: np.ndarray, link: Link, structure: ThresholdStructure) -> FixedFit:
    """Maximum-likelihood fit of a cumulative link model with no random effects."""
    k = structure.jacobian.shape[0] + 1
    cum = np.cumsum(np.bincount(y, minlength=k))[:-1] / y.size
    x0 = np.concatenate([structure.start(link.quantile(cum)), np.zeros(X.shape[1])])
    model = _FixedOrdinal(link, y, X, structure.jacobian)
    opt = model.newton(x0)
    messages = [] if opt.converged else [f"The optimiser stopped: {opt.message}."]
    vcov = np.full((x0.size, x0.size), np.nan)
    info = -opt.hessian
    try:
        np.linalg.cholesky(info)
        vcov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        messages.append(
            "The Hessian of the log-likelihood is not negative definite at the optimum, so "
            "standard errors are not available; the model may be over-parameterised."
        )
    return FixedFit(params=opt.x, vcov=vcov, loglik=opt.loglik, optimum=opt, messages=messages)
