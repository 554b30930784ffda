"""fit_clmm: formula and data in, CLMMResults out."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ConvergenceWarning, ModelSpecError, SingularFitWarning
from mesostats.formula import parse_formula
from mesostats.mixed.boundary import boundary_messages
from mesostats.mixed.clmm.engine import fit_engine
from mesostats.mixed.clmm.fixed import fit_fixed
from mesostats.mixed.clmm.links import get_link
from mesostats.mixed.clmm.response import check_categories, ordered_codes
from mesostats.mixed.clmm.results import CLMMResults
from mesostats.mixed.clmm.thresholds import threshold_structure
from mesostats.mixed.design import build_design
from mesostats.mixed.optsummary import OptSummary
from mesostats.mixed.quadrature import MAX_NODES

__all__ = ["fit_clmm"]

#: largest rows × random effects for the dense Laplace path (two such float matrices: 1.6 GB)
_DENSE_LIMIT = 100_000_000
#: a latent-scale estimate beyond this with an SE at least as large has diverged
_HUGE = 10.0


def _check_nagq(nagq: Any) -> int:
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)):
        raise ModelSpecError(f"nagq must be a whole number 1…{MAX_NODES}, got {nagq!r}.")
    if not 1 <= int(nagq) <= MAX_NODES:
        raise ModelSpecError(
            f"nagq must be between 1 (Laplace) and {MAX_NODES} quadrature nodes, got {nagq}."
        )
    return int(nagq)


def fit_clmm(
    formula: str,
    data: pd.DataFrame,
    *,
    link: str = "logit",
    threshold: str = "flexible",
    nagq: int = 1,
    levels: Sequence[Any] | None = None,
) -> CLMMResults:
    """Fit a cumulative link mixed model (ordinal::clmm's model) by maximum likelihood.

    P(Y ≤ j) = F(θ_j − xᵀβ − zᵀb), b ~ N(0, Σ): positive β means higher categories.

    Parameters
    ----------
    formula : str
        lme4 syntax with the ordered response on the left:
        ``"severity ~ cocktail + week + (1 | subject_id)"``; any random-effect terms, or
        none (``"gpa ~ cocktail"``: a cumulative link model, ordinal::clm's, fitted by
        Newton with the exact Hessian; the log-likelihood is then exact). The
        intercept is absorbed by the thresholds (keep it in the formula; it is dropped).
    data : pandas.DataFrame
        Rows with a missing value in a used column are set aside (``excluded_rows``).
    link : {"logit", "probit", "cloglog"}, default "logit"
        F: logistic, standard normal, or 1 − exp(−eˣ).
    threshold : {"flexible", "equidistant", "symmetric"}, default "flexible"
        Threshold structure (ordinal's parameterisations and names).
    nagq : int, default 1
        1 = Laplace approximation (any random-effect structure); 2…100 = adaptive
        Gauss–Hermite quadrature with that many nodes (one scalar random effect only).
    levels : sequence, optional
        The response categories from lowest to highest. Needed for text responses; an
        ordered pandas Categorical or whole-number grades carry their own order.

    Returns
    -------
    CLMMResults

    Raises
    ------
    ModelSpecError
        Unknown link / threshold, ``nagq`` out of range or with more than one scalar
        random effect, a response with no order, fewer than 3 observed categories, a
        category that never occurs (names it and how to merge it), no intercept in the
        formula, and every formula/data problem of :func:`mesostats.mixed.design.build_design`.

    Warns
    -----
    ConvergenceWarning
        The optimiser stopped before convergence or the Hessian is not negative definite.
    SingularFitWarning
        A random-effect SD is 0 (names it).

    Notes
    -----
    Laplace and adaptive Gauss–Hermite approximations with exact gradients and Newton
    optimisation (see :mod:`mesostats.mixed.clmm`); Christensen (2019), *Cumulative link
    models for ordinal regression with the R package ordinal*; Pinheiro & Bates (1995).

    Examples
    --------
    >>> fit = ms.fit_clmm("rating ~ temp + contact + (1 | judge)", wine)  # doctest: +SKIP
    >>> fit.thresholds  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    link_obj = get_link(link)
    n_nodes = _check_nagq(nagq)
    if not isinstance(data, pd.DataFrame):
        raise ModelSpecError(
            f"data must be a pandas DataFrame, got {type(data).__name__}; wrap it with "
            "`pd.DataFrame(...)`."
        )
    parsed = parse_formula(formula)
    column = parsed.response
    codes, labels = ordered_codes(data, column, levels)
    structure = threshold_structure(threshold, labels)
    frame = data.copy(deep=False)
    frame[column] = codes
    design = build_design(formula, frame, family="poisson", require_random=bool(parsed.random))
    y = design.y.astype(np.intp)
    check_categories(y, labels, column)
    if "Intercept" not in design.fixed_names:
        raise ModelSpecError(
            f"Formula `{formula}` has no intercept; in a cumulative link model the thresholds "
            "take its place, so keep it (remove `0 +` / `- 1`): the coding of the covariates "
            "then matches ordinal::clmm."
        )
    keep = [j for j, name in enumerate(design.fixed_names) if name != "Intercept"]
    design = dataclasses.replace(
        design,
        family="ordinal",
        X=np.ascontiguousarray(design.X[:, keep]),
        fixed_names=tuple(design.fixed_names[j] for j in keep),
    )
    if not design.terms:
        if n_nodes > 1:
            raise ModelSpecError(
                f"nagq = {n_nodes} needs a random effect such as `(1 | subject_id)`; "
                f"`{formula}` has none (its likelihood is exact). Use nagq=1."
            )
        return _fit_without_random(design, y, link, link_obj, structure, data, keep, labels, t0)
    single = len(design.terms) == 1 and design.terms[0].q == 1
    if n_nodes > 1 and not single:
        raise ModelSpecError(
            f"nagq = {n_nodes} (adaptive Gauss–Hermite quadrature) needs a single scalar "
            "random effect such as `(1 | subject_id)`; this model has "
            f"{sum(t.q for t in design.terms)} random effects per observation. Use nagq=1 "
            "(Laplace)."
        )
    if not single:
        q = sum(t.n_levels * t.q for t in design.terms)
        if design.n * q > _DENSE_LIMIT:
            raise ModelSpecError(
                f"This random-effect structure has {q} random effects over {design.n} rows; "
                f"fit_clmm's Laplace path for several or vector-valued random effects holds "
                f"dense {design.n} × {q} matrices (~{16 * design.n * q / 1e9:.1f} GB), too "
                "large here. Fit one scalar random effect such as `(1 | subject_id)` (any "
                "size), or a subset of the data."
            )
    fit = fit_engine(design, y, design.X, link_obj, structure, n_nodes)
    n_fixed = structure.n_alpha + design.p
    singular = boundary_messages(design, fit.params[n_fixed:], 1.0, family="ordinal")
    fit.messages.extend(
        _separation_messages(
            [*structure.alpha_names, *design.fixed_names],
            fit.params[:n_fixed],
            np.sqrt(np.abs(np.diag(fit.vcov)[:n_fixed])),
        )
    )
    for msg in fit.messages:
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    for msg in singular:
        warnings.warn(msg, SingularFitWarning, stacklevel=2)
    opt = fit.optimum
    return CLMMResults(
        design=design,
        levels=labels,
        structure=structure,
        link=link,
        method="Laplace" if n_nodes == 1 else f"AGQ({n_nodes})",
        params=fit.params,
        vcov=fit.vcov,
        loglik=fit.loglik,
        modes=fit.modes,
        cond_cov=fit.cond_cov,
        intercept_position=design_intercept(keep),
        model_frame=data.loc[design.row_index, list(design.used_columns)],
        converged=opt.converged and not fit.messages,
        singular=bool(singular),
        messages=[*fit.messages, *singular],
        optimizer=OptSummary(
            method="Newton (Hessian by differences of the exact gradient)",
            n_evaluations=opt.n_evaluations,
            gradient=opt.gradient,
            newton_decrement=opt.newton_decrement,
            factorisation=fit.factorisation,
            seconds=time.perf_counter() - t0,
            details={"newton_iterations": opt.iterations},
        ).as_dict(),
    )


def _fit_without_random(
    design: Any,
    y: np.ndarray,
    link: str,
    link_obj: Any,
    structure: Any,
    data: pd.DataFrame,
    keep: list[int],
    labels: list[str],
    t0: float,
) -> CLMMResults:
    """A formula with no random term: ordinal::clm's model, by :mod:`.fixed`."""
    fit = fit_fixed(y, design.X, link_obj, structure)
    n_fixed = fit.params.size
    fit.messages.extend(
        _separation_messages(
            [*structure.alpha_names, *design.fixed_names],
            fit.params,
            np.sqrt(np.abs(np.diag(fit.vcov)[:n_fixed])),
        )
    )
    for msg in fit.messages:
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    opt = fit.optimum
    return CLMMResults(
        design=design,
        levels=labels,
        structure=structure,
        link=link,
        method="ML (no random effects)",
        params=fit.params,
        vcov=fit.vcov,
        loglik=fit.loglik,
        modes=[],
        cond_cov=[],
        intercept_position=design_intercept(keep),
        model_frame=data.loc[design.row_index, list(design.used_columns)],
        converged=opt.converged and not fit.messages,
        singular=False,
        messages=list(fit.messages),
        optimizer=OptSummary(
            method="Newton (exact Hessian)",
            n_evaluations=opt.n_evaluations,
            gradient=opt.gradient,
            newton_decrement=opt.newton_decrement,
            factorisation="none (no random effects)",
            seconds=time.perf_counter() - t0,
            details={"newton_iterations": opt.iterations},
        ).as_dict(),
    )


def _separation_messages(names: list[str], est: np.ndarray, se: np.ndarray) -> list[str]:
    """Estimates running off to infinity: huge on the latent scale and not estimable."""
    return [
        f"The estimate of `{name}` is {b:.3g} (SE {s:.3g}): it runs off to infinity, "
        "usually because the rows it singles out all fall in the top or bottom category "
        "(separation), or a category next to a threshold is (nearly) empty. Merge sparse "
        "categories, or drop or recode that term."
        for name, b, s in zip(names, est, se, strict=True)
        if abs(b) > _HUGE and not s < abs(b)
    ]


def design_intercept(keep: list[int]) -> int:
    """Position of the intercept in the full fixed-effects matrix (the one left out)."""
    full = set(range(len(keep) + 1))
    return int(next(iter(full - set(keep))))
