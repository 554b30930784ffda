"""Confidence intervals for variance components: profile likelihood and parametric bootstrap.

Both work on any fitted :class:`~mesostats.mixed.results.MixedResults` (engine level, no
knowledge of the field) and report each between-group SD, each correlation and the residual
SD (LMM) on lme4's ``sdcor`` scale, named as lme4 names them (``.sig01``, ``.sig02``, …,
``.sigma``; θ order: per term the lower triangle of its covariance column by column, the
diagonal giving SDs and the entries below it correlations).

**Profile likelihood** (Bates, Mächler, Bolker & Walker 2015, *J. Stat. Softw.* 67(1),
§5.1; lme4's ``profile`` / ``confint(method = "profile")``). For a parameter φ_k the deviance
is minimised over every other parameter with φ_k held fixed, giving the profile D(φ_k); the
signed root ζ(φ_k) = sign(φ_k − φ̂_k)·√(D(φ_k) − D̂) is stepped outward from the estimate on
a grid (steps of about half a standard error, doubled while ζ moves slowly) until
|ζ| ≥ z_{(1+level)/2}, and the crossing is then located by Brent's root finder on ζ itself
(no spline interpolation error). An SD whose profile at 0 stays within the χ²₁ cutoff gets
the lower bound 0; a correlation whose profile stays within it up to ±1 gets ±1.

* LMM: the criterion is the engine's profiled (RE)ML deviance
  (:class:`mesostats.mixed.lmm.ProfiledDeviance`: log-determinants and penalised residual sum
  of squares at θ, with their analytic θ-gradient) written with σ explicit,
  D(θ, σ) = log|L|² (+ log|R_X|² for REML) + m·log(2πσ²) + r²(θ)/σ², m = n (ML) or n − p
  (REML), as lme4's ``devfun2``. β is profiled out. By default the criterion of the fit is
  profiled (REML for a REML fit); ``criterion="ML"`` reproduces lme4, whose ``profile``
  always refits a REML model by ML (``devfun2`` calls ``refitML``).
* GLMM: the deviance −2·ℓ(β, θ) of the engine's approximate log-likelihood (Laplace or
  adaptive Gauss–Hermite, :func:`mesostats.mixed.glmm.make_objective`), minimised over β and
  the other variance parameters, as lme4 profiles ``glmer`` fits.

The inner minimisations use L-BFGS-B (Byrd et al. 1995) with the engines' exact gradients,
chained through the Jacobian of the map (SDs, correlations, σ) → θ (central differences of
that small closed-form map). Why hand-written: lme4's profiler has no Python counterpart
(statsmodels offers none for mixed models).

**Parametric bootstrap** (Davison & Hinkley 1997, *Bootstrap Methods and their
Application*, §2.2 and §5.3 percentile intervals; lme4's ``bootMer`` / ``confint(method =
"boot", boot.type = "perc")``). New responses are drawn from the fitted model — LMM:
y* = Xβ̂ + Zb* + ε*, b* ~ N(0, σ̂²Λ̂Λ̂ᵀ), ε* ~ N(0, σ̂²); binomial: successes* ~
Binomial(trials, logit⁻¹(Xβ̂ + Zb*)); Poisson: y* ~ Poisson(exp(Xβ̂ + Zb*)), by
:func:`mesostats.mixed.simulation.simulate_mixed` — and the model is
refitted by the same engine (on the design's arrays: a :class:`MixedResults` does not carry
the data frame, and the engines' array entry points avoid re-parsing the formula). Replicate
``i`` uses the i-th child of ``numpy.random.SeedSequence(seed).spawn(n_boot)``, so the
replicates are identical for any ``n_jobs`` (joblib runs them in chunks).

**Layout**: ``parameters`` (the sdcor parameters and their maps to θ), ``objectives``
(deviance over them, inner minimiser), ``likelihood`` (profile intervals), ``bootstrap``
(parametric bootstrap). The names below are re-exported here.
"""

from mesostats._parallel import blas_single_threaded, single_threaded_blas
from mesostats.mixed.profile.bootstrap import VarianceBootstrap, bootstrap_variance_components
from mesostats.mixed.profile.likelihood import (
    PROFILE_GAIN_TOL,
    VarianceProfile,
    _lower_deviance_messages,
    _undefined_correlations,
    profile_variance_components,
)
from mesostats.mixed.profile.objectives import glmm_objective
from mesostats.mixed.profile.parameters import (
    CONFINT_COLUMNS,
    VarianceParameter,
    sdcor_from_theta,
    theta_from_sdcor,
    variance_parameters,
)

__all__ = [
    "CONFINT_COLUMNS",
    "PROFILE_GAIN_TOL",
    "VarianceBootstrap",
    "VarianceParameter",
    "VarianceProfile",
    "_lower_deviance_messages",
    "_undefined_correlations",
    "blas_single_threaded",
    "bootstrap_variance_components",
    "glmm_objective",
    "profile_variance_components",
    "sdcor_from_theta",
    "single_threaded_blas",
    "theta_from_sdcor",
    "variance_parameters",
]
