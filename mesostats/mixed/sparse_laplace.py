"""Sparse factorisation of the Laplace system ``H = AᵀWA + I`` of a GLMM with large crossed factors.

The dense-Schur :class:`mesostats.mixed.laplace.BlockSchurFactor` holds the random effects
outside the largest grouping factor in a dense matrix; beyond a few thousand of them (two
large crossed factors) :class:`SparseLaplaceFactor` is used instead. It factorises the whole
sparse H with :class:`mesostats.mixed.linalg.SparseSPDFactor` (a fill-reducing sparse
Cholesky; Bates et al. 2015, *J. Stat. Softw.* 67(1), §3.2 factor the same matrix with
CHOLMOD in lme4) and offers the same methods: log-determinant, solves, the per-row quadratic
forms aᵢᵀH⁻¹bᵢ of the exact Laplace gradient, and the diagonal blocks of H⁻¹ (conditional
variances).

The quadratic forms need H⁻¹ only at the pairs of columns that share a row (the selected
inverse on the pattern of AᵀA). They are gathered from H⁻¹'s columns, computed by sparse
solves in chunks, once per factorisation and only when first asked for: O(Q · nnz(L)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse

from mesostats.mixed.linalg import SparseSPDFactor

if TYPE_CHECKING:  # typing only: laplace imports this module at run time
    from mesostats.mixed.laplace import GeneralLaplaceData

__all__ = ["SparseLaplaceFactor"]


class SparseLaplaceFactor:
    """``H = AᵀWA + I`` over all random effects as one sparse SPD factorisation."""

    def __init__(self, layout: GeneralLaplaceData, vals: np.ndarray, w: np.ndarray) -> None:
        self.d = layout
        n, r = layout.cols.shape
        rows = np.repeat(np.arange(n), r)
        A = scipy.sparse.csr_matrix(
            (vals.ravel(), (rows, layout.cols.ravel())), shape=(n, layout.n_re)
        )
        H = (A.T @ scipy.sparse.diags(w) @ A + scipy.sparse.identity(layout.n_re)).tocsc()
        self._factor = SparseSPDFactor(H)
        self.logdet = self._factor.logdet
        self._selected: np.ndarray | None = None  # (n, r, r): H⁻¹ at each row's column pairs
        self._blocks: list[np.ndarray] | None = None

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H⁻¹ rhs for rhs of shape (Q,) or (Q, k)."""
        return self._factor.solve(rhs)

    def row_quadratic(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per row i: aᵢᵀ H⁻¹ bᵢ from the rows' nonzero values (same column pattern)."""
        if self._selected is None:
            self._gather_inverse()
        assert self._selected is not None
        return np.asarray(np.einsum("nk,nkm,nm->n", a, self._selected, b))

    def diagonal_blocks(self) -> list[np.ndarray]:
        """Per term, the (n_levels, q, q) diagonal blocks of H⁻¹."""
        if self._blocks is None:
            self._gather_inverse()
        assert self._blocks is not None
        return self._blocks

    def _gather_inverse(self, chunk: int = 512) -> None:
        """H⁻¹ at every row's column pairs and every level's diagonal block, from columns
        of H⁻¹ computed ``chunk`` at a time."""
        d = self.d
        cols = d.cols
        n, r = cols.shape
        selected = np.zeros((n, r, r))
        term_of_slot, starts = [], []
        start = 0
        for z, g in zip(d.Z, d.n_levels, strict=True):
            starts.append(start)
            term_of_slot.append((start, z.shape[1], g))
            start += g * z.shape[1]
        blocks = [np.zeros((g, q, q)) for _, q, g in term_of_slot]
        # column → (term, level, component) for the diagonal blocks
        term_idx = np.searchsorted(np.asarray(starts), np.arange(d.n_re), side="right") - 1
        q_of = np.array([q for _, q, _ in term_of_slot])[term_idx]
        local = np.arange(d.n_re) - np.asarray(starts)[term_idx]
        level, comp = local // q_of, local % q_of
        for chunk_cols, inv in self._factor.inverse_columns(np.arange(d.n_re), chunk):
            lo, hi = int(chunk_cols[0]), int(chunk_cols[-1]) + 1
            for m in range(r):  # H⁻¹[cols[i, k], cols[i, m]] for the rows whose slot m is here
                hit = np.flatnonzero((cols[:, m] >= lo) & (cols[:, m] < hi))
                if hit.size:
                    selected[hit, :, m] = inv[cols[hit], (cols[hit, m] - lo)[:, None]]
            for t, (s0, q, _) in enumerate(term_of_slot):
                in_term = np.flatnonzero(term_idx[lo:hi] == t)
                if not in_term.size:
                    continue
                j = lo + in_term  # global columns (level ℓ, component b) of term t
                base = s0 + level[j] * q
                for a in range(q):
                    blocks[t][level[j], a, comp[j]] = inv[base + a, in_term]
        self._selected = selected
        self._blocks = blocks
