"""Per-pattern sufficient statistics of an MMRM, and their stacks by pattern size.

Subjects with the same visits and covariance group (a *pattern*) share Σ, so the likelihood
needs only, per pattern, K = Σ_i X_i ⊗ X_i, Σ_i X_i ⊗ y_i and Σ_i y_i y_iᵀ over its subjects
(on √w-scaled rows), computed once. Patterns of one group with the same number of visits are
stacked into a :class:`PatternBatch`, so that an evaluation does one batched Cholesky and a
few matrix products per batch instead of a Python step per pattern (many patterns arise with
intermittent missing visits). The :class:`PatternBlock` of each pattern is a view into its
batch.

On a visit factor, Σ on a pattern's visits S is a sub-matrix of Σ on all m visits, so a
small problem can put every pattern of a group into one batch over all m visits
(:func:`pad_batches`): the statistics are zero at absent visits, and Σ̃ = Σ on S, the
identity elsewhere (no correlation), has Σ̃⁻¹ = Σ_S⁻¹ ⊕ I and log|Σ̃| = log|Σ_S|; with the
identity part removed from Σ̃⁻¹ every term of the likelihood is that of the pattern. One
batch instead of one per pattern size: fewer, slightly larger array operations, which is
what costs on small data (fev_data: 4 batches → 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mesostats.mixed.mmrm.structures import distances

__all__ = ["PatternBatch", "PatternBlock", "make_batches", "pad_batches", "pattern_block"]


@dataclass(frozen=True, eq=False)
class PatternBlock:
    """Sufficient statistics of the subjects sharing one (group, visits) pattern.

    ``XX[a, b, x, y] = Σ_i X_i[a, x] X_i[b, y]``, ``Xy[a, b, x] = Σ_i X_i[a, x] y_i[b]``,
    ``yy = Σ_i y_i y_iᵀ`` over the subjects of the pattern, on the √w-scaled rows.
    """

    group: int
    coords: np.ndarray
    n_subjects: int
    XX: np.ndarray
    Xy: np.ndarray
    yy: np.ndarray

    @property
    def d(self) -> int:
        """Visits per subject in this pattern."""
        return int(self.coords.shape[0])


def pattern_block(group: int, coords: np.ndarray, Xp: np.ndarray, yp: np.ndarray) -> PatternBlock:
    """Block of subjects with scaled rows ``Xp`` (n_sub, d, p) and ``yp`` (n_sub, d)."""
    n_sub, d, p = Xp.shape
    flat = np.ascontiguousarray(Xp.reshape(n_sub, d * p))
    # Σ_i vec(X_i) vec(X_i)ᵀ: numpy computes flatᵀ flat by a symmetric rank-k update (syrk)
    # and mirrors it, exactly symmetric, faster than calling dsyrk and mirroring by hand
    full = flat.T @ flat
    XX = full.reshape(d, p, d, p).transpose(0, 2, 1, 3)
    Xy = (flat.T @ yp).reshape(d, p, d).transpose(0, 2, 1)  # [a, b, x] = Σ_i X_i[a,x] y_i[b]
    yy = yp.T @ yp
    # strided views: make_batches stacks them into contiguous batches (one copy)
    return PatternBlock(group, np.asarray(coords), n_sub, XX, Xy, yy)


@dataclass(frozen=True, eq=False)
class PatternBatch:
    """The patterns of one group with ``d`` visits, stacked along a first axis of length nb.

    Attributes
    ----------
    group : int
    coords : ndarray (nb, d) or (nb, d, c)
        Visit indices (times, or points of c coordinates, for ``sp_exp``) of each pattern.
    n_subjects : ndarray (nb,)
    XX, Xy, yy : ndarray
        (nb, d, d, p, p), (nb, d, d, p), (nb, d, d): the blocks' statistics stacked.
    patterns : ndarray (nb,)
        Index of each stacked pattern in ``MMRMProblem.blocks``.
    dist : ndarray (nb, d, d), optional
        ``sp_exp`` only: the distances between each pattern's times (points).
    pair, absent : ndarray (nb, d, d), optional
        Padded batches only (:func:`pad_batches`, ``coords`` then all visits): whether both
        visits are present, and the identity at the absent visits.
    """

    group: int
    coords: np.ndarray
    n_subjects: np.ndarray
    XX: np.ndarray
    Xy: np.ndarray
    yy: np.ndarray
    patterns: np.ndarray
    dist: np.ndarray | None = None
    pair: np.ndarray | None = None
    absent: np.ndarray | None = None

    @property
    def d(self) -> int:
        """Visits per subject."""
        return int(self.coords.shape[1])

    @property
    def nb(self) -> int:
        """Number of stacked patterns."""
        return int(self.coords.shape[0])


def make_batches(
    blocks: list[PatternBlock], spatial: bool = False
) -> tuple[list[PatternBatch], list[PatternBlock]]:
    """Stack the blocks by (group, number of visits); return the batches and the blocks
    re-made as views into them (same order as ``blocks``). ``spatial``: the coordinates are
    times or points, and each batch keeps their distances."""
    keys: dict[tuple[int, int], list[int]] = {}
    for i, blk in enumerate(blocks):
        keys.setdefault((blk.group, blk.d), []).append(i)
    batches: list[PatternBatch] = []
    views: list[PatternBlock | None] = [None] * len(blocks)
    for (group, _d), members in sorted(keys.items()):
        coords = np.stack([blocks[i].coords for i in members])
        batch = PatternBatch(
            group=group,
            coords=coords,
            n_subjects=np.array([blocks[i].n_subjects for i in members], dtype=float),
            XX=np.stack([blocks[i].XX for i in members]),
            Xy=np.stack([blocks[i].Xy for i in members]),
            yy=np.stack([blocks[i].yy for i in members]),
            patterns=np.asarray(members, dtype=np.intp),
            dist=distances(coords, points=coords.ndim == 3) if spatial else None,
        )
        for j, i in enumerate(members):
            views[i] = PatternBlock(
                group, blocks[i].coords, blocks[i].n_subjects, batch.XX[j], batch.Xy[j], batch.yy[j]
            )
        batches.append(batch)
    return batches, [v for v in views if v is not None]


def pad_batches(batches: list[PatternBatch], n_visits: int) -> list[PatternBatch]:
    """One batch per group over all ``n_visits`` visits (coords are visit indices), the
    statistics placed at each pattern's visits and zero elsewhere (module docstring)."""
    m = n_visits
    out = []
    for group in sorted({bt.group for bt in batches}):
        mine = [bt for bt in batches if bt.group == group]
        nb = sum(bt.nb for bt in mine)
        p = mine[0].XX.shape[-1]
        XX = np.zeros((nb, m, m, p, p))
        Xy = np.zeros((nb, m, m, p))
        yy = np.zeros((nb, m, m))
        present = np.zeros((nb, m), dtype=bool)
        at = 0
        for bt in mine:
            sel = np.arange(at, at + bt.nb)[:, None, None]
            idx = bt.coords.astype(np.intp)
            ia, ib = idx[:, :, None], idx[:, None, :]
            XX[sel, ia, ib] = bt.XX
            Xy[sel, ia, ib] = bt.Xy
            yy[sel, ia, ib] = bt.yy
            present[sel[:, :, 0], idx] = True
            at += bt.nb
        pair = present[:, :, None] & present[:, None, :]
        absent = np.where(~present[:, :, None], np.eye(m), 0.0)
        out.append(
            PatternBatch(
                group=group,
                coords=np.tile(np.arange(m, dtype=float), (nb, 1)),
                n_subjects=np.concatenate([bt.n_subjects for bt in mine]),
                XX=XX,
                Xy=Xy,
                yy=yy,
                patterns=np.concatenate([bt.patterns for bt in mine]),
                pair=pair,
                absent=absent,
            )
        )
    return out
