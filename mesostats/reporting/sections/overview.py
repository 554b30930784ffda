"""The report's "at a glance" box: each ingredient's effect on regrowth and on side effects
in one table, and a few plain sentences on how much people differ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mesostats._display import (
    Table,
    format_estimate,
    format_interval,
    format_number,
    format_signed,
)
from mesostats.reporting.vocabulary import unit_of

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["glance"]


def glance(
    study: Study, regrowth: Any, side: Any, reg_var: Any, se_var: Any, outcome: str
) -> dict[str, Any]:
    """One table (ingredient → regrowth effect, odds ratio) and a few plain sentences."""
    unit = unit_of(outcome, study.schema) or f"{outcome} units"
    growth: dict[str, str] = {}
    if regrowth is not None:
        for r in regrowth.ingredient_effects.to_dict("records"):
            growth[r["ingredient"]] = (
                f"{format_signed(r['effect'])} ({format_interval(r['ci_lower'], r['ci_upper'])})"
            )
    odds: dict[str, str] = {}
    if side is not None:
        for r in side.ingredient_effects.to_dict("records"):
            odds[r["ingredient"]] = format_estimate(
                r["odds_ratio"], r["ci_lower"], r["ci_upper"], ci_label=""
            )
    missing_growth = "not estimated" if regrowth is not None else "model not fitted"
    missing_odds = "not estimated" if side is not None else "model not fitted"
    rows = [
        (ing, growth.get(ing, missing_growth), odds.get(ing, missing_odds))
        for ing in study.ingredients
    ]
    sentences = []
    if reg_var is not None:
        slope = reg_var.components
        hit = slope[(slope["kind"] == "sd") & (slope["var1"] == "week")]
        if len(hit):
            h = hit.iloc[0]
            sentences.append(
                f"People differ in how fast {outcome} changes: between-person SD "
                f"{format_number(h['estimate'])} {unit} per week (95 % CI "
                f"{format_interval(h['ci_lower'], h['ci_upper'])}), so one new person's result can "
                "lie far from the average (section 5)."
            )
    if se_var is not None and se_var.median_odds_ratio is not None:
        mor = se_var.median_odds_ratio
        sentences.append(
            "People differ in proneness to side effects: median odds ratio "
            f"{format_estimate(mor.estimate, mor.ci_lower, mor.ci_upper)} between two people "
            "on the same cocktail."
        )
    return {
        "table": Table.of(
            [
                "Ingredient",
                f"Regrowth: extra change per week, {unit} (95 % CI)",
                "Side effects: odds ratio (95 % CI)",
            ],
            rows,
            caption="Each ingredient's effect on regrowth (above 0: faster regrowth) and on the "
            "odds of a side effect at a session (above 1: more side effects).",
            numeric=[False, True, True],
        ),
        "sentences": sentences,
    }
