"""Analytic gradient and Hessian of the profiled (RE)ML deviance in θ, for small designs.

With V₀(θ) = I + ZΛΛᵀZᵀ (Z: all random-effect columns, Q of them; Λ block-diagonal and
linear in θ) the profiled deviance of Bates, Mächler, Bolker & Walker (2015), *J. Stat.
Softw.* 67(1), eqs. (34) and (41), is, up to a constant,

    d(θ) = log|V₀| + [REML] log|XᵀV₀⁻¹X| + ν log(yᵀPy),   P = V₀⁻¹ − V₀⁻¹X(XᵀV₀⁻¹X)⁻¹XᵀV₀⁻¹,

ν = n − p (REML) or n (ML); log|V₀| = log|L_θ|² by the matrix determinant lemma. With
V_i = ∂V₀/∂θ_i = Z M_i Zᵀ, M_i = ΛᵢΛᵀ + ΛΛᵢᵀ (Λᵢ = ∂Λ/∂θ_i, constant), V_ij = Z M_ij Zᵀ,
M_ij = ΛᵢΛⱼᵀ + ΛⱼΛᵢᵀ, and the standard identities ∂P = −P V_i P, ∂log|V₀| = tr(V₀⁻¹V_i),
∂(log|V₀| + log|XᵀV₀⁻¹X|) = tr(P V_i) (Harville 1977, *JASA* 72:320, §4; the REML Hessian
as in Lindstrom & Bates 1988, *JASA* 83:1014), everything reduces to Q×Q quantities:
C = ZᵀPZ, u = ZᵀPy, r² = yᵀPy and T = C (REML) or ZᵀV₀⁻¹Z (ML):

    ∂d/∂θ_i    = tr(T M_i) − ν uᵀM_iu / r²
    ∂²d/∂θ_i∂θ_j = tr(T M_ij) − tr(T M_i T M_j)
                   + ν [(2 uᵀM_i C M_j u − uᵀM_ij u) / r² − (uᵀM_iu)(uᵀM_ju) / r⁴].

The Q×Q quantities come from the Gram matrix G of [Z X y] (formed once): by Woodbury,
[Z X y]ᵀV₀⁻¹[Z X y] = G − KᵀK with K = L⁻¹ΛᵀG_Z·, L the Cholesky factor of ΛᵀG_ZZΛ + I,
and C, u, r² are its Schur complement after the X block. Each evaluation is O(Q³): it is
built only for small designs (Q ≤ :data:`MAX_DENSE_Q`), where it replaces the Hessian by
central differences of the gradient (2·len(θ) gradient evaluations) and lets the optimiser
take Newton steps from the start. Why by hand: no library differentiates lme4's profiled
deviance twice. The deviance and gradient the optimiser reports still come from the blocked
factorisation (:class:`~mesostats.mixed.lmm.gradient.ProfiledDeviance`); this Hessian only
steers the Newton steps and feeds the Satterthwaite df. Designs whose further factors have
few random effects (any number of levels of the largest factor) use the same formulas in
O(levels) form instead (:mod:`mesostats.mixed.lmm.block_hessian`); this dense form remains
for small designs with more further random effects (crossed factors with many levels).
"""

from __future__ import annotations

import numpy as np

from mesostats.mixed.design import MixedDesign, lower_triangle_indices
from mesostats.mixed.linalg import chol_lower, same_bits, tri_solve

__all__ = ["MAX_DENSE_Q", "DenseHessian"]

#: largest number of random-effect columns for which the dense Hessian is built. Measured
#: (CPU, `(1 + week | subject)` trials of 8 visits): the dense Newton path takes 5.1 / 8.5 /
#: 15 / 68 ms at Q = 80 / 120 / 200 / 400 against 8.0 / 8.4 / 8.2 / 8.8 ms for L-BFGS-B
#: with the blocked gradient; its O(Q³) evaluations stop paying off near Q = 120.
MAX_DENSE_Q = 120


class DenseHessian:
    """Analytic gradient and Hessian of the profiled deviance (see the module docstring).

    Parameters
    ----------
    design : MixedDesign
    y : array (n,)
        The response minus the offset (any shift by Xβ leaves d unchanged).
    reml : bool
    """

    def __init__(self, design: MixedDesign, y: np.ndarray, *, reml: bool) -> None:
        n, p = design.n, design.p
        self.reml = reml
        self.nu = float(n - p if reml else n)
        self.p = p
        offsets = np.cumsum([0] + [t.n_levels * t.q for t in design.terms])
        Q = int(offsets[-1])
        self.Q = Q
        W = np.zeros((n, Q))
        rows_all, cols_all, ids_all = [], [], []
        # per term: its columns, q, G, θ indices, E_i = ∂Λ_block/∂θ_i (k, q, q) and the
        # constant second-derivative blocks F_ij = E_iE_jᵀ + E_jE_iᵀ (k, k, q, q)
        self._terms: list[tuple[slice, int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        rows_n = np.arange(n)[:, None]
        for term, off, sl in zip(design.terms, offsets[:-1], design.theta_slices, strict=True):
            q, G = term.q, term.n_levels
            W[rows_n, off + term.codes[:, None] * q + np.arange(q)] = term.Z
            r, c = lower_triangle_indices(q)
            ids = np.arange(design.n_theta)[sl]
            base = off + np.arange(G) * q
            rows_all.append((base[:, None] + r[None, :]).ravel())
            cols_all.append((base[:, None] + c[None, :]).ravel())
            ids_all.append(np.tile(ids, G))
            k = len(ids)
            E = np.zeros((k, q, q))
            E[np.arange(k), r, c] = 1.0
            EEt = E @ E.transpose(0, 2, 1)[:, None]  # (k, k, q, q): E_i E_jᵀ
            F = EEt + EEt.transpose(1, 0, 2, 3)
            self._terms.append((slice(int(off), int(off + G * q)), q, G, ids, E, F))
        self._lam_rows = np.concatenate(rows_all)
        self._lam_cols = np.concatenate(cols_all)
        self._lam_ids = np.concatenate(ids_all)
        M = np.hstack([W, design.X, np.asarray(y, dtype=float)[:, None]])
        self._gram = M.T @ M
        self.n_theta = design.n_theta

    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(d(θ) up to its constant, ∇d, ∇²d) at θ; the last evaluation is kept (the
        optimiser asks for the Hessian at its end point again)."""
        theta = np.array(theta, dtype=float)
        last = self.__dict__.get("_last")
        if last is not None and same_bits(last[0], theta):
            return last[1]
        out = self._evaluate(theta)
        self._last = (theta, out)
        return out

    def is_cached(self, theta: np.ndarray) -> bool:
        """Whether :meth:`evaluate` at θ returns the kept evaluation (no new work)."""
        last = self.__dict__.get("_last")
        return last is not None and same_bits(last[0], theta)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        Q, p, nu = self.Q, self.p, self.nu
        m = self._gram.shape[0]
        lam = np.zeros((Q, Q))
        lam[self._lam_rows, self._lam_cols] = theta[self._lam_ids]
        # Λ is block-diagonal (I_G ⊗ λ_t per term): multiply by it term by term
        B = np.empty((Q, m))  # Λᵀ Zᵀ[Z X y]
        for sl, q, G, *_ in self._terms:
            block = lam[sl.start : sl.start + q, sl.start : sl.start + q]
            B[sl] = (block.T @ self._gram[sl].reshape(G, q, m)).reshape(G * q, m)
        A = np.empty((Q, Q))
        for sl, q, G, *_ in self._terms:
            block = lam[sl.start : sl.start + q, sl.start : sl.start + q]
            A[:, sl] = (B[:, sl].reshape(Q, G, q) @ block).reshape(Q, G * q)
        A[np.diag_indices(Q)] += 1.0
        L = chol_lower(A)
        K = tri_solve(L, B, lower=True)
        Vt = self._gram - K.T @ K  # [Z X y]ᵀ V₀⁻¹ [Z X y]
        xs = slice(Q, Q + p)
        wy = np.r_[0:Q, Q + p]
        RX = chol_lower(Vt[xs, xs])
        J = tri_solve(RX, Vt[xs][:, wy], lower=True)
        S = Vt[np.ix_(wy, wy)] - J.T @ J
        C, u, r2 = S[:Q, :Q], S[:Q, Q], float(S[Q, Q])
        T = C if self.reml else Vt[:Q, :Q]
        dev = 2.0 * float(np.log(np.diag(L)).sum()) + nu * np.log(r2)
        if self.reml:
            dev += 2.0 * float(np.log(np.diag(RX)).sum())

        grad = np.zeros(self.n_theta)
        hess = np.zeros((self.n_theta, self.n_theta))
        v = np.zeros((self.n_theta, Q))  # M_i u
        tms = []
        for sl, q, G, ids, E, F in self._terms:
            block = lam[sl.start : sl.start + q, sl.start : sl.start + q]
            D = E @ block.T
            D += D.transpose(0, 2, 1)  # M_i's block, E_iΛᵀ + ΛE_iᵀ (k, q, q)
            u_t = u[sl].reshape(G, q)
            v[ids, sl] = (u_t @ D).reshape(len(ids), G * q)
            tm = (T[:, sl].reshape(Q * G, q) @ D).reshape(len(ids), Q, G * q)  # (T M_i)[:, sl]
            tms.append(tm)
            grad[ids] = np.einsum("kii->k", tm[:, sl, :])
            U = u_t.T @ u_t
            Ssum = np.einsum("gagb->ab", T[sl, sl].reshape(G, q, G, q))
            hess[np.ix_(ids, ids)] += np.einsum("ijab,ab->ij", F, Ssum - (nu / r2) * U)
        uv = v @ u
        grad -= nu * uv / r2
        hess += nu * ((2.0 * (v @ C @ v.T)) / r2 - np.outer(uv, uv) / r2**2)
        for (sl_t, _, _, ids_t, _, _), tm_t in zip(self._terms, tms, strict=True):
            for (sl_s, _, _, ids_s, _, _), tm_s in zip(self._terms, tms, strict=True):
                X = tm_t[:, sl_s, :].reshape(len(ids_t), -1)
                Y = tm_s[:, sl_t, :].transpose(0, 2, 1).reshape(len(ids_s), -1)
                hess[np.ix_(ids_t, ids_s)] -= X @ Y.T
        return dev, grad, 0.5 * (hess + hess.T)
