"""Cumulative link mixed models (ordinal::clmm's model) for graded outcomes.

``fit_clmm`` fits P(Y ≤ j) = F(θ_j − xᵀβ − zᵀb), b ~ N(0, Σ), with lme4 formula syntax
(P(Y ≤ j) = F(θ_j − xᵀβ) for a formula without random terms), by maximising the Laplace
approximation (any random-effect structure) or adaptive Gauss–Hermite
quadrature (one scalar random effect) of the marginal likelihood, with exact gradients and
Newton steps (Christensen 2019, *Cumulative link models for ordinal regression with the R
package ordinal*; Pinheiro & Bates 1995, *J. Comput. Graph. Stat.* 4(1)).

**Layout**: ``links`` (F and derivatives), ``ordinal`` (per-observation log-likelihood and
derivatives), ``thresholds`` (θ = J α structures), ``response`` (ordered response and its
checks), ``scalar`` (one scalar random effect: vectorised over groups, Laplace and AGQ),
``dense`` (any structure, Laplace), ``optimise`` (Newton), ``engine`` (start, fit, SEs,
modes), ``fixed`` (no random term: ordinal::clm's model, Newton with the exact Hessian),
``predict`` (category probabilities), ``results`` (:class:`CLMMResults`), ``fit``
(:func:`fit_clmm`).
"""

from mesostats.mixed.clmm.fit import fit_clmm
from mesostats.mixed.clmm.results import CLMMResults

__all__ = ["CLMMResults", "fit_clmm"]
