"""Graded outcomes section: side-effect severity by ingredient and the global photographic
assessment by cocktail (cumulative-logit models of :func:`mesostats.fit_severity` and
:func:`mesostats.fit_global_assessment`): cumulative odds ratios, the probability of each
grade per cocktail (stacked bars) beside the observed shares, and the models' notes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.axes import Axes

from mesostats import plots
from mesostats._display import Table, format_interval, format_number, format_p, format_percent
from mesostats.domain import fit_global_assessment, fit_severity
from mesostats.reporting.figures import draw_figure
from mesostats.reporting.model_tables import fixed_effects_table
from mesostats.reporting.steps import Failure, MessageLog, guarded, log_model

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["graded_section"]


def _or_table(effects: pd.DataFrame, name: str, heading: str, caption: str) -> Table:
    rows = [
        (
            str(r[name]),
            format_number(r["odds_ratio"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
            format_p(r["p_value"]),
            format_p(r["p_adjusted"]),
        )
        for r in effects.to_dict("records")
    ]
    return Table.of(
        [heading, "Cumulative odds ratio", "95 % CI", "p", "Holm-adjusted p"],
        rows,
        caption=caption,
        numeric=[False, True, True, True, True],
    )


def _probability_table(fit: Any, by: str, mean: str, caption: str) -> Table:
    observed = fit.observed.set_index(by)
    rows = []
    for r in fit.probabilities.to_dict("records"):
        seen = observed.loc[r[by]]
        rows.append(
            (
                str(r[by]),
                *(f"{format_percent(r[g])} ({format_percent(seen[g])})" for g in fit.levels),
                format_number(r[mean]),
                format_number(int(seen["n"])),
            )
        )
    return Table.of(
        ["Cocktail", *fit.levels, "Mean", "n"],
        rows,
        caption=caption,
        numeric=[False, *([True] * (len(fit.levels) + 2))],
    )


def _part(
    log: MessageLog, source: str, fit: Any, failure: Failure | None, kind: str
) -> dict[str, Any]:
    if fit is None:
        return {"failure": failure or Failure(source, "not fitted")}
    log_model(log, source, fit)
    severity = kind == "severity"

    def bars(ax: Axes) -> Any:
        return plots.grade_probabilities(fit, ax=ax)

    def forest(ax: Axes) -> Any:
        return plots.cumulative_odds_ratios(fit, ax=ax)

    n = len(fit.probabilities)
    return {
        "failure": None,
        "formula": fit.formula,
        "method": fit.model.method,
        "grades": " < ".join(fit.levels),
        "odds_ratios": _or_table(
            fit.ingredient_effects if severity else fit.cocktail_effects,
            "ingredient" if severity else "cocktail",
            "Ingredient" if severity else "Cocktail",
            "Odds of a worse grade with vs without each ingredient, the same at every cut of "
            "the scale (same person). Above 1: more severe side effects with the ingredient."
            if severity
            else f"Odds of a higher (better) score with each cocktail vs {fit.control}, the "
            "same at every cut of the scale. Above 1: better than the control.",
        ),
        "probabilities": _probability_table(
            fit,
            "cocktail_id" if severity else "cocktail",
            "mean_grade" if severity else "mean_score",
            "Model probability of each grade per cocktail, for a typical person of the "
            "population (marginal over persons); the observed share in brackets. Mean: "
            + ("expected grade, 0 = none." if severity else "expected score."),
        ),
        "figure": draw_figure(
            log,
            f"Figure of {source.lower()} probabilities",
            bars,
            size=(8.0, 1.2 + 0.45 * n),
            alt=f"Stacked probability of each grade per cocktail ({source.lower()})",
            caption="Probability of each grade per cocktail (model, marginal over persons).",
        ),
        "forest": draw_figure(
            log,
            f"Figure of {source.lower()} odds ratios",
            forest,
            size=(6.0, 0.8 + 0.5 * n),
            alt=f"Cumulative odds ratios with 95 % CIs ({source.lower()})",
            caption="Cumulative odds ratios with 95 % confidence intervals (log scale).",
        ),
        "fixed": fixed_effects_table(fit.model, "Every fixed effect (latent log-odds scale)."),
        "notes": list(fit.notes),
    }


def graded_section(study: Study, log: MessageLog) -> dict[str, Any]:
    """Severity (when adverse events carry grades) and global assessment (when ``gpa_score``
    is recorded), each fitted as a guarded step. The global assessment uses every visit
    with a score (visit as a factor, a random intercept per person): it borrows strength
    across visits and stays finite when one cocktail's scores at the last visit are all
    at the top of the scale (separation)."""
    section: dict[str, Any] = {}
    if len(study.adverse_events):
        fit, failure = guarded(log, "Severity model", lambda: fit_severity(study))
        section["severity"] = _part(log, "Severity model", fit, failure, "severity")
    else:
        section["severity"] = {"failure": Failure("Severity model", "no adverse event recorded")}
    if "gpa_score" in study.sessions.columns and study.sessions["gpa_score"].notna().any():
        gpa, gpa_failure = guarded(
            log, "Global assessment model", lambda: fit_global_assessment(study, visit="all")
        )
        part = _part(log, "Global assessment model", gpa, gpa_failure, "gpa")
        part["visit"] = None if gpa is None else gpa.visit
        section["gpa"] = part
    else:
        section["gpa"] = {"failure": Failure("Global assessment model", "no gpa_score recorded")}
    return section
