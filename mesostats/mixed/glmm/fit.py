"""fit_glmm: formula and data in, MixedResults out."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ConvergenceWarning, SingularFitWarning
from mesostats.mixed.boundary import boundary_messages
from mesostats.mixed.design import MixedDesign, build_design
from mesostats.mixed.glmm.assemble import glmm_results
from mesostats.mixed.glmm.checks import (
    _check_family,
    _check_nagq,
    _check_quadrature_structure,
    _group_separation,
    _large_estimates,
    _separated_columns,
    _separation_message,
)
from mesostats.mixed.glmm.core import fit_arrays, term_arrays
from mesostats.mixed.glmm.negbin_fit import fit_negbin_design
from mesostats.mixed.laplace import (
    CanonicalFamily,
)
from mesostats.mixed.results import MixedResults

__all__ = ["fit_glmm"]


# --------------------------------------------------------------------------- public
def fit_glmm(
    formula: str, data: pd.DataFrame, *, family: str = "binomial", nagq: int = 1
) -> MixedResults:
    """Fit a generalized linear mixed model by maximum (approximate) likelihood.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"side_effect ~ minoxidil + week + (1 | subject_id)"``;
        ``cbind(successes, failures) ~ ...`` for binomial counts, ``offset(log(exposure))``,
        crossed ``(1 | a) + (1 | b)``, nested ``(1 | a/b)``, uncorrelated ``(x || g)``.
    data : pandas.DataFrame
        Any table with the columns the formula uses. Rows with a missing value in a used
        column are set aside (``results.excluded_rows``, :class:`ExclusionWarning`).
    family : {"binomial", "poisson", "negative_binomial"}, default "binomial"
        Binomial with logit link (0/1 or boolean response, or ``cbind``), Poisson with
        log link (non-negative whole-number counts), or negative binomial NB2 with log link
        (overdispersed counts, Var = μ + μ²/k, glmmTMB's ``nbinom2``; the dispersion k is
        estimated jointly and reported as ``dispersion`` / ``dispersion_se``; see
        :mod:`mesostats.mixed.glmm.negbin`).
    nagq : int, default 1
        1 = Laplace approximation (any random-effect structure). 2…100 = adaptive
        Gauss–Hermite quadrature with that many nodes; needs a single scalar random effect
        (one grouping factor, e.g. ``(1 | subject_id)``).

    Returns
    -------
    MixedResults
        ``method`` is ``"Laplace"`` or ``"AGQ(n)"``; z tests (``df = inf``); ``loglik`` on
        lme4's scale (binomial includes log C(n, y)) for every ``nagq``; ``vcov`` from the
        Hessian over (β, θ) (as glmmTMB); ``ranef`` / ``ranef_se`` are conditional modes and
        conditional SDs.

    Raises
    ------
    ModelSpecError
        Unknown family, ``nagq`` outside 1…100, ``nagq > 1`` with a vector-valued or several
        random effects, a response the family cannot take (binomial outside 0/1, successes >
        trials, negative or fractional counts), and every formula/data problem of
        :func:`mesostats.mixed.design.build_design`.

    Warns
    -----
    ConvergenceWarning
        An optimality check failed (says which, with values), or (quasi-)complete separation
        (names the covariate or the groups).
    SingularFitWarning
        A random-effect SD is 0 or a correlation ±1 (names which, and what to try).

    Notes
    -----
    Laplace approximation and penalised IRLS of Bates, Mächler, Bolker & Walker (2015,
    *J. Stat. Softw.* 67(1)); adaptive Gauss–Hermite quadrature of Pinheiro & Bates (1995,
    *J. Comput. Graph. Stat.* 4(1)); joint optimisation over (β, θ) with exact gradients and a
    Newton polish, standard errors from the Hessian as in glmmTMB (Brooks et al. 2017,
    *R Journal* 9(2)). See :mod:`mesostats.mixed.glmm`.

    Examples
    --------
    >>> import mesostats as ms
    >>> fit = ms.fit_glmm(
    ...     "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp
    ... )  # doctest: +SKIP
    >>> fit.fixed_effects  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    family_name = _check_family(family)
    n_nodes = _check_nagq(nagq)
    design = build_design(formula, data, family=family_name)
    return _fit_design(design, family_name, n_nodes, t0=t0)


def _fit_design(design: MixedDesign, family_name: str, n_nodes: int, *, t0: float) -> MixedResults:
    """The fit of :func:`fit_glmm` on a built design (warnings point at the caller's caller:
    the user's call of ``fit_glmm`` or of :meth:`mesostats.mixed.refit.ModelTemplate.fit`)."""
    _check_quadrature_structure(design, n_nodes)
    if family_name == "negative_binomial":
        return fit_negbin_design(design, n_nodes, t0=t0)
    terms = term_arrays(design)
    separated = _separated_columns(design, family_name)
    core = fit_arrays(
        CanonicalFamily(family_name),
        design.y,
        design.prior_weights,
        design.offset,
        design.X,
        terms,
        n_nodes,
        separated=[j for j, _ in separated],
    )
    opt = core.optimum
    se = np.sqrt(np.clip(np.diag(core.vcov_beta), 0.0, None))

    convergence_msgs = list(core.messages)
    separation = [
        _separation_message(design.fixed_names[j], side, n_rows, core.beta[j], family_name)
        for j, (side, n_rows) in separated
    ]
    separation_records: list[dict[str, Any]] = [
        {
            "kind": "complete",
            "term": design.fixed_names[j],
            "side": side,
            "n_rows": n_rows,
            "estimate": float(core.beta[j]),
        }
        for j, (side, n_rows) in separated
    ]
    flagged = {design.fixed_names[j] for j, _ in separated}
    for text, record in _large_estimates(design, core.beta, se, flagged) + _group_separation(
        design, family_name, core.theta
    ):
        separation.append(text)
        separation_records.append(record)
    singular_msgs = boundary_messages(design, core.theta, 1.0, family=family_name)
    for msg in convergence_msgs + separation:
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    for msg in singular_msgs:
        warnings.warn(msg, SingularFitWarning, stacklevel=3)
    return glmm_results(
        design,
        core,
        family=family_name,
        n_nodes=n_nodes,
        converged=opt.converged and not separation,
        singular=bool(singular_msgs),
        messages=[*convergence_msgs, *separation, *singular_msgs],
        t0=t0,
        details={"glm_loglik": core.glm_loglik, "separation": separation_records},
    )
