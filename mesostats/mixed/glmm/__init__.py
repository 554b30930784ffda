"""Generalized linear mixed models: maximum (approximate) likelihood over (β, θ).

``fit_glmm`` fits a binomial–logit or Poisson–log GLMM with lme4 formula syntax:

1. *Start*: a GLM fit without random effects (IRLS) gives β₀; θ₀ = 1 (lme4's default start).
2. *Optimisation*: the Laplace (``nagq = 1``, :mod:`mesostats.mixed.laplace`) or adaptive
   Gauss–Hermite (``nagq > 1``, one scalar random effect, :mod:`mesostats.mixed.quadrature`)
   log-likelihood is maximised jointly over (β, θ), as in lme4's second stage (Bates et al.
   2015, *J. Stat. Softw.* 67(1), §5) and glmmTMB (Brooks et al. 2017, *R Journal* 9(2)).
   Both objectives come with exact gradients (implicit-function theorem at the conditional
   modes), so L-BFGS-B (Byrd et al. 1995) works with few evaluations; it runs on parameters
   preconditioned by an approximate information matrix (penalised-IRLS β block, θ column by
   one finite difference). It is followed by Newton steps on the Hessian — exact for one
   scalar random effect with Laplace (:meth:`ScalarRandomEffect.laplace_hessian`, used when
   clearly negative definite), otherwise central differences of the exact gradient — which
   reach the optimum to machine precision (glmer's
   Nelder–Mead / BOBYQA stops short, see ``tests/reference/README.md``). An AGQ fit starts at
   the Laplace optimum, preconditioned by the Laplace Hessian.
3. *Standard errors*: inverse of the negative Hessian of the approximate log-likelihood over
   (β, θ) at the optimum (that same Hessian), β block — what glmmTMB
   reports (TMB's ``sdreport``; Kristensen et al. 2016, *J. Stat. Softw.* 70(5)). With a
   variance on its boundary (θ = 0) the β block of the Hessian with θ held fixed is inverted
   instead.

Why hand-written: statsmodels has no maximum-likelihood GLMM (only variational Bayes / MAP,
whose between-person SD collapses), and no Python package offers lme4/glmmTMB's estimates.

**Layout**: ``objective`` (the objective over (β, θ), GLM start), ``optimise``
(:func:`maximise`), ``core`` (the fit on arrays, conditional modes), ``checks``
(family, nAGQ, separation, singular-fit messages), ``fit`` (:func:`fit_glmm`). The names
below are re-exported here.
"""

from mesostats.mixed.finite_diff import hessian_from_gradient
from mesostats.mixed.glmm.core import (
    RandomTermArrays,
    _merge_terms,
    design_objective,
    fit_arrays,
    make_objective,
    term_arrays,
)
from mesostats.mixed.glmm.fit import fit_glmm
from mesostats.mixed.glmm.objective import ApproximateLoglik
from mesostats.mixed.glmm.optimise import maximise

__all__ = [
    "ApproximateLoglik",
    "RandomTermArrays",
    "_merge_terms",
    "design_objective",
    "fit_arrays",
    "fit_glmm",
    "hessian_from_gradient",
    "make_objective",
    "maximise",
    "term_arrays",
]
