"""Dress a fitted GLMM core (binomial/Poisson :class:`GlmmCore` or NB2 :class:`NegBinCore`) as
:class:`~mesostats.mixed.results.MixedResults`: the one place where the numbers of an engine
core become the results object with its optimiser record, for every GLMM family.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mesostats.mixed.design import MixedDesign
from mesostats.mixed.glmm.core import GlmmCore
from mesostats.mixed.glmm.negbin import NegBinCore
from mesostats.mixed.optsummary import OptSummary
from mesostats.mixed.results import MixedResults

__all__ = ["glmm_results"]


def glmm_results(
    design: MixedDesign,
    core: GlmmCore | NegBinCore,
    *,
    family: str,
    n_nodes: int,
    converged: bool,
    singular: bool,
    messages: Sequence[str],
    t0: float,
    details: dict[str, Any],
    dispersion: tuple[float, float] | None = None,
) -> MixedResults:
    """``MixedResults`` of a GLMM fit: z tests (df = inf), σ = 1, the conditional modes and
    covariance blocks of the core, and an :class:`OptSummary` whose ``details`` add the
    family's own diagnostics to the optimiser's."""
    opt = core.optimum
    return MixedResults(
        design,
        family=family,
        method="Laplace" if n_nodes == 1 else f"AGQ({n_nodes})",
        beta=core.beta,
        vcov=core.vcov_beta,
        theta=core.theta,
        sigma=1.0,
        loglik=core.loglik,
        df=np.full(design.p, np.inf),
        ranef=core.modes,
        ranef_sd=core.cond_sd,
        converged=converged,
        singular=singular,
        messages=list(messages),
        variance_parameter_cov=core.vcov_theta,
        ranef_cov={
            design.terms[ids[0]].group: cov
            for ids, cov in zip(core.factor_terms, core.cond_cov, strict=True)
        },
        dispersion=dispersion,
        optimizer=OptSummary(
            method="L-BFGS-B (preconditioned) + Newton polish",
            n_evaluations=opt.n_evaluations,
            gradient=opt.gradient,
            newton_decrement=opt.newton_decrement,
            factorisation=core.factorisation,
            seconds=time.perf_counter() - t0,
            details={"n_quasi_newton_evaluations": opt.n_quasi_newton, **details},
        ).as_dict(),
    )
