""" "Varied results": how much a treatment's effect differs between people, with honest CIs.

:func:`variability` takes a regrowth fit (:class:`~mesostats.domain.RegrowthResults`), a
side-effect fit (:class:`~mesostats.domain.SideEffectResults`) or any
:class:`~mesostats.mixed.results.MixedResults`, and returns a :class:`Variability` with

* ``components`` — every between-person (between-group) SD, correlation and the residual SD
  with a 95 % confidence interval: profile likelihood (Bates et al. 2015, §5.1) or parametric
  bootstrap (Davison & Hinkley 1997), from :mod:`mesostats.mixed.profile`;
* ``icc`` (linear models) — the share of outcome variance that lies between people,
  ρ(W) = v(W) / (v(W) + σ²) with v(W) = z(W)ᵀΣz(W) the between-person variance at week W
  (z = (1, W) with a random slope, so the ICC depends on time; reported at week 0 and as
  :meth:`Variability.icc_at`) summed over every grouping factor (people and sites);
* ``median_odds_ratio`` (binomial models) — MOR = exp(√(2τ²)·Φ⁻¹(0.75)) (Merlo et al. 2006,
  *J. Epidemiol. Community Health* 60(4)): the median odds ratio between two people with the
  same covariates, the one more prone to the event against the one less prone;
* :meth:`Variability.prediction_interval` — the range of one *new* person's true change at
  week W under each cocktail (regrowth), or of a new person's per-session event probability
  (side effects): fixed part ± z·√(x̂ᵀV_βx̂ + z(W)ᵀΣz(W) [+ σ²]) (Skrondal & Rabe-Hesketh 2009,
  *JRSS A* 172(3), prediction of a new cluster);
* :meth:`Variability.responders` — the expected share of people whose true change at week W
  exceeds a threshold, Φ((μ_c − t)/√v(W)), with uncertainty from simulation of the
  estimates' sampling distribution;
* ``person_effects`` — each person's conditional modes (BLUPs) with conditional SDs and 95 %
  intervals, their own predicted change at week W, and a flag: clearly responded, clearly did
  not, or uncertain.

**Intervals of derived quantities.** The MOR and the latent-scale ICC of a binomial model are
monotone in the SD τ, so their intervals are the SD's interval transformed. The ICC of a
linear model at week 0 with a single grouping factor is λ²/(1 + λ²) for the relative
intercept SD λ = θ₁, so its profile interval is that of θ₁ (σ profiled out) transformed. In
other cases, ``ci_method="profile"`` gives a delta-method interval on the logit scale from the
asymptotic covariance of (θ, σ) (documented in ``method``), and ``ci_method="bootstrap"`` the
percentile interval of the bootstrap replicates. Responder shares: replicates of the
bootstrap when available, else draws of β ~ N(β̂, V_β) and (θ, σ) ~ N(estimate, asymptotic
covariance) (Gelman & Hill 2007, §7.2, "simulation of uncertainty").

**Person-level intervals** for the modes are mode ± z·(conditional SD) (lme4's ``condVar``,
conditional on the estimates). For a person's predicted change the fixed-part variance
x_iᵀV_βx_i is added to the conditional variance of z(W)ᵀb_i (as merTools'
``predictInterval``; the small covariance between β̂ and b̂ is neglected).

Hand-written because no Python library computes these for mixed models (statsmodels'
MixedLM has no profile CIs for variance components, no MOR and no new-cluster prediction).
"""

from __future__ import annotations

from mesostats.domain.variation.api import Variability, variability
from mesostats.domain.variation.quantities import (
    CI_METHODS,
    IntervalEstimate,
    conditional_mode_table,
    median_odds_ratio,
)

__all__ = [
    "CI_METHODS",
    "IntervalEstimate",
    "Variability",
    "conditional_mode_table",
    "median_odds_ratio",
    "variability",
]
