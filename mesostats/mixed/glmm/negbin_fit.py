"""The negative-binomial (NB2) GLMM fit on a built design: messages and MixedResults.

The method is in :mod:`mesostats.mixed.glmm.negbin`; this module only dresses its numbers
(as :mod:`mesostats.mixed.glmm.fit` does for the binomial and Poisson families).
"""

from __future__ import annotations

import warnings

import numpy as np

from mesostats.exceptions import ConvergenceWarning, SingularFitWarning
from mesostats.mixed.boundary import boundary_messages
from mesostats.mixed.design import MixedDesign
from mesostats.mixed.glmm.assemble import glmm_results
from mesostats.mixed.glmm.checks import _separated_columns, _separation_message
from mesostats.mixed.glmm.core import term_arrays
from mesostats.mixed.glmm.negbin import boundary_message, fit_negbin_arrays
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
    return glmm_results(
        design,
        core,
        family="negative_binomial",
        n_nodes=n_nodes,
        converged=opt.converged and not separated,
        singular=bool(singular_msgs),
        messages=[*convergence_msgs, *singular_msgs, *dispersion_msgs],
        t0=t0,
        details={
            "poisson_glm_loglik": core.poisson_loglik,
            "log_dispersion": core.log_k,
            "log_dispersion_se": core.se_log_k,
            "dispersion_at_boundary": core.at_boundary,
        },
        dispersion=(k, k * core.se_log_k),
    )
