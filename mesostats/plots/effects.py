"""Ingredient effects (forest plot), the distribution of responses, and side-effect rates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from scipy import stats

from mesostats.domain import event_rates
from mesostats.exceptions import ModelSpecError
from mesostats.plots.colours import (
    _NEUTRAL,
    Colour,
    _axes,
    _domain,
    _interval_rows,
    _wrong_input,
    cocktail_palette,
    ingredient_palette,
    palette,
)

if TYPE_CHECKING:
    from mesostats.domain.variation import Variability


# --------------------------------------------------------------------------- forest
def forest(
    results: Any, *, ax: Axes | None = None, colours: Mapping[str, Colour] | None = None
) -> Axes:
    """Ingredient effects with 95 % confidence intervals.

    Parameters
    ----------
    results : RegrowthResults or SideEffectResults
        Regrowth: extra change per week (outcome units) with the null line at 0. Side
        effects: subject-specific odds ratios on a log axis with the null line at 1.
    ax : Axes, optional
    colours : mapping, optional
        Ingredient → colour (default :func:`ingredient_palette`).

    Returns
    -------
    matplotlib.axes.Axes
    """
    kind, obj = _domain(results)
    if kind not in ("regrowth", "side_effects"):
        raise _wrong_input("forest", "a RegrowthResults or a SideEffectResults", results)
    table = obj.ingredient_effects
    cols = dict(colours) if colours is not None else ingredient_palette(obj.study)
    target = _axes(ax, (6.0, 0.6 + 0.5 * len(table)))
    est_col = "effect" if kind == "regrowth" else "odds_ratio"
    names = [str(n) for n in table["ingredient"]]
    est = table[est_col].to_numpy(dtype=float)
    lo, hi = table["ci_lower"].to_numpy(dtype=float), table["ci_upper"].to_numpy(dtype=float)
    _interval_rows(target, names, est, lo, hi, cols)
    if kind == "regrowth":
        target.axvline(0.0, color="0.5", linestyle="--", linewidth=0.8)
        target.set_xlabel(f"extra change in {obj.outcome} per week (95 % CI)")
    else:
        target.set_xscale("log")
        target.axvline(1.0, color="0.5", linestyle="--", linewidth=0.8)
        what = "any side effect" if obj.event is None else obj.event
        target.set_xlabel(f"odds ratio of {what} per session (95 % CI, log scale)")
    sns.despine(ax=target)
    return target


# --------------------------------------------------------------------------- distributions
def _violin(
    ax: Axes, x: float, grid: np.ndarray, density: np.ndarray, colour: Colour, label: str
) -> None:
    top = float(density.max()) if density.size else 0.0
    half = 0.4 * density / top if top > 0 else np.zeros_like(density)
    ax.fill_betweenx(grid, x - half, x + half, color=colour, alpha=0.35, linewidth=0, label=label)


def response_distribution(
    results: Any,
    week: float | None = None,
    *,
    ax: Axes | None = None,
    colours: Mapping[str, Colour] | None = None,
    show_people: bool = True,
) -> Axes:
    """Distribution of individual responses per cocktail: model-implied density and BLUPs.

    Parameters
    ----------
    results : RegrowthResults, SideEffectResults or their Variability
    week : float, optional
        Regrowth: week W (default the last scheduled post-baseline week).
    ax : Axes, optional
    colours : mapping, optional
        Cocktail → colour (default :func:`cocktail_palette`).
    show_people : bool, default True
        Overlay each person's BLUP-based prediction (predicted change at W; side effects:
        per-session event probability) as a jittered point.

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Regrowth: the violin of cocktail c is the normal density N(μ_c(W), v(W)) of true changes
    of new people with the average baseline (μ_c, v from
    :meth:`~mesostats.domain.variation.Variability.prediction_interval`, without the fixed part's
    uncertainty). Side effects: the logit-normal density of per-session probabilities,
    f(p) = φ((logit p − η_c)/τ)/(τ p (1 − p)). The horizontal line marks no change (0).
    """
    kind, obj = _domain(results)
    if kind in ("regrowth", "side_effects"):
        var: Variability = obj.variability
        study = obj.study
    elif kind == "variability" and obj._ctx.kind in ("regrowth", "side_effects"):
        var, study = obj, obj.study
    else:
        raise _wrong_input(
            "response_distribution",
            "a RegrowthResults, a SideEffectResults or their Variability",
            results,
        )
    domain = var._ctx.kind
    pi = var.prediction_interval(week=week) if domain == "regrowth" else var.prediction_interval()
    cocktails = [str(c) for c in pi["cocktail"]]
    if colours is not None:
        cols = dict(colours)
    elif study is not None:
        cols = cocktail_palette(study)
    else:
        cols = palette(cocktails)
    target = _axes(ax, (1.6 + 1.3 * len(cocktails), 4.2))
    people = var.person_effects_table(week=week) if domain == "regrowth" else var.person_effects
    rng = np.random.default_rng(0)  # jitter only: fixed so figures are reproducible
    sds = pi["sd_between"].to_numpy(dtype=float)
    centres = (
        pi["estimate"].to_numpy(dtype=float)
        if domain == "regrowth"
        else np.log(pi["probability"].to_numpy(dtype=float))
        - np.log1p(-pi["probability"].to_numpy(dtype=float))
    )
    for x, (name, sd, centre) in enumerate(zip(cocktails, sds, centres, strict=True)):
        colour = cols.get(name, _NEUTRAL)
        if sd <= 0:  # no between-person variation: a line at the common value
            grid = np.array([centre if domain == "regrowth" else stats.logistic.cdf(centre)])
            dens = np.ones(1)
        elif domain == "regrowth":
            grid = np.linspace(centre - 4 * sd, centre + 4 * sd, 200)
            dens = stats.norm.pdf(grid, centre, sd)
        else:
            lo, hi = stats.logistic.cdf([centre - 4 * sd, centre + 4 * sd])
            grid = np.linspace(lo, hi, 200)
            logit = np.log(grid) - np.log1p(-grid)
            dens = stats.norm.pdf(logit, centre, sd) / (sd * grid * (1 - grid))
        _violin(target, x, grid, dens, colour, name)
        if show_people:
            mine = people[people["cocktail"].astype(str) == name]
            values = mine["change" if domain == "regrowth" else "probability"].to_numpy(float)
            jitter = rng.uniform(-0.12, 0.12, size=values.size)
            target.scatter(x + jitter, values, s=9, color=colour, edgecolor="none", alpha=0.9)
    target.set_xticks(range(len(cocktails)), cocktails)
    target.set_xlabel("cocktail")
    if domain == "regrowth":
        target.axhline(0.0, color="0.5", linestyle="--", linewidth=0.8)
        w = float(pi["week"].iloc[0])
        target.set_ylabel(f"true change from baseline at week {w:g}")
    else:
        target.set_ylabel("per-session event probability")
        target.set_ylim(0.0, min(1.0, float(target.get_ylim()[1])))
    sns.despine(ax=target)
    return target


# --------------------------------------------------------------------------- rates
def side_effect_rates(
    results_or_study: Any,
    *,
    per: str = "session",
    event: str | None = None,
    ax: Axes | None = None,
    colours: Mapping[str, Colour] | None = None,
) -> Axes:
    """Observed side-effect rates by ingredient with exact Clopper–Pearson 95 % CIs.

    Parameters
    ----------
    results_or_study : SideEffectResults or Study
        A side-effect fit (its ``rates``) or a study (rates of ``event`` computed from
        ``study.event_table(event)``).
    per : {"session", "person"}
        Sessions with ≥ 1 event / assessed sessions, or people with ≥ 1 event / people
        assessed.
    event : str, optional
        Study input only: the coded event (default any event).
    ax : Axes, optional
    colours : mapping, optional
        Ingredient → colour (default :func:`ingredient_palette`).

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Clopper & Pearson (1934), *Biometrika* 26(4), via
    :func:`mesostats.domain.event_rates`; the dashed line is the overall rate.
    """

    if per not in ("session", "person"):
        raise ModelSpecError(f"per must be 'session' or 'person', got {per!r}.")
    kind, obj = _domain(results_or_study)
    if kind == "side_effects":
        if event is not None:
            raise ModelSpecError(
                "event applies to a Study input; a SideEffectResults already has its event "
                f"({obj.event or 'any event'})."
            )
        rates, study, what = obj.rates, obj.study, obj.event
    elif kind == "study":
        study, what = obj, event
        rates = event_rates(study.event_table(event), study.ingredients)
    else:
        raise _wrong_input("side_effect_rates", "a SideEffectResults or a Study", results_or_study)
    cols = dict(colours) if colours is not None else ingredient_palette(study)
    table = rates[(rates["level"] == "ingredient") & (rates["per"] == per)]
    overall = rates[(rates["level"] == "overall") & (rates["per"] == per)]
    target = _axes(ax, (6.0, 0.8 + 0.5 * len(table)))
    for y, rec in enumerate(table.itertuples(index=False)):
        name = str(rec.name)
        rate = float(rec.rate)
        target.errorbar(
            100 * rate,
            y,
            xerr=[[100 * (rate - rec.ci_lower)], [100 * (rec.ci_upper - rate)]],
            fmt="o",
            markersize=6,
            capsize=3,
            color=cols.get(name, _NEUTRAL),
            label=name,
        )
        target.annotate(
            f"{rec.n_with_event}/{rec.n_assessed}",
            (100 * rec.ci_upper, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    if len(overall):
        target.axvline(100 * float(overall["rate"].iloc[0]), color="0.5", linestyle="--", lw=0.8)
    target.set_yticks(range(len(table)), [str(n) for n in table["name"]])
    target.invert_yaxis()
    unit = "sessions" if per == "session" else "people"
    label = "any side effect" if what is None else str(what)
    target.set_xlabel(f"{label}: % of {unit} (exact 95 % CI)")
    target.set_xlim(left=0.0)
    sns.despine(ax=target)
    return target
