"""Tables of a fitted model's parameters, as the report shows them: fixed effects, variance
components, and the variability components with their confidence intervals."""

from __future__ import annotations

from typing import Any

from mesostats._display import Table, format_interval, format_number, format_p, is_missing
from mesostats.reporting.vocabulary import component_label

__all__ = ["components_table", "fixed_effects_table", "variance_table"]


def fixed_effects_table(model: Any, caption: str) -> Table:
    """A MixedResults' fixed effects, formatted (estimate, SE, df, p, 95 % CI)."""
    fe = model.fixed_effects
    rows = [
        (
            str(term),
            format_number(r["estimate"]),
            format_number(r["std_error"]),
            format_number(r["df"]),
            format_p(r["p_value"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
        )
        for term, r in fe.iterrows()
    ]
    return Table.of(
        ["Term", "Estimate", "Std. error", "df", "p", "95 % CI (Wald)"],
        rows,
        caption=caption,
        numeric=[False, True, True, True, True, True],
    )


def variance_table(model: Any, caption: str) -> Table:
    """A MixedResults' variance components in words (SD or correlation, no intervals)."""
    vc = model.variance_components
    rows = []
    for r in vc.itertuples(index=False):
        kind = "cor" if not is_missing(r.var2) else "sigma" if r.group == "Residual" else "sd"
        rows.append(
            (
                component_label(str(r.group), r.var1, r.var2, kind, model.family),
                format_number(r.sdcor),
            )
        )
    return Table.of(["Component", "Estimate"], rows, caption=caption, numeric=[False, True])


def components_table(variation: Any, caption: str) -> Table:
    """Variability components with their 95 % CIs, in words."""
    comp = variation.components
    family = variation.model.family
    rows = [
        (
            component_label(str(r.group), r.var1, r.var2, str(r.kind), family),
            format_number(r.estimate),
            format_interval(r.ci_lower, r.ci_upper),
            str(r.method),
        )
        for r in comp.itertuples(index=False)
    ]
    return Table.of(
        ["Component", "Estimate", "95 % CI", "Interval method"],
        rows,
        caption=caption,
        numeric=[False, True, True, False],
    )
