"""Sparse factorisation of the Laplace system ``H = AᵀWA + I`` of a GLMM with large crossed factors.

The dense-Schur :class:`mesostats.mixed.laplace.BlockSchurFactor` holds the random effects
outside the largest grouping factor in a dense matrix; beyond a few thousand of them (two
large crossed factors) :class:`SparseLaplaceFactor` is used instead. It factorises the whole
sparse H with :class:`mesostats.mixed.linalg.SparseSPDFactor` (a fill-reducing sparse
Cholesky; Bates et al. 2015, *J. Stat. Softw.* 67(1), §3.2 factor the same matrix with
CHOLMOD in lme4) and offers what the Laplace objective needs from it on this path: the
log-determinant, solves (Newton steps of the conditional modes) and the diagonal blocks of
H⁻¹ (conditional variances, once per fit, from H⁻¹'s columns computed by sparse solves in
chunks: O(Q · nnz(L))).

Not offered: the per-row quadratic forms aᵢᵀH⁻¹bᵢ of the exact gradient, which need H⁻¹ on
the pattern of AᵀA at every evaluation (a selected inversion; by sparse solves that costs
O(Q · nnz(L)) per evaluation, measured at minutes per fit for 3,200 × 3,100 crossed
levels). ``GeneralLaplace`` differentiates the log-likelihood centrally on this path instead.
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
        self._blocks: list[np.ndarray] | None = None

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H⁻¹ rhs for rhs of shape (Q,) or (Q, k)."""
        return self._factor.solve(rhs)

    def diagonal_blocks(self) -> list[np.ndarray]:
        """Per term, the (n_levels, q, q) diagonal blocks of H⁻¹."""
        if self._blocks is None:
            self._blocks = self._inverse_diagonal_blocks()
        return self._blocks

    def _inverse_diagonal_blocks(self, chunk: int = 512) -> list[np.ndarray]:
        """Every level's diagonal block of H⁻¹, from columns of H⁻¹ ``chunk`` at a time."""
        d = self.d
        starts = np.cumsum([0] + [z.shape[1] * g for z, g in zip(d.Z, d.n_levels, strict=True)])
        blocks = [
            np.zeros((g, z.shape[1], z.shape[1])) for z, g in zip(d.Z, d.n_levels, strict=True)
        ]
        # column → (term, level, component)
        term_idx = np.searchsorted(starts[1:], np.arange(d.n_re), side="right")
        q_of = np.array([z.shape[1] for z in d.Z])[term_idx]
        local = np.arange(d.n_re) - starts[term_idx]
        level, comp = local // q_of, local % q_of
        for cols, inv in self._factor.inverse_columns(np.arange(d.n_re), chunk):
            lo = int(cols[0])
            for t, z in enumerate(d.Z):
                in_term = np.flatnonzero(term_idx[cols] == t)
                if not in_term.size:
                    continue
                j = lo + in_term  # global columns (level ℓ, component b) of term t
                q = z.shape[1]
                base = starts[t] + level[j] * q
                for a in range(q):
                    blocks[t][level[j], a, comp[j]] = inv[base + a, in_term]
        return blocks
