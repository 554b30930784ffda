"""Marginal means of a cumulative link (mixed) model, in the three modes of R's emmeans.

The model (``fit_clmm``) is P(Y ≤ j | x) = F(θ_j − xᵀβ) at the random effects b = 0, with
thresholds θ = J α (J the threshold structure's Jacobian; the identity when flexible) and
parameters ψ = (α, β) with covariance V (the (α, β) block of ``full_vcov``). As emmeans does
for ``ordinal::clm`` / ``clmm`` models (Lenth 2016, *J. Stat. Softw.* 69(1); emmeans'
vignette "Models supported by emmeans", section on ordinal models), with x̄_c the rows of the
reference grid (:mod:`mesostats.mixed.marginal.grid`) and w_c the averaging weights of a mean:

* ``mode="latent"`` — the mean of the latent variable, a linear function of ψ:
  ``Σ_c w_c x_cᵀβ − mean_j θ_j`` (the thresholds' average, with a minus sign: a larger latent
  mean means higher grades), SE ``sqrt(ℓ V ℓᵀ)``. Differences of latent means are log
  cumulative odds ratios (logit link) and do not involve the thresholds.
* ``mode="prob"`` — the probability of each grade k, ``Σ_c w_c [F(θ_k − x_cᵀβ) −
  F(θ_{k−1} − x_cᵀβ)]`` (θ_0 = −∞, θ_K = +∞): the probabilities are computed on every grid row
  and then averaged (emmeans' ``regrid`` before averaging). SE by the delta method,
  ``sqrt(g V gᵀ)`` with g the gradient over ψ; intervals ``estimate ± z · SE``.
* ``mode="mean.class"`` — the expected grade number ``Σ_k k · P(Y = k)`` with the grades
  numbered 1…K (emmeans' convention), SE by the delta method.

For a mixed model these probabilities are those of a person whose random effects are zero
(an "average" person: conditional on b = 0), as emmeans computes them; they are NOT the
population-averaged probabilities (marginal over persons, which are closer to the middle
grades). ``CLMMResults.predict(type="prob")`` gives the population-averaged ones per row.

The nonlinear modes are stored for :func:`~mesostats.mixed.marginal.comparisons.contrasts` by
their linearisation at ψ̂ (L = g, offset = estimate − g ψ̂), which is emmeans' regridded
reference grid: a contrast of probabilities gets the delta-method SE of the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.clmm.links import get_link
from mesostats.mixed.marginal.grid import MarginalGrid

__all__ = ["MODES", "OrdinalMeans", "OrdinalParts", "ordinal_means", "ordinal_parts"]

MODES = ("latent", "prob", "mean.class")


@dataclass(frozen=True, eq=False)
class OrdinalParts:
    """What ordinal marginal means read from a CLMM fit (read-only)."""

    psi: np.ndarray  # (α, β)
    vcov: np.ndarray  # covariance of (α, β)
    n_alpha: int
    jacobian: np.ndarray  # (K − 1, n_alpha): θ = J α
    link: str
    levels: tuple[str, ...]
    response: str


@dataclass(frozen=True, eq=False)
class OrdinalMeans:
    """Means of one mode: the labels, estimates and their linearisation ``L ψ + offset``."""

    labels: pd.DataFrame
    estimate: np.ndarray
    L: np.ndarray
    offset: np.ndarray
    by: tuple[str, ...]


def ordinal_parts(results: Any) -> OrdinalParts:
    """Read (α, β), their covariance, J, the link, the grades and the response's name."""
    needed = ("coefficients", "full_vcov", "threshold_jacobian", "levels", "link", "formula")
    missing = [name for name in needed if not hasattr(results, name)]
    if missing:
        raise ModelSpecError(
            f"Marginal means of a cumulative link model need fit_clmm results; "
            f"{type(results).__name__} lacks {', '.join(missing)}."
        )
    coef = results.coefficients
    jacobian = np.asarray(results.threshold_jacobian, dtype=float)
    k = len(coef)
    vcov = np.asarray(results.full_vcov, dtype=float)[:k, :k]
    response = str(results.formula).split("~", 1)[0].strip() or "grade"
    return OrdinalParts(
        psi=np.asarray(coef, dtype=float),
        vcov=vcov,
        n_alpha=jacobian.shape[1],
        jacobian=jacobian,
        link=str(results.link),
        levels=tuple(map(str, results.levels)),
        response=response,
    )


def _latent(parts: OrdinalParts, grid: MarginalGrid) -> OrdinalMeans:
    n_t = grid.L.shape[0]
    alpha_row = -parts.jacobian.mean(axis=0)
    L = np.hstack([np.broadcast_to(alpha_row, (n_t, parts.n_alpha)), grid.L])
    return OrdinalMeans(
        labels=grid.labels, estimate=L @ parts.psi, L=L, offset=np.zeros(n_t), by=()
    )


def _grade_probabilities(parts: OrdinalParts, grid: MarginalGrid) -> tuple[np.ndarray, np.ndarray]:
    """Averaged grade probabilities (means, K) and their gradients (means, K, len ψ)."""
    na = parts.n_alpha
    alpha, beta = parts.psi[:na], parts.psi[na:]
    X = grid.cells  # (t, a, p)
    cuts = parts.jacobian @ alpha  # (K − 1,)
    z = cuts[None, None, :] - (X @ beta)[..., None]  # (t, a, K − 1)
    link = get_link(parts.link)
    cum = link.cdf(z)
    dens = link.densities(z, 1)[0]
    d_alpha = dens[..., None] * parts.jacobian[None, None, :, :]  # (t, a, K − 1, na)
    d_beta = -dens[..., None] * X[:, :, None, :]  # (t, a, K − 1, p)
    grad = np.concatenate([d_alpha, d_beta], axis=-1)
    t, a, _ = z.shape
    zero = np.zeros((t, a, 1))
    cum_full = np.concatenate([zero, cum, np.ones((t, a, 1))], axis=-1)
    pad = np.zeros((t, a, 1, grad.shape[-1]))
    grad_full = np.concatenate([pad, grad, pad], axis=2)
    prob = np.diff(cum_full, axis=-1)  # (t, a, K)
    prob_grad = np.diff(grad_full, axis=2)  # (t, a, K, len ψ)
    w = grid.weights
    return np.einsum("ta,tak->tk", w, prob), np.einsum("ta,takq->tkq", w, prob_grad)


def _linearised(estimate: np.ndarray, gradient: np.ndarray, psi: np.ndarray) -> np.ndarray:
    return np.asarray(estimate - gradient @ psi)


def ordinal_means(results: Any, grid: MarginalGrid, mode: str) -> tuple[OrdinalMeans, OrdinalParts]:
    """The means of ``mode`` (see the module docstring) on the reference grid ``grid``."""
    if mode not in MODES:
        raise ModelSpecError(
            f"mode must be one of {', '.join(map(repr, MODES))} for a cumulative link model, "
            f"got {mode!r}."
        )
    parts = ordinal_parts(results)
    if mode == "latent":
        return _latent(parts, grid), parts
    prob, grad = _grade_probabilities(parts, grid)
    if mode == "mean.class":
        scores = np.arange(1, prob.shape[1] + 1, dtype=float)
        est = prob @ scores
        L = np.einsum("k,tkq->tq", scores, grad)
        means = OrdinalMeans(
            labels=grid.labels,
            estimate=est,
            L=L,
            offset=_linearised(est, L, parts.psi),
            by=(),
        )
        return means, parts
    # prob: rows grade-major (the grade varies slowest, as emmeans' ``| rating``)
    n_t, K = prob.shape
    est = prob.T.reshape(-1)
    L = grad.transpose(1, 0, 2).reshape(n_t * K, -1)
    if parts.response in grid.labels.columns:
        raise ModelSpecError(
            f"The response {parts.response!r} is also a spec or by variable; the grade column "
            "of mode='prob' would clash with it."
        )
    labels = pd.concat([grid.labels] * K, ignore_index=True)
    labels[parts.response] = pd.Categorical(
        np.repeat(np.asarray(parts.levels, dtype=object), n_t), categories=list(parts.levels)
    )
    means = OrdinalMeans(
        labels=labels,
        estimate=est,
        L=L,
        offset=_linearised(est, L, parts.psi),
        by=(parts.response,),
    )
    return means, parts
