"""Threshold structures of a cumulative link model: θ = J α.

``flexible``: one free threshold per cut point (J = I). ``equidistant``: θ_j = α₁ + (j − 1) α₂
(first threshold and spacing). ``symmetric``: thresholds placed symmetrically about the
centre — with an odd number of cut points a central threshold and spacings to each side;
with an even number two central thresholds and spacings outward. These are the
parameterisations of R's ``ordinal`` (Christensen 2019, *Cumulative link models for ordinal
regression with the R package ordinal*, §2.3), so estimates and names line up with
``clm``/``clmm``: ``"1|2"``, …; ``"threshold.1"``, ``"spacing"``; ``"central"`` /
``"central.1"``, ``"central.2"``, ``"spacing.1"``, ….
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mesostats.exceptions import ModelSpecError

__all__ = ["THRESHOLDS", "ThresholdStructure", "threshold_structure"]

THRESHOLDS = ("flexible", "equidistant", "symmetric")


@dataclass(frozen=True)
class ThresholdStructure:
    """θ = J α: the Jacobian ``J`` (cut points × parameters) and the parameter names."""

    kind: str
    jacobian: np.ndarray
    alpha_names: tuple[str, ...]
    cut_names: tuple[str, ...]

    @property
    def n_alpha(self) -> int:
        """Number of threshold parameters."""
        return int(self.jacobian.shape[1])

    def thresholds(self, alpha: np.ndarray) -> np.ndarray:
        """The cut points θ = J α."""
        return np.asarray(self.jacobian @ alpha)

    def start(self, cuts: np.ndarray) -> np.ndarray:
        """Parameters whose thresholds are closest (least squares) to ``cuts``."""
        alpha, *_ = np.linalg.lstsq(self.jacobian, cuts, rcond=None)
        return np.asarray(alpha)


def _symmetric(n_cut: int) -> tuple[np.ndarray, list[str]]:
    half = n_cut // 2
    if n_cut % 2:
        # central threshold in the middle, spacing k to each side of it
        J = np.zeros((n_cut, half + 1))
        J[:, 0] = 1.0
        for k in range(1, half + 1):
            J[half - k, k] = -1.0
            J[half + k, k] = 1.0
        return J, ["central", *(f"spacing.{k}" for k in range(1, half + 1))]
    # two central thresholds (lower and upper half), spacing k outward from each
    J = np.zeros((n_cut, half + 1))
    J[:half, 0] = 1.0
    J[half:, 1] = 1.0
    for k in range(1, half):
        J[half - 1 - k, k + 1] = -1.0
        J[half + k, k + 1] = 1.0
    return J, ["central.1", "central.2", *(f"spacing.{k}" for k in range(1, half))]


def threshold_structure(kind: str, levels: list[str]) -> ThresholdStructure:
    """The structure ``kind`` for a response with these (ordered) levels."""
    if kind not in THRESHOLDS:
        raise ModelSpecError(
            f"threshold must be one of {', '.join(map(repr, THRESHOLDS))}, got {kind!r}."
        )
    n_cut = len(levels) - 1
    cut_names = tuple(f"{lo}|{hi}" for lo, hi in itertools.pairwise(levels))
    if kind == "flexible":
        return ThresholdStructure(kind, np.eye(n_cut), cut_names, cut_names)
    if kind == "equidistant":
        J = np.column_stack([np.ones(n_cut), np.arange(n_cut, dtype=float)])
        return ThresholdStructure(kind, J, ("threshold.1", "spacing"), cut_names)
    J, names = _symmetric(n_cut)
    return ThresholdStructure(kind, J, tuple(names), cut_names)
