"""Checks and messages of the GLMM fit: family, nAGQ, separation, singular fits."""

from __future__ import annotations

from typing import Any

import numpy as np

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.design import MixedDesign
from mesostats.mixed.laplace import (
    FloatArray,
)
from mesostats.mixed.quadrature import MAX_NODES

__all__ = []


# --------------------------------------------------------------------------- checks
_FAMILIES = ("binomial", "poisson", "negative_binomial")
#: other spellings of the NB2 family (glmmTMB's and common names)
_ALIASES = {"nbinom2": "negative_binomial", "negbin": "negative_binomial"}


def _check_family(family: object) -> str:
    name = str(family).strip().lower() if isinstance(family, str) else None
    name = _ALIASES.get(name or "", name)
    if name in _FAMILIES:
        return name
    if name == "gaussian":
        raise ModelSpecError(
            "family='gaussian' is a linear mixed model: use `ms.fit_lmm(formula, data)`."
        )
    raise ModelSpecError(
        f"Unknown family {family!r}. fit_glmm fits family='binomial' (0/1 outcomes or "
        "cbind(successes, failures), logit link), family='poisson' (counts, log link) or "
        "family='negative_binomial' (overdispersed counts, NB2, log link)."
    )


def _check_nagq(nagq: object) -> int:
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)):
        raise ModelSpecError(
            f"nagq must be a whole number between 1 and {MAX_NODES}, got {nagq!r}. Use nagq=1 "
            "(Laplace) or e.g. nagq=25 (adaptive Gauss–Hermite quadrature)."
        )
    if not 1 <= int(nagq) <= MAX_NODES:
        raise ModelSpecError(
            f"nagq must be between 1 and {MAX_NODES}, got {nagq}. Use nagq=1 (Laplace) or "
            "a moderate number of quadrature nodes such as 15 or 25."
        )
    return int(nagq)


def _check_quadrature_structure(design: MixedDesign, nagq: int) -> None:
    terms = design.terms
    if nagq == 1 or (len(terms) == 1 and terms[0].q == 1):
        return
    listing = " + ".join(f"({' + '.join(t.names)} | {t.group})" for t in terms)
    raise ModelSpecError(
        f"nagq={nagq} (adaptive Gauss–Hermite quadrature) needs exactly one scalar random "
        f"effect, such as `(1 | subject)`; this model has {listing}. Use nagq=1 (Laplace) "
        "for vector-valued or several random effects."
    )


def _separated_columns(design: MixedDesign, family: str) -> list[tuple[int, tuple[str, int]]]:
    """Indicator columns of X whose rows all have the boundary outcome: (column, (side, rows)).

    An indicator column (values 0/1, the intercept included) whose rows all have y = 0 (or,
    binomial, all y = 1) pushes its coefficient to ∓∞: (quasi-)complete separation (Albert &
    Anderson 1984, *Biometrika* 71(1)). When the intercept is separated (no events at all),
    only the intercept is reported.
    """
    X, y = design.X, design.y
    has_trials = design.prior_weights > 0
    found: list[tuple[int, tuple[str, int]]] = []
    for j in range(design.p):
        col = X[:, j]
        if not np.all((col == 0) | (col == 1)):
            continue
        rows = (col == 1) & has_trials
        if not rows.any():
            continue
        if np.all(y[rows] == 0):
            found.append((j, ("low", int(rows.sum()))))
        elif family == "binomial" and np.all(y[rows] == 1):
            found.append((j, ("high", int(rows.sum()))))
    intercept = [f for f in found if design.fixed_names[f[0]] == "Intercept"]
    return intercept or found


def _separation_message(name: str, side: str, n_rows: int, estimate: float, family: str) -> str:
    outcome = {"low": "0 (no events)" if family == "binomial" else "0", "high": "1 (all events)"}
    where = "every row" if name == "Intercept" else f"every row with `{name}` = 1"
    return (
        f"Separation: the outcome is {outcome[side]} in {where} ({n_rows} rows), so the "
        f"estimate of `{name}` ({estimate:.3g}) runs off towards "
        f"{'-' if side == 'low' else '+'}infinity; its standard error is reported as inf. "
        "Merge that level with another, drop the covariate, or use a penalised (Firth-type) "
        "or Bayesian fit."
    )


def _large_estimates(
    design: MixedDesign, beta: FloatArray, se: FloatArray, flagged: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Coefficients implying an effect of > 10 link units per SD of their covariate:
    (message, separation record) pairs."""
    messages: list[tuple[str, dict[str, Any]]] = []
    sd_x = design.X.std(axis=0)
    for j, name in enumerate(design.fixed_names):
        if name in flagged or name == "Intercept":
            continue
        scale = sd_x[j] if sd_x[j] > 0 else 1.0
        if abs(beta[j]) * scale > 10.0:
            text = (
                f"The estimate of `{name}` is {beta[j]:.3g} (SE {se[j]:.3g}), i.e. "
                f"{abs(beta[j]) * scale:.3g} link units per SD of the covariate: this points to "
                "(quasi-)complete separation (the covariate predicts the outcome perfectly). "
                "Check the cross-tabulation of outcome and covariate; consider a penalised fit."
            )
            record = {
                "kind": "quasi",
                "term": name,
                "side": "low" if beta[j] < 0 else "high",
                "estimate": float(beta[j]),
            }
            messages.append((text, record))
    return messages


def _group_separation(
    design: MixedDesign, family: str, theta: FloatArray
) -> list[tuple[str, dict[str, Any]]]:
    """A huge between-group SD together with groups whose outcomes all sit at one extreme:
    (message, separation record) pairs."""
    messages: list[tuple[str, dict[str, Any]]] = []
    counted = design.prior_weights > 0
    for term, lam in zip(design.terms, design.lambda_blocks(theta), strict=True):
        sd = np.sqrt(np.diag(lam @ lam.T))
        if not np.any(sd > 10.0):
            continue
        rows = np.bincount(term.codes, weights=counted, minlength=term.n_levels)
        above_zero = np.bincount(
            term.codes, weights=counted & (design.y > 0), minlength=term.n_levels
        )
        extreme = (rows > 0) & (above_zero == 0)
        if family == "binomial":
            below_one = np.bincount(
                term.codes, weights=counted & (design.y < 1), minlength=term.n_levels
            )
            extreme |= (rows > 0) & (below_one == 0)
        n_extreme = int(extreme.sum())
        labels = ", ".join(str(v) for v in term.levels[extreme][:5])
        more = f" and {n_extreme - 5} more" if n_extreme > 5 else ""
        text = (
            f"The random-effect SD for `{term.group}` is {float(sd.max()):.3g} on the link "
            f"scale, implausibly large: {n_extreme} of {term.n_levels} levels have outcomes all "
            f"at one extreme (e.g. {labels}{more}), which pushes their conditional modes "
            "towards ±infinity. Check the data of these groups, add group-level covariates, "
            "or constrain the SD (e.g. a Bayesian prior)."
        )
        record = {
            "kind": "group",
            "term": term.group,
            "levels": [str(v) for v in term.levels[extreme]],
            "sd": float(sd.max()),
        }
        messages.append((text, record))
    return messages
