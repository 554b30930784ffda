"""``simulate`` methods of the results classes, as mixins (the draws are in
:mod:`mesostats.mixed.simulation`, the one simulation path).

:class:`MixedSimulateMixin` serves :class:`~mesostats.mixed.results.MixedResults` (LMM and
GLMM), :class:`MMRMSimulateMixin` serves :class:`~mesostats.mixed.mmrm.results.MMRMResults`.
An ordinal (CLMM) results class adds its own ``simulate`` with the same signature:
``draw_ordinal(linear_predictor_draws(design, beta=β, theta=θ, re_scale=1.0, n=n, rng=rng,
modes=..., include_random=...), thresholds, rng)`` from :mod:`mesostats.mixed.simulation`
(η without the thresholds; P(Y ≤ k) = F(α_k − η)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.simulation import simulate_mixed, simulate_mmrm

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign
    from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = ["MMRMSimulateMixin", "MixedSimulateMixin", "check_seed", "random_effects_rng"]


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


class MixedSimulateMixin:
    """``simulate`` for LMM/GLMM results (needs ``design``, ``family``, ``sigma``,
    ``dispersion``, ``_beta``, ``_theta``, ``_modes``)."""

    design: MixedDesign
    family: str
    sigma: float
    dispersion: float | None
    _beta: np.ndarray
    _theta: np.ndarray
    _modes: tuple[np.ndarray, ...]

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
            Draw new random effects from their fitted distribution N(0, σ²ΛΛᵀ) (lme4's
            ``simulate`` default, ``use.u = FALSE``; what simulated residuals and the
            parametric bootstrap use). False sets them to zero (``re.form = NA``).
        conditional : bool, default False
            Keep each group's conditional modes in every draw (``re.form = NULL``).

        Returns
        -------
        numpy.ndarray
            (rows, n) on the scale of the fitted response: values (gaussian), 0/1 or the
            proportion of successes for ``cbind`` responses (binomial), counts (poisson).
            Rows are the fitted rows, in the order of ``fitted``.

        Notes
        -----
        Bates, Mächler, Bolker & Walker (2015), *J. Stat. Softw.* 67(1): b = σΛu, u ~ N(0, I);
        y | b from the family (:mod:`mesostats.mixed.simulation`).
        """
        rng = random_effects_rng(seed, include_random=include_random, conditional=conditional)
        return simulate_mixed(
            self.design,
            family=self.family,
            beta=self._beta,
            theta=self._theta,
            sigma=self.sigma,
            n=n,
            rng=rng,
            modes=self._modes if conditional else None,
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
