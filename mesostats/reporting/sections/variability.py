"""Section 5 of the report, varied results: how much people differ (SDs with intervals, ICC,
median odds ratio), the range for one new person, responders, and each person's own estimate."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.axes import Axes

from mesostats import plots
from mesostats._display import (
    Table,
    format_estimate,
    format_interval,
    format_number,
    format_percent,
    format_percent_range,
)
from mesostats.reporting.figures import draw_figure
from mesostats.reporting.model_tables import components_table
from mesostats.reporting.steps import Failure, MessageLog, guarded
from mesostats.reporting.vocabulary import responder_threshold, unit_of

__all__ = ["RESPONDER_DRAWS", "variability_section"]


#: Simulated draws of the estimates behind the responder intervals (percentile intervals of
#: a share; 1000 draws keep their Monte Carlo error well below the reported precision).
RESPONDER_DRAWS = 1000


def _prediction_table(pi: pd.DataFrame, outcome: str, unit: str) -> Table:
    rows = [
        (
            str(r.cocktail),
            format_number(r.estimate),
            format_interval(r.ci_lower, r.ci_upper),
            format_interval(r.pi_lower, r.pi_upper),
        )
        for r in pi.sort_values("cocktail").itertuples(index=False)
    ]
    return Table.of(
        [
            "Cocktail",
            f"Average change in {outcome}" + (f" ({unit})" if unit else ""),
            "95 % CI of the average",
            "95 % range for one new person",
        ],
        rows,
        caption="The average change says how the cocktail does on average; the range for one "
        "new person says what an individual patient may expect. The range is much wider "
        "because people differ.",
        numeric=[False, True, True, True],
    )


def _responder_table(resp: pd.DataFrame) -> Table:
    rows = [
        (
            str(r.cocktail),
            format_percent(r.share, 0),
            format_percent_range(r.ci_lower, r.ci_upper, 0),
        )
        for r in resp.sort_values("cocktail").itertuples(index=False)
    ]
    return Table.of(
        ["Cocktail", "Expected share of responders", "95 % CI"],
        rows,
        caption="Expected share of people whose true change exceeds the threshold.",
        numeric=[False, True, True],
    )


def _person_flag_table(people: pd.DataFrame) -> Table:
    counts = pd.crosstab(people["cocktail"].astype(str), people["flag"].astype(str))
    order = [c for c in ("clearly responded", "uncertain", "clearly did not") if c in counts]
    order += [c for c in counts.columns if c not in order]
    rows = [
        (
            str(c),
            format_number(int(counts.loc[c].sum())),
            *(format_number(int(counts.loc[c, f])) for f in order),
        )
        for c in counts.index
    ]
    return Table.of(
        ["Cocktail", "People", *order],
        rows,
        caption="People whose own estimated change (with its 95 % interval) is clearly above "
        "0, clearly below 0, or too uncertain to tell.",
        numeric=[False, *([True] * (len(order) + 1))],
    )


def variability_section(
    regrowth: Any,
    reg_var: Any,
    reg_failure: Failure | None,
    side: Any,
    se_var: Any,
    se_failure: Failure | None,
    outcome: str,
    threshold: float | None,
    log: MessageLog,
) -> dict[str, Any]:
    """Section 5: varied results of the regrowth and of the side-effect fits (each, or why
    it could not be computed)."""
    section: dict[str, Any] = {"regrowth": None, "side_effects": None}
    if reg_var is None:
        section["regrowth_failure"] = reg_failure or Failure(
            "Varied results of regrowth", "the regrowth model could not be fitted"
        )
    else:
        section["regrowth_failure"] = None
        section["regrowth"] = _regrowth_variation(regrowth, reg_var, outcome, threshold, log)
    if se_var is None:
        section["side_effects_failure"] = se_failure or Failure(
            "Varied results of side effects", "the side-effect model could not be fitted"
        )
    else:
        section["side_effects_failure"] = None
        section["side_effects"] = _side_effect_variation(se_var, log)
    return section


def _regrowth_variation(
    fit: Any, var: Any, outcome: str, threshold: float | None, log: MessageLog
) -> dict[str, Any]:
    source = "Varied results (regrowth)"
    week = var.week
    schema = fit.study.schema
    unit = unit_of(outcome, schema)
    cut = threshold if threshold is not None else responder_threshold(outcome, schema)
    pi, pi_fail = guarded(log, source, var.prediction_interval)
    resp, resp_fail = guarded(log, source, lambda: var.responders(cut, n_sim=RESPONDER_DRAWS))
    people, people_fail = guarded(log, source, lambda: var.person_effects)
    icc = var.icc

    def caterpillar(ax: Axes) -> Any:
        return plots.caterpillar(var, ax=ax)

    def distribution(ax: Axes) -> Any:
        return plots.response_distribution(var, ax=ax)

    n_people = len(people) if people is not None else 0
    return {
        "week": week,
        "week_note": var.week_note,
        "threshold": cut,
        "components": components_table(
            var,
            f"How much people (and sites) differ, in {unit or outcome + ' units'}, "
            "with 95 % confidence intervals.",
        ),
        "icc": None
        if icc is None
        else format_estimate(icc.estimate, icc.ci_lower, icc.ci_upper, digits=2),
        "prediction": _prediction_table(pi, outcome, unit) if pi is not None else pi_fail,
        "responders": _responder_table(resp) if resp is not None else resp_fail,
        "people": _person_flag_table(people) if people is not None else people_fail,
        "caterpillar": draw_figure(
            log,
            "Caterpillar plot",
            caterpillar,
            size=(8.0, max(3.5, min(7.0, 0.03 * n_people + 2.0))),
            alt="Each person's estimated change with its 95 % interval, sorted",
            caption=f"Each person's own estimated change in {outcome} by week {week:g}, "
            "sorted, with its 95 % interval. Intervals that lie wholly above 0 are people who "
            "clearly improved.",
        ),
        "distribution": draw_figure(
            log,
            "Distribution of individual responses",
            distribution,
            size=(8.0, 3.6),
            alt="Distribution of individual responses by cocktail",
            caption=f"How true changes in {outcome} by week {week:g} are spread across people, "
            "per cocktail, as implied by the model.",
        ),
        "notes": list(var.notes),
    }


def _side_effect_variation(var: Any, log: MessageLog) -> dict[str, Any]:
    pi, pi_fail = guarded(log, "Varied results (side effects)", var.prediction_interval)
    mor = var.median_odds_ratio
    rows = []
    if pi is not None:
        rows = [
            (
                str(r.cocktail),
                format_percent(r.probability),
                format_percent(r.marginal_probability),
                format_percent_range(r.pi_lower, r.pi_upper),
            )
            for r in pi.sort_values("cocktail").itertuples(index=False)
        ]
    return {
        "components": components_table(
            var, "How much people differ in their proneness to side effects (log-odds scale)."
        ),
        "mor": None if mor is None else format_estimate(mor.estimate, mor.ci_lower, mor.ci_upper),
        "prediction": Table.of(
            [
                "Cocktail",
                "Typical person",
                "Average over people",
                "95 % range for one new person",
            ],
            rows,
            caption="Chance of a side effect at one injection session.",
            numeric=[False, True, True, True],
        )
        if pi is not None
        else pi_fail,
        "notes": list(var.notes),
    }
