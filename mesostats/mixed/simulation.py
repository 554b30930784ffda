"""Responses drawn from a fitted (or a true) model: the one simulation path of mesostats.

Parametric bootstrap, simulated (DHARMa-style) residuals and power analysis all need new
responses from a model. They draw them here, from plain arrays, so that every user draws the
same way. The callers:

* ``results.simulate(n, seed=…)`` of every fitted model (:mod:`mesostats.mixed.simulate_methods`:
  :func:`simulate_mixed`, :func:`simulate_mmrm`; :mod:`mesostats.mixed.clmm.simulate`:
  :func:`linear_predictor_draws` then :func:`draw_ordinal`);
* ``ms.check_model`` (:mod:`mesostats.checks`), whose simulated residuals are
  ``results.simulate`` draws;
* the parametric bootstrap (:mod:`mesostats.mixed.profile.bootstrap`): one
  :func:`simulate_mixed` draw (``n = 1``) per replicate, from the replicate's own stream;
* the study simulator behind ``ms.simulate_study`` and ``ms.power``
  (:mod:`mesostats.simulate.draw`), which draws from the true parameters rather than a fit:
  the person effects with :func:`draw_random_effects`, the regrowth response with
  :func:`draw_family`. Its side-effect indicator stays a uniform below p (numpy's binomial
  sampler maps the uniform differently, and a seed must keep drawing the same study).

The functions:

* :func:`draw_random_effects` — new random effects b = s·Λu with u ~ N(0, I) per level and
  term (lme4's ``simulate(use.u = FALSE)``; Bates et al. 2015, *J. Stat. Softw.* 67(1), §2:
  b ~ N(0, σ²ΛΛᵀ) for an LMM, N(0, ΛΛᵀ) for a GLMM);
* :func:`draw_family` — responses given the linear predictor η: Gaussian y = η + σε/√w,
  binomial successes ~ Bin(trials, logit⁻¹η) returned as proportions (the scale of
  ``MixedDesign.y``), Poisson counts ~ Pois(exp η), negative binomial (NB2) counts;
* :func:`draw_ordinal` — a cumulative-link (CLMM) response given η and the thresholds, by
  inverting the cumulative probabilities P(Y ≤ k) = F(α_k − η) (Agresti 2010, *Analysis of
  Ordinal Categorical Data*, §3.2); the hook the ordinal results' ``simulate`` calls;
* :func:`linear_predictor_draws` — η = Xβ + Zb of a mixed design with new, kept or no
  random effects (what a CLMM's ``simulate`` feeds to :func:`draw_ordinal`);
* :func:`simulate_mixed` — an LMM/GLMM from its design and (β, θ, σ), with new random
  effects, none, or the given conditional modes;
* :func:`simulate_mmrm` — an MMRM: y_i ~ N(X_iβ, W_i^{-1/2} Σ W_i^{-1/2}) per subject, one
  Cholesky factor per (group, visits) pattern and all its subjects drawn at once.

Every function takes a :class:`numpy.random.Generator` and ``n`` (columns: replicates) and
returns an ``(rows, n)`` array. With ``n = 1`` the draws are those of one replicate, in the
order random effects (term by term, levels × columns), then the response; a caller that
needs replicates independent of chunking (a bootstrap or a power study spread over workers)
gives replicate j its own generator (``SeedSequence(seed).spawn(n)[j]``) and asks for
``n = 1``. numpy's samplers are used as they are; nothing here is written by hand except the
block-wise assembly (no library draws from a mixed model's design).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign
    from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = [
    "draw_family",
    "draw_ordinal",
    "draw_random_effects",
    "linear_predictor_draws",
    "random_effects_part",
    "simulate_mixed",
    "simulate_mmrm",
]


def _check_n(n: object) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ModelSpecError(
            f"n (number of simulated responses) must be an integer ≥ 1, got {n!r}."
        )
    return int(n)


def draw_random_effects(
    factors: Sequence[np.ndarray], n_levels: Sequence[int], n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """New random effects per term: ``(n_levels, q, n)`` arrays b = F u, u ~ N(0, I).

    ``factors[t]`` is a (q, q) factor F of the term's covariance F Fᵀ (σΛ_t for an LMM,
    Λ_t for a GLMM; a Cholesky factor of a true G in a power study).
    """
    out = []
    for factor, levels in zip(factors, n_levels, strict=True):
        q = factor.shape[0]
        u = rng.standard_normal((int(levels), q, n))
        out.append(np.einsum("ij,ljk->lik", factor, u))
    return out


def random_effects_part(
    Z: Sequence[np.ndarray], codes: Sequence[np.ndarray], effects: Sequence[np.ndarray]
) -> np.ndarray:
    """Σ_t Z_t b_t[codes_t] for every row and replicate: ``(rows, n)``.

    ``effects[t]`` is ``(n_levels, q)`` (the same for every replicate) or ``(n_levels, q, n)``.
    """
    total: np.ndarray | float = 0.0
    for z, c, b in zip(Z, codes, effects, strict=True):
        if b.ndim == 2:
            total = total + np.einsum("ij,ij->i", z, b[c])[:, None]
        else:
            total = total + np.einsum("ij,ijk->ik", z, b[c])
    return np.asarray(total)


def draw_family(
    family: str,
    eta: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma: float = 1.0,
    weights: np.ndarray | None = None,
    size: float | None = None,
) -> np.ndarray:
    """Responses given the linear predictor ``eta`` (rows, n).

    gaussian: η + σ ε / √w. binomial: successes ~ Bin(w, logit⁻¹ η) divided by the trials
    w (proportions; 0/1 when w = 1; rows with no trials get 0). poisson: Pois(exp η).
    negative_binomial: NB2 with mean μ = exp η and variance μ + μ²/``size`` (glmmTMB's
    ``nbinom2``; numpy's sampler with success probability size/(size + μ)).
    ``weights`` are the prior weights (binomial trials), one per row (default 1).
    """
    eta = np.asarray(eta, dtype=float)
    rows = eta.shape[0]
    w = np.ones(rows) if weights is None else np.asarray(weights, dtype=float).reshape(rows)
    w_col = w.reshape((rows,) + (1,) * (eta.ndim - 1))
    if family == "gaussian":
        return eta + (sigma / np.sqrt(w_col)) * rng.standard_normal(eta.shape)
    if family == "binomial":
        trials = np.rint(w_col).astype(np.int64)
        p = 1.0 / (1.0 + np.exp(-eta))
        successes = rng.binomial(np.broadcast_to(trials, eta.shape), p)
        return np.where(trials > 0, successes / np.maximum(trials, 1), 0.0)
    if family == "poisson":
        return np.asarray(rng.poisson(np.exp(eta)), dtype=float)
    if family == "negative_binomial":
        if size is None or not size > 0:
            raise ModelSpecError(
                f"A negative binomial draw needs its size (dispersion) > 0, got {size!r}."
            )
        mu = np.exp(eta)
        return np.asarray(rng.negative_binomial(size, size / (size + mu)), dtype=float)
    raise ModelSpecError(
        f"Cannot simulate family {family!r}: known families are gaussian, binomial, poisson, "
        "negative_binomial."
    )


def draw_ordinal(
    eta: np.ndarray,
    thresholds: np.ndarray,
    rng: np.random.Generator,
    *,
    link: str = "logit",
) -> np.ndarray:
    """Category codes 0…K of a cumulative-link response given η (rows, n) and the K
    increasing thresholds α: P(Y ≤ k) = F(α_k − η), F the logistic (``"logit"``) or normal
    (``"probit"``) CDF; returns integer codes as floats, shape of ``eta``."""
    from scipy import stats

    alpha = np.asarray(thresholds, dtype=float).reshape(-1)
    cdf = stats.logistic.cdf if link == "logit" else stats.norm.cdf
    if link not in ("logit", "probit"):
        raise ModelSpecError(f"link must be 'logit' or 'probit', got {link!r}.")
    cumulative = cdf(alpha[(None,) * np.ndim(eta)] - np.asarray(eta)[..., None])
    u = rng.random(np.shape(eta))
    return np.asarray((cumulative < u[..., None]).sum(axis=-1), dtype=float)


def linear_predictor_draws(
    design: MixedDesign,
    *,
    beta: np.ndarray,
    theta: np.ndarray,
    re_scale: float,
    n: int,
    rng: np.random.Generator,
    modes: Sequence[np.ndarray] | None = None,
    include_random: bool = True,
) -> np.ndarray:
    """η = Xβ + offset + Σ_t Z_t b_t for ``n`` replicates: (rows, n).

    ``b`` are new draws N(0, re_scale²·ΛΛᵀ) (``re_scale`` = σ for an LMM, 1 for a GLMM or a
    CLMM), the given ``modes`` (per term, ``(n_levels, q)``), or zero
    (``include_random=False``). A cumulative-link model draws its response from this η with
    :func:`draw_ordinal`.
    """
    n = _check_n(n)
    eta = (design.X @ np.asarray(beta, dtype=float) + design.offset)[:, None]
    terms = design.terms
    if modes is not None:
        effects: Sequence[np.ndarray] = [np.asarray(b, dtype=float) for b in modes]
    elif include_random:
        lambdas = design.lambda_blocks(np.asarray(theta, dtype=float))
        factors = [re_scale * lam for lam in lambdas]
        effects = draw_random_effects(factors, [t.n_levels for t in terms], n, rng)
    else:
        effects = []
    if effects:
        eta = eta + random_effects_part([t.Z for t in terms], [t.codes for t in terms], effects)
    return np.array(np.broadcast_to(eta, (design.n, n)))


def simulate_mixed(
    design: MixedDesign,
    *,
    family: str,
    beta: np.ndarray,
    theta: np.ndarray,
    sigma: float,
    n: int,
    rng: np.random.Generator,
    modes: Sequence[np.ndarray] | None = None,
    include_random: bool = True,
    size: float | None = None,
) -> np.ndarray:
    """``n`` responses (rows, n) from an LMM/GLMM on its design, on the scale of ``design.y``.

    Parameters
    ----------
    design : MixedDesign
    family : {"gaussian", "binomial", "poisson", "negative_binomial"}
    beta, theta, sigma
        Fixed effects, relative covariance parameters (lme4 order) and residual SD (1 for a
        GLMM).
    n : int
        Number of replicates (columns).
    rng : numpy.random.Generator
    modes : sequence of arrays, optional
        Per term, ``(n_levels, q)`` random effects to keep in every replicate (the
        conditional modes: R's ``simulate(re.form = NULL)``). ``None`` draws new ones.
    include_random : bool
        With ``modes=None``: draw new random effects (True) or set them to zero (False, R's
        ``re.form = NA``).
    size : float, optional
        Negative binomial: the dispersion k (``draw_family``'s ``size``).
    """
    eta = linear_predictor_draws(
        design,
        beta=beta,
        theta=theta,
        re_scale=sigma if family == "gaussian" else 1.0,
        n=n,
        rng=rng,
        modes=modes,
        include_random=include_random,
    )
    return draw_family(family, eta, rng, sigma=sigma, weights=design.prior_weights, size=size)


def _pattern_rows(problem: MMRMProblem) -> list[tuple[int, np.ndarray]]:
    """(pattern, rows (n_sub, d)) for every pattern: its subjects' row indices by visit."""
    lengths = np.fromiter((r.size for r in problem.subject_rows), dtype=np.intp)
    offsets = np.cumsum(lengths) - lengths
    flat = np.concatenate(problem.subject_rows).astype(np.intp)
    out = []
    for pattern, block in enumerate(problem.blocks):
        subjects = np.flatnonzero(problem.subject_pattern == pattern)
        if subjects.size == 0:
            continue
        if np.any(lengths[subjects] != block.d):
            raise ModelSpecError("MMRM pattern sizes disagree with the subjects' rows.")
        out.append((pattern, flat[offsets[subjects][:, None] + np.arange(block.d)[None, :]]))
    return out


def simulate_mmrm(
    problem: MMRMProblem, *, beta: np.ndarray, theta: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` responses (rows, n) of an MMRM: y_i = X_iβ + W_i^{-1/2} L_p z_i, z_i ~ N(0, I),
    with L_p the Cholesky factor of Σ on the visits of subject i's pattern p.

    One standard-normal array (rows, n) is drawn first and each pattern takes its rows, so
    the draws do not depend on the order of the patterns.
    """
    n = _check_n(n)
    mean = problem.X @ np.asarray(beta, dtype=float)
    z = rng.standard_normal((problem.n, n))
    out = np.empty((problem.n, n))
    scale = 1.0 / np.sqrt(problem.weights)
    for pattern, rows in _pattern_rows(problem):
        sigma_p = problem.pattern_derivatives(np.asarray(theta, dtype=float), pattern, order=0)[0]
        chol = np.linalg.cholesky(sigma_p)
        draws = np.einsum("ab,sbk->sak", chol, z[rows])  # (n_sub, d, n)
        out[rows] = mean[rows][:, :, None] + scale[rows][:, :, None] * draws
    return out
