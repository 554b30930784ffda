"""Laplace approximation of a GLMM log-likelihood for any random-effect structure.

Model (Bates et al. 2015, *J. Stat. Softw.* 67(1), §5 "generalized linear mixed models"):
``η = Xβ + offset + Z Λ(θ) u`` with spherical random effects ``u ~ N(0, I)`` and a canonical
link (binomial–logit or Poisson–log). With ``A = ZΛ(θ)`` and the GLM weights
``W = diag(w_i)``, the conditional modes ``û(β, θ)`` maximise the penalised log-likelihood
``Σ ℓ_i(η) − ‖u‖²/2`` (penalised IRLS = Newton, because the link is canonical), and the
Laplace approximation of the marginal log-likelihood is

    ℓ_L(β, θ) = Σ ℓ_i(η̂) − ‖û‖²/2 − ½ log det(AᵀWA + I),

on lme4's scale (``ℓ_i`` includes log C(n, y) for the binomial and −log y! for the Poisson).

Its exact gradient in (β, θ) follows from the envelope theorem for the first two terms and the
implicit-function theorem for ``dû/dβ = −H⁻¹AᵀWX`` and ``dû/dθ_j = H⁻¹(A_jᵀr − AᵀWA_j û)``
(``H = AᵀWA + I``, ``A_j = Z ∂Λ/∂θ_j``, ``r = ∂ℓ/∂η``) inside the log-determinant term,
whose derivative is ``½ tr(H⁻¹ ∂H)`` with ``∂H`` involving ``dW/dη``. The same approach is used
by TMB (Kristensen et al. 2016, *J. Stat. Softw.* 70(5)) through automatic differentiation; here
it is written out because scipy has no sparse Cholesky and no AD.

Why hand-written: statsmodels has no maximum-likelihood GLMM; no Python library offers a
Laplace GLMM objective with exact gradients. The single-scalar-random-intercept case, which
also supports adaptive Gauss–Hermite quadrature, lives in :mod:`mesostats.mixed.quadrature`
(elementwise algebra, the fast path); this module handles vector random effects (one grouping
factor: stacked q×q blocks) and several grouping factors (dense ``H``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from scipy.special import gammaln

from mesostats.mixed.finite_diff import central_gradient, relative_steps
from mesostats.mixed.linalg import stacked_inverse_logdet as _stacked_inverse_logdet
from mesostats.mixed.sparse_laplace import SparseLaplaceFactor

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

FAMILIES = ("binomial", "poisson")


@dataclass(frozen=True)
class CanonicalFamily:
    """Binomial–logit or Poisson–log response with prior weights.

    ``y`` is the proportion of successes (binomial; prior weights = trials) or the count
    (Poisson; prior weights usually 1). The log-likelihood of one row is
    ``w·(yη − b(η)) + c(y, w)`` with ``b = log(1 + e^η)`` or ``e^η`` (McCullagh & Nelder 1989,
    ch. 2); ``c`` is log C(w, wy) or −log y!, as in lme4's ``logLik``.
    """

    name: str

    def __post_init__(self) -> None:  # any other name (e.g. NB2) would act as the Poisson
        if self.name not in FAMILIES:
            raise ValueError(f"CanonicalFamily is binomial or poisson, got {self.name!r}")

    def mean(self, eta: FloatArray) -> FloatArray:
        """Inverse link μ(η)."""
        return self.mean_only(eta)

    def cumulant(self, eta: FloatArray) -> FloatArray:
        """b(η) such that the log-likelihood is ``y η − b(η)`` per unit weight."""
        return self.cumulant_and_mean(eta)[0]

    def cumulant_and_mean(self, eta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """b(η) and μ = b'(η) with one exponential and one logarithm per element.

        Binomial: ``μ = 1 / (1 + exp(−η))`` and ``b = η − log μ`` (= log(1 + e^η)), with η
        floored at −700 so nothing overflows (b then differs from its limit 0 by < e^−700).
        This is the hot path of PIRLS and of the quadrature; ``np.where``/``log1p``-based
        forms cost 1.5–2× more here.
        """
        if self.name == "binomial":
            eta_c = np.maximum(eta, -700.0)
            mu = np.negative(eta_c)
            np.exp(mu, out=mu)
            mu += 1.0
            np.reciprocal(mu, out=mu)
            b = np.log(mu)
            np.subtract(eta_c, b, out=b)
            return b, mu
        mu = np.exp(np.minimum(eta, 700.0))
        return mu, mu

    def mean_only(self, eta: FloatArray) -> FloatArray:
        """μ(η) without the cumulant (no logarithm)."""
        if self.name == "binomial":
            mu = np.negative(np.maximum(eta, -700.0))
            np.exp(mu, out=mu)
            mu += 1.0
            return np.reciprocal(mu, out=mu)
        return np.exp(np.minimum(eta, 700.0))

    def variance(self, mu: FloatArray) -> FloatArray:
        """``b''(η)`` given μ (the first value of :meth:`variance_and_slope`)."""
        if self.name == "binomial":
            return mu * (1.0 - mu)
        return mu

    def variance_and_slope(self, mu: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``b''(η)`` and ``b'''(η)`` given μ (the GLM working weight and its η-derivative)."""
        if self.name == "binomial":
            v = mu * (1.0 - mu)
            return v, v * (1.0 - 2.0 * mu)
        return mu, mu

    def log_normaliser(self, y: FloatArray, weights: FloatArray) -> float:
        """Σ c(y, w): log C(n, k) for the binomial, −log y! for the Poisson."""
        if self.name == "binomial":
            k = y * weights
            return float(
                np.sum(gammaln(weights + 1.0) - gammaln(k + 1.0) - gammaln(weights - k + 1.0))
            )
        return float(-np.sum(weights * gammaln(y + 1.0)))


@dataclass
class GeneralLaplaceData:
    """Raw arrays of a GLMM with any random-effect structure (see module docstring).

    Each random-effect term ``t`` (a grouping factor) has per-row group codes ``codes[t]``
    (0…G_t−1), raw columns ``Z[t]`` (n × q_t) and ``n_levels[t]``. θ fills each term's
    lower-triangular Λ_t column-major (lme4 order), or only the ``theta_positions[t]`` entries
    (i, j) when given (several lme4 terms on one grouping factor, e.g. after ``||``: a
    block-diagonal Λ_t); ``u`` is ordered term by term, level by level, then column.
    """

    family: CanonicalFamily
    y: FloatArray
    weights: FloatArray
    offset: FloatArray
    X: FloatArray
    codes: list[IntArray]
    Z: list[FloatArray]
    n_levels: list[int]
    theta_positions: list[list[tuple[int, int]]] | None = None
    theta_index: list[list[tuple[int, int]]] = field(init=False)
    cols: IntArray = field(init=False)
    n_re: int = field(init=False)
    const: float = field(init=False)
    q1: int = field(init=False)  # columns of the first term
    n_first: int = field(init=False)  # random effects of the first term (levels × q1)
    n_rest: int = field(init=False)  # random effects of the other terms

    def __post_init__(self) -> None:
        self.theta_index = []
        col_blocks = []
        start = 0
        for t, (codes, z, g) in enumerate(zip(self.codes, self.Z, self.n_levels, strict=True)):
            q = z.shape[1]
            if self.theta_positions is None:
                self.theta_index.append([(i, j) for j in range(q) for i in range(j, q)])
            else:
                self.theta_index.append(list(self.theta_positions[t]))
            col_blocks.append(start + codes[:, None] * q + np.arange(q)[None, :])
            start += g * q
        self.cols = np.concatenate(col_blocks, axis=1).astype(np.int64)
        self.n_re = start
        self.q1 = self.Z[0].shape[1]
        self.n_first = self.n_levels[0] * self.q1
        self.n_rest = self.n_re - self.n_first
        self.const = self.family.log_normaliser(self.y, self.weights)

    @property
    def n_theta(self) -> int:
        """Number of covariance parameters θ."""
        return sum(len(ix) for ix in self.theta_index)

    def lambda_blocks(self, theta: FloatArray) -> list[FloatArray]:
        """Λ_t(θ) per term, lower triangular, θ filled column-major."""
        blocks = []
        k = 0
        for z, ix in zip(self.Z, self.theta_index, strict=True):
            q = z.shape[1]
            lam = np.zeros((q, q))
            for i, j in ix:
                lam[i, j] = theta[k]
                k += 1
            blocks.append(lam)
        return blocks

    def row_values(self, theta: FloatArray) -> tuple[FloatArray, list[FloatArray]]:
        """Nonzero values of ``A = ZΛ`` per row (n × r) and of ``A_j = Z ∂Λ/∂θ_j``."""
        vals = np.concatenate(
            [z @ lam for z, lam in zip(self.Z, self.lambda_blocks(theta), strict=True)], axis=1
        )
        dvals = []
        offset = 0
        for z, ix in zip(self.Z, self.theta_index, strict=True):
            q = z.shape[1]
            for i, j in ix:
                d = np.zeros((z.shape[0], vals.shape[1]))
                d[:, offset + j] = z[:, i]
                dvals.append(d)
            offset += q
        return vals, dvals


@dataclass
class LaplaceEvaluation:
    """Result of one Laplace evaluation at (β, θ)."""

    loglik: float
    u: FloatArray
    gradient: FloatArray | None
    pirls_iterations: int
    pirls_converged: bool


class BlockSchurFactor:
    """Factorisation of ``H = AᵀWA + I`` eliminating the first term's block-diagonal part.

    Order the random effects as (first term | the rest). The first term (lme4 puts the one with
    most levels first) gives a block-diagonal ``H₁₁`` (one q₁×q₁ block per level); the rest
    ``H₂₂`` is small and dense. With ``M = H₁₁⁻¹H₁₂`` and the Schur complement
    ``S = H₂₂ − H₂₁M``:

        log det H = Σ_g log det H₁₁,g + log det S,
        aᵀH⁻¹b = a₁ᵀH₁₁⁻¹b₁ + (Mᵀa₁ − a₂)ᵀ S⁻¹ (Mᵀb₁ − b₂).

    This is the block elimination a fill-reducing sparse Cholesky performs when the largest
    factor is eliminated first (Bates et al. 2015, §3.2; Davis 2006, *Direct Methods for
    Sparse Linear Systems*); it keeps dense LAPACK work to the size of S.
    """

    def __init__(self, layout: GeneralLaplaceData, vals: FloatArray, w: FloatArray) -> None:
        d = layout
        self.d = d
        q1, g1, q2 = d.q1, d.n_levels[0], d.n_rest
        self.q1, self.g1, self.q2 = q1, g1, q2
        a1, a2 = vals[:, :q1], vals[:, q1:]
        codes = d.codes[0]
        h11 = np.empty((g1, q1, q1))
        for k in range(q1):
            for m in range(k, q1):
                h11[:, k, m] = np.bincount(codes, weights=w * a1[:, k] * a1[:, m], minlength=g1)
                h11[:, m, k] = h11[:, k, m]
        h11 += np.eye(q1)
        self.h11_inv, self.logdet = _stacked_inverse_logdet(h11)
        if q2 == 0:
            self.m = np.zeros((g1, q1, 0))
            self.s_inv = np.zeros((0, 0))
            return
        c2 = d.cols[:, q1:] - d.n_first  # (n, r2) local columns of the rest
        r2 = c2.shape[1]
        h12 = np.zeros(g1 * q1 * q2)
        for k in range(q1):
            row = (codes * q1 + k) * q2
            for m in range(r2):
                h12 += np.bincount(
                    row + c2[:, m], weights=w * a1[:, k] * a2[:, m], minlength=h12.size
                )
        self.h12 = h12.reshape(g1, q1, q2)
        h22 = np.zeros(q2 * q2)
        for m in range(r2):
            for m2 in range(r2):
                h22 += np.bincount(
                    c2[:, m] * q2 + c2[:, m2], weights=w * a2[:, m] * a2[:, m2], minlength=h22.size
                )
        h22 = h22.reshape(q2, q2) + np.eye(q2)
        self.m = np.einsum("gkl,glj->gkj", self.h11_inv, self.h12)
        schur = h22 - np.einsum("gki,gkj->ij", self.h12, self.m)
        chol = np.linalg.cholesky(schur)
        self.logdet += float(2.0 * np.sum(np.log(np.diag(chol))))
        chol_inv, info = linalg.lapack.dtrtri(chol, lower=1)  # L⁻¹ (LAPACK trtri)
        if info != 0:  # pragma: no cover - chol has a positive diagonal
            raise np.linalg.LinAlgError("singular Schur complement")
        self.s_inv = chol_inv.T @ chol_inv

    def solve(self, rhs: FloatArray) -> FloatArray:
        """H⁻¹ rhs for rhs of shape (Q,) or (Q, k)."""
        vec = rhs.ndim == 1
        r = rhs.reshape(rhs.shape[0], -1)
        n_first = self.g1 * self.q1
        r1 = r[:n_first].reshape(self.g1, self.q1, -1)
        t1 = np.einsum("gkl,glj->gkj", self.h11_inv, r1)
        if self.q2 == 0:
            out = t1.reshape(n_first, -1)
        else:
            r2 = r[n_first:] - np.einsum("gkm,gkj->mj", self.h12, t1)
            x2 = self.s_inv @ r2
            x1 = t1 - np.einsum("gkm,mj->gkj", self.m, x2)
            out = np.concatenate([x1.reshape(n_first, -1), x2], axis=0)
        return out[:, 0] if vec else out

    def _reduced(self, v: FloatArray, rows: slice) -> FloatArray:
        """Mᵀa₁ − a₂ per row (dense over the rest's columns) for rows ``rows``."""
        d = self.d
        q1 = self.q1
        out = np.einsum("nk,nkm->nm", v[rows, :q1], self.m[d.codes[0][rows]])
        c2 = d.cols[rows, q1:] - d.n_first
        idx = np.arange(out.shape[0])
        for m in range(c2.shape[1]):
            np.subtract.at(out, (idx, c2[:, m]), v[rows, q1 + m])
        return np.asarray(out)

    def row_quadratic(self, a: FloatArray, b: FloatArray) -> FloatArray:
        """Per row i: aᵢᵀ H⁻¹ bᵢ from the rows' nonzero values (same column pattern)."""
        d = self.d
        q1 = self.q1
        out = np.einsum("nk,nkl,nl->n", a[:, :q1], self.h11_inv[d.codes[0]], b[:, :q1])
        if self.q2 == 0:
            return np.asarray(out)
        chunk = max(1, 4_000_000 // max(self.q2, 1))
        for start in range(0, a.shape[0], chunk):
            rows = slice(start, start + chunk)
            ra = self._reduced(a, rows)
            rb = ra if b is a else self._reduced(b, rows)
            out[rows] += np.einsum("nm,mp,np->n", ra, self.s_inv, rb)
        return np.asarray(out)

    def diagonal_blocks(self) -> list[FloatArray]:
        """Per term, the (n_levels, q, q) diagonal blocks of H⁻¹."""
        first = self.h11_inv + np.einsum("gkm,mp,glp->gkl", self.m, self.s_inv, self.m)
        blocks = [np.asarray(first)]
        start = 0
        for z, g in zip(self.d.Z[1:], self.d.n_levels[1:], strict=True):
            q = z.shape[1]
            idx = start + np.arange(g)[:, None] * q + np.arange(q)[None, :]
            blocks.append(self.s_inv[idx[:, :, None], idx[:, None, :]])
            start += g * q
        return blocks


#: Random effects outside the first term up to which H's Schur complement is held dense.
MAX_DENSE_REST = 3000
#: Operations (G₁·q₁·Q₂²) of one dense Schur complement above which the sparse factor is used
#: (measured: at 3,200 × 3,100 crossed levels one dense factorisation took minutes, the
#: sparse one milliseconds; grouseticks' 118 × 63 costs 5·10⁵).
MAX_DENSE_SCHUR_COST = 2e7


class GeneralLaplace:
    """Laplace objective and exact gradient for vector or several random-effect terms.

    ``H = AᵀWA + I`` is factorised by :class:`BlockSchurFactor`; conditional modes come from
    Newton's method (PIRLS for a canonical link) with step halving on the penalised
    log-likelihood (Bates et al. 2015, §5.2; lme4's ``pwrssUpdate``).
    """

    def __init__(self, data: GeneralLaplaceData, max_dense: int | None = None) -> None:
        self.data = data
        # beyond ``max_dense`` random effects outside the first term the dense Schur
        # complement is too large: factorise the whole sparse H instead
        limit = MAX_DENSE_REST if max_dense is None else max_dense
        schur_cost = data.n_levels[0] * data.q1 * float(data.n_rest) ** 2
        self.sparse = data.n_rest > limit or schur_cost > MAX_DENSE_SCHUR_COST
        self._u = np.zeros(data.n_re)
        self._last_factor: BlockSchurFactor | SparseLaplaceFactor | None = None

    def _factor(self, vals: FloatArray, w: FloatArray) -> BlockSchurFactor | SparseLaplaceFactor:
        """H = AᵀWA + I factorised (dense Schur complement, or sparse when it is large)."""
        if self.sparse:
            return SparseLaplaceFactor(self.data, vals, w)
        return BlockSchurFactor(self.data, vals, w)

    def _at(self, vals: FloatArray, v: FloatArray) -> FloatArray:
        """Aᵀ v for v of shape (n,) or (n, k)."""
        d = self.data
        if v.ndim == 1:
            out = np.zeros(d.n_re)
            for a in range(vals.shape[1]):
                out += np.bincount(d.cols[:, a], weights=vals[:, a] * v, minlength=d.n_re)
            return out
        return np.column_stack([self._at(vals, v[:, k]) for k in range(v.shape[1])])

    def _a(self, vals: FloatArray, u: FloatArray) -> FloatArray:
        """A u (n,)."""
        return np.asarray(np.einsum("nr,nr->n", vals, u[self.data.cols]))

    def _penalised(self, eta: FloatArray, u: FloatArray) -> FloatArray:
        """Σℓ_i − ‖u‖²/2 without the normalising constant: per level of the grouping factor
        when there is only one (the problem separates), else a single total."""
        d = self.data
        rows = d.weights * (d.y * eta - d.family.cumulant(eta))
        if d.n_rest == 0:
            per = np.bincount(d.codes[0], weights=rows, minlength=d.n_levels[0])
            return np.asarray(per - 0.5 * np.sum(u.reshape(d.n_levels[0], d.q1) ** 2, axis=1))
        return np.array([float(np.sum(rows) - 0.5 * u @ u)])

    def conditional_modes(
        self, beta: FloatArray, theta: FloatArray, tol: float = 1e-9, max_iter: int = 200
    ) -> tuple[FloatArray, int, bool]:
        """Maximise Σℓ_i(η) − ‖u‖²/2 over u by Newton with step halving (warm start).

        With one grouping factor the problem separates by level and each level's step is
        halved on its own penalised log-likelihood; with several the whole step is halved.
        Once the largest Newton step is below ``tol`` it is applied and the iteration stops
        (quadratic convergence: the modes are then accurate to O(tol²)).
        """
        d = self.data
        vals, _ = d.row_values(theta)
        eta_fixed = d.X @ beta + d.offset
        u = self._u.copy()
        if not np.all(np.isfinite(u)):
            u = np.zeros(d.n_re)
        eta = eta_fixed + self._a(vals, u)
        f = self._penalised(eta, u)
        per_level = d.n_rest == 0
        for it in range(1, max_iter + 1):
            mu = d.family.mean(eta)
            w = d.weights * d.family.variance_and_slope(mu)[0]
            grad = self._at(vals, d.weights * (d.y - mu)) - u
            step = self._factor(vals, w).solve(grad)
            if np.max(np.abs(step)) < tol:
                self._u = u + step
                return self._u, it, True
            lam = np.ones(len(f))
            for _ in range(50):
                u_new = u + (np.repeat(lam, d.q1) if per_level else lam[0]) * step
                eta_new = eta_fixed + self._a(vals, u_new)
                f_new = self._penalised(eta_new, u_new)
                worse = f_new < f - 1e-12 * np.abs(f)
                if not np.any(worse):
                    break
                lam = np.where(worse, 0.5 * lam, lam)
            u, eta, f = u_new, eta_new, f_new
        self._u = u
        return u, max_iter, False

    def evaluate(
        self, beta: FloatArray, theta: FloatArray, *, gradient: bool = True
    ) -> LaplaceEvaluation:
        """Laplace log-likelihood (lme4 scale) and its gradient over (β, θ).

        The gradient is exact, except on the sparse path (``self.sparse``), where the exact
        form would need H⁻¹ on the pattern of AᵀA at every evaluation and central
        differences of the log-likelihood are cheaper (2·(p + len(θ)) evaluations).
        """
        if gradient and self.sparse:
            return self._evaluate_fd(beta, theta)
        d = self.data
        u, iters, ok = self.conditional_modes(beta, theta)
        vals, dvals = d.row_values(theta)
        eta = d.X @ beta + d.offset + self._a(vals, u)
        b, mu = d.family.cumulant_and_mean(eta)
        v, dv = d.family.variance_and_slope(mu)
        w = d.weights * v
        factor = self._factor(vals, w)
        self._last_factor = factor
        ll = float(np.sum(d.weights * (d.y * eta - b))) + d.const
        loglik = ll - 0.5 * float(u @ u) - 0.5 * factor.logdet
        if not gradient:
            return LaplaceEvaluation(loglik, u, None, iters, ok)
        # the sparse factor is differentiated centrally (_evaluate_fd), never here
        assert isinstance(factor, BlockSchurFactor)
        wprime = d.weights * dv
        res = d.weights * (d.y - mu)
        lev = factor.row_quadratic(vals, vals)  # a_iᵀ H⁻¹ a_i
        half = 0.5 * wprime * lev
        # β: ∂ℓ/∂β = Xᵀr − ½ Σ_i w'_i c_i dη_i/dβ with dη/dβ = X − A H⁻¹ AᵀWX
        du_beta = factor.solve(self._at(vals, w[:, None] * d.X))
        deta_beta = d.X - np.column_stack([self._a(vals, col) for col in du_beta.T])
        g_beta = d.X.T @ res - deta_beta.T @ half
        g_theta = np.empty(len(dvals))
        for j, dv_j in enumerate(dvals):
            aj_u = self._a(dv_j, u)
            du = factor.solve(self._at(dv_j, res) - self._at(vals, w * aj_u))
            deta = aj_u + self._a(vals, du)
            tr_cross = float(np.sum(w * factor.row_quadratic(vals, dv_j)))
            g_theta[j] = float(res @ aj_u) - tr_cross - float(half @ deta)
        return LaplaceEvaluation(loglik, u, np.concatenate([g_beta, g_theta]), iters, ok)

    def _evaluate_fd(self, beta: FloatArray, theta: FloatArray) -> LaplaceEvaluation:
        """Sparse path: the Laplace log-likelihood and its central-difference gradient."""
        p = beta.size
        x = np.concatenate([beta, theta])

        def loglik(z: FloatArray) -> float:
            return self.evaluate(z[:p], z[p:], gradient=False).loglik

        grad = central_gradient(loglik, x, relative_steps(x, 1e-5, 0.1))
        at_x = self.evaluate(beta, theta, gradient=False)  # last: leaves state at x
        return LaplaceEvaluation(
            at_x.loglik, at_x.u, np.asarray(grad), at_x.pirls_iterations, at_x.pirls_converged
        )

    def conditional_covariance_blocks(
        self, beta: FloatArray, theta: FloatArray
    ) -> list[FloatArray]:
        """Per term, the (n_levels, q, q) diagonal blocks of H⁻¹ = Var(u | y) (Laplace)."""
        self.evaluate(beta, theta, gradient=False)
        if self._last_factor is None:  # pragma: no cover - set by evaluate
            raise RuntimeError("no evaluation")
        return self._last_factor.diagonal_blocks()

    def beta_information(self, beta: FloatArray, theta: FloatArray) -> FloatArray:
        """Approximate −∂²ℓ/∂β²: ``Xᵀ(W − WA H⁻¹ AᵀW)X`` (penalised-IRLS Schur complement).

        Omits the derivatives of the log-determinant; used only to precondition the optimiser.
        """
        d = self.data
        u, _, _ = self.conditional_modes(beta, theta)
        vals, _ = d.row_values(theta)
        eta = d.X @ beta + d.offset + self._a(vals, u)
        w = d.weights * d.family.variance_and_slope(d.family.mean(eta))[0]
        at_wx = self._at(vals, w[:, None] * d.X)
        xtwx = d.X.T @ (w[:, None] * d.X)
        return np.asarray(xtwx - at_wx.T @ self._factor(vals, w).solve(at_wx))
