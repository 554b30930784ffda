"""Random-effect terms merged per grouping factor, and their per-level cross-products.

Terms that share a grouping factor become one factor of q columns with a Λ_f template
(structural zeros where ``||`` split a term); factors are ordered by size, the largest first
(Bates et al. 2015, *J. Stat. Softw.* 67(1), §3; the blocked order of MixedModels.jl).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mesostats.mixed.design import MixedDesign, RandomTerm, lower_triangle_indices

__all__: list[str] = []


# --------------------------------------------------------------------------- factors
@dataclass(frozen=True)
class _Factor:
    """Random-effect terms sharing one grouping factor, merged into q columns."""

    group: str
    levels: pd.Index
    codes: np.ndarray
    Z: np.ndarray  # (n, q)
    term_ids: tuple[int, ...]
    term_cols: tuple[slice, ...]  # columns of each design term inside the factor
    theta_ids: np.ndarray  # θ indices that live in this factor
    theta_rows: np.ndarray
    theta_cols: np.ndarray

    @property
    def q(self) -> int:
        return int(self.Z.shape[1])

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def lam(self, theta: np.ndarray) -> np.ndarray:
        out = np.zeros((self.q, self.q))
        out[self.theta_rows, self.theta_cols] = theta[self.theta_ids]
        return out


def _factors(design: MixedDesign) -> list[_Factor]:
    by_group: dict[str, list[int]] = {}
    for i, term in enumerate(design.terms):
        by_group.setdefault(term.group, []).append(i)
    factors = []
    for group, ids in by_group.items():
        terms: list[RandomTerm] = [design.terms[i] for i in ids]
        Z = terms[0].Z if len(terms) == 1 else np.hstack([t.Z for t in terms])
        cols: list[slice] = []
        th_ids: list[int] = []
        th_rows: list[int] = []
        th_cols: list[int] = []
        start = 0
        for i, term in zip(ids, terms, strict=True):
            cols.append(slice(start, start + term.q))
            rows, cc = lower_triangle_indices(term.q)
            sl = design.theta_slices[i]
            th_ids.extend(range(sl.start, sl.stop))
            th_rows.extend(rows + start)
            th_cols.extend(cc + start)
            start += term.q
        factors.append(
            _Factor(
                group=group,
                levels=terms[0].levels,
                codes=terms[0].codes,
                Z=np.ascontiguousarray(Z),
                term_ids=tuple(ids),
                term_cols=tuple(cols),
                theta_ids=np.asarray(th_ids, dtype=np.intp),
                theta_rows=np.asarray(th_rows, dtype=np.intp),
                theta_cols=np.asarray(th_cols, dtype=np.intp),
            )
        )
    factors.sort(key=lambda f: -f.n_levels * f.q)
    return factors


def _per_level_products(
    codes: np.ndarray, G: int, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Σ over the rows of each level of left[:, a]·right[:, b] → (a, b, G), via bincount."""
    out = np.empty((left.shape[1], right.shape[1], G))
    for a in range(left.shape[1]):
        for b in range(right.shape[1]):
            out[a, b] = np.bincount(codes, weights=left[:, a] * right[:, b], minlength=G)
    return out
