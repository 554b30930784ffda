"""Random-effect terms merged per grouping factor, and their per-level cross-products.

Terms that share a grouping factor become one factor of q columns with a Λ_f template
(structural zeros where ``||`` split a term); factors are ordered by size, the largest first
(Bates et al. 2015, *J. Stat. Softw.* 67(1), §3; the blocked order of MixedModels.jl).
"""

from __future__ import annotations

import numpy as np

from mesostats.mixed.design import MixedDesign
from mesostats.mixed.factors import GroupingFactor, grouping_factors

__all__: list[str] = []


# --------------------------------------------------------------------------- factors


#: The LMM's grouping factor is the shared one (:mod:`mesostats.mixed.factors`).
_Factor = GroupingFactor


def _factors(design: MixedDesign) -> list[GroupingFactor]:
    """The design's grouping factors, the largest (levels × columns) first."""
    factors = grouping_factors(design.terms)
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
