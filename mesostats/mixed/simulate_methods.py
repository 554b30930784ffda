"""``simulate`` methods of the results classes, as mixins (the draws are in
:mod:`mesostats.mixed.simulation`, the one simulation path).

:class:`RandomEffectsSimulateMixin` holds the one ``simulate`` of the models with random
effects: :class:`MixedSimulateMixin` serves :class:`~mesostats.mixed.results.MixedResults`
(LMM and GLMM) through it, and the ordinal (CLMM) results
(:mod:`mesostats.mixed.clmm.simulate`) draw through it with
``draw_ordinal(linear_predictor_draws(design, beta=β, theta=θ, re_scale=1.0, n=n, rng=rng,
modes=..., include_random=...), thresholds, rng)`` (η without the thresholds;
P(Y ≤ k) = F(α_k − η)). :class:`MMRMSimulateMixin` serves
:class:`~mesostats.mixed.mmrm.results.MMRMResults`, which has no random effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.random import Generator

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.simulation import simulate_mixed, simulate_mmrm

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign
    from mesostats.mixed.mmrm.problem import MMRMProblem

#: the conditional modes a draw keeps, per design term (None: draw new ones or none)
Modes = Sequence[np.ndarray] | None

__all__ = [
    "MMRMSimulateMixin",
    "MixedSimulateMixin",
    "RandomEffectsSimulateMixin",
    "check_seed",
    "random_effects_rng",
]


def check_seed(seed: Any) -> int | np.random.SeedSequence | np.random.Generator:
    """A seed for :func:`numpy.random.default_rng`: an integer ≥ 0, a SeedSequence or a
    Generator (ModelSpecError otherwise)."""
    if isinstance(seed, (np.random.SeedSequence, np.random.Generator)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ModelSpecError(
            f"seed must be a whole number ≥ 0 (or a numpy SeedSequence / Generator), got {seed!r}."
        )
    return int(seed)


def random_effects_rng(
    seed: Any, *, include_random: bool, conditional: bool
) -> np.random.Generator:
    """The generator of a ``simulate`` call of a model with random effects, after checking
    that ``conditional`` (keep the conditional modes) and ``include_random`` agree."""
    if conditional and not include_random:
        raise ModelSpecError(
            "conditional=True keeps the conditional modes while include_random=False "
            "sets the random effects to zero; choose one."
        )
    return np.random.default_rng(check_seed(seed))


class RandomEffectsSimulateMixin:
    """``simulate`` of a model with random effects (LMM, GLMM, CLMM), written once: the
    arguments and the seed are checked here, the class draws in :meth:`_draw` (needs
    ``_modes``, the conditional modes per design term)."""

    _modes: Sequence[np.ndarray]

    def simulate(
        self,
        n: int,
        *,
        seed: int | np.random.SeedSequence | np.random.Generator = 0,
        include_random: bool = True,
        conditional: bool = False,
    ) -> np.ndarray:
        """Responses drawn from the fitted model: array (rows, n), one column per draw.

        Parameters
        ----------
        n : int
            Number of simulated response vectors.
        seed : int, SeedSequence or Generator, default 0
            The same seed gives the same draws.
        include_random : bool, default True
            Draw new random effects from their fitted distribution, N(0, σ²ΛΛᵀ) for an LMM,
            N(0, ΛΛᵀ) for a GLMM or a CLMM (lme4's ``simulate`` default, ``use.u = FALSE``;
            what simulated residuals and the parametric bootstrap use; a CLMM's grades are
            then distributed as ``predict(type="prob")``, marginal over persons). False sets
            them to zero (``re.form = NA``: an average person).
        conditional : bool, default False
            Keep each group's conditional modes in every draw (``re.form = NULL``; a CLMM's
            rows are then distributed as ``predict(type="prob", include_random=True)``).

        Returns
        -------
        numpy.ndarray
            (rows, n) on the scale of the fitted response: values (gaussian), 0/1 or the
            proportion of successes for ``cbind`` responses (binomial), counts (poisson,
            negative binomial); for a CLMM, float grade indices 0…K−1 (index k is
            ``levels[k]``). Rows are the fitted rows, in the order of ``fitted`` (a CLMM's
            ``model_frame``).

        Notes
        -----
        Bates, Mächler, Bolker & Walker (2015), *J. Stat. Softw.* 67(1): b = σΛu (σ = 1 for
        a GLMM or a CLMM), u ~ N(0, I); y | b from the family, or for a CLMM by inverting
        P(Y ≤ k) = F(θ_k − η) (:mod:`mesostats.mixed.simulation`).
        """
        rng = random_effects_rng(seed, include_random=include_random, conditional=conditional)
        modes = self._modes if conditional else None
        return self._draw(n, rng, modes, include_random)

    def _draw(self, n: int, rng: Generator, modes: Modes, include_random: bool) -> np.ndarray:
        """``n`` draws (rows, n) from ``rng``: new random effects (``modes`` None and
        ``include_random``), the given ``modes``, or none; provided by each model's mixin."""
        raise NotImplementedError


class MixedSimulateMixin(RandomEffectsSimulateMixin):
    """``simulate`` for LMM/GLMM results (needs ``design``, ``family``, ``sigma``,
    ``dispersion``, ``_beta``, ``_theta``, ``_modes``)."""

    design: MixedDesign
    family: str
    sigma: float
    dispersion: float | None
    _beta: np.ndarray
    _theta: np.ndarray
    _modes: tuple[np.ndarray, ...]

    def _draw(self, n: int, rng: Generator, modes: Modes, include_random: bool) -> np.ndarray:
        return simulate_mixed(
            self.design,
            family=self.family,
            beta=self._beta,
            theta=self._theta,
            sigma=self.sigma,
            n=n,
            rng=rng,
            modes=modes,
            include_random=include_random,
            size=self.dispersion,
        )


class MMRMSimulateMixin:
    """``simulate`` for MMRM results (needs ``problem``, ``_beta``, ``_theta``)."""

    problem: MMRMProblem
    _beta: np.ndarray
    _theta: np.ndarray

    def simulate(
        self,
        n: int,
        *,
        seed: int | np.random.SeedSequence | np.random.Generator = 0,
        include_random: bool = True,
        conditional: bool = False,
    ) -> np.ndarray:
        """Responses drawn from the fitted MMRM: array (rows, n), one column per draw.

        Each subject's rows are drawn from N(X_iβ̂, Σ̂_i), Σ̂_i the fitted covariance on the
        subject's visits (weights applied), one Cholesky factor per visit pattern.

        Parameters
        ----------
        n : int
        seed : int, SeedSequence or Generator, default 0
        include_random : bool, default True
            Accepted for a common signature; an MMRM has no random effects (the
            within-subject correlation is in Σ), so it changes nothing.
        conditional : bool, default False
            Not available: conditional on a subject's own fitted rows the draw would be the
            data. ModelSpecError when True.

        Returns
        -------
        numpy.ndarray
            (rows, n), rows in the order of ``fitted``.
        """
        if conditional:
            raise ModelSpecError(
                "An MMRM has no random effects to condition on (conditional on a subject's "
                "fitted rows the draw is the data); use conditional=False."
            )
        rng = np.random.default_rng(check_seed(seed))
        return simulate_mmrm(self.problem, beta=self._beta, theta=self._theta, n=n, rng=rng)
