"""Family-specific response checks (binomial 0/1 or ``cbind``, Poisson counts)."""

from __future__ import annotations

import numpy as np

from mesostats.exceptions import ModelSpecError
from mesostats.formula import ParsedFormula
from mesostats.mixed.formula_eval import Columns, _constant, _evaluate_expression


# --------------------------------------------------------------------------- response
def _response(parsed: ParsedFormula, data: Columns, family: str) -> tuple[np.ndarray, np.ndarray]:
    """(y, prior weights) for the family, validated."""
    cbind = parsed.cbind
    if cbind is not None:
        if family != "binomial":
            raise ModelSpecError(
                f"`{parsed.response}` is a binomial response (successes, failures), but the "
                f"family is {family!r}. Use `fit_glmm(..., family='binomial')`."
            )
        successes = _evaluate_expression(cbind[0], data, "response (successes)")
        failures = _evaluate_expression(cbind[1], data, "response (failures)")
        _check_counts(successes, data, f"successes `{cbind[0]}`")
        _check_counts(failures, data, f"failures `{cbind[1]}`", successes_exceed=True)
        trials = successes + failures
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(trials > 0, successes / np.where(trials > 0, trials, 1.0), 0.0)
        return y, trials

    column = parsed.response
    y = _evaluate_expression(column, data, "response")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ModelSpecError(
            f"The response `{column}` is not finite in {int(bad.sum())} row(s) (first at index "
            f"{data.index[np.flatnonzero(bad)[0]]!r}, value {y[bad][0]}). Remove or fix those "
            "values."
        )
    if family == "binomial":
        wrong = (y != 0) & (y != 1)
        if wrong.any():
            i = np.flatnonzero(wrong)[0]
            raise ModelSpecError(
                f"A binomial response must be 0/1 (or True/False); `{column}` has "
                f"{int(wrong.sum())} other value(s), e.g. {y[i]:g} at index {data.index[i]!r}. "
                "For counts out of a number of trials write "
                "`cbind(successes, trials - successes) ~ ...`."
            )
    elif family in ("poisson", "negative_binomial"):
        _check_counts(y, data, f"response `{column}`")
    return y, _constant(1.0, len(y))


def _check_counts(
    values: np.ndarray, data: Columns, what: str, *, successes_exceed: bool = False
) -> None:
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        where = np.flatnonzero(bad)
        i = where[0]
        hint = " (successes exceed trials?)" if successes_exceed and values[i] < 0 else ""
        rows = ", ".join(repr(data.index[j]) for j in where[:5])
        more = f" and {len(where) - 5} more" if len(where) > 5 else ""
        raise ModelSpecError(
            f"The {what} must be non-negative whole numbers; {int(bad.sum())} row(s) are not, "
            f"e.g. {values[i]:g} at index {data.index[i]!r}{hint} (rows at index {rows}{more}). "
            "Check the counts."
        )
