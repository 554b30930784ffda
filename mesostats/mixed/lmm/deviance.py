"""The profiled (RE)ML deviance of an LMM: factorisation at θ, start, conditional modes.

See :mod:`mesostats.mixed.lmm` for the method (Bates et al. 2015, *J. Stat. Softw.* 67(1),
§3.1–3.4) and :class:`mesostats.mixed.lmm.ProfiledDeviance` for the class that adds the
analytic gradient to :class:`ProfiledDevianceCore`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

from mesostats.mixed.design import MixedDesign
from mesostats.mixed.linalg import (
    SparseSPDFactor,
    apply_vector,
    as_dense,
    batched_backward,
    batched_cholesky,
    batched_forward,
    chol_lower,
    left_times,
    pos_solve,
    same_bits,
    stack_of,
    sum_gram,
    sum_matvec,
    transpose_times,
    tri_solve,
)
from mesostats.mixed.lmm.factors import _Factor, _factors, _per_level_products
from mesostats.mixed.lmm.rest import RestFactors

__all__ = ["ProfiledDevianceCore"]

#: largest n·(p + Q)² for the several-factor moment start (a dense SVD of [X Z]): ~0.2 ms
#: at Penicillin's 144 × 31 (saving six evaluations), ~3 ms at 271 × 125 (more than it saves)
_MOMENT_MAX_WORK = 500_000


# --------------------------------------------------------------------------- the deviance
@dataclass
class _State:
    """Everything one evaluation of the profiled deviance computes."""

    theta: np.ndarray
    lams: list[np.ndarray]
    L0: np.ndarray
    Y: np.ndarray | None  # dense path: (q0, Qr, G0), L_r0ᵀ per level
    Fh: np.ndarray | None  # pairs path: (q0, P), L0_g⁻¹ Λ0ᵀ F_g on the pairs
    gram: np.ndarray | None  # pairs path: Σ_g F̂_gᵀ F̂_g
    Lrr: np.ndarray | None
    lam_r: np.ndarray | None
    cu0: np.ndarray
    cur: np.ndarray | None
    RZX0: np.ndarray
    RZXr: np.ndarray | None
    RX: np.ndarray  # lower Cholesky factor of XᵀV₀⁻¹X
    delta: np.ndarray  # β − β_OLS
    r2: float
    logdet_L: float
    logdet_RX: float
    deviance: float
    rest_factor: SparseSPDFactor | None = None  # sparse path: the factorised S_r
    rest_sol_y: np.ndarray | None = None  # sparse path: S_r⁻¹ Λ_rᵀ(Zᵣᵀỹ − …)
    rest_sol_x: np.ndarray | None = None  # sparse path: S_r⁻¹ Λ_rᵀ(ZᵣᵀX − …)
    lam_A: np.ndarray | None = None  # Λ0ᵀ A_g (q0, q0, G0), reused by the gradient
    lam_F: np.ndarray | None = None  # dense path: Λ0ᵀ F_g (q0, Qr, G0), reused likewise


class ProfiledDevianceCore(RestFactors):
    """The profiled (RE)ML deviance of an LMM, without its gradient; parameters and method
    as :class:`~mesostats.mixed.lmm.gradient.ProfiledDeviance`, which adds the gradient."""

    def __init__(self, design: MixedDesign, *, reml: bool) -> None:
        self.design = design
        self.reml = reml
        self.n = design.n
        self.p = design.p
        self.n_theta = design.n_theta
        self.dof = self.n - self.p if reml else self.n
        self.factors = _factors(design)
        X = design.X
        y = design.y - design.offset
        # OLS shift: work with the residual of y on X to avoid cancellation in r²
        xtx = X.T @ X
        xty0 = X.T @ y
        self.beta_ols = pos_solve(xtx, xty0)
        yt = y - X @ self.beta_ols
        self.y_shifted = yt
        self.XtX = xtx
        self.Xty = X.T @ yt
        self.yty = float(yt @ yt)
        f0 = self.factors[0]
        self.G0 = f0.n_levels
        self.q0 = f0.q
        codes0 = f0.codes
        self.A = _per_level_products(codes0, self.G0, f0.Z, f0.Z)
        self.A_sum = self.A.sum(axis=2)
        self.ZtX = _per_level_products(codes0, self.G0, f0.Z, X)
        self.Zty = _per_level_products(codes0, self.G0, f0.Z, yt[:, None])[:, 0, :]
        rest = self.factors[1:]
        self.rest = rest
        self.Qr = sum(f.n_levels * f.q for f in rest)
        self.rest_mode = "none"
        #: θ entries whose moment start was floored (set by the several-factor start)
        self.start_floored: np.ndarray | None = None
        if self.Qr:
            self._choose_rest_mode()
            self._precompute_rest(X, yt)

    # ------------------------------------------------------------------ start
    def moment_start(self) -> np.ndarray:
        """A starting θ from per-group least squares (method of moments), else lme4's start.

        With one grouping factor: b̂_g = A_g⁻¹ Z_gᵀỹ_g for every group with an invertible
        A_g = Z_gᵀZ_g (ỹ = OLS residual), σ̂² from the pooled within-group residuals, and
        Σ̂_b = cov(b̂_g) − σ̂²·mean(A_g⁻¹) over the groups with more rows than effects
        (eigenvalues floored at a small positive value; a group with as many rows as effects
        fits them exactly, and its sampling variance, large where its rows are close in x,
        swamps Σ̂_b: on the 60-subject regrowth model one 2-visit subject floored the slope
        variance at a fifth of its estimate);
        θ from the Cholesky factor of Σ̂_b/σ̂². Cheap (O(G·q³)) and usually close enough that
        the optimiser needs half the iterations it needs from the identity. Several factors:
        :meth:`_crossed_moment_start` on small designs, else :meth:`_nested_moment_start`.
        """
        start = self.design.theta_start()
        if self.Qr:
            Q = sum(f.n_levels * f.q for f in self.factors)
            if self.n * (self.p + Q) ** 2 > _MOMENT_MAX_WORK or self.n <= self.p + Q:
                return self._nested_moment_start(start)
            return self._crossed_moment_start(start)
        moments = self._first_factor_moments()
        if moments is None:
            return start
        _, sigma2, cov_b = moments
        theta = start.copy()
        theta[self.factors[0].theta_ids] = _theta_block(cov_b / sigma2, self.factors[0])[0]
        return theta if np.all(np.isfinite(theta)) else start

    def _first_factor_moments(self) -> tuple[np.ndarray, float, np.ndarray] | None:
        """(b̂ (q0, G0; NaN for a group without an invertible A_g), σ̂², Σ̂_b) of the largest
        factor alone (see :meth:`moment_start`), or None when there are too few groups."""
        if self.G0 < 3:
            return None
        q = self.q0
        A = self.A.copy()
        scale = np.einsum("iig->g", A) / q
        for i in range(q):
            A[i, i] += 1e-10 * scale + 1e-300
        L = batched_cholesky(A)
        with np.errstate(invalid="ignore", divide="ignore"):
            diag_min = np.min(np.stack([L[i, i] ** 2 for i in range(q)]), axis=0)
            valid = np.isfinite(diag_min) & (diag_min > 1e-8 * scale)
        n_valid = int(valid.sum())
        dof = self.n - self.p - q * n_valid
        if n_valid < 3 or dof <= 0:
            return None
        Lv = L[:, :, valid]
        bhat = batched_backward(Lv, batched_forward(Lv, self.Zty[:, valid]))
        rss = self.yty - float(np.einsum("ig,ig->", self.Zty[:, valid], bhat))
        sigma2 = rss / dof
        if not np.isfinite(sigma2) or sigma2 <= 0:
            return None
        # Σ̂_b from the groups with more rows than effects (one that fits them exactly adds
        # nothing to σ̂² and only noise to Σ̂_b)
        informative = (np.bincount(self.factors[0].codes, minlength=self.G0) > q)[valid]
        if int(informative.sum()) >= 3 and not informative.all():
            Lv, bhat_cov = Lv[:, :, informative], bhat[:, informative]
        else:
            bhat_cov = bhat
        n_cov = bhat_cov.shape[1]
        eye = np.zeros((q, q, n_cov))
        for i in range(q):
            eye[i, i] = 1.0
        Linv = batched_forward(Lv, eye)
        Ainv_mean = transpose_times(Linv, Linv).mean(axis=2)
        centred = bhat_cov - bhat_cov.mean(axis=1, keepdims=True)
        cov_b = centred @ centred.T / (n_cov - 1) - sigma2 * Ainv_mean
        full = np.full((q, self.G0), np.nan)
        full[:, valid] = bhat
        return full, sigma2, 0.5 * (cov_b + cov_b.T)

    def _nested_moment_start(self, start: np.ndarray) -> np.ndarray:
        """Method-of-moments θ when every further factor is a random intercept whose levels
        each hold whole levels of the largest factor (subjects within sites), else ``start``.

        From the largest factor's moments (:meth:`_first_factor_moments`, which ignore the
        further factors): the intercepts b̂_g0 of the groups are averaged per level ℓ of a
        further factor; its variance is the between-level variance of those means less the
        pooled within-level variance over the mean group count (one-way ANOVA moments), and
        is taken out of the largest factor's intercept variance. Floored as
        :meth:`moment_start`; records ``start_floored`` as :meth:`_crossed_moment_start`.
        """
        f0 = self.factors[0]
        icpt = [c for c in range(f0.q) if np.all(f0.Z[:, c] == 1.0)]
        if not icpt or any(f.q != 1 or not np.all(f.Z[:, 0] == 1.0) for f in self.rest):
            return start
        moments = self._first_factor_moments()
        if moments is None:
            return start
        bhat, sigma2, cov_b = moments
        theta = start.copy()
        floored = np.zeros(theta.size, dtype=bool)
        a = bhat[icpt[0]]
        usable = np.isfinite(a)
        for f in self.rest:
            parent = np.full(self.G0, -1, dtype=np.intp)
            parent[f0.codes] = f.codes
            if not np.array_equal(parent[f0.codes], f.codes):
                return start  # not nested: a group of the largest factor spans two levels
            keys = parent[usable]
            counts = np.bincount(keys, minlength=f.n_levels)
            present = counts > 0
            n_levels = int(present.sum())
            if n_levels < 2 or usable.sum() <= n_levels:
                return start
            sums = np.bincount(keys, weights=a[usable], minlength=f.n_levels)
            level_means = sums / np.maximum(counts, 1)
            means = level_means[present]
            within = a[usable] - level_means[keys]
            pooled = float(within @ within) / (int(usable.sum()) - n_levels)
            between = float(np.var(means, ddof=1)) - pooled * float(np.mean(1.0 / counts[present]))
            rel = between / sigma2
            floor = 1e-4
            theta[f.theta_ids] = math.sqrt(max(rel, floor))
            floored[f.theta_ids] = rel < floor
            cov_b[icpt[0], icpt[0]] -= max(between, 0.0)
        lam, was_floored = _theta_block(cov_b / sigma2, f0)
        theta[f0.theta_ids] = lam
        floored[f0.theta_ids] = was_floored
        if not np.all(np.isfinite(theta)):
            return start
        self.start_floored = floored
        return theta

    def _crossed_moment_start(self, start: np.ndarray) -> np.ndarray:
        """Method-of-moments θ for several grouping factors (small designs), else ``start``.

        Least squares of ỹ on [X Z] with every random effect as a fixed one (minimum-norm
        where factors are confounded): σ̂² from its residual, and per factor the covariance
        of the estimated level effects less σ̂² times the mean of their sampling covariance
        blocks ((MᵀM)⁺), over σ̂², floored as in :meth:`moment_start`. Only a start: the
        optimiser reaches the same optimum from lme4's, in more evaluations; small designs
        only (the SVD costs O(n·(p + Q)²)). Records in ``start_floored`` the θ entries of
        factors whose estimate was floored (a variance the moments already put at zero: an
        optimum on that boundary needs no second start).
        """
        Q = sum(f.n_levels * f.q for f in self.factors)
        n, p = self.n, self.p
        if n * (p + Q) ** 2 > _MOMENT_MAX_WORK or n <= p + Q:
            return start
        M = np.zeros((n, p + Q))
        M[:, :p] = self.design.X
        rows = np.arange(n)
        off = p
        offsets = []
        for f in self.factors:
            offsets.append(off)
            for a in range(f.q):
                M[rows, off + f.codes * f.q + a] = f.Z[:, a]
            off += f.n_levels * f.q
        U, sv, Vt = np.linalg.svd(M, full_matrices=False)
        keep = sv > sv[0] * max(M.shape) * np.finfo(float).eps
        rank = int(keep.sum())
        if n - rank <= 0:
            return start
        coef = Vt[keep].T @ ((U[:, keep].T @ self.y_shifted) / sv[keep])
        resid = self.y_shifted - M @ coef
        sigma2 = float(resid @ resid) / (n - rank)
        if not (np.isfinite(sigma2) and sigma2 > 0):
            return start
        V = Vt[keep].T / sv[keep]  # (MᵀM)⁺ = V Vᵀ
        theta = start.copy()
        floored = np.zeros(theta.size, dtype=bool)
        for f, off in zip(self.factors, offsets, strict=True):
            q, G = f.q, f.n_levels
            B = coef[off : off + G * q].reshape(G, q)
            Vf = V[off : off + G * q].reshape(G, q, -1)
            sampling = np.einsum("gak,gbk->ab", Vf, Vf) / G
            centred = B - B.mean(axis=0)
            rel = (centred.T @ centred / (G - 1) - sigma2 * sampling) / sigma2
            theta[f.theta_ids], floored[f.theta_ids] = _theta_block(0.5 * (rel + rel.T), f)
        if not np.all(np.isfinite(theta)):
            return start
        self.start_floored = floored
        return theta

    # ------------------------------------------------------------------ evaluation
    def state(self, theta: np.ndarray) -> _State:
        """Factorise at θ and return every intermediate (β, r², log-determinants, ...).

        The last state is kept: the fit asks for the one at θ̂ several times (modes,
        Satterthwaite df, the covariance Jacobian). States are read, never modified.
        """
        theta = np.array(theta, dtype=float)  # a copy: the caller may reuse its array
        last = self.__dict__.get("_last_state")
        if last is not None and same_bits(last.theta, theta):
            return last
        st = self._factorise(theta)
        self._last_state = st
        return st

    def _factorise(self, theta: np.ndarray) -> _State:
        """The computation of :meth:`state`."""
        lams = [f.lam(theta) for f in self.factors]
        lam0 = lams[0]
        lam_A = left_times(lam0.T, self.A)  # Λ0ᵀ A_g; S0 = Λ0ᵀ A_g Λ0 as in linalg.sandwich
        S0 = np.swapaxes(left_times(lam0.T, np.swapaxes(lam_A, 0, 1)), 0, 1)
        for i in range(self.q0):
            S0[i, i] += 1.0
        L0 = batched_cholesky(S0)
        cu0 = batched_forward(L0, left_times(lam0.T, self.Zty))
        RZX0 = batched_forward(L0, left_times(lam0.T, self.ZtX))
        P = self.XtX - sum_gram(RZX0, RZX0)
        rhs = self.Xty - sum_matvec(RZX0, cu0)
        logdet_L = 2.0 * float(sum(np.log(L0[i, i]).sum() for i in range(self.q0)))
        r2 = self.yty - float(np.vdot(cu0, cu0))
        Y = Fh = gram = Lrr = lam_r = cur = RZXr = G1 = None
        factor = sol_y = sol_x = None
        if self.Qr:
            lam_r = self._lam_rest(theta)
            if self.rest_mode == "dense":
                G1 = left_times(lam0.T, self.F)  # Λ0ᵀ F_g  (q0, Qr, G0)
                Y = batched_forward(L0, stack_of(lambda b: lam_r.T @ G1[b], self.q0))
                Sr = as_dense(lam_r.T @ self.RR @ lam_r) - sum_gram(Y, Y)
                rest_y = lam_r.T @ self.Zry - sum_matvec(Y, cu0)
                rest_x = lam_r.T @ self.ZrX - sum_gram(Y, RZX0)
            elif self.rest_mode == "sparse":
                Fh = batched_forward(L0[:, :, self.pair_g], left_times(lam0.T, self.pair_F))
                Sr_sparse = lam_r.T @ (self.RR - self._pair_gram_sparse(Fh)) @ lam_r
                factor = SparseSPDFactor(Sr_sparse + scipy.sparse.identity(self.Qr, format="csr"))
                rest_y = lam_r.T @ (self.Zry - self._pair_tmatvec(Fh, cu0))
                rest_x = lam_r.T @ (self.ZrX - self._pair_tmatmat(Fh, RZX0))
                sol = factor.solve(np.column_stack([rest_y, rest_x]))
                sol_y, sol_x = sol[:, 0], sol[:, 1:]
                P = P - 0.5 * (rest_x.T @ sol_x + sol_x.T @ rest_x)
                rhs = rhs - rest_x.T @ sol_y
                logdet_L += factor.logdet
                r2 -= float(rest_y @ sol_y)
            else:
                # F̂_g = L0_g⁻¹ Λ0ᵀ F_g on the pairs' pattern; Y_g = F̂_g Λ_r is never formed
                Fh = batched_forward(L0[:, :, self.pair_g], left_times(lam0.T, self.pair_F))
                gram = self._pair_gram(Fh)
                Sr = as_dense(lam_r.T @ (self.RR - gram) @ lam_r)
                rest_y = lam_r.T @ (self.Zry - self._pair_tmatvec(Fh, cu0))
                rest_x = lam_r.T @ (self.ZrX - self._pair_tmatmat(Fh, RZX0))
            if self.rest_mode != "sparse":
                Sr.flat[:: Sr.shape[0] + 1] += 1.0  # the diagonal
                Lrr = chol_lower(Sr)
                cur = tri_solve(Lrr, rest_y, lower=True)
                RZXr = tri_solve(Lrr, rest_x, lower=True)
                P = P - RZXr.T @ RZXr
                rhs = rhs - RZXr.T @ cur
                logdet_L += 2.0 * float(np.log(np.diag(Lrr)).sum())
                r2 -= float(cur @ cur)
        RX = chol_lower(P)
        cb = tri_solve(RX, rhs, lower=True)
        delta = tri_solve(RX.T, cb, lower=False)
        r2 = max(r2 - float(cb @ cb), 1e-300)
        logdet_RX = 2.0 * float(np.log(np.diag(RX)).sum())
        dev = logdet_L + self.dof * (1.0 + math.log(2.0 * math.pi * r2 / self.dof))
        if self.reml:
            dev += logdet_RX
        return _State(
            theta=theta,
            lams=lams,
            L0=L0,
            Y=Y,
            Fh=Fh,
            gram=gram,
            Lrr=Lrr,
            lam_r=lam_r,
            cu0=cu0,
            cur=cur,
            RZX0=RZX0,
            RZXr=RZXr,
            RX=RX,
            delta=delta,
            r2=r2,
            logdet_L=logdet_L,
            logdet_RX=logdet_RX,
            deviance=dev,
            rest_factor=factor,
            rest_sol_y=sol_y,
            rest_sol_x=sol_x,
            lam_A=lam_A,
            lam_F=G1,
        )

    def __call__(self, theta: np.ndarray) -> float:
        """Profiled deviance at θ."""
        return self.state(theta).deviance

    # ------------------------------------------------------------------ modes
    def spherical_modes(self, st: _State) -> tuple[np.ndarray, np.ndarray | None]:
        """Conditional modes u (spherical scale): (q0, G0) and the dense rest (Qr,); kept for
        the last state (the gradient and the fit's modes ask for the same at θ̂). Read-only."""
        cached = self.__dict__.get("_last_modes")
        if cached is not None and cached[0] is st:
            return cached[1]
        modes = self._spherical_modes(st)
        for u in modes:
            if u is not None:
                u.setflags(write=False)
        self._last_modes = (st, modes)
        return modes

    def _spherical_modes(self, st: _State) -> tuple[np.ndarray, np.ndarray | None]:
        """The computation of :meth:`spherical_modes`."""
        ur = None
        rhs0 = st.cu0 - apply_vector(st.RZX0, st.delta)
        if self.rest_mode == "sparse":
            assert st.rest_sol_y is not None and st.rest_sol_x is not None
            assert st.Fh is not None and st.lam_r is not None
            ur = st.rest_sol_y - st.rest_sol_x @ st.delta
            rhs0 = rhs0 - self._pair_matvec(st.Fh, st.lam_r @ ur)
        elif self.Qr:
            assert st.Lrr is not None and st.cur is not None and st.RZXr is not None
            ur = tri_solve(st.Lrr.T, st.cur - st.RZXr @ st.delta, lower=False)
            if self.rest_mode == "dense":
                assert st.Y is not None
                rhs0 = rhs0 - apply_vector(st.Y, ur)
            else:
                assert st.Fh is not None and st.lam_r is not None
                rhs0 = rhs0 - self._pair_matvec(st.Fh, st.lam_r @ ur)
        u0 = batched_backward(st.L0, rhs0)
        return u0, ur


def _theta_block(rel: np.ndarray, f: _Factor) -> tuple[np.ndarray, bool]:
    """A factor's θ entries from a relative covariance estimate Σ̂/σ̂² (symmetric), its
    eigenvalues floored at max(1e-4, 1e-3·largest), and whether the floor was used."""
    evals, evecs = np.linalg.eigh(rel)
    floor = max(1e-4, 1e-3 * float(evals.max(initial=0.0)))
    rel = (evecs * np.maximum(evals, floor)) @ evecs.T
    q = rel.shape[0]
    full = len(f.theta_ids) == q * (q + 1) // 2
    lam = np.linalg.cholesky(rel) if full else np.diag(np.sqrt(np.diag(rel)))
    return lam[f.theta_rows, f.theta_cols], bool(evals.min() < floor)
