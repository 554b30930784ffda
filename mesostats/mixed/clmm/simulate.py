"""``simulate`` of cumulative link mixed model results, through the one simulation path.

η = xᵀβ + zᵀb for every fitted row and replicate (:func:`mesostats.mixed.simulation.
linear_predictor_draws`: new b ~ N(0, ΛΛᵀ), the conditional modes, or b = 0), then the grade
by inverting P(Y ≤ k) = F(θ_k − η) (:func:`mesostats.mixed.simulation.draw_ordinal`; Agresti
2010, *Analysis of Ordinal Categorical Data*, §3.2, and Christensen's ordinal package's
latent-variable form of the model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.random import Generator

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.simulate_methods import Modes, RandomEffectsSimulateMixin
from mesostats.mixed.simulation import draw_ordinal, linear_predictor_draws

if TYPE_CHECKING:
    from mesostats.mixed.clmm.thresholds import ThresholdStructure
    from mesostats.mixed.design import MixedDesign

__all__ = ["CLMMSimulateMixin"]

_DRAWN_LINKS = ("logit", "probit")


class CLMMSimulateMixin(RandomEffectsSimulateMixin):
    """``simulate`` for CLMM results (needs ``_design``, ``_structure``, ``_link``,
    ``_alpha``, ``_beta``, ``_theta``, ``_modes``): grade indices 0…K−1 per fitted row
    (:meth:`RandomEffectsSimulateMixin.simulate`)."""

    _design: MixedDesign
    _structure: ThresholdStructure
    _link: str
    _alpha: np.ndarray
    _beta: np.ndarray
    _theta: np.ndarray
    _modes: list[np.ndarray]

    def _draw(self, n: int, rng: Generator, modes: Modes, include_random: bool) -> np.ndarray:
        if self._link not in _DRAWN_LINKS:
            raise ModelSpecError(
                f"simulate draws cumulative link responses for the links "
                f"{', '.join(_DRAWN_LINKS)}; this model's link is {self._link!r}. Refit with "
                "link='logit' or 'probit' to simulate from it."
            )
        eta = linear_predictor_draws(
            self._design,
            beta=self._beta,
            theta=self._theta,
            re_scale=1.0,
            n=n,
            rng=rng,
            modes=modes,
            include_random=include_random,
        )
        cuts = self._structure.thresholds(self._alpha)
        return draw_ordinal(eta, cuts, rng, link=self._link)
