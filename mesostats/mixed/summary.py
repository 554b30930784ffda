"""The summary of a fitted mixed model in lme4's ``summary`` layout: model facts, random
effects (variance, SD, correlation) and fixed effects (estimate, SE, df, statistic, p, CI), in
the engine style of :mod:`mesostats._display`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mesostats._display import Summary, Table, format_interval, format_number, format_p

if TYPE_CHECKING:  # typing only: results imports this module at run time
    from mesostats.mixed.results import MixedResults

__all__ = ["mixed_summary"]


def _num(value: Any, digits: int = 4) -> str:
    return format_number(value, style="engine", digits=digits)


def _title(r: MixedResults) -> str:
    if r.family == "gaussian":
        crit = "REML" if r.method == "REML" else "maximum likelihood"
        return f"Linear mixed model fit by {crit}"
    return (
        f"Generalized linear mixed model fit by maximum likelihood ({r.method}) "
        f"[family {r.family}, link {r.link}]"
    )


def _info(r: MixedResults) -> tuple[tuple[str, str], ...]:
    crit = "REML criterion" if r.method == "REML" else "deviance"
    groups = ", ".join(f"{g}: {k}" for g, k in r.ngroups.items())
    rows = [
        ("Formula", r.formula),
        ("Observations", str(r.nobs)),
        ("Groups", groups),
        ("logLik", _num(r.loglik)),
        ("AIC", _num(r.aic)),
        ("BIC", _num(r.bic)),
        (crit, _num(r.deviance)),
        ("Converged", "yes" if r.converged else "NO"),
        ("Singular", "yes" if r.singular else "no"),
    ]
    if r.dispersion is not None:
        rows.append(("Dispersion k (NB2)", f"{_num(r.dispersion)} (SE {_num(r.dispersion_se)})"))
    excluded = len(r.design.excluded_rows)
    if excluded:
        rows.append(("Rows not fitted", f"{excluded} (see excluded_rows)"))
    return tuple(rows)


def _random_table(r: MixedResults) -> Table:
    rows = []
    for rec in r.variance_components.itertuples(index=False):
        var1 = rec.var1 if isinstance(rec.var1, str) else ""
        if isinstance(rec.var2, str):
            rows.append((str(rec.group), f"{var1} ~ {rec.var2}", "", "", _num(rec.sdcor, 3)))
        else:
            rows.append((str(rec.group), var1, _num(rec.vcov), _num(rec.sdcor), ""))
    columns = ("Group", "Name", "Variance", "Std.Dev.", "Corr.")
    return Table.of(
        columns, rows, caption="Random effects", numeric=(False, False, True, True, True)
    )


def _fixed_table(r: MixedResults) -> Table:
    fe = r.fixed_effects
    stat = "t" if np.isfinite(fe["df"]).all() else "z"
    return coefficient_table(fe, "Fixed effects", stat)


def coefficient_table(table: Any, caption: str, stat: str, *, with_df: bool = True) -> Table:
    """A Wald table (:func:`mesostats.mixed.wald.wald_table`) for a printed summary: term,
    estimate, SE, df (``with_df``), ``stat`` value (``"t"`` or ``"z"``), p and 95 % CI."""
    rows = [
        (
            str(name),
            _num(rec["estimate"]),
            _num(rec["std_error"]),
            *((_num(rec["df"], 2),) if with_df else ()),
            _num(rec["statistic"], 3),
            format_p(rec["p_value"], style="engine"),
            format_interval(rec["ci_lower"], rec["ci_upper"], style="engine"),
        )
        for name, rec in table.iterrows()
    ]
    columns = (
        "Term",
        "Estimate",
        "Std. Error",
        *(("df",) if with_df else ()),
        f"{stat} value",
        "p",
        "95% CI",
    )
    return Table.of(columns, rows, caption=caption, numeric=(False, *[True] * (len(columns) - 1)))


def mixed_summary(r: MixedResults) -> Summary:
    """A fit's :class:`~mesostats._display.Summary` in lme4's layout (engine style)."""
    return Summary(
        title=_title(r),
        info=_info(r),
        tables=(_random_table(r), _fixed_table(r)),
        notes=tuple(r.messages),
        notes_title="Messages",
    )
