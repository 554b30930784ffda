"""Section 3 of the report, regrowth by ingredient: each ingredient's extra change per week
(sentences, a table and a forest plot), every fixed effect and the variance components of
the regrowth model."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.axes import Axes

from mesostats import plots
from mesostats._display import (
    Table,
    format_interval,
    format_number,
    format_p,
    format_signed,
)
from mesostats.reporting.figures import draw_figure
from mesostats.reporting.model_tables import fixed_effects_table, variance_table
from mesostats.reporting.steps import Failure, MessageLog
from mesostats.reporting.vocabulary import unit_of

__all__ = ["regrowth_section"]


def _horizon_week(data: pd.DataFrame) -> float:
    """The last scheduled post-baseline week: the highest median week of a visit."""
    weeks = data.groupby("visit")["week"].median() if "visit" in data else data["week"]
    return round(float(weeks.max()), 1)


def _effect_sentences(effects: pd.DataFrame, unit_text: str, horizon: float) -> list[str]:
    unit = f" {unit_text}" if unit_text else ""
    return [
        f"{r['ingredient']}: {format_signed(r['effect'])}{unit} per week over the common trend "
        f"(95 % CI {format_interval(r['ci_lower'], r['ci_upper'])}; Holm-adjusted p "
        f"{format_p(r['p_adjusted'])}), about {format_signed(r['effect'] * horizon, 2)}{unit} over "
        f"{horizon:g} weeks."
        for r in effects.to_dict("records")
    ]


def _regrowth_effect_table(effects: pd.DataFrame, horizon: float) -> Table:
    rows = [
        (
            r["ingredient"],
            format_number(r["effect"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
            format_p(r["p_value"]),
            format_p(r["p_adjusted"]),
            format_number(r["effect"] * horizon),
        )
        for r in effects.to_dict("records")
    ]
    return Table.of(
        [
            "Ingredient",
            "Extra change per week",
            "95 % CI",
            "p",
            "Holm-adjusted p",
            f"Extra change over {horizon:g} weeks",
        ],
        rows,
        caption="Effect of each ingredient: the extra change per week in people whose cocktail "
        "contains it, over the change common to every cocktail (the placebo trend).",
        numeric=[False, True, True, True, True, True],
    )


def regrowth_section(
    fit: Any, failure: Failure | None, outcome: str, log: MessageLog
) -> dict[str, Any]:
    """Section 3: the regrowth fit's ingredient effects in sentences, a table and a forest
    plot, every fixed effect and the variance components (or why it was not fitted)."""
    if fit is None:
        return {"failure": failure or Failure("Regrowth model", "not fitted")}
    horizon = _horizon_week(fit.data)
    effects = fit.ingredient_effects
    model = fit.model

    def draw(ax: Axes) -> Any:
        return plots.forest(fit, ax=ax)

    forest = draw_figure(
        log,
        "Forest plot of ingredient effects",
        draw,
        size=(7.5, 0.45 * len(effects) + 1.3),
        alt="Extra change per week for each ingredient, with 95 % confidence intervals",
        caption="Each dot is an ingredient's extra change per week; the bar is its 95 % "
        "confidence interval. A bar that crosses 0 means the data cannot tell that "
        "ingredient's effect from none.",
    )
    return {
        "failure": None,
        "formula": fit.formula,
        "horizon": horizon,
        "sentences": _effect_sentences(effects, unit_of(outcome, fit.study.schema), horizon),
        "effects": _regrowth_effect_table(effects, horizon),
        "forest": forest,
        "fixed": fixed_effects_table(model, "Every fixed effect of the model."),
        "variance": variance_table(model, "Variance components (SDs in outcome units)."),
        "rows": f"{model.nobs:,} post-baseline visits of {model.ngroups.get('subject_id', 0):,} "
        "people",
        "notes": list(fit.notes),
    }
