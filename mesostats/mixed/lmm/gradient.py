"""The analytic gradient of the profiled deviance, and the conditional covariances.

∂d/∂Λ_f = 2 Σ_levels [Z_ℓᵀV₀⁻¹Z_ℓ − (REML) Z_ℓᵀV₀⁻¹X (XᵀV₀⁻¹X)⁻¹ XᵀV₀⁻¹Z_ℓ
− Z_ℓᵀε̂ ε̂ᵀZ_ℓ / σ̂²] Λ_f, every piece from the blocked factorisation (see
:mod:`mesostats.mixed.lmm`); central differences on the sparse path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesostats.mixed.finite_diff import central_gradient, relative_steps
from mesostats.mixed.linalg import (
    apply_vector,
    as_dense,
    batched_forward,
    batched_matvec,
    left_times,
    pair_sums,
    quadratic_sums,
    spd_inverse,
    stack_of,
    sum_gram,
    sum_matvec,
    transpose_times,
    tri_solve,
)
from mesostats.mixed.lmm.block_hessian import MAX_BLOCK_Q, MAX_BLOCK_REST, BlockHessian
from mesostats.mixed.lmm.deviance import ProfiledDevianceCore, _State
from mesostats.mixed.lmm.hessian import MAX_DENSE_Q, DenseHessian

__all__ = ["ProfiledDeviance"]


class ProfiledDeviance(ProfiledDevianceCore):
    """The profiled (RE)ML deviance of an LMM and its analytic gradient in θ.

    Parameters
    ----------
    design : MixedDesign
        Gaussian design from :func:`mesostats.mixed.design.build_design`.
    reml : bool
        REML criterion (True) or maximum likelihood.

    Notes
    -----
    Bates et al. (2015), sections 3.1–3.4; blocked Cholesky with the largest grouping factor
    first as in MixedModels.jl. See :mod:`mesostats.mixed.lmm` for the gradient.
    """

    # ------------------------------------------------------------------ Hessian
    def dense_hessian(self) -> BlockHessian | DenseHessian | None:
        """The analytic Hessian (built once): :mod:`mesostats.mixed.lmm.block_hessian` when
        the further factors have at most ``MAX_BLOCK_REST`` random effects held densely
        (O(levels) per evaluation; up to ``MAX_BLOCK_Q`` random effects in all), else
        :mod:`mesostats.mixed.lmm.hessian`
        for a design with at most ``MAX_DENSE_Q`` random-effect columns, else None (L-BFGS-B).

        Measured (CPU, ``(1 + week | subject)`` trials, formula to results): 8 visits × 60 /
        200 people 4.2 / 4.6 ms with Newton steps on the block Hessian against 9.0 / 9.4 ms
        before (dense Hessian / L-BFGS-B), 10 visits × 2,000 people 17 against 21 ms; at
        20,000 people both take ~0.18 s (hence the cap ``MAX_BLOCK_Q``)."""
        cached = self.__dict__.get("_dense_hessian", False)
        if cached is False:
            design = self.design
            Q = sum(t.n_levels * t.q for t in design.terms)
            small = Q <= MAX_DENSE_Q
            blocked = (
                self.rest_mode in ("none", "dense")
                and self.Qr <= MAX_BLOCK_REST
                and Q <= MAX_BLOCK_Q
            )
            if blocked:
                cached = BlockHessian(self)
            elif small:
                cached = DenseHessian(design, self.y_shifted, reml=self.reml)
            else:
                cached = None
            self._dense_hessian = cached
        return cached

    # ------------------------------------------------------------------ gradient
    def gradient_pieces(self, st: _State) -> dict[str, Any]:
        """:meth:`_gradient_pieces`, kept for the last state (asked for twice at θ̂)."""
        cached = self.__dict__.get("_last_pieces")
        if cached is not None and cached[0] is st:
            return dict(cached[1])
        pieces = self._gradient_pieces(st)
        self._last_pieces = (st, pieces)
        return dict(pieces)

    def _gradient_pieces(self, st: _State) -> dict[str, Any]:
        """Per factor the q×q matrices WΛ (logdet), CPC (REML logdet RX) and SS (r²).

        WL = W·Λ_f with W = Σ_levels Z_ℓᵀV₀⁻¹Z_ℓ, CPC = Σ_levels C_ℓᵀ(XᵀV₀⁻¹X)⁻¹C_ℓ with
        C_ℓ = XᵀV₀⁻¹Z_ℓ, SS = Σ_levels Z_ℓᵀε̂ ε̂ᵀZ_ℓ. Also the batched C per factor, layout
        (q, p, G), for the covariance Jacobian, and the spherical modes.
        """
        lam0 = st.lams[0]
        u0, ur = self.spherical_modes(st)
        b0 = lam0 @ u0
        delta = st.delta
        s0 = self.Zty - apply_vector(self.ZtX, delta) - batched_matvec(self.A, b0)
        lam_A = st.lam_A if st.lam_A is not None else left_times(lam0.T, self.A)
        T = batched_forward(st.L0, lam_A)  # L0_g⁻¹ Λ0ᵀ A_g
        C0 = self.ZtX - transpose_times(T, st.RZX0)  # (q0, p, G0): C_gᵀ
        W0 = self.A_sum - sum_gram(T, T)
        WL: list[np.ndarray] = []  # W_f Λ_f per factor (factor 0's is added below)
        SS: list[np.ndarray] = []
        Cf: list[np.ndarray] = [C0]
        if self.Qr:
            assert st.Lrr is not None and st.lam_r is not None
            assert ur is not None and st.RZXr is not None
            lam_r, Lrr = st.lam_r, st.Lrr
            br = lam_r @ ur
            if self.rest_mode == "dense":
                assert st.Y is not None
                Y = st.Y
                s0 = s0 - apply_vector(self.F, br)
                sr = self.Zry - self.ZrX @ delta - self.RR @ br - sum_matvec(self.F, b0)
                # K_r0[a] = L_rr⁻¹ (Λ_rᵀ F[a] − Σ_i T[i, a]·Y[i])   (q0, Qr, G0)
                E = stack_of(lambda a: lam_r.T @ self.F[a], self.q0)
                E -= transpose_times(T, Y)
                Kr0 = stack_of(lambda a: tri_solve(Lrr, E[a], lower=True), self.q0)
                W0 = W0 - pair_sums(Kr0)
                lam_F = st.lam_F if st.lam_F is not None else left_times(lam0.T, self.F)
                H = batched_forward(st.L0, lam_F)  # L0_g⁻¹ Λ0ᵀ F_g
                Krr = tri_solve(Lrr, lam_r.T @ self.RR - sum_gram(Y, H), lower=True)
                Wrr = self.RR - sum_gram(H, H) - Krr.T @ Krr
                C0 = C0 - stack_of(lambda a: st.RZXr.T @ Kr0[a], self.q0)
                Cr = self.ZrX - sum_gram(H, st.RZX0) - Krr.T @ st.RZXr  # (Qr, p)
            else:
                assert st.Fh is not None and st.gram is not None
                Fh, gram = st.Fh, st.gram
                s0 = s0 - self._pair_matvec(self.pair_F, br)
                sr = (
                    self.Zry - self.ZrX @ delta - self.RR @ br - self._pair_tmatvec(self.pair_F, b0)
                )
                # Ê_g = F_gᵀ − F̂_gᵀ T_g on the pairs; K_r0 = L_rr⁻¹ Λ_rᵀ Ê is never formed
                Ehat = self.pair_F - transpose_times(T[:, :, self.pair_g], Fh)
                Sinv = spd_inverse(Lrr)
                N = as_dense(lam_r @ Sinv @ lam_r.T)
                W0 = W0 - self._pair_quadratic(Ehat, N, Ehat)
                # with M = RR − Σ F̂ᵀF̂ and S = Λ_rᵀMΛ_r + I: W_rr Λ_r = MΛ_r S⁻¹ exactly, so
                # only diagonal blocks of a product are needed (O(Q_r²), no Q_r³ product)
                MLam = as_dense(lam_r.T @ (self.RR - gram)).T  # M Λ_r (M symmetric)
                rest_wl = self._rest_diagonal_blocks(MLam, Sinv)
                back = tri_solve(Lrr.T, st.RZXr, lower=False)  # L_rr⁻ᵀ RZX_r
                Rt = lam_r @ back
                C0 = C0 - np.stack(
                    [np.asarray(self._pair_matrix(Ehat[a]) @ Rt).T for a in range(self.q0)]
                )
                # K_rrᵀ RZX_r with K_rr = L_rr⁻¹Λ_rᵀM, without forming K_rr
                Cr = self.ZrX - self._pair_tmatmat(Fh, st.RZX0) - MLam @ back
            Cf[0] = C0
            for k, (f, off) in enumerate(zip(self.rest, self.rest_offsets, strict=True)):
                size = f.n_levels * f.q
                if self.rest_mode == "dense":
                    blk = Wrr[off : off + size, off : off + size].reshape(
                        f.n_levels, f.q, f.n_levels, f.q
                    )
                    WL.append(np.einsum("iaib->ab", blk) @ st.lams[k + 1])
                else:
                    WL.append(rest_wl[k])
                seg = sr[off : off + size].reshape(f.n_levels, f.q)
                SS.append(seg.T @ seg)
                Cf.append(
                    np.ascontiguousarray(
                        Cr[off : off + size].reshape(f.n_levels, f.q, self.p).transpose(1, 2, 0)
                    )
                )
        SS.insert(0, s0 @ s0.T)
        WL.insert(0, W0 @ lam0)
        RXinv = tri_solve(st.RX, np.eye(self.p), lower=True)
        Pinv = RXinv.T @ RXinv
        CPC = [quadratic_sums(C, Pinv) for C in Cf]
        return {"WL": WL, "SS": SS, "CPC": CPC, "C": Cf, "u0": u0, "ur": ur, "RXinv": RXinv}

    def _theta_vector(self, products: list[np.ndarray]) -> np.ndarray:
        """Map per-factor ∂/∂Λ_f = 2·M_f·Λ_f (given the products M_f·Λ_f) to the θ entries."""
        out = np.zeros(self.n_theta)
        for f, ML in zip(self.factors, products, strict=True):
            out[f.theta_ids] = 2.0 * ML[f.theta_rows, f.theta_cols]
        return out

    def _rest_diagonal_blocks(self, B: np.ndarray, Sinv: np.ndarray) -> list[np.ndarray]:
        """Per rest factor, Σ_levels of the level's q×q diagonal block of B·S⁻¹ (S symmetric).

        Each block entry is a row of B dotted with a row of S⁻¹: O(Q_r²) in all.
        """
        out = []
        for f, off in zip(self.rest, self.rest_offsets, strict=True):
            base = off + np.arange(f.n_levels) * f.q
            blk = np.empty((f.q, f.q))
            for a in range(f.q):
                for b in range(f.q):
                    blk[a, b] = float(np.einsum("lk,lk->", B[base + a], Sinv[base + b]))
            out.append(blk)
        return out

    def deviance_parts_gradient(self, st: _State) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """∂(log-determinants)/∂θ and ∂r²/∂θ at the state.

        Analytic on the dense and pairs paths; on the sparse path by central differences of
        the two parts (the analytic form needs the inverse on the factor's pattern).
        """
        if self.rest_mode == "sparse":
            parts = central_gradient(self._deviance_parts, st.theta, self._fd_steps(st.theta))
            return parts[:, 0], parts[:, 1], {}
        pieces = self.gradient_pieces(st)
        logdet_products = pieces["WL"]
        if self.reml:
            logdet_products = [
                WL - C @ lam
                for WL, C, lam in zip(logdet_products, pieces["CPC"], st.lams, strict=True)
            ]
        d_logdet = self._theta_vector(logdet_products)
        d_r2 = self._theta_vector([-S @ lam for S, lam in zip(pieces["SS"], st.lams, strict=True)])
        return d_logdet, d_r2, pieces

    def _deviance_parts(self, theta: np.ndarray) -> np.ndarray:
        """(log-determinants, r²) at θ: the two θ-dependent parts of the deviance."""
        st = self.state(theta)
        return np.array([st.logdet_L + (st.logdet_RX if self.reml else 0.0), st.r2])

    @staticmethod
    def _fd_steps(theta: np.ndarray) -> np.ndarray:
        """Central-difference steps of the sparse path's gradient (error ~1e-10 relative)."""
        return relative_steps(theta, 1e-5, 0.1)

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Profiled deviance and its analytic gradient at θ."""
        st = self.state(theta)
        d_logdet, d_r2, _ = self.deviance_parts_gradient(st)
        sigma2 = st.r2 / self.dof
        return st.deviance, d_logdet + d_r2 / sigma2

    # ------------------------------------------------------------------ (θ, σ) parametrisation
    def varpar_theta_gradient(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        """∂/∂θ of the (RE)ML deviance at (θ, σ) with β profiled (lmerTest's ``devfun_vp``)."""
        st = self.state(theta)
        d_logdet, d_r2, _ = self.deviance_parts_gradient(st)
        return d_logdet + d_r2 / sigma**2

    def covbeta_jacobian(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """∂ vcov(β) / ∂(θ, σ), vcov(β) = σ² (XᵀV₀⁻¹X)⁻¹, analytic; one p×p matrix each.

        ∂(XᵀV₀⁻¹X)/∂Λ_jk = −Σ_levels (c_j (CΛ)_kᵀ + (CΛ)_k c_jᵀ), c_j the j-th column of
        C_ℓ = XᵀV₀⁻¹Z_ℓ.
        """
        if self.rest_mode == "sparse":
            return self._covbeta_jacobian_fd(theta, sigma)
        st = self.state(theta)
        pieces = self.gradient_pieces(st)
        RXinv = pieces["RXinv"]
        Pinv = RXinv.T @ RXinv
        jac = [np.zeros((self.p, self.p)) for _ in range(self.n_theta)]
        for f, C, lam in zip(self.factors, pieces["C"], st.lams, strict=True):
            CL = left_times(lam.T, C)  # CL[k] = Σ_a Λ[a, k] C[a]
            for t_id, r, c in zip(f.theta_ids, f.theta_rows, f.theta_cols, strict=True):
                U = C[r] @ CL[c].T
                jac[t_id] = (sigma**2) * Pinv @ (U + U.T) @ Pinv
        jac.append(2.0 * sigma * Pinv)
        return jac

    def _covbeta_jacobian_fd(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Sparse path of :meth:`covbeta_jacobian`: central differences of (XᵀV₀⁻¹X)⁻¹."""

        def p_inverse(t: np.ndarray) -> np.ndarray:
            RXinv = tri_solve(self.state(t).RX, np.eye(self.p), lower=True)
            return RXinv.T @ RXinv

        theta = np.asarray(theta, dtype=float)
        d_pinv = central_gradient(p_inverse, theta, self._fd_steps(theta))
        jac = [sigma**2 * d for d in d_pinv]
        jac.append(2.0 * sigma * p_inverse(theta))
        return jac

    # ------------------------------------------------------------------ conditional variances
    def conditional_covariance_diag(self, st: _State) -> list[np.ndarray]:
        """Per factor, the q×q blocks of (LLᵀ)⁻¹ for each level: list of (q, q, G_f)."""
        q0, G0 = self.q0, self.G0
        eye = np.zeros((q0, q0, G0))
        for i in range(q0):
            eye[i, i] = 1.0
        L0inv = batched_forward(st.L0, eye)  # (q0, q0, G0): L0_g⁻¹
        M0 = transpose_times(L0inv, L0inv)
        out = [M0]
        if self.rest_mode == "sparse":
            return out + self._sparse_conditional_blocks(st, L0inv, M0)
        if self.Qr:
            assert st.Lrr is not None and st.lam_r is not None
            Mrr = spd_inverse(st.Lrr)
            if self.rest_mode == "dense":
                assert st.Y is not None
                YL = transpose_times(L0inv, st.Y)  # YL[a] = Σ_i L0inv[i, a]·Y[i]
                B = np.stack([tri_solve(st.Lrr, YL[a], lower=True) for a in range(q0)])
                for a in range(q0):
                    for b in range(q0):
                        out[0][a, b] += np.einsum("jg,jg->g", B[a], B[b])
            else:
                assert st.Fh is not None
                V = transpose_times(L0inv[:, :, self.pair_g], st.Fh)
                N = as_dense(st.lam_r @ Mrr @ st.lam_r.T)
                n12 = N[self.pair_j[self.pp1], self.pair_j[self.pp2]]
                g12 = self.pair_g[self.pp1]
                for a in range(q0):
                    for b in range(q0):
                        out[0][a, b] += np.bincount(
                            g12, weights=V[a][self.pp1] * n12 * V[b][self.pp2], minlength=G0
                        )
            for f, off in zip(self.rest, self.rest_offsets, strict=True):
                size = f.n_levels * f.q
                blk = Mrr[off : off + size, off : off + size].reshape(
                    f.n_levels, f.q, f.n_levels, f.q
                )
                idx = np.arange(f.n_levels)
                out.append(np.ascontiguousarray(blk[idx, :, idx, :].transpose(1, 2, 0)))
        return out

    def _sparse_conditional_blocks(
        self, st: _State, L0inv: np.ndarray, M0: np.ndarray, chunk: int = 256
    ) -> list[np.ndarray]:
        """Sparse path of :meth:`conditional_covariance_diag`: S_r⁻¹ columns by solves in chunks.

        Adds Σ_(j1, j2) V_g,j1 N_j1j2 V_g,j2 (N = Λ_r S_r⁻¹ Λ_rᵀ) to factor 0's blocks (in
        place in ``M0``) and returns the rest factors' diagonal blocks of S_r⁻¹.
        """
        assert st.rest_factor is not None and st.Fh is not None and st.lam_r is not None
        factor, lam_r, q0 = st.rest_factor, st.lam_r, self.q0
        V = transpose_times(L0inv[:, :, self.pair_g], st.Fh)
        mats = [self._pair_matrix(V[a]) for a in range(q0)]
        for start in range(0, self.G0, chunk):
            rows = slice(start, min(start + chunk, self.G0))
            for b in range(q0):
                Z = lam_r @ factor.solve(as_dense(lam_r.T @ mats[b][rows].T))  # (Q_r, c)
                for a in range(q0):
                    M0[a, b, rows] += np.asarray(mats[a][rows].multiply(Z.T).sum(axis=1)).ravel()
        out = []
        for f, off in zip(self.rest, self.rest_offsets, strict=True):
            blk = np.empty((f.q, f.q, f.n_levels))
            base = off + np.arange(f.n_levels) * f.q
            for b in range(f.q):
                for cols, inv in factor.inverse_columns(base + b, chunk):
                    levels = (cols - off) // f.q
                    for a in range(f.q):
                        blk[a, b, levels] = inv[base[levels] + a, np.arange(cols.size)]
            out.append(blk)
        return out
