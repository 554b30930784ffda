"""One rule for variance components on their boundary, and one way to say it.

The rule is lme4's ``isSingular(tol = 1e-4)`` (Bates et al. 2015, *J. Stat. Softw.* 67(1),
§3.1): a fit is singular when a diagonal element of a relative covariance factor Λ is below
:data:`SINGULAR_TOL`. In a linear model Λ is relative to the residual SD σ, so that is a
between-group SD below 1e-4·σ; in a generalized model (no σ) an SD below 1e-4 on the link
scale. A block with a small diagonal element but no SD at zero has a correlation at ±1.

:func:`boundary_components` applies the rule and returns records the domain layer can word
for people; :func:`boundary_message` is the engines' one wording (what, the value, why, what
to do). Both engines (:mod:`mesostats.mixed.lmm`, :mod:`mesostats.mixed.glmm`) and the
optimisers' boundary snapping use this tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mesostats.mixed.design import MixedDesign, RandomTerm

__all__ = [
    "SINGULAR_TOL",
    "BoundaryComponent",
    "boundary_components",
    "boundary_message",
    "boundary_messages",
]

#: lme4's ``isSingular`` tolerance on the diagonal of Λ.
SINGULAR_TOL = 1e-4


@dataclass(frozen=True)
class BoundaryComponent:
    """A variance component on its boundary: an SD at 0 or a correlation at ±1.

    ``value`` is the SD (on the response or link scale) or the correlation; ``other`` is the
    second term of a correlation.
    """

    group: str
    kind: Literal["sd", "cor"]
    term: str
    value: float
    other: str | None = None


def boundary_components(
    design: MixedDesign, theta: np.ndarray, sigma: float = 1.0
) -> list[BoundaryComponent]:
    """The components of a fit that lie on their boundary (lme4's rule, see module doc).

    ``sigma``: the residual SD of a linear model (Λ is relative to it); 1 for a GLMM.
    """
    out: list[BoundaryComponent] = []
    for term, lam in zip(design.terms, design.lambda_blocks(theta), strict=True):
        if not np.any(np.abs(np.diag(lam)) < SINGULAR_TOL):
            continue
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        zero = [i for i in range(term.q) if sd[i] < SINGULAR_TOL * max(sigma, 1e-300)]
        out += [BoundaryComponent(term.group, "sd", term.names[i], float(sd[i])) for i in zero]
        if not zero:
            corr = cov / np.outer(sd, sd)
            flat = int(np.argmax(np.abs(np.tril(corr, -1))))
            i, j = divmod(flat, term.q)
            out.append(
                BoundaryComponent(
                    term.group, "cor", term.names[j], float(corr[i, j]), term.names[i]
                )
            )
    return out


def _remaining(design: MixedDesign, comp: BoundaryComponent, zero: set[str]) -> list[str]:
    """The other random-effect columns of the component's group that are not at zero."""
    terms: list[RandomTerm] = [t for t in design.terms if t.group == comp.group]
    return [n for t in terms for n in t.names if n != comp.term and n not in zero]


def boundary_message(
    design: MixedDesign,
    comp: BoundaryComponent,
    *,
    family: str,
    zero: set[str] | None = None,
) -> str:
    """The engines' wording of one boundary component: what, its value, why, what to try.

    ``zero``: the names of the group's other SDs at zero (left out of the suggested refit).
    """
    if comp.kind == "cor":
        columns = " + ".join(
            n if n != "Intercept" else "1"
            for t in design.terms
            if t.group == comp.group
            for n in t.names
        )
        return (
            f"Correlation of `{comp.term}` and `{comp.other}` within `{comp.group}` is "
            f"{comp.value:.4f} (on the boundary ±1): the random effects are not separately "
            f"identified. Refit with uncorrelated effects `({columns} || {comp.group})` or drop "
            "a random slope."
        )
    what = (
        "Random-intercept SD" if comp.term == "Intercept" else f"Random-slope SD for `{comp.term}`"
    )
    others = _remaining(design, comp, zero or set())
    if others:
        alt = " + ".join("1" if o == "Intercept" else o for o in others)
        alt = alt if "Intercept" in others else "0 + " + alt
        refit = f"Refit with `({alt} | {comp.group})`"
    else:
        expr = "1" if comp.term == "Intercept" else f"0 + {comp.term}"
        model = "an ordinary linear model" if family == "gaussian" else "an ordinary GLM"
        refit = f"Refit without the term `({expr} | {comp.group})` ({model} gives the same fit)"
    noise = "the residual noise" if family == "gaussian" else f"the {family} variation"
    return (
        f"{what} within `{comp.group}` is {comp.value:.3g} (on the boundary): the data show no "
        f"between-group variation beyond {noise}. {refit}, or keep the term if the design calls "
        "for it (the estimates are valid, but this SD has no Wald interval)."
    )


def boundary_messages(
    design: MixedDesign, theta: np.ndarray, sigma: float, *, family: str
) -> list[str]:
    """Every boundary component of a fit, worded by :func:`boundary_message`."""
    comps = boundary_components(design, theta, sigma)
    zero_by_group: dict[str, set[str]] = {}
    for c in comps:
        if c.kind == "sd":
            zero_by_group.setdefault(c.group, set()).add(c.term)
    return [
        boundary_message(design, c, family=family, zero=zero_by_group.get(c.group, set()))
        for c in comps
    ]
