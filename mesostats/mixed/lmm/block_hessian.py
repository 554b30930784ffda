"""The profiled deviance with its analytic gradient and Hessian in θ, in O(levels) per evaluation.

Same quantities as :mod:`mesostats.mixed.lmm.hessian` (whose docstring gives the formulas:
Bates, Mächler, Bolker & Walker 2015, *J. Stat. Softw.* 67(1), eqs. (34), (41); Harville
1977, *JASA* 72:320, §4; Lindstrom & Bates 1988, *JASA* 83:1014), but without forming any
Q×Q matrix: the largest grouping factor (G levels, q columns, Λ₀ = I_G ⊗ λ) stays one q×q
block per level, and only the few further random effects (Q_r of them: a handful of sites,
samples or batches) and X, y are held densely. With W = [Z_r X y] (m = Q_r + p + 1 columns)
and V₁ = I + Z₀Λ₀Λ₀ᵀZ₀ᵀ (block diagonal by level):

* per level, S_g = λᵀA_gλ + I = L_gL_gᵀ (A_g = Z_gᵀZ_g), T_g = L_g⁻¹λᵀA_g, K_g = L_g⁻¹λᵀZ_gᵀW_g;
  then Z₀ᵀV₁⁻¹Z₀ = blockdiag(W₁_g), W₁_g = A_g − T_gᵀT_g; Z₀ᵀV₁⁻¹W = E, E_g = Z_gᵀW_g − T_gᵀK_g;
  WᵀV₁⁻¹W = WᵀW − Σ_g K_gᵀK_g (Woodbury);
* the further random effects by one more Woodbury step (S_r = Λ_rᵀ(Z_rᵀV₁⁻¹Z_r)Λ_r + I, a
  Q_r×Q_r Cholesky), then X by its Schur complement (the Cholesky R_X of XᵀV₀⁻¹X).

Every inner product a matrix Π (V₀⁻¹, or P = V₀⁻¹ − V₀⁻¹X(XᵀV₀⁻¹X)⁻¹XᵀV₀⁻¹) makes of the
level blocks is then "block diagonal minus low rank": Z₀ᵀΠZ₀ = blockdiag(W₁_g) − NNᵀ with N
(G, q, s) per level (s = Q_r, plus p for P), and the traces of the Hessian split into per-level
sums: tr(T M_i T M_j) = Σ_g tr(W₁_g D_i W₁_g D_j) − 2 Σ_g tr((D_iN_g)ᵀW₁_g(D_jN_g))
+ tr(N⁽ⁱ⁾N⁽ʲ⁾), N⁽ⁱ⁾ = Σ_g N_gᵀD_iN_g, with D_i = E_iλᵀ + λE_iᵀ (E_i = ∂λ/∂θ_i); the terms
that pair a level-block θ with a further-factor θ, or two further-factor θ, are per-level
sums or Q_r×Q_r products. Each per-level sum is one matrix product over the level axis,
contracted with the D_i afterwards: Σ_g tr(D_i X_g D_j Y_g) = Σ D_i[a,b] D_j[c,d]·
(Σ_g X_g[b,c] Y_g[d,a]). An evaluation costs O(G·q²·(m + q²) + m³), not the O(Q³) of the
dense form, in a fixed number of numpy calls (no loop over levels; the q×q Cholesky factors
of q ≤ 2 written out over the level axis).

Why by hand: no library differentiates lme4's profiled deviance twice. Used by the Newton
optimiser (:mod:`mesostats.mixed.lmm.optimise`) for designs with at most
:data:`MAX_BLOCK_REST` further random effects held densely (and at most :data:`MAX_BLOCK_Q`
in all); the reported deviance and gradient still come from
:class:`~mesostats.mixed.lmm.gradient.ProfiledDeviance`. Measured (one evaluation, CPU):
sleepstudy (18 × 2) ~0.1 ms against ~0.14 ms for the dense form; 60 people × 2 plus 4
sites ~0.26 ms against ~1.5 ms. Agrees with the dense form to ~1e-13 (tests).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mesostats.mixed.linalg import as_dense, chol_lower, same_bits, tri_solve

if TYPE_CHECKING:  # typing only
    from mesostats.mixed.lmm.gradient import ProfiledDeviance

__all__ = ["MAX_BLOCK_Q", "MAX_BLOCK_REST", "BlockHessian"]

#: most further random effects (Σ levels × columns after the largest factor) held densely here
MAX_BLOCK_REST = 64
#: most random effects in all: beyond, L-BFGS-B on the blocked gradient is as fast (measured at
#: 20,000 people × 2 effects: ~0.18 s either way; at 2,000 × 2 Newton takes 17 ms against 21)
MAX_BLOCK_Q = 5_000


def _unit_blocks(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """E_i (k, size, size): one at (rows[i], cols[i]), zero elsewhere."""
    out = np.zeros((len(rows), size, size))
    out[np.arange(len(rows)), rows, cols] = 1.0
    return out


def _pair_sums(E: np.ndarray) -> np.ndarray:
    """F_ij = E_iE_jᵀ + E_jE_iᵀ (k, k, s, s): Λ's (constant) second derivatives."""
    EEt = E[:, None] @ E.transpose(0, 2, 1)[None]
    return np.asarray(EEt + EEt.transpose(1, 0, 2, 3))


def _cholesky_inverse(S: np.ndarray) -> tuple[np.ndarray, float]:
    """L_g⁻¹ (G, q, q) for S_g = L_gL_gᵀ, and Σ_g log|S_g|; q = 1, 2 written out over the
    level axis (numpy's stacked ``cholesky`` and ``inv`` cost more on G tiny matrices)."""
    q = S.shape[1]
    if q == 1:
        root = np.sqrt(S)
        return 1.0 / root, 2.0 * float(np.log(root).sum())
    if q == 2:
        l11 = np.sqrt(S[:, 0, 0])
        l21 = S[:, 1, 0] / l11
        l22 = np.sqrt(S[:, 1, 1] - l21 * l21)
        inv = np.zeros_like(S)
        inv[:, 0, 0] = 1.0 / l11
        inv[:, 1, 1] = 1.0 / l22
        inv[:, 1, 0] = -l21 * inv[:, 0, 0] * inv[:, 1, 1]
        return inv, 2.0 * float(np.log(l11 * l22).sum())
    L = np.linalg.cholesky(S)
    d = np.arange(q)
    return np.linalg.inv(L), 2.0 * float(np.log(L[:, d, d]).sum())


class BlockHessian:
    """(d(θ), ∇d, ∇²d) of the profiled (RE)ML deviance for one block-diagonal grouping factor
    and at most :data:`MAX_BLOCK_REST` further random effects (see the module docstring).

    Parameters
    ----------
    problem : ProfiledDeviance
        Its per-level cross-products (A_g, Z_gᵀX, Z_gᵀỹ and, with further factors, Z_gᵀZ_r)
        are reused; ``problem.rest_mode`` must be "none" or "dense".
    """

    def __init__(self, problem: ProfiledDeviance) -> None:
        f0 = problem.factors[0]
        self.reml = problem.reml
        self.nu = float(problem.dof)
        self.p = problem.p
        self.n_theta = problem.n_theta
        self.Qr = Qr = problem.Qr
        self._f0 = f0
        self._problem = problem
        self._last: tuple[np.ndarray, tuple[float, np.ndarray, np.ndarray]] | None = None
        # per level (G, q, ·): A_g and B_g = Z_gᵀ[Z_r X ỹ]; Ω = [Z_r X ỹ]ᵀ[Z_r X ỹ]
        self._A = np.ascontiguousarray(problem.A.transpose(2, 0, 1))
        parts = [problem.ZtX, problem.Zty[:, None, :]]
        omega_rows = [np.hstack([problem.XtX, problem.Xty[:, None]])]
        omega_rows.append(np.r_[problem.Xty, problem.yty][None, :])
        omega = np.vstack(omega_rows)
        if Qr:
            parts.insert(0, problem.F)
            top = np.hstack([problem.RR, problem.ZrX, problem.Zry[:, None]])
            omega = np.block([[top], [np.hstack([top[:, Qr:].T, omega])]])
        self._B = np.ascontiguousarray(np.concatenate(parts, axis=1).transpose(2, 0, 1))
        self._omega = omega
        q = f0.q
        self._diag = np.arange(q)
        self._E0 = _unit_blocks(f0.theta_rows, f0.theta_cols, q)
        k0 = len(f0.theta_rows)
        self._F0 = _pair_sums(self._E0).reshape(k0 * k0, q * q)
        ids_r = np.zeros(0, dtype=np.intp)
        if Qr:
            ids_r = np.array(sorted(set(problem._lr_ids.tolist())), dtype=np.intp)
            Er = np.zeros((len(ids_r), Qr, Qr))
            pos = np.searchsorted(ids_r, problem._lr_ids)
            Er[pos, problem._lr_rows, problem._lr_cols] = 1.0
            self._Er = Er
            self._Fr = _pair_sums(Er).reshape(len(ids_r) ** 2, Qr * Qr)
        order = np.concatenate([f0.theta_ids, ids_r]).astype(np.intp)
        self._ids_r = ids_r
        self._order = order
        self._hess_index = np.ix_(order, order)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(d(θ), ∇d, ∇²d) at θ; the last evaluation is kept (the optimiser asks twice)."""
        theta = np.array(theta, dtype=float)
        if self._last is not None and same_bits(self._last[0], theta):
            return self._last[1]
        out = self._evaluate(theta)
        self._last = (theta, out)
        return out

    def is_cached(self, theta: np.ndarray) -> bool:
        """Whether :meth:`evaluate` at θ returns the kept evaluation (no new work)."""
        return self._last is not None and same_bits(self._last[0], theta)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        Qr, p, nu, reml = self.Qr, self.p, self.nu, self.reml
        A, B, d = self._A, self._B, self._diag
        lam = self._f0.lam(theta)
        lamT = lam.T
        S = lamT @ A @ lam
        S[:, d, d] += 1.0
        Linv, logdet = _cholesky_inverse(S)
        LinvLam = Linv @ lamT  # (G, q, q): L_g⁻¹λᵀ
        T = LinvLam @ A
        K = LinvLam @ B  # (G, q, m)
        Tt = T.transpose(0, 2, 1)
        W1 = A - Tt @ T  # Z_gᵀV₁⁻¹Z_g
        E = B - Tt @ K  # Z_gᵀV₁⁻¹W_g
        G, q, m = K.shape
        Kf = K.reshape(G * q, m)
        omega1 = self._omega - Kf.T @ Kf  # WᵀV₁⁻¹W
        J = None
        if Qr:
            lam_r = as_dense(self._problem._lam_rest(theta))  # dense at Q_r <= 64 already
            Sr = lam_r.T @ omega1[:Qr, :Qr] @ lam_r
            Sr[np.diag_indices(Qr)] += 1.0
            Lrr = chol_lower(Sr)
            logdet += 2.0 * float(np.log(np.diag(Lrr)).sum())
            M = tri_solve(Lrr, np.ascontiguousarray(lam_r.T), lower=True)  # L_rr⁻¹Λ_rᵀ
            Jw = (M @ omega1[:Qr]).T  # (m, Qr)
            omega0 = omega1 - Jw @ Jw.T  # WᵀV₀⁻¹W
            J = E[:, :, :Qr] @ M.T  # (G, q, Qr)
            EV = E - J @ Jw.T  # Z_gᵀV₀⁻¹W
        else:
            omega0, EV = omega1, E
        xs = slice(Qr, Qr + p)
        RX = chol_lower(np.ascontiguousarray(omega0[xs, xs]))
        logdet_rx = 2.0 * float(np.log(np.diag(RX)).sum())
        RXinv = tri_solve(RX, np.eye(p), lower=True)
        Rw = omega0[:, xs] @ RXinv.T  # (m, p)
        R = EV[:, :, xs] @ RXinv.T  # (G, q, p)
        omegaP = omega0 - Rw @ Rw.T  # WᵀPW
        EP = EV - R @ Rw.T  # Z_gᵀPW
        yi = Qr + p
        r2 = max(float(omegaP[yi, yi]), 1e-300)
        dev = logdet + nu * (1.0 + math.log(2.0 * math.pi * r2 / nu))
        if reml:
            dev += logdet_rx
        u0 = EP[:, :, yi]  # (G, q): Z_gᵀPỹ
        N = R if J is None else np.concatenate([J, R], axis=2)  # Z₀ᵀPZ₀ = W₁ − NNᵀ
        NT = N if reml else J  # the same for T (C under REML, Z₀ᵀV₀⁻¹Z₀ under ML)
        c = nu / r2

        # ---- the block-diagonal factor's θ. Every sum over levels is one matrix product
        # over the level axis of per-level q×q (or q×s) arrays, contracted with the D_i
        # afterwards: Σ_g tr(D_i X_g D_j Y_g) = Σ D_i[a,b] D_j[c,d] (Σ_g X_g[b,c] Y_g[d,a]).
        k0, qq = self._E0.shape[0], q * q
        Dt = self._E0 @ lamT
        Df = (Dt + Dt.transpose(0, 2, 1)).reshape(k0, qq)  # M_i's block D_i, flattened
        W1f = W1.reshape(G, qq)
        UUf = (u0[:, :, None] * u0[:, None, :]).reshape(G, qq)  # u_gu_gᵀ
        parts = [W1f, UUf]
        if NT is not None:
            parts.append((NT @ NT.transpose(0, 2, 1)).reshape(G, qq))  # N_gN_gᵀ
        sums = W1f.T @ np.hstack(parts)  # (qq, qq·k): Σ_g W1_g[b,c]·X_g[d,a]
        four = sums.reshape(q, q, len(parts), q, q).transpose(2, 4, 0, 1, 3)  # [·, a, b, c, d]
        Tsum = W1f.sum(axis=0)
        U0 = UUf.sum(axis=0)
        kernel = 2.0 * c * four[1].reshape(qq, qq)  # 2c·Σ_g u_gᵀD_iW1_gD_ju_g
        kernel -= sums[:, :qq].reshape(q, q, q, q).transpose(1, 2, 3, 0).reshape(qq, qq)
        if NT is not None:
            Tsum = Tsum - parts[2].sum(axis=0)
            kernel += 2.0 * four[2].reshape(qq, qq)
        a0 = Df @ U0  # uᵀM_iu
        g0 = Df @ Tsum - c * a0
        h00 = (self._F0 @ (Tsum - c * U0)).reshape(k0, k0) + Df @ kernel @ Df.T
        if NT is not None:
            Nq = NT.transpose(1, 0, 2)  # (q, G, s)
            Q = Nq.transpose(0, 2, 1)[:, None] @ Nq[None]  # Σ_g N_g[a]ᵀN_g[b] (q, q, s, s)
            Nm = Df @ Q.reshape(qq, -1)  # Σ_g N_gᵀD_iN_g, flattened (symmetric)
            h00 -= Nm @ Nm.T
        NU = (N.transpose(1, 2, 0) @ u0).transpose(0, 2, 1)  # Σ_g N_g[a,:]·u_g[b] (q, q, s)
        Nv = Df @ NU.reshape(qq, -1)  # Σ_g N_gᵀM_iu_g
        h00 -= 2.0 * c * (Nv @ Nv.T) + (c / r2) * np.outer(a0, a0)
        if not Qr:
            grad = np.empty(self.n_theta)
            grad[self._order] = g0
            hess = np.empty((self.n_theta, self.n_theta))
            hess[self._hess_index] = h00
            return dev, grad, 0.5 * (hess + hess.T)

        # ---- the further factors' θ
        rs = slice(0, Qr)
        Trr = omegaP[rs, rs] if reml else omega0[rs, rs]
        T0r = EP[:, :, rs] if reml else EV[:, :, rs]
        ur = omegaP[rs, yi]
        kr = self._Er.shape[0]
        Lr_i = self._Er @ lam_r.T
        Mr = Lr_i + Lr_i.transpose(0, 2, 1)  # (kr, Qr, Qr)
        Mrf = Mr.reshape(kr, -1)
        vr = Mr @ ur  # (kr, Qr)
        ar = vr @ ur
        gr = Mrf @ Trr.ravel() - c * ar
        hrr = (self._Fr @ (Trr - c * np.outer(ur, ur)).ravel()).reshape(kr, kr)
        TM = Trr @ Mr
        hrr -= TM.reshape(kr, -1) @ TM.transpose(0, 2, 1).reshape(kr, -1).T
        hrr += 2.0 * c * (vr @ omegaP[rs, rs] @ vr.T) - (c / r2) * np.outer(ar, ar)
        Tq = T0r.transpose(1, 0, 2)  # (q, G, Qr)
        R2 = Tq.transpose(0, 2, 1)[:, None] @ Tq[None]  # Σ_g T0r_g[a]ᵀT0r_g[b] (q, q, Qr, Qr)
        h0r = -(Df @ (R2.reshape(qq, -1) @ Mrf.T))  # −Σ_g tr(D_i T0r_g Mr_j T0r_gᵀ)
        EU = (EP[:, :, rs].transpose(1, 2, 0) @ u0).transpose(0, 2, 1)  # (q, q, Qr)
        h0r += 2.0 * c * (Df @ (EU.reshape(qq, Qr) @ vr.T))
        h0r -= (c / r2) * np.outer(a0, ar)
        grad = np.empty(self.n_theta)
        grad[self._order] = np.concatenate([g0, gr])
        full = np.empty((k0 + kr, k0 + kr))
        full[:k0, :k0] = h00
        full[:k0, k0:] = h0r
        full[k0:, :k0] = h0r.T
        full[k0:, k0:] = hrr
        hess = np.empty((self.n_theta, self.n_theta))
        hess[self._hess_index] = full
        return dev, grad, 0.5 * (hess + hess.T)
