"""The further grouping factors of an LMM: how their Schur complement is held.

Mixin of :class:`mesostats.mixed.lmm.ProfiledDeviance`. After the largest factor (kept
block-diagonal), the random effects of the other factors (Q_r of them) enter through their
Schur complement, held one of three ways chosen by the cost per evaluation
(``_choose_rest_mode``): "dense" (the (q0, Q_r, G0) blocks of Λ_rᵀF_g), "pairs" (F on its
non-zero level × rest-column pairs, dense Q_r × Q_r complement) or "sparse" (a sparse
complement with a sparse Cholesky, beyond ``_MAX_REST_DENSE``). Bates et al. (2015),
*J. Stat. Softw.* 67(1), §3.2; MixedModels.jl's blocked Cholesky.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse

from mesostats.mixed.lmm.factors import _Factor

__all__: list[str] = []

_MAX_REST_ELEMENTS = 40_000_000  # dense (q0, Q_r, G0) blocks of the Schur path
_MAX_PAIR_PAIRS = 20_000_000  # co-occurring level pairs of the "pairs" path
_MAX_REST_DENSE = 5_000  # Q_r × Q_r dense matrices (dense and pairs paths); else sparse
_SMALL_REST_ELEMENTS = 1_000_000  # below this the dense path is used without costing


#: Λ_r of at most this many rest random effects is held dense (see ``_lam_rest``).
_DENSE_LAMBDA_REST = 64


class RestFactors:
    """Mixin: precomputation and products of the further factors (see the module docstring)."""

    # set by ProfiledDeviance.__init__ before any method here runs
    factors: list[_Factor]
    rest: list[_Factor]
    Qr: int
    q0: int
    G0: int
    p: int
    rest_mode: str

    # ------------------------------------------------------------------ rest factors
    def _rest_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the dense-rest column index of each rest random effect and its value."""
        cols, vals = [], []
        offset = 0
        self.rest_offsets = []
        for f in self.rest:
            self.rest_offsets.append(offset)
            for c in range(f.q):
                cols.append(offset + f.codes * f.q + c)
                vals.append(f.Z[:, c])
            offset += f.n_levels * f.q
        return np.stack(cols, axis=1), np.stack(vals, axis=1)

    def _choose_rest_mode(self) -> None:
        """Pick how the further factors' Schur complement is held, by the cost per evaluation.

        "dense": the (q0, Q_r, G0) blocks Λ_rᵀF_g (about 4·q0²·Q_r²·G0 operations per
        evaluation with the gradient); "pairs": F on its non-zero (level, rest column) pairs
        with a dense Q_r×Q_r Schur complement (about 4·q0²·Σ_g k_g² + 2·Q_r³, k_g the rest
        columns level g meets); "sparse": the Schur complement as a sparse matrix with a
        sparse Cholesky (:class:`SparseSPDFactor`), for Q_r > ``_MAX_REST_DENSE``, with a
        finite-difference gradient. Small problems always take the dense path.
        """
        q0, Qr, G0 = self.q0, self.Qr, self.G0
        dense_elements = Qr * q0 * G0
        if Qr > _MAX_REST_DENSE:
            self.rest_mode = "sparse"
            return
        if dense_elements <= min(_SMALL_REST_ELEMENTS, _MAX_REST_ELEMENTS):
            self.rest_mode = "dense"
            return
        rcols, _ = self._rest_columns()
        keys = np.unique((self.factors[0].codes[:, None] * Qr + rcols).ravel())
        per_level = np.bincount(keys // Qr, minlength=G0).astype(float)
        pair_pairs = float(np.sum(per_level**2))
        dense_cost = 4.0 * q0 * q0 * float(Qr) ** 2 * G0
        pairs_cost = 4.0 * q0 * q0 * pair_pairs + 2.0 * float(Qr) ** 3
        if dense_elements <= _MAX_REST_ELEMENTS and dense_cost <= pairs_cost:
            self.rest_mode = "dense"
        elif pair_pairs <= _MAX_PAIR_PAIRS:
            self.rest_mode = "pairs"
        else:
            self.rest_mode = "sparse"

    def _precompute_pairs(self, rcols: np.ndarray, rvals: np.ndarray) -> None:
        """F as its non-zero (level g, rest column j) pairs, sorted by g then j.

        ``pair_g``, ``pair_j`` (P,), ``pair_F`` (q0, P); ``pp1``/``pp2`` index every two pairs
        of the same level g (Σ_g k_g² entries) for sums Σ_g A_gᵀ N B_g with a dense N.
        """
        Qr, q0 = self.Qr, self.q0
        f0 = self.factors[0]
        keys = (f0.codes[:, None] * Qr + rcols).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        P = uniq.size
        self.pair_g = (uniq // Qr).astype(np.intp)
        self.pair_j = (uniq % Qr).astype(np.intp)
        self.pair_F = np.stack(
            [
                np.bincount(inverse, weights=(f0.Z[:, [a]] * rvals).ravel(), minlength=P)
                for a in range(q0)
            ]
        )
        counts = np.bincount(self.pair_g, minlength=self.G0)
        self._pair_indptr = np.concatenate([[0], np.cumsum(counts)])
        if self.rest_mode == "sparse":  # no two-pair index: Σ_g k_g² may be large
            return
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rep = counts[self.pair_g]
        self.pp1 = np.repeat(np.arange(P), rep)
        offsets = np.arange(self.pp1.size) - np.repeat(np.cumsum(rep) - rep, rep)
        self.pp2 = starts[self.pair_g[self.pp1]] + offsets
        # the same two-pair products, each unordered pair once, with N's flat positions
        upper = self.pp1 < self.pp2
        self.ppu1, self.ppu2 = self.pp1[upper], self.pp2[upper]
        self._n_upper = self.pair_j[self.ppu1] * Qr + self.pair_j[self.ppu2]
        self._n_diag = self.pair_j * Qr + self.pair_j

    def _pair_matrix(self, values: np.ndarray) -> Any:
        """The (G0 × Q_r) sparse matrix with ``values`` on the pairs' pattern."""
        return scipy.sparse.csr_matrix(
            (values, self.pair_j, self._pair_indptr), shape=(self.G0, self.Qr)
        )

    def _pair_gram_sparse(self, values: np.ndarray) -> Any:
        """Σ_g V_gᵀ V_g as a sparse (Q_r × Q_r) matrix for pair values (q0, P)."""
        out = None
        for a in range(values.shape[0]):
            m = self._pair_matrix(values[a])
            out = m.T @ m if out is None else out + m.T @ m
        return out

    def _pair_gram(self, values: np.ndarray) -> np.ndarray:
        """Σ_g V_gᵀ V_g (Q_r × Q_r) for pair values (q0, P)."""
        out = np.zeros((self.Qr, self.Qr))
        for a in range(values.shape[0]):
            m = self._pair_matrix(values[a])
            out += (m.T @ m).toarray()
        return out

    def _pair_tmatvec(self, values: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Σ_g V_gᵀ v_g (Q_r,) for pair values (q0, P) and v (q0, G0)."""
        out = np.zeros(self.Qr)
        for a in range(values.shape[0]):
            out += np.bincount(
                self.pair_j, weights=values[a] * v[a][self.pair_g], minlength=self.Qr
            )
        return out

    def _pair_tmatmat(self, values: np.ndarray, M: np.ndarray) -> np.ndarray:
        """Σ_g V_gᵀ M_g (Q_r × p) for pair values (q0, P) and M (q0, p, G0)."""
        out = np.zeros((self.Qr, M.shape[1]))
        for a in range(values.shape[0]):
            out += np.asarray(self._pair_matrix(values[a]).T @ M[a].T)
        return out

    def _pair_matvec(self, values: np.ndarray, w: np.ndarray) -> np.ndarray:
        """V_g w for every g: (q0, G0) for pair values (q0, P) and w (Q_r,)."""
        return np.stack(
            [
                np.bincount(self.pair_g, weights=values[a] * w[self.pair_j], minlength=self.G0)
                for a in range(values.shape[0])
            ]
        )

    def _pair_quadratic(self, A: np.ndarray, N: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Σ_g A_gᵀ N B_g (q0 × q0) for pair values A, B (q0, P) and a dense symmetric N.

        Each unordered two-pair product is visited once (N symmetric), plus the diagonal.
        """
        flat = N.ravel()
        n_up = flat.take(self._n_upper)
        n_diag = flat.take(self._n_diag)
        B1 = [B[b].take(self.ppu1) for b in range(B.shape[0])]
        B2 = [B[b].take(self.ppu2) for b in range(B.shape[0])]
        out = np.empty((A.shape[0], B.shape[0]))
        for a in range(A.shape[0]):
            left1 = A[a].take(self.ppu1) * n_up
            left2 = A[a].take(self.ppu2) * n_up
            left_d = A[a] * n_diag
            for b in range(B.shape[0]):
                out[a, b] = float(left1 @ B2[b] + left2 @ B1[b] + left_d @ B[b])
        return out

    def _precompute_rest(self, X: np.ndarray, yt: np.ndarray) -> None:
        Qr, q0, G0 = self.Qr, self.q0, self.G0
        rcols, rvals = self._rest_columns()
        f0 = self.factors[0]
        if self.rest_mode == "dense":
            # F[a, j, g] = Σ_rows in level g of factor 0: Z0[:, a] · Zr[:, j]
            F = np.zeros(q0 * Qr * G0)
            for a in range(q0):
                for k in range(rcols.shape[1]):
                    idx = (a * Qr + rcols[:, k]) * G0 + f0.codes
                    F += np.bincount(idx, weights=f0.Z[:, a] * rvals[:, k], minlength=F.size)
            self.F = F.reshape(q0, Qr, G0)
        else:
            self._precompute_pairs(rcols, rvals)
        if self.rest_mode == "sparse":
            k_cols = rcols.shape[1]
            self.RR = scipy.sparse.csr_matrix(
                (
                    (rvals[:, :, None] * rvals[:, None, :]).ravel(),
                    (np.repeat(rcols, k_cols, axis=1).ravel(), np.tile(rcols, (1, k_cols)).ravel()),
                ),
                shape=(Qr, Qr),
            )
        else:
            RR = np.zeros(Qr * Qr)
            for k in range(rcols.shape[1]):
                for m in range(rcols.shape[1]):
                    idx = rcols[:, k] * Qr + rcols[:, m]
                    RR += np.bincount(idx, weights=rvals[:, k] * rvals[:, m], minlength=RR.size)
            self.RR = RR.reshape(Qr, Qr)
        ZrX = np.zeros((Qr, self.p))
        Zry = np.zeros(Qr)
        for k in range(rcols.shape[1]):
            for j in range(self.p):
                ZrX[:, j] += np.bincount(rcols[:, k], weights=rvals[:, k] * X[:, j], minlength=Qr)
            Zry += np.bincount(rcols[:, k], weights=rvals[:, k] * yt, minlength=Qr)
        self.ZrX = ZrX
        self.Zry = Zry
        # positions of θ inside the dense block-diagonal Λ_r
        rows, cols, ids = [], [], []
        for f, off in zip(self.rest, self.rest_offsets, strict=True):
            base = off + np.arange(f.n_levels) * f.q
            for t_id, r, c in zip(f.theta_ids, f.theta_rows, f.theta_cols, strict=True):
                rows.append(base + r)
                cols.append(base + c)
                ids.append(np.full(f.n_levels, t_id))
        self._lr_rows = np.concatenate(rows)
        self._lr_cols = np.concatenate(cols)
        self._lr_ids = np.concatenate(ids)

    def _lam_rest(self, theta: np.ndarray) -> Any:
        """Λ_r, block diagonal over the rest factors' levels: a dense array when small
        (a few sites: building and transposing a sparse matrix costs more than the products),
        else a sparse CSR matrix."""
        if self.Qr <= _DENSE_LAMBDA_REST and self.rest_mode != "sparse":
            lam = np.zeros((self.Qr, self.Qr))
            lam[self._lr_rows, self._lr_cols] = theta[self._lr_ids]
            return lam
        return scipy.sparse.csr_matrix(
            (theta[self._lr_ids], (self._lr_rows, self._lr_cols)), shape=(self.Qr, self.Qr)
        )
