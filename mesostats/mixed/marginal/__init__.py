"""Estimated marginal (least-squares) means and their contrasts, as R's emmeans computes them.

:func:`marginal_means` (:mod:`.means`, reference grid in :mod:`.grid`, model access in
:mod:`.view`) and :func:`contrasts` (:mod:`.comparisons`, adjustments in
:mod:`.multiplicity`).
"""

from mesostats.mixed.marginal.comparisons import contrasts
from mesostats.mixed.marginal.means import MarginalMeans, marginal_means

__all__ = ["MarginalMeans", "contrasts", "marginal_means"]
