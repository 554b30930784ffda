"""One scalar random effect per group: conditional modes, Laplace and adaptive Gauss–Hermite.

Model: ``η_i = x_iᵀβ + offset_i + θ z_i u_g(i)``, ``u_g ~ N(0, 1)`` independent, canonical link
(binomial–logit or Poisson–log); ``z_i = 1`` for a random intercept. The marginal
log-likelihood splits into one integral per group,

    ℓ_g = log ∫ exp(Σ_{i∈g} ℓ_i(η_i(u)) − u²/2) (2π)^{-1/2} du.

*Adaptive Gauss–Hermite quadrature* (Pinheiro & Bates 1995, *J. Comput. Graph. Stat.* 4(1),
12–35; Liu & Pierce 1994, *Biometrika* 81(3)) centres the K Hermite nodes (numpy's
``hermgauss``) at each group's conditional mode ``û_g`` and scales them by its conditional SD
``σ_g = (1 + θ² Σ z_i² w_i)^{-1/2}``:

    ℓ_g ≈ log σ_g + log Σ_k ω_k exp(g(û_g + √2 σ_g x_k)),  ω_k = w_k e^{x_k²} / √π,

with ``g(u) = Σ ℓ_i − u²/2``. K = 1 is exactly the Laplace approximation. ``ℓ_i`` includes
log C(n, y) (binomial) or −log y! (Poisson): the scale of lme4's nAGQ = 1 ``logLik`` and of
glmmTMB, for every K — lme4 drops that constant for nAGQ > 1 on aggregated binomial data
(lme4 issue #161); we do not.

The conditional modes come from Newton's method on all groups at once (``np.bincount`` for the
per-group sums) with per-group step halving (Bates et al. 2015, *J. Stat. Softw.* 67(1), §5).
The gradient over (β, θ) is exact: the node positions depend on (β, θ) through ``û_g`` and
``σ_g``, whose derivatives follow from the implicit-function theorem applied to the mode
equation ``θ Σ z_i r_i(û) = û`` (``r_i = ∂ℓ_i/∂η``); for K = 1 the terms in ``g'(û)`` vanish.
For K = 1 the Hessian over (β, θ) is exact too (:meth:`ScalarRandomEffect.laplace_hessian`:
the same algebra one order further, with the third and fourth derivatives of the cumulant).

Why hand-written: no Python library fits a maximum-likelihood GLMM (statsmodels offers only
variational Bayes / MAP), and this vectorised form is what makes 20,000-group fits fast.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.polynomial.hermite import hermgauss

from mesostats.mixed.laplace import CanonicalFamily, FloatArray, IntArray

MAX_NODES = 100


def quadrature_rule(n_nodes: int) -> tuple[FloatArray, FloatArray]:
    """Standardised adaptive-GHQ abscissae ``t_k = √2 x_k`` and log weights ``log ω_k``.

    With these, ``∫ f(u) φ(u) du ≈ σ Σ_k ω_k f(û + σ t_k) φ(û + σ t_k) / φ(0)``-style sums as
    in the module docstring. ``n_nodes = 1`` gives ``t = 0``, ``log ω = 0`` (Laplace).
    """
    return _rule(int(n_nodes))


@functools.lru_cache(maxsize=128)
def _rule(n_nodes: int) -> tuple[FloatArray, FloatArray]:
    """:func:`quadrature_rule`, computed once per ``n_nodes`` (read-only arrays)."""
    x, w = hermgauss(n_nodes)
    t, log_omega = np.sqrt(2.0) * x, np.log(w) + x**2 - 0.5 * np.log(np.pi)
    t.setflags(write=False)
    log_omega.setflags(write=False)
    return t, log_omega


def _fourth_cumulant(family: CanonicalFamily, mu: FloatArray) -> FloatArray:
    """The fourth derivative of the cumulant, ``b''''(η)``, given μ (the η-derivative of the
    slope of ``variance_and_slope``): ``v (1 − 6v)`` with ``v = μ(1 − μ)`` for the binomial,
    μ for the Poisson."""
    if family.name == "binomial":
        v = mu * (1.0 - mu)
        return v * (1.0 - 6.0 * v)
    return mu


@dataclass
class ScalarEvaluation:
    """Result of one evaluation at (β, θ)."""

    loglik: float
    u: FloatArray  # conditional modes of the spherical effects, one per group
    cond_sd: FloatArray  # σ_g, the conditional SD of u_g (Laplace scale)
    gradient: FloatArray | None
    newton_iterations: int
    converged: bool


class ScalarRandomEffect:
    """Laplace / AGQ log-likelihood and its exact gradient for one scalar random effect.

    Parameters
    ----------
    family : CanonicalFamily
    y, weights, offset : (n,) arrays
        Response (binomial: proportion), prior weights (binomial: trials), offset.
    X : (n, p) array
        Fixed-effects model matrix.
    z : (n,) array
        The random-effect column (ones for a random intercept).
    codes : (n,) int array
        Group of each row, 0 … n_groups − 1.
    n_groups : int
    n_nodes : int
        1 = Laplace, 2…100 = adaptive Gauss–Hermite nodes.

    Notes
    -----
    Matrix–vector products use ``np.einsum`` on a contiguous (p, n) copy of X: for these tall,
    thin products it is as fast as BLAS and does not spin up BLAS threads.
    """

    def __init__(
        self,
        family: CanonicalFamily,
        y: FloatArray,
        weights: FloatArray,
        offset: FloatArray,
        X: FloatArray,
        z: FloatArray,
        codes: IntArray,
        n_groups: int,
        n_nodes: int = 1,
    ) -> None:
        self.family = family
        self.y = y
        self.weights = weights
        self.offset = offset
        self.XT = np.ascontiguousarray(X.T)
        self.unit_z = bool(np.all(z == 1.0))
        self.z = z
        self.z2 = z * z
        self.z3 = self.z2 * z
        self.codes = codes
        self.n_groups = n_groups
        self.const = family.log_normaliser(y, weights)
        self.wy = weights * y
        self.t, self.log_omega = quadrature_rule(n_nodes)
        self.n_nodes = n_nodes
        self._u = np.zeros(n_groups)
        # first-order prediction of the modes at the next (β, θ) (see `_predicted_modes`)
        self._last: tuple[FloatArray, float, FloatArray, FloatArray, FloatArray] | None = None
        self._node_codes = (np.arange(n_nodes)[:, None] * n_groups + codes[None, :]).ravel()

    # ------------------------------------------------------------------ helpers
    def _sum(self, v: FloatArray) -> FloatArray:
        """Per-group sums of a per-row array."""
        # (with weights, bincount returns float64)
        return cast(FloatArray, np.bincount(self.codes, weights=v, minlength=self.n_groups))

    def _sum_nodes(self, v: FloatArray) -> FloatArray:
        """Per-node, per-group sums of a (K, n) array → (K, G)."""
        k = v.shape[0]
        sums = np.bincount(
            self._node_codes[: k * len(self.codes)], weights=v.ravel(), minlength=k * self.n_groups
        )
        return np.asarray(sums, dtype=np.float64).reshape(k, self.n_groups)

    def _zmul(self, v: FloatArray) -> FloatArray:
        return v if self.unit_z else self.z * v

    # (products with z = 1 are skipped: multiplying by 1.0 changes no bit)
    def _z2mul(self, v: FloatArray) -> FloatArray:
        return v if self.unit_z else v * self.z2

    def _z3mul(self, v: FloatArray) -> FloatArray:
        return v if self.unit_z else self.z3 * v

    def linear_predictor(self, beta: FloatArray) -> FloatArray:
        """Xβ + offset."""
        return np.einsum("j,ji->i", beta, self.XT) + self.offset

    def _state(self, eta_fixed: FloatArray, theta: float, u: FloatArray) -> tuple[FloatArray, ...]:
        """η, μ and the per-group penalised log-likelihood g(u) at u."""
        eta = eta_fixed + theta * self._zmul(u[self.codes])
        b, mu = self.family.cumulant_and_mean(eta)
        g = self._sum(self.wy * eta - self.weights * b) - 0.5 * u * u
        return eta, mu, g

    # ------------------------------------------------------------------ modes
    def _predicted_modes(self, eta_fixed: FloatArray, theta: float) -> FloatArray:
        """Previous modes moved by their first-order change (implicit-function theorem).

        ``dû_g = −(θ/H_g) Σ_i w_i z_i d(x_iᵀβ) + (∂û_g/∂θ) dθ``, with the quantities of the
        previous evaluation: a warm start whose error is second order in the parameter step.
        """
        if self._last is None:
            return self._u
        eta_prev, theta_prev, wz, coef, du_dtheta = self._last
        if theta_prev == 0.0:
            return self._u
        u = self._u - coef * self._sum(wz * (eta_fixed - eta_prev))
        u += du_dtheta * (theta - theta_prev)
        return u

    def _mode_equation(
        self, eta_fixed: FloatArray, theta: float, u: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per group: g'(u) = θ Σ z_i r_i − u and −g''(u) = 1 + θ² Σ z_i² w_i."""
        eta = eta_fixed + theta * self._zmul(u[self.codes])
        mu = self.family.mean_only(eta)
        grad = theta * self._sum(self._zmul(self.wy - self.weights * mu)) - u
        var = self.family.variance(mu)
        hess = 1.0 + theta * theta * self._sum(self._zmul(self._zmul(self.weights * var)))
        return grad, hess

    def conditional_modes(
        self, eta_fixed: FloatArray, theta: float, tol: float = 1e-7, max_iter: int = 100
    ) -> tuple[FloatArray, int, bool]:
        """Newton's method for every group's mode at once, with per-group step halving.

        ``g(u) = Σ ℓ_i − u²/2`` is strictly concave in the scalar u, so along a Newton step
        ``|g'|`` falls until the root: a step is halved while it does not reduce ``|g'(u)|``
        (a merit function that needs no logarithms). Warm-started from a first-order
        prediction; once every step is below ``tol`` the last one is applied, so the modes are
        accurate to O(tol²) (quadratic convergence). Returns (û, iterations, converged).
        """
        if theta == 0.0:
            return np.zeros(self.n_groups), 0, True
        u = self._predicted_modes(eta_fixed, theta)
        if u.shape != (self.n_groups,) or not np.isfinite(u).all():
            u = np.zeros(self.n_groups)
        grad, hess = self._mode_equation(eta_fixed, theta, u)
        for it in range(1, max_iter + 1):
            step = grad / hess
            if np.abs(step).max() < tol:
                u = u + step
                self._u = u
                return u, it, True
            lam = np.ones(self.n_groups)
            for _ in range(60):
                u_new = u + lam * step
                grad_new, hess_new = self._mode_equation(eta_fixed, theta, u_new)
                # (steps that already are at rounding level never count as worse)
                worse = (np.abs(grad_new) >= np.abs(grad)) & (np.abs(grad_new) > 1e-10 * hess_new)
                if not worse.any():
                    break
                lam = np.where(worse, 0.5 * lam, lam)
            u, grad, hess = u_new, grad_new, hess_new
        self._u = u
        return u, max_iter, False

    def beta_information(self, beta: FloatArray, theta: float) -> FloatArray:
        """Approximate −∂²ℓ/∂β²: ``XᵀWX − Σ_g (θ²/H_g) s_g s_gᵀ``, ``s_g = Σ_{i∈g} w_i z_i x_i``.

        The Schur complement of the joint (β, u) information of penalised IRLS (Bates et al.
        2015, §5.2); it omits the derivatives of the log-determinant, so it is used only to
        precondition the optimiser.
        """
        eta_fixed = self.linear_predictor(beta)
        u, _, _ = self.conditional_modes(eta_fixed, theta)
        eta = eta_fixed + theta * self._zmul(u[self.codes])
        w = self.weights * self.family.variance_and_slope(self.family.mean_only(eta))[0]
        xtwx = np.einsum("ji,ki,i->jk", self.XT, self.XT, w)
        if theta == 0.0:
            return np.asarray(xtwx)
        wz = self._zmul(w)
        sums = np.stack([self._sum(wz * row) for row in self.XT], axis=1)  # (G, p)
        hess = 1.0 + theta * theta * self._sum(self._zmul(self._zmul(w)))
        return np.asarray(xtwx - np.einsum("gj,gk,g->jk", sums, sums, theta * theta / hess))

    def _sum_columns(self, rows: FloatArray) -> FloatArray:
        """Per-group sums of each column of a (n, k) array → (G, k)."""
        k = rows.shape[1]
        cells = (self.codes[:, None] * k + np.arange(k)[None, :]).ravel()
        sums = np.bincount(cells, weights=rows.ravel(), minlength=self.n_groups * k)
        return np.asarray(sums, dtype=np.float64).reshape(self.n_groups, k)

    def laplace_hessian(self, beta: FloatArray, theta: float) -> FloatArray:
        """Exact Hessian over (β, θ) of the Laplace log-likelihood (``n_nodes = 1``).

        Per group ``ℓ_g = G(û) − ½ log H(û)`` with ``G(u) = Σ ℓ_i(η_i) − u²/2``,
        ``η_i = x_iᵀβ + θ z_i u`` and ``H = −∂²G/∂u²``. Differentiating twice along the mode
        path ``û(β, θ)`` (implicit-function theorem on ``Q = ∂G/∂u = 0``, as for the gradient;
        the Laplace algebra of Bates et al. 2015, *J. Stat. Softw.* 67(1), §5) gives, with
        φ = (β, θ) and total derivatives ``dH_φ = H_φ + H_u û_φ``::

            ∂²ℓ/∂φ∂φ' = G_φφ' + Q_φ Q_φ'/H + ½ dH_φ dH_φ'/H² − ½ d²H_φφ'/H
            û_φ = Q_φ/H,   û_φφ' = (Q_φφ' − H_φ û_φ' − H_φ' û_φ − H_u û_φ û_φ')/H
            d²H_φφ' = H_φφ' + H_φu û_φ' + H_φ'u û_φ + H_uu û_φ û_φ' + H_u û_φφ'

        Every partial derivative is a sum over the group's rows of ``b''``, ``b'''`` or
        ``b''''`` times products of ``∂η/∂(β, θ, u) = (x, z u, θ z)`` (the only non-zero
        second derivative of η is ``∂²η/∂θ∂u = z``). It replaces the 2(p + 1) gradient
        evaluations of a finite-difference Hessian at the optimum.
        """
        if self.n_nodes != 1:
            raise ValueError("laplace_hessian is the Hessian of the Laplace approximation")
        fam, codes, th = self.family, self.codes, float(theta)
        eta_fixed = self.linear_predictor(beta)
        u, _, _ = self.conditional_modes(eta_fixed, th)
        eta = eta_fixed + th * self._zmul(u[codes])
        mu = fam.mean_only(eta)
        v, dv = fam.variance_and_slope(mu)
        w0 = self.weights * v  # −ℓ''(η)
        w1 = self.weights * dv  # −ℓ'''(η)
        w2 = self.weights * _fourth_cumulant(fam, mu)  # −ℓ''''(η)
        res = self.wy - self.weights * mu  # ℓ'(η)
        # per group: Σ w0 z², Σ w1 z³, Σ w2 z⁴, Σ res z
        s2 = self._sum(self._z2mul(w0))
        t3 = self._sum(self._z3mul(w1))
        v4 = self._sum(self._z2mul(self._z2mul(w2)))
        r1 = self._sum(self._zmul(res))
        # per group: Σ w0 z x, Σ w1 z² x, Σ w2 z³ x  → (G, 3p)
        X = self.XT.T
        p = X.shape[1]
        rows = np.concatenate(
            [
                X * self._zmul(w0)[:, None],
                X * self._z2mul(w1)[:, None],
                X * self._z3mul(w2)[:, None],
            ],
            axis=1,
        )
        cols = self._sum_columns(rows)
        s1x, t2x, v3x = cols[:, :p], cols[:, p : 2 * p], cols[:, 2 * p :]
        h = 1.0 + th * th * s2
        h_u = th**3 * t3
        h_uu = th**4 * v4
        # (G, p + 1): Q_φ, H_φ, H_φu
        q_phi = np.column_stack([-th * s1x, r1 - th * u * s2])
        h_phi = np.column_stack([th * th * t2x, th * th * u * t3 + 2.0 * th * s2])
        h_phi_u = np.column_stack([th**3 * v3x, th**3 * u * v4 + 3.0 * th * th * t3])
        u_phi = q_phi / h[:, None]
        d_h = h_phi + h_u[:, None] * u_phi
        # the terms in G_φφ', H_φφ' and Q_φφ' (group weights 1, c_h, c_q), summed over rows
        c_h = -0.5 / h
        c_q = -0.5 * h_u / (h * h)
        ch_r, cq_r, u_r = c_h[codes], c_q[codes], u[codes]
        d_rows = -w0 + ch_r * th * th * self._z2mul(w2) - cq_r * th * self._zmul(w1)
        e_rows = (
            -u_r * self._zmul(w0)
            + ch_r * (th * th * u_r * self._z3mul(w2) + 2.0 * th * self._z2mul(w1))
            - cq_r * (th * u_r * self._z2mul(w1) + self._zmul(w0))
        )
        out = np.empty((p + 1, p + 1))
        out[:p, :p] = np.einsum("ji,ki,i->jk", self.XT, self.XT, d_rows)
        out[:p, p] = out[p, :p] = np.einsum("ji,i->j", self.XT, e_rows)
        out[p, p] = float(
            np.sum(
                -u * u * s2
                + c_h * (th * th * u * u * v4 + 4.0 * th * u * t3 + 2.0 * s2)
                - c_q * (th * u * u * t3 + 2.0 * u * s2)
            )
        )
        # the outer products of per-group vectors
        a = -0.5 * h_phi_u / h[:, None] + (0.5 * h_u / (h * h))[:, None] * h_phi
        c2 = -0.5 * h_uu / h + 0.5 * h_u * h_u / (h * h)
        cross = np.einsum("gi,gj->ij", a, u_phi)
        out += np.einsum("gi,gj,g->ij", q_phi, q_phi, 1.0 / h)
        out += np.einsum("gi,gj,g->ij", d_h, d_h, 0.5 / (h * h))
        out += cross + cross.T
        out += np.einsum("gi,gj,g->ij", u_phi, u_phi, c2)
        return out

    # ------------------------------------------------------------------ objective
    def evaluate(
        self, beta: FloatArray, theta: float, *, gradient: bool = True
    ) -> ScalarEvaluation:
        """Approximate marginal log-likelihood (lme4 scale) and its gradient over (β, θ)."""
        eta_fixed = self.linear_predictor(beta)
        u, iters, ok = self.conditional_modes(eta_fixed, theta)
        z, codes = self.z, self.codes
        _, mu_hat, g_hat = self._state(eta_fixed, theta, u)
        v, dv = self.family.variance_and_slope(mu_hat)
        w = self.weights * v
        s = self._sum(self._z2mul(w))
        hess = 1.0 + theta * theta * s
        sigma = 1.0 / np.sqrt(hess)
        res_hat = self.wy - self.weights * mu_hat
        zres_hat = self._sum(self._zmul(res_hat))
        du_dtheta = (zres_hat - theta * s * u) / hess
        self._last = (eta_fixed, theta, self._zmul(w), theta / hess, du_dtheta)

        if self.n_nodes == 1:
            per_group = np.log(sigma) + g_hat
            loglik = float(per_group.sum()) + self.const
            if not gradient:
                return ScalarEvaluation(loglik, u, sigma, None, iters, ok)
            res_bar = res_hat
            gamma = np.zeros(self.n_groups)
            delta = gamma
            theta_part = u * zres_hat
        else:
            # nodes (K, G) and per-row linear predictors (K, n)
            nodes = u[None, :] + sigma[None, :] * self.t[:, None]
            eta_k = eta_fixed[None, :] + theta * self._zmul(nodes[:, codes])
            b_k, mu_k = self.family.cumulant_and_mean(eta_k)
            g_k = self._sum_nodes(self.wy * eta_k - self.weights * b_k) - 0.5 * nodes * nodes
            logits = self.log_omega[:, None] + g_k
            top = logits.max(axis=0)
            ex = np.exp(logits - top)
            tot = ex.sum(axis=0)
            per_group = np.log(sigma) + top + np.log(tot)
            loglik = float(per_group.sum()) + self.const
            if not gradient:
                return ScalarEvaluation(loglik, u, sigma, None, iters, ok)
            pi = ex / tot  # (K, G) posterior weights of the nodes
            res_k = self.wy - self.weights * mu_k
            res_bar = np.einsum("kn,kn->n", pi[:, codes], res_k)
            zres_k = self._sum_nodes(self._zmul(res_k))
            gprime = theta * zres_k - nodes
            gamma = np.einsum("kg,kg->g", pi, gprime)
            delta = np.einsum("kg,kg,k->g", pi, gprime, self.t)
            theta_part = np.einsum("kg,kg,kg->g", pi, nodes, zres_k)

        # d log σ_g and dσ_g enter through kappa_g = ½ (1 + δ_g σ_g) / H_g
        wprime = self.weights * dv
        kappa = 0.5 * (1.0 + delta * sigma) / hess
        z3wp = self._sum(self._z3mul(wprime))
        m = theta**3 * z3wp
        # β: per-row weights v_i with ∂ℓ/∂β = Xᵀ v
        coef = (gamma - kappa * m) * theta / hess
        v_rows = res_bar - self._z2mul((kappa * theta * theta)[codes]) * wprime
        v_rows -= coef[codes] * self._zmul(w)
        g_beta = np.einsum("ji,i->j", self.XT, v_rows)
        # θ
        dh_dtheta = 2.0 * theta * s + theta * theta * u * z3wp + m * du_dtheta
        g_theta = float(np.sum(-kappa * dh_dtheta + theta_part + gamma * du_dtheta))
        grad = np.empty(g_beta.size + 1)
        grad[:-1] = g_beta
        grad[-1] = g_theta
        del z
        return ScalarEvaluation(loglik, u, sigma, grad, iters, ok)
