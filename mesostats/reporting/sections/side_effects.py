"""Section 4 of the report, side effects by ingredient: observed rates with exact intervals,
odds ratios of the binomial mixed model beside the GEE population-average ones, every adverse
event by term and severity, and every serious adverse event verbatim."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.axes import Axes

from mesostats import plots
from mesostats._display import (
    MISSING,
    Table,
    format_estimate,
    format_interval,
    format_number,
    format_p,
    format_percent,
    format_percent_range,
)
from mesostats.reporting.figures import draw_figure
from mesostats.reporting.model_tables import fixed_effects_table
from mesostats.reporting.steps import Failure, MessageLog, guarded

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["side_effect_section"]


def _rate_table(rates: pd.DataFrame) -> Table:
    wide = rates.set_index(["level", "name", "per"])
    keys = list(dict.fromkeys(zip(rates["level"], rates["name"], strict=True)))
    level_words = {"overall": "All injections", "ingredient": "With", "cocktail": "Cocktail"}
    rows = []
    for level, name in keys:
        s = wide.loc[(level, name, "session")]
        p = wide.loc[(level, name, "person")]
        label = "All assessed sessions" if level == "overall" else f"{level_words[level]} {name}"
        rows.append(
            (
                label,
                f"{int(s['n_with_event']):,} / {int(s['n_assessed']):,}",
                _rate_with_interval(s),
                f"{int(p['n_with_event']):,} / {int(p['n_assessed']):,}",
                _rate_with_interval(p),
                f"{int(s['n_events']):,}",
            )
        )
    return Table.of(
        [
            "Group",
            "Sessions with an event",
            "Rate per session (95 % CI)",
            "People with an event",
            "Rate per person (95 % CI)",
            "Events recorded",
        ],
        rows,
        caption="Observed side effects at assessed injection sessions, with exact "
        "(Clopper–Pearson) 95 % confidence intervals.",
        numeric=[False, True, True, True, True, True],
    )


def _rate_with_interval(rate: pd.Series) -> str:
    """``18.3 % (15.0–22.1 %)``: a rate with its exact interval."""
    interval = format_percent_range(rate["ci_lower"], rate["ci_upper"])
    return f"{format_percent(rate['rate'])} ({interval})"


def _odds_ratio_table(fit: Any) -> Table:
    effects = fit.ingredient_effects
    gee = fit.gee.table.set_index("ingredient") if fit.gee is not None else None
    rows = []
    for r in effects.itertuples(index=False):
        if gee is not None and r.ingredient in gee.index:
            g = gee.loc[r.ingredient]
            pa = format_number(g["population_average_or"])
            pa_ci = format_interval(g["pa_ci_lower"], g["pa_ci_upper"])
        else:
            pa, pa_ci = MISSING, MISSING
        rows.append(
            (
                r.ingredient,
                format_number(r.odds_ratio),
                format_interval(r.ci_lower, r.ci_upper),
                format_p(r.p_value),
                format_p(r.p_adjusted),
                pa,
                pa_ci,
            )
        )
    return Table.of(
        [
            "Ingredient",
            "Odds ratio (same person)",
            "95 % CI",
            "p",
            "Holm-adjusted p",
            "Population-average odds ratio (GEE)",
            "95 % CI (GEE)",
        ],
        rows,
        caption="Odds of a side effect at a session with vs without each ingredient. Above 1: "
        "more side effects with the ingredient.",
        numeric=[False, True, True, True, True, True, True],
    )


def _event_table(study: Study) -> Table:
    ae = study.adverse_events
    severity = ae["severity"].astype(str) if "severity" in ae else pd.Series("", index=ae.index)
    crosstab = pd.crosstab(ae["event"].astype(str), severity)
    levels = [c for c in ("mild", "moderate", "severe") if c in crosstab.columns]
    cross: dict[Any, Any] = crosstab.to_dict("index")
    serious = ae["serious"].fillna(False).astype(bool).groupby(ae["event"].astype(str)).sum()
    total = crosstab.sum(axis=1).sort_values(ascending=False)
    rows = [
        (
            str(event),
            format_number(int(n)),
            *(format_number(int(cross[event][c])) for c in levels),
            format_number(int(serious.get(event, 0))),
        )
        for event, n in total.items()
    ]
    return Table.of(
        ["Event", "Recorded", *levels, "Serious"],
        rows,
        caption="Every adverse event recorded, by coded term and severity.",
        numeric=[False, *([True] * (len(levels) + 2))],
    )


def _serious_table(study: Study) -> Table:
    ae = study.adverse_events
    serious = ae[ae["serious"].fillna(False).astype(bool).to_numpy(dtype=bool)]
    sessions = study.sessions.drop_duplicates(["subject_id", "visit"])
    serious = serious.merge(
        sessions[["subject_id", "visit", "day", "cocktail_id"]],
        on=["subject_id", "visit"],
        how="left",
    )
    rows = [
        (
            r["subject_id"],
            format_number(r["visit"]),
            format_number(r["day"]),
            r["cocktail_id"],
            r["event"],
            r.get("severity"),
            "yes" if bool(r.get("related", False)) else "no",
            r.get("verbatim"),
        )
        for r in serious.to_dict("records")
    ]
    return Table.of(
        ["Subject", "Visit", "Day", "Cocktail", "Event", "Severity", "Related", "Verbatim text"],
        rows,
        caption="Every serious adverse event, with the investigator's verbatim description.",
        numeric=[False, True, True, False, False, False, False, False],
    )


def side_effect_section(
    study: Study,
    fit: Any,
    failure: Failure | None,
    variation: Any,
    log: MessageLog,
) -> dict[str, Any]:
    """Section 4: adverse-event tables (always) and, when the side-effect model was fitted,
    rates, odds ratios beside the GEE ones, the median odds ratio and a figure."""
    events, _ = guarded(log, "Table of adverse events", lambda: _event_table(study))
    serious, _ = guarded(log, "Listing of serious adverse events", lambda: _serious_table(study))
    n_serious = len(serious.rows) if serious is not None else 0
    section: dict[str, Any] = {
        "failure": failure,
        "events": events,
        "serious": serious,
        "n_serious": n_serious,
        "n_events": len(study.adverse_events),
    }
    if fit is None:
        section["failure"] = failure or Failure("Side-effect model", "not fitted")
        return section

    def draw(ax: Axes) -> Any:
        return plots.side_effect_rates(fit, ax=ax)

    mor = getattr(variation, "median_odds_ratio", None)
    section.update(
        {
            "formula": fit.formula,
            "method": fit.model.method,
            "rates": _rate_table(fit.rates),
            "odds_ratios": _odds_ratio_table(fit),
            "gee_explanation": fit.gee.explanation if fit.gee is not None else "",
            "mor": None
            if mor is None
            else format_estimate(mor.estimate, mor.ci_lower, mor.ci_upper),
            "figure": draw_figure(
                log,
                "Figure of side-effect rates",
                draw,
                size=(8.0, 3.0),
                alt="Per-session side-effect rates by ingredient and cocktail with 95 % CIs",
                caption="Share of assessed injection sessions with a side effect, with exact "
                "95 % confidence intervals.",
            ),
            "fixed": fixed_effects_table(fit.model, "Every fixed effect (log-odds scale)."),
            "notes": list(fit.notes),
        }
    )
    return section
