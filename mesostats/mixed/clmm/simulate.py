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

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.simulate_methods import random_effects_rng
from mesostats.mixed.simulation import draw_ordinal, linear_predictor_draws

if TYPE_CHECKING:
    from mesostats.mixed.clmm.thresholds import ThresholdStructure
    from mesostats.mixed.design import MixedDesign

__all__ = ["CLMMSimulateMixin"]

_DRAWN_LINKS = ("logit", "probit")


class CLMMSimulateMixin:
    """``simulate`` for CLMM results (needs ``_design``, ``_structure``, ``_link``,
    ``_alpha``, ``_beta``, ``_theta``, ``_modes``)."""

    _design: MixedDesign
    _structure: ThresholdStructure
    _link: str
    _alpha: np.ndarray
    _beta: np.ndarray
    _theta: np.ndarray
    _modes: list[np.ndarray]

    def simulate(
        self,
        n: int,
        *,
        seed: int | np.random.SeedSequence | np.random.Generator = 0,
        include_random: bool = True,
        conditional: bool = False,
    ) -> np.ndarray:
        """Grades drawn from the fitted model: array (rows, n), one column per draw.

        Parameters
        ----------
        n : int
            Number of simulated response vectors.
        seed : int, SeedSequence or Generator, default 0
            The same seed gives the same draws.
        include_random : bool, default True
            Draw new random effects b ~ N(0, ΛΛᵀ) per replicate (each row's grades are then
            distributed as ``predict(type="prob")``, marginal over persons). False sets
            b = 0 (an average person).
        conditional : bool, default False
            Keep each group's conditional mode b̂ in every draw (rows distributed as
            ``predict(type="prob", include_random=True)``).

        Returns
        -------
        numpy.ndarray
            (rows, n) float array of grade indices 0…K−1 (index k is ``levels[k]``), rows
            in the order of the fitted rows (``model_frame``).
        """
        rng = random_effects_rng(seed, include_random=include_random, conditional=conditional)
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
            modes=self._modes if conditional else None,
            include_random=include_random,
        )
        cuts = self._structure.thresholds(self._alpha)
        return draw_ordinal(eta, cuts, rng, link=self._link)
