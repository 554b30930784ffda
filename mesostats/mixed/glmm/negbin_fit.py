"""The negative-binomial (NB2) GLMM fit on a built design: messages and MixedResults.

The method is in :mod:`mesostats.mixed.glmm.negbin`; this module only dresses its numbers
(as :mod:`mesostats.mixed.glmm.fit` does for the binomial and Poisson families).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from mesostats.exceptions import ConvergenceWarning, SingularFitWarning
from mesostats.mixed.boundary import boundary_messages
from mesostats.mixed.design import MixedDesign
from mesostats.mixed.glmm.checks import _separated_columns, _separation_message
from mesostats.mixed.glmm.core import term_arrays
from mesostats.mixed.glmm.negbin import boundary_message, fit_negbin_arrays
from mesostats.mixed.optsummary import OptSummary
from mesostats.mixed.results import MixedResults

__all__ = ["fit_negbin_design"]


def fit_negbin_design(design: MixedDesign, n_nodes: int, *, t0: float) -> MixedResults:
    """NB2 fit of :func:`mesostats.fit_glmm` on a built design (warnings at the caller's
    caller, as :func:`mesostats.mixed.glmm.fit._fit_design`)."""
    separated = _separated_columns(design, "poisson")  # indicators whose counts are all 0
    core = fit_negbin_arrays(
        design.y,
        design.prior_weights,
        design.offset,
        design.X,
        term_arrays(design),
        n_nodes,
        separated=[j for j, _ in separated],
    )
    opt = core.optimum
    convergence_msgs = list(core.messages) + [
        _separation_message(design.fixed_names[j], side, n_rows, core.beta[j], "poisson")
        for j, (side, n_rows) in separated
    ]
    singular_msgs = boundary_messages(design, core.theta, 1.0, family="negative_binomial")
    dispersion_msgs = [boundary_message(core.log_k)] if core.at_boundary else []
    for msg in convergence_msgs:
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
    for msg in singular_msgs:
        warnings.warn(msg, SingularFitWarning, stacklevel=4)
    k = float(np.exp(core.log_k))
    return MixedResults(
        design,
        family="negative_binomial",
        method="Laplace" if n_nodes == 1 else f"AGQ({n_nodes})",
        beta=core.beta,
        vcov=core.vcov_beta,
        theta=core.theta,
        sigma=1.0,
        loglik=core.loglik,
        df=np.full(design.p, np.inf),
        ranef=core.modes,
        ranef_sd=core.cond_sd,
        converged=opt.converged and not separated,
        singular=bool(singular_msgs),
        messages=[*convergence_msgs, *singular_msgs, *dispersion_msgs],
        variance_parameter_cov=core.vcov_theta,
        ranef_cov={
            design.terms[ids[0]].group: cov
            for ids, cov in zip(core.factor_terms, core.cond_cov, strict=True)
        },
        dispersion=(k, k * core.se_log_k),
        optimizer=OptSummary(
            method="L-BFGS-B (preconditioned) + Newton polish",
            n_evaluations=opt.n_evaluations,
            gradient=opt.gradient,
            newton_decrement=opt.newton_decrement,
            factorisation=core.factorisation,
            seconds=time.perf_counter() - t0,
            details={
                "n_quasi_newton_evaluations": opt.n_quasi_newton,
                "poisson_glm_loglik": core.poisson_loglik,
                "log_dispersion": core.log_k,
                "log_dispersion_se": core.se_log_k,
                "dispersion_at_boundary": core.at_boundary,
            },
        ).as_dict(),
    )
