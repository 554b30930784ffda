"""MMRMProblem: the data and covariance model of one MMRM, and what inference needs from it.

Built by :func:`mesostats.mixed.mmrm.build.build_problem` from a formula and a DataFrame; the
fit (:mod:`mesostats.mixed.mmrm.fit`) optimises θ through :meth:`MMRMProblem.evaluate`, and
the degrees-of-freedom and sandwich code (Satterthwaite, Kenward–Roger, empirical) reads the
per-subject covariance matrices and their exact derivatives through the methods below, at the
fitted θ. θ is R mmrm's parameterisation (see :mod:`mesostats.mixed.mmrm.structures`); with a
grouped term ``us(visit | group / subject)`` it is the concatenation of one θ per group level
(in level order), as in mmrm.

Rows are sorted by subject, then visit (time), as mmrm sorts them; ``X``, ``y``, ``weights``
and ``row_index`` are in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from mesostats.mixed.mmrm.columns import MissingRows
from mesostats.mixed.mmrm.likelihood import Evaluation, evaluate
from mesostats.mixed.mmrm.patterns import PatternBatch, PatternBlock, make_batches, pad_batches
from mesostats.mixed.mmrm.structures import Structure
from mesostats.mixed.mmrm.terms import CovarianceTerm

__all__ = ["PAD_LIMIT", "MMRMProblem"]

#: padded X-statistics (patterns × visits² × p²) up to which the criterion runs on one
#: batch per group (fev_data: 15 × 4² × 11² = 29,040); larger problems keep the batches by
#: pattern size, whose arithmetic then dominates the per-batch overhead
PAD_LIMIT = 1 << 20


@dataclass(frozen=True, eq=False)
class MMRMProblem:
    """Everything about the data and covariance model an MMRM fit and its inference need.

    Attributes
    ----------
    X : ndarray (n, p)
        Fixed-effects matrix of the fitted rows (sorted by subject, then visit).
    y : ndarray (n,)
        Response.
    weights : ndarray (n,)
        Row weights (ones when none): Σ_i = W_i^{-1/2} Σ W_i^{-1/2}.
    fixed_names : tuple of str
        Column names of X (R's coefficient names, e.g. ``ARMCDTRT:AVISITVIS2``).
    reml : bool
        REML (True) or ML criterion.
    structure : Structure
        The covariance structure (one per group level).
    term : CovarianceTerm
        The parsed covariance term.
    visit_levels : tuple of str
        Levels of the visit factor (empty for ``sp_exp``).
    group_levels : tuple of str
        Levels of the grouping variable (``("(all)",)`` without groups).
    subject_ids : pandas.Index
        Subject labels, in the order of ``subject_rows``.
    subject_starts : ndarray (n_subjects,)
        First row (into X) of each subject; a subject's rows are contiguous
        (``subject_rows`` lists them).
    subject_pattern : ndarray (n_subjects,)
        Index into ``blocks`` of each subject's (group, visits) pattern.
    subject_group : ndarray (n_subjects,)
        Group code of each subject.
    coords : ndarray (n,) or (n, c)
        Visit index (0-based, into ``visit_levels``) or time (``sp_exp``) of each row; for
        ``sp_exp`` on c > 1 coordinates, each row's point (n, c).
    blocks : list of PatternBlock
        Sufficient statistics per pattern (weights applied); views into ``batches``.
    batches : list of PatternBatch
        The blocks stacked by (group, number of visits); derived from ``blocks``.
    criterion_batches : list of PatternBatch
        What the likelihood loops over: ``batches``, or on a visit factor when they are
        small (at most ``PAD_LIMIT`` numbers of X-statistics in all) one batch per group
        over all visits (:func:`~mesostats.mixed.mmrm.patterns.pad_batches`).
    row_index : pandas.Index
        Index labels of the fitted rows in the caller's DataFrame.
    missing_rows : MissingRows
        The rows set aside for a missing value (``excluded_rows`` is their table: ``row``,
        ``columns``, ``reason``).
    fixed_rows : pandas.DataFrame
        Fitted rows (in X order) of the variables of the fixed part (text columns as
        categoricals with their sorted levels, categoricals without unused levels).
    fixed_spec : formulaic ModelSpec
        Rebuilds X for new rows (:meth:`fixed_matrix`).
    """

    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    fixed_names: tuple[str, ...]
    reml: bool
    structure: Structure
    term: CovarianceTerm
    visit_levels: tuple[str, ...]
    group_levels: tuple[str, ...]
    subject_ids: pd.Index
    subject_starts: np.ndarray
    subject_pattern: np.ndarray
    subject_group: np.ndarray
    coords: np.ndarray
    blocks: list[PatternBlock]
    row_index: pd.Index
    missing_rows: MissingRows
    fixed_rows: pd.DataFrame
    fixed_spec: Any
    formula: str
    fixed_formula: str
    response_name: str
    sum_log_weights: float = field(init=False)
    batches: list[PatternBatch] = field(init=False, repr=False)
    criterion_batches: list[PatternBatch] = field(init=False, repr=False)
    _derivative_cache: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sum_log_weights", float(np.log(self.weights).sum()))
        object.__setattr__(self, "_derivative_cache", {})
        batches, blocks = make_batches(self.blocks, spatial=self.structure.spatial)
        object.__setattr__(self, "batches", batches)
        object.__setattr__(self, "blocks", blocks)  # views into the batches
        m, p = self.structure.n_visits, self.X.shape[1]
        padded = len(blocks) * m * m * p * p
        small = not self.structure.spatial and padded <= PAD_LIMIT and len(batches) > 1
        object.__setattr__(self, "criterion_batches", pad_batches(batches, m) if small else batches)

    # ----------------------------------------------------------------- sizes
    @property
    def n(self) -> int:
        """Number of fitted rows."""
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        """Number of fixed effects."""
        return int(self.X.shape[1])

    @property
    def n_groups(self) -> int:
        """Number of covariance groups (1 without a group)."""
        return len(self.group_levels)

    @property
    def n_subjects(self) -> int:
        """Number of subjects with at least one fitted row."""
        return len(self.subject_pattern)

    @cached_property
    def subject_rows(self) -> list[np.ndarray]:
        """Row indices (into X) of each subject (contiguous ranges)."""
        ends = np.r_[self.subject_starts[1:], self.n]
        return [np.arange(a, b) for a, b in zip(self.subject_starts, ends, strict=True)]

    @property
    def n_theta(self) -> int:
        """Length of θ (all groups)."""
        return self.structure.n_theta * self.n_groups

    def theta_slice(self, group: int) -> slice:
        """Slice of θ belonging to group ``group``."""
        k = self.structure.n_theta
        return slice(group * k, (group + 1) * k)

    @property
    def theta_names(self) -> tuple[str, ...]:
        """Readable θ names, prefixed by the group level when grouped."""
        names = self.structure.theta_names(self.visit_levels)
        if self.n_groups == 1:
            return names
        return tuple(f"{g}:{nm}" for g in self.group_levels for nm in names)

    # ----------------------------------------------------------------- criterion
    def evaluate(self, theta: np.ndarray, order: int = 0) -> Evaluation:
        """−ℓ (REML or ML) at θ with β̂, (XᵀV⁻¹X)⁻¹ and the exact gradient/Hessian."""
        return evaluate(
            theta,
            self.criterion_batches,
            self.structure,
            n_groups=self.n_groups,
            reml=self.reml,
            n_obs=self.n,
            sum_log_weights=self.sum_log_weights,
            order=order,
        )

    def beta_cov(self, theta: np.ndarray) -> np.ndarray:
        """(Σ_i X_iᵀ Σ_i⁻¹ X_i)⁻¹ at θ, shape (p, p)."""
        return self.evaluate(theta).beta_cov

    def beta(self, theta: np.ndarray) -> np.ndarray:
        """Generalised least-squares β̂(θ)."""
        return self.evaluate(theta).beta

    def theta_cov(self, theta: np.ndarray) -> np.ndarray:
        """Inverse of the exact Hessian of −ℓ (REML or ML) in θ, shape (k, k)."""
        hess = self.evaluate(theta, order=2).hessian
        assert hess is not None
        return np.linalg.inv(hess)

    # ----------------------------------------------------------------- per-pattern pieces
    def pattern_coords(self, pattern: int) -> np.ndarray:
        """Visit indices (times for ``sp_exp``) of pattern ``pattern``."""
        return self.blocks[pattern].coords

    def pattern_derivatives(
        self, theta: np.ndarray, pattern: int, order: int = 2
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Unweighted Σ, ∂Σ/∂θ (k, d, d) and ∂²Σ/∂θ² (k, k, d, d) of a pattern, over the
        *full* θ (zero outside the pattern's group slice)."""
        blk = self.blocks[pattern]
        sl = self.theta_slice(blk.group)
        theta_g = np.asarray(theta, dtype=float)[sl]
        if self.structure.spatial:
            S, J, H = self.structure.derivatives(theta_g, blk.coords, order)
        else:
            # Σ on the pattern's visits is a sub-matrix of Σ on all visits (computed once per θ)
            key = (blk.group, order, theta_g.tobytes())
            if key not in self._derivative_cache:
                self._derivative_cache.clear()
                self._derivative_cache[key] = self.structure.derivatives(theta_g, None, order)
            Sa, Ja, Ha = self._derivative_cache[key]
            i = blk.coords.astype(np.intp)
            ia, ib = np.ix_(i, i)
            S = Sa[ia, ib]
            J = None if Ja is None else Ja[:, ia, ib]
            H = None if Ha is None else Ha[:, :, ia, ib]
        k, d = self.n_theta, blk.d
        Jf = Hf = None
        if J is not None:
            Jf = np.zeros((k, d, d))
            Jf[sl] = J
        if H is not None:
            Hf = np.zeros((k, k, d, d))
            Hf[sl, sl] = H
        return S, Jf, Hf

    # ----------------------------------------------------------------- per subject
    def _subject_scale(self, i: int) -> np.ndarray:
        s = 1.0 / np.sqrt(self.weights[self.subject_rows[i]])
        return s[:, None] * s[None, :]

    def _per_subject(self, theta: np.ndarray, order: int) -> list[np.ndarray]:
        cache: dict[int, np.ndarray] = {}
        out = []
        for i in range(self.n_subjects):
            pat = int(self.subject_pattern[i])
            if pat not in cache:
                cache[pat] = self.pattern_derivatives(theta, pat, order)[order]  # type: ignore[assignment]
            out.append(cache[pat] * self._subject_scale(i))
        return out

    def subject_sigma(self, theta: np.ndarray) -> list[np.ndarray]:
        """Σ_i (n_i, n_i) of each subject, weights applied."""
        return self._per_subject(theta, 0)

    def subject_sigma_jacobian(self, theta: np.ndarray) -> list[np.ndarray]:
        """∂Σ_i/∂θ_k, (k, n_i, n_i) per subject, weights applied."""
        return self._per_subject(theta, 1)

    def subject_sigma_hessian(self, theta: np.ndarray) -> list[np.ndarray]:
        """∂²Σ_i/∂θ_k∂θ_l, (k, k, n_i, n_i) per subject, weights applied."""
        return self._per_subject(theta, 2)

    def group_sigma(self, theta: np.ndarray, group: int = 0) -> np.ndarray:
        """Σ of one group over all visits (``sp_exp``: times 0 and 1, i.e. unit distance)."""
        return self.structure.sigma(np.asarray(theta)[self.theta_slice(group)])

    @cached_property
    def excluded_rows(self) -> pd.DataFrame:
        """Rows set aside (``row``, ``columns``, ``reason``)."""
        return self.missing_rows.table()

    # ----------------------------------------------------------------- new data
    @cached_property
    def model_frame(self) -> pd.DataFrame:
        """Fitted rows with every variable of the fixed part; text columns become
        categoricals with their sorted levels (formulaic's coding), categoricals keep theirs."""
        frame = self.fixed_rows.copy()
        for c in frame.columns:
            col = frame[c]
            if not (
                pd.api.types.is_numeric_dtype(col.dtype)
                or isinstance(col.dtype, pd.CategoricalDtype)
            ):
                frame[c] = pd.Categorical(col, categories=sorted(pd.unique(col.astype(str))))
        return frame

    def fixed_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """X for new rows with the fit's coding (categories, contrasts)."""
        mm = self.fixed_spec.get_model_matrix(frame, na_action="raise")
        return np.asarray(mm.to_numpy(dtype=float))
