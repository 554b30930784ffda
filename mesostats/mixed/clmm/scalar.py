"""One scalar random effect: ordinal Laplace / adaptive Gauss–Hermite log-likelihood and gradient.

Model (ordinal::clmm's): P(Y_i ≤ j) = F(θ_j − x_iᵀβ − τ z_i u_g(i)), u_g ~ N(0, 1) independent,
θ = J α (see :mod:`.thresholds`), τ ≥ 0 the random-effect SD (z_i = 1 for a random intercept).
The marginal log-likelihood splits into one integral per group,

    L_g = log ∫ exp(h_g(u)) (2π)^{-1/2} du,   h_g(u) = Σ_{i∈g} ℓ_i(η_i(u)) − u²/2.

*Adaptive Gauss–Hermite quadrature* (Pinheiro & Bates 1995, *J. Comput. Graph. Stat.* 4(1);
Liu & Pierce 1994, *Biometrika* 81(3)) centres K Hermite nodes at the conditional mode û_g and
scales them by σ_g = H_g^{-1/2}, H_g = −h_g″(û_g) = 1 + τ² Σ z_i² w_i (w = −∂²ℓ/∂η²):

    L_g ≈ log σ_g + log Σ_k ω_k exp(h_g(û_g + σ_g t_k))

(nodes and log weights from :func:`mesostats.mixed.quadrature.quadrature_rule`); K = 1 is the
Laplace approximation. The modes come from Newton's method on all groups at once
(``np.bincount`` for per-group sums) with per-group step halving; h_g is strictly concave for
log-concave links, so it converges from any start.

*Exact gradient.* With ψ any of (θ, β, τ), the implicit-function theorem on the mode equation
g(û, ψ) = τ Σ z_i ∂ℓ_i/∂η − û = 0 gives dû/dψ = (∂g/∂ψ)/H, and

    dL_g/dψ = Σ_k π_k ∂h/∂ψ(u_k) + c1_g ∂H/∂ψ + c2_g ∂g/∂ψ,

with π_k the normalised node weights, A = Σ π_k h′(u_k), B = Σ π_k t_k h′(u_k),
c1 = −1/(2H) − Bσ³/2, c2 = A/H + c1 (∂H/∂u)/H. The H-derivatives need ∂³ℓ/∂η³
(:mod:`.ordinal`). Every term is a per-observation weight summed with ``X.T @`` or
``np.bincount`` — no loop over groups.

Why hand-written: no Python library fits cumulative link mixed models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import logsumexp

from mesostats.mixed.clmm.links import INFINITY, Link
from mesostats.mixed.clmm.ordinal import OrdinalTerms, ordinal_terms, threshold_sums
from mesostats.mixed.quadrature import quadrature_rule

__all__ = ["ScalarOrdinal", "ScalarState"]

FloatArray = np.ndarray
_MAX_NEWTON = 100
_MAX_HALVING = 40


@dataclass
class ScalarState:
    """One evaluation: log-likelihood, gradient over (α, β, τ), modes and H at the modes."""

    loglik: float
    gradient: FloatArray
    u: FloatArray
    hessian_u: FloatArray
    newton_iterations: int


class ScalarOrdinal:
    """Laplace / AGQ log-likelihood of a CLMM with one scalar random effect.

    Parameters
    ----------
    link : Link
    y : (n,) int array
        Category codes 0 … K − 1.
    X : (n, p) array
        Fixed-effects matrix without intercept.
    z : (n,) array
        Random-effect column (ones for a random intercept).
    codes : (n,) int array
        Group of each row, 0 … n_groups − 1.
    n_groups : int
    jacobian : (K − 1, n_alpha) array
        θ = J α.
    n_nodes : int
        1 = Laplace, > 1 adaptive Gauss–Hermite.
    """

    def __init__(
        self,
        link: Link,
        y: np.ndarray,
        X: FloatArray,
        z: FloatArray,
        codes: np.ndarray,
        n_groups: int,
        jacobian: FloatArray,
        n_nodes: int = 1,
    ) -> None:
        self.link = link
        self.y = y
        self.X = X
        self.z = z
        self.z2 = z * z
        self.z3 = self.z2 * z
        self.codes = codes
        self.G = n_groups
        self.J = jacobian
        self.n_cut, self.n_alpha = jacobian.shape
        self.p = X.shape[1]
        self.t, self.log_omega = quadrature_rule(n_nodes)
        self.n_nodes = n_nodes
        self.node_codes = (np.arange(n_nodes)[:, None] * n_groups + codes[None, :]).ravel()
        self._u = np.zeros(n_groups)
        # (ψ, û, dû/dψ) of the last evaluation with a gradient: first-order mode prediction
        self._last: tuple[FloatArray, FloatArray, FloatArray] | None = None
        self._indicator = sparse.csr_matrix(
            (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_groups, codes.size)
        )

    @property
    def n_params(self) -> int:
        """Length of ψ = (α, β, τ)."""
        return self.n_alpha + self.p + 1

    # ------------------------------------------------------------------ pieces
    def _gsum(self, v: FloatArray) -> FloatArray:
        return np.bincount(self.codes, weights=v, minlength=self.G)

    def _bounds(self, alpha: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        cuts = self.J @ alpha
        if np.any(np.diff(cuts) <= 0):
            return None
        ext = np.concatenate([[-INFINITY], cuts, [INFINITY]])
        return ext[self.y + 1], ext[self.y]

    def _terms(self, up: FloatArray, lo: FloatArray, eta: FloatArray, order: int) -> OrdinalTerms:
        return ordinal_terms(self.link, up - eta, lo - eta, order)

    def modes(
        self, xb: FloatArray, up: FloatArray, lo: FloatArray, tau: float, u0: FloatArray
    ) -> tuple[FloatArray, int]:
        """Conditional modes û_g by Newton's method with per-group step halving."""
        u = u0.copy()
        tz = tau * self.z

        def h_of(v: FloatArray) -> tuple[FloatArray, OrdinalTerms]:
            T = self._terms(up, lo, xb + tz * v[self.codes], 2)
            return self._gsum(T.loglik) - 0.5 * v * v, T

        h, T = h_of(u)
        for it in range(1, _MAX_NEWTON + 1):
            assert T.l2 is not None
            g = self._gsum(tz * T.l1) - u
            H = 1.0 + self._gsum(tz * tz * -T.l2)
            step = g / H
            if np.max(np.abs(step), initial=0.0) < 1e-8 * (1.0 + np.max(np.abs(u))):
                # quadratic convergence: after this step the error is ~|step|², far below 1e-13
                return u + step, it
            for _ in range(_MAX_HALVING):
                h_new, T_new = h_of(u + step)
                worse = ~(h_new >= h - 1e-12 * np.abs(h))
                if not worse.any():
                    break
                step = np.where(worse, 0.5 * step, step)
            else:
                return u, -1  # no ascent for some group: not converged
            u = u + step
            h, T = h_new, T_new
        return u, -1

    # ------------------------------------------------------------------ objective
    def evaluate(self, psi: FloatArray, *, gradient: bool = True) -> ScalarState:
        """Log-likelihood (and its exact gradient) at ψ = (α, β, τ)."""
        psi = np.asarray(psi, dtype=float)
        na, p = self.n_alpha, self.p
        alpha, beta, tau = psi[:na], psi[na : na + p], float(psi[-1])
        bounds = self._bounds(alpha)
        if bounds is None:
            return ScalarState(-np.inf, np.full(psi.size, np.nan), self._u, np.ones(self.G), 0)
        up, lo = bounds
        xb = self.X @ beta
        z, codes = self.z, self.codes
        u = self._predicted_modes(psi)
        T = self._terms(up, lo, xb + tau * z * u[codes], 3)
        assert T.l2 is not None
        with np.errstate(invalid="ignore", divide="ignore"):
            step = (self._gsum(tau * z * T.l1) - u) / (
                1.0 + tau * tau * self._gsum(self.z2 * -T.l2)
            )
        iters = 0
        if not np.max(np.abs(step), initial=0.0) < 1e-11 * (1.0 + np.max(np.abs(u))):
            # the prediction is not the mode to 1e-11 (it usually is after a tiny change of
            # ψ): Newton's method from it, then the terms at the mode
            u, iters = self.modes(xb, up, lo, tau, u)
            if iters < 0 or not np.all(np.isfinite(u)):
                u, iters = self.modes(xb, up, lo, tau, np.zeros(self.G))
            T = self._terms(up, lo, xb + tau * z * u[codes], 3)
        if iters >= 0:
            self._u = u
        assert T.l2 is not None and T.l3 is not None
        assert T.l1_a is not None and T.l1_c is not None
        assert T.l2_a is not None and T.l2_c is not None
        H = 1.0 + tau * tau * self._gsum(self.z2 * -T.l2)
        if iters < 0 or not np.all(H > 0.0) or not np.isfinite(np.sum(T.loglik)):
            return ScalarState(-np.inf, np.full(psi.size, np.nan), u, np.ones(self.G), 0)
        sigma = 1.0 / np.sqrt(H)
        # nodes u_k = û + σ t_k (K × G) and h at each
        uk = u[None, :] + sigma[None, :] * self.t[:, None]
        if self.n_nodes == 1:
            Tk = T
            hk = (self._gsum(T.loglik) - 0.5 * u * u)[None, :]
        else:
            Tk = self._terms(up[None, :], lo[None, :], xb[None, :] + tau * z * uk[:, codes], 1)
            hk = (
                np.bincount(
                    self.node_codes, weights=Tk.loglik.ravel(), minlength=self.n_nodes * self.G
                ).reshape(self.n_nodes, self.G)
                - 0.5 * uk * uk
            )
        logw = self.log_omega[:, None] + hk
        Lg = np.log(sigma) + logsumexp(logw, axis=0)
        loglik = float(np.sum(Lg))
        if not gradient or not np.isfinite(loglik):
            return ScalarState(loglik, np.full(psi.size, np.nan), u, H, iters)
        grad = self._gradient(T, Tk, u, uk, H, sigma, logw, Lg, tau)
        self._last = (psi.copy(), u, self._mode_derivative(T, u, H, tau))
        return ScalarState(loglik, grad, u, H, iters)

    def _predicted_modes(self, psi: FloatArray) -> FloatArray:
        """û at ψ predicted to first order from the last evaluation (else the last modes)."""
        if self._last is None:
            return self._u
        psi0, u0, du = self._last
        pred = u0 + du @ (psi - psi0)
        return pred if np.all(np.isfinite(pred)) else self._u

    def _mode_derivative(
        self, T: OrdinalTerms, u: FloatArray, H: FloatArray, tau: float
    ) -> FloatArray:
        """dû/dψ = (∂g/∂ψ) / H, (G, n_params): the implicit-function theorem on g(û, ψ) = 0."""
        assert T.l2 is not None and T.l1_a is not None and T.l1_c is not None
        tz = tau * self.z
        d_beta = self._indicator @ ((tz * T.l2)[:, None] * self.X)
        rows = np.arange(self.y.size)
        per_cut = np.zeros((self.y.size, self.n_cut + 2))
        per_cut[rows, self.y + 1] = tz * T.l1_a
        per_cut[rows, self.y] += tz * T.l1_c
        d_alpha = (self._indicator @ per_cut[:, 1 : self.n_cut + 1]) @ self.J
        d_tau = self._gsum(self.z * T.l1) + tau * u * self._gsum(self.z2 * T.l2)
        return np.column_stack([d_alpha, d_beta, d_tau]) / H[:, None]

    def _gradient(
        self,
        T: OrdinalTerms,
        Tk: OrdinalTerms,
        u: FloatArray,
        uk: FloatArray,
        H: FloatArray,
        sigma: FloatArray,
        logw: FloatArray,
        Lg: FloatArray,
        tau: float,
    ) -> FloatArray:
        assert T.l2 is not None and T.l3 is not None
        assert T.l1_a is not None and T.l1_c is not None
        assert T.l2_a is not None and T.l2_c is not None
        z, z2, codes = self.z, self.z2, self.codes
        if self.n_nodes == 1:
            A = B = np.zeros(self.G)
            r, ra, rc = T.l1, T.la, T.lc
            ru = T.l1 * u[codes]
        else:
            pi = np.exp(logw - (Lg - np.log(sigma))[None, :])  # normalised over k
            l1k = np.asarray(Tk.l1).reshape(self.n_nodes, -1)
            hprime = (
                np.bincount(
                    self.node_codes,
                    weights=(tau * z * l1k).ravel(),
                    minlength=self.n_nodes * self.G,
                ).reshape(self.n_nodes, self.G)
                - uk
            )
            A = np.sum(pi * hprime, axis=0)
            B = np.sum(pi * hprime * self.t[:, None], axis=0)
            pik = pi[:, codes]
            r = np.sum(pik * l1k, axis=0)
            ra = np.sum(pik * Tk.la, axis=0)
            rc = np.sum(pik * Tk.lc, axis=0)
            ru = np.sum(pik * l1k * uk[:, codes], axis=0)
        Hu = -(tau**3) * self._gsum(self.z3 * T.l3)
        c1 = -0.5 / H - 0.5 * B * sigma**3
        c2 = A / H + c1 * Hu / H
        C1, C2 = c1[codes], c2[codes]
        k1 = -(tau * tau) * z2 * C1  # weight of ∂w-type terms: ∂H = τ² Σ z² ∂(−l2)
        k2 = tau * z * C2  # weight of ∂g-type terms: ∂g = τ Σ z ∂l1
        g_beta = self.X.T @ (r + k1 * T.l3 + k2 * T.l2)
        g_cut = threshold_sums(
            self.y, ra + k1 * T.l2_a + k2 * T.l1_a, rc + k1 * T.l2_c + k2 * T.l1_c, self.n_cut
        )
        g_alpha = self.J.T @ g_cut
        dH_tau = 2.0 * tau * self._gsum(z2 * -T.l2) - tau * tau * u * self._gsum(self.z3 * T.l3)
        dg_tau = self._gsum(z * T.l1) + tau * u * self._gsum(z2 * T.l2)
        g_tau = float(np.sum(z * ru) + np.sum(c1 * dH_tau + c2 * dg_tau))
        return np.concatenate([g_alpha, g_beta, [g_tau]])
