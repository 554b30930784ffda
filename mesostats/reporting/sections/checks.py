"""Section "Model checks" of the report: does each model describe the data?

For the regrowth and the side-effect model: the table of :func:`mesostats.check_model`
(simulated-residual tests after DHARMa, person-effect normality), its four-panel figure, and
one sentence per flagged test. Every flagged test also goes to the report's banner (kind
``"model check"``), because a model that does not fit qualifies every number drawn from it.
Each check runs as a guarded step: a failure shows its reason instead of the check.
"""

from __future__ import annotations

from typing import Any

from mesostats._display import Table, format_number, format_p
from mesostats.checks import ModelCheck, check_model
from mesostats.reporting.figures import FIGURE_DPI, png_data_uri
from mesostats.reporting.steps import Failure, Figure, MessageLog, guarded

__all__ = ["CHECK_SIMULATIONS", "checks_section"]

#: Simulated data sets per model check in the report (DHARMa's default).
CHECK_SIMULATIONS = 250

_MODELS = (("regrowth", "Regrowth model"), ("side", "Side-effect model"))

_READABLE = {
    "uniformity": "Residuals uniform (KS)",
    "dispersion": "Dispersion (observed / simulated)",
    "zero_inflation": "Zeros (observed / simulated)",
    "outliers": "Outliers (observed / simulated)",
    "residual_trend": "Trend with fitted value (observed / simulated)",
    "person_effects_normality": "Person effects normal (Shapiro–Wilk W)",
}


def _table(check: ModelCheck, what: str) -> Table:
    rows = [
        (
            _READABLE.get(r["test"], r["test"]),
            format_number(r["statistic"], style="engine"),
            format_p(r["p_value"]),
            "problem" if r["verdict"] == "problem" else "ok",
        )
        for r in check.tests.to_dict("records")
    ]
    return Table.of(
        ["Check", "Statistic", "p", "Verdict"],
        rows,
        caption=f"{what}: tests of the scaled simulated residuals ({check.n_sim} simulated "
        f"data sets, seed {check.seed}); a problem is p < 0.05.",
        numeric=[False, True, True, False],
    )


def _figure(check: ModelCheck, what: str) -> Figure:
    fig = check.plot()
    width = int(fig.get_figwidth() * FIGURE_DPI)
    return Figure(
        uri=png_data_uri(fig),
        alt=f"{what}: residuals against fitted values, Q–Q plots and person influence",
        caption="Top: scaled residuals against the fitted value (they should spread evenly "
        "around 0.25, 0.5 and 0.75) and their Q–Q plot against the uniform distribution "
        "(points on the line). Bottom: Q–Q plot of the person effects, and how much leaving "
        f"out each person moves {check.key_effect or 'the key effect'}, in standard errors.",
        width=width,
    )


def _one(fit: Any, what: str, seed: int, log: MessageLog) -> dict[str, Any]:
    source = f"Model checks ({what.lower()})"
    check, failure = guarded(
        log, source, lambda: check_model(fit, n_sim=CHECK_SIMULATIONS, seed=seed)
    )
    if check is None:
        return {"what": what, "failure": failure or Failure(source, "not computed")}
    for text in check.problems:
        log.add(source, "model check", text)
    figure, fig_failure = guarded(log, f"{source} figure", lambda: _figure(check, what))
    return {
        "what": what,
        "failure": None,
        "table": _table(check, what),
        "figure": figure if figure is not None else fig_failure,
        "problems": list(check.problems),
    }


def checks_section(fits: dict[str, Any], seed: int, log: MessageLog) -> dict[str, Any]:
    """The checks of every fitted model of the report (``fits`` from ``fit_everything``)."""
    models = []
    for key, what in _MODELS:
        fit, failure = fits.get(key, (None, None))
        if fit is None:
            models.append({"what": what, "failure": failure or Failure(what, "not fitted")})
        else:
            models.append(_one(fit, what, seed, log))
    return {"models": models, "n_sim": CHECK_SIMULATIONS}
