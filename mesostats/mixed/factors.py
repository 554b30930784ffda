"""Random-effect terms merged per grouping factor: the one random-effects factor type that the
linear and the generalized engines share.

Terms that share a grouping factor (the pieces of ``(x || g)``, or ``(1 | g) + (0 + x | g)``)
become one factor of q columns: their Z side by side and a block-diagonal Λ template, whose
free entries are the terms' θ in lme4's order (column-major lower triangle per term; Bates et
al. 2015, *J. Stat. Softw.* 67(1), §2.2). :class:`GroupingFactor` records where each θ entry
sits (``theta_ids`` into the design's θ, ``theta_rows``/``theta_cols`` in the factor's Λ), so
an engine fills Λ from θ without knowing how the terms were written; MixedModels.jl's
``ReMat`` is the model of this design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mesostats.mixed.design import lower_triangle_indices

__all__ = ["GroupingFactor", "TermLike", "grouping_factors"]


class TermLike(Protocol):
    """What a random-effect term offers: its grouping factor's name and level codes, raw
    columns Z (n × q) and number of levels (design terms and the GLMM's raw arrays alike)."""

    @property
    def group(self) -> str: ...

    @property
    def codes(self) -> np.ndarray: ...

    @property
    def Z(self) -> np.ndarray: ...

    @property
    def n_levels(self) -> int: ...


@dataclass(frozen=True)
class GroupingFactor:
    """Random-effect terms sharing one grouping factor, merged into q columns."""

    group: str
    codes: np.ndarray
    Z: np.ndarray  # (n, q)
    n_levels: int
    term_ids: tuple[int, ...]  # the terms merged here, in design order
    term_cols: tuple[slice, ...]  # columns of each term inside the factor
    theta_ids: np.ndarray  # θ indices (design order) of the factor's free Λ entries
    theta_rows: np.ndarray  # their rows in the factor's Λ
    theta_cols: np.ndarray  # and columns

    @property
    def q(self) -> int:
        """Number of random-effect columns per level."""
        return int(self.Z.shape[1])

    @property
    def positions(self) -> list[tuple[int, int]]:
        """The (row, column) of each free Λ entry, in θ order."""
        return [(int(r), int(c)) for r, c in zip(self.theta_rows, self.theta_cols, strict=True)]

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """The factor's q × q block of Λ(θ) (θ in design order)."""
        out = np.zeros((self.q, self.q))
        out[self.theta_rows, self.theta_cols] = theta[self.theta_ids]
        return out


def grouping_factors(terms: Sequence[TermLike]) -> list[GroupingFactor]:
    """Merge terms with the same non-empty ``group`` into factors, in order of first appearance.

    A term with an empty group name is a factor of its own. θ of term k starts after the
    q(q+1)/2 entries of every earlier term (the design's θ order).
    """
    sizes = [t.Z.shape[1] * (t.Z.shape[1] + 1) // 2 for t in terms]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
    members: dict[str, list[int]] = {}
    order: list[list[int]] = []
    for k, term in enumerate(terms):
        if term.group and term.group in members:
            members[term.group].append(k)
            continue
        ids = [k]
        order.append(ids)
        if term.group:
            members[term.group] = ids
    factors = []
    for ids in order:
        first = terms[ids[0]]
        Z = first.Z if len(ids) == 1 else np.hstack([terms[k].Z for k in ids])
        cols: list[slice] = []
        th_ids: list[np.ndarray] = []
        th_rows: list[np.ndarray] = []
        th_cols: list[np.ndarray] = []
        offset = 0
        for k in ids:
            q = terms[k].Z.shape[1]
            rows, cc = lower_triangle_indices(q)
            cols.append(slice(offset, offset + q))
            th_ids.append(np.arange(starts[k], starts[k] + sizes[k], dtype=np.intp))
            th_rows.append(rows + offset)
            th_cols.append(cc + offset)
            offset += q
        factors.append(
            GroupingFactor(
                group=first.group,
                codes=first.codes,
                Z=np.ascontiguousarray(Z),
                n_levels=int(first.n_levels),
                term_ids=tuple(ids),
                term_cols=tuple(cols),
                theta_ids=np.concatenate(th_ids),
                theta_rows=np.concatenate(th_rows).astype(np.intp),
                theta_cols=np.concatenate(th_cols).astype(np.intp),
            )
        )
    return factors
