"""Figures of a mesotherapy study: trajectories, person effects, ingredient effects, rates.

seaborn conventions (Waskom 2021, *JOSS* 6(60)): Axes-level functions take ``ax=None`` and
return the :class:`matplotlib.axes.Axes` they drew on (a new figure when ``ax`` is None);
the figure-level :func:`spaghetti` returns a :class:`seaborn.FacetGrid`. Nothing here calls
``plt.show()``.

**Colours.** :func:`palette` gives every name one colour, keyed by the *sorted* set of names
(all ingredients of a study, or all its cocktails), so an ingredient or a cocktail has the
same colour in every figure of the same study, whatever subset a figure shows: ingredients
use seaborn's ``"colorblind"`` palette, cocktails ``"Set2"`` (husl beyond their length).

Figures:

* :func:`spaghetti` — each person's outcome over the weeks, one facet per cocktail, with the
  cocktail mean per visit;
* :func:`caterpillar` — person effects (conditional modes / predicted changes) with their
  conditional intervals, sorted;
* :func:`forest` — ingredient effects with 95 % CIs (regrowth: extra change per week, null
  line 0; side effects: odds ratios on a log axis, null line 1);
* :func:`response_distribution` — the picture of "varied results": per cocktail, the
  between-person distribution of true responses implied by the model, N(μ_c, v(W)) (side
  effects: the logit-normal distribution of per-session probabilities), drawn as analytic
  violins, with each person's BLUP-based prediction as a point;
* :func:`side_effect_rates` — observed rates by ingredient with exact Clopper–Pearson CIs.

Artists that stand for an ingredient or a cocktail carry its name as their ``label``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from scipy import stats

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.results import MixedResults

if TYPE_CHECKING:
    from mesostats.data.study import Study
    from mesostats.variability import Variability

__all__ = [
    "caterpillar",
    "cocktail_palette",
    "forest",
    "ingredient_palette",
    "palette",
    "response_distribution",
    "side_effect_rates",
    "spaghetti",
]

Colour = tuple[float, float, float]
_BASE = {"ingredient": "colorblind", "cocktail": "Set2"}
_NEUTRAL: Colour = (0.35, 0.35, 0.35)


# --------------------------------------------------------------------------- colours
def palette(names: Iterable[Any], *, kind: str = "cocktail") -> dict[str, Colour]:
    """One colour per name, keyed by the sorted set of names.

    Parameters
    ----------
    names : iterable
        Every ingredient (``kind="ingredient"``) or every cocktail (``kind="cocktail"``) of
        the study, not only those a figure shows: the colour of a name depends on its rank in
        the sorted set.
    kind : {"cocktail", "ingredient"}
        Which base palette: seaborn ``"Set2"`` for cocktails, ``"colorblind"`` for
        ingredients (``"husl"`` when there are more names than colours).

    Returns
    -------
    dict
        name → RGB tuple.

    Examples
    --------
    >>> palette(["minoxidil", "biotin"], kind="ingredient")["biotin"] == palette(
    ...     ["biotin", "dutasteride", "minoxidil"], kind="ingredient")["biotin"]
    True
    """
    if kind not in _BASE:
        raise ModelSpecError(f"kind must be 'cocktail' or 'ingredient', got {kind!r}.")
    ordered = sorted({str(n) for n in names})
    base = sns.color_palette(_BASE[kind])
    colours = base if len(ordered) <= len(base) else sns.color_palette("husl", len(ordered))
    return {name: tuple(float(c) for c in colours[i])[:3] for i, name in enumerate(ordered)}  # type: ignore[misc]


def ingredient_palette(study: Study) -> dict[str, Colour]:
    """Colours of every active ingredient of a study (see :func:`palette`)."""
    return palette(study.ingredients, kind="ingredient")


def cocktail_palette(study: Study) -> dict[str, Colour]:
    """Colours of every cocktail of a study (see :func:`palette`)."""
    return palette(study.cocktails["cocktail_id"].astype(str), kind="cocktail")


def _axes(ax: Axes | None, size: tuple[float, float] = (6.4, 4.0)) -> Axes:
    if ax is not None:
        if not isinstance(ax, Axes):
            raise ModelSpecError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}.")
        return ax
    _, new = plt.subplots(figsize=size)
    return new


def _domain(results: Any) -> tuple[str, Any]:
    """('regrowth' | 'side_effects' | 'study' | 'variability' | 'model', object)."""
    from mesostats.data.study import Study
    from mesostats.outcomes import RegrowthResults, SideEffectResults
    from mesostats.variability import Variability

    if isinstance(results, RegrowthResults):
        return "regrowth", results
    if isinstance(results, SideEffectResults):
        return "side_effects", results
    if isinstance(results, Study):
        return "study", results
    if isinstance(results, Variability):
        return "variability", results
    if isinstance(results, MixedResults):
        return "model", results
    return "unknown", results


def _wrong_input(func: str, accepted: str, got: Any) -> ModelSpecError:
    return ModelSpecError(f"{func}() takes {accepted}; got {type(got).__name__}.")


# --------------------------------------------------------------------------- spaghetti
def _subject_cocktails(table: pd.DataFrame) -> pd.Series:
    """Each person's cocktail: the first one injected (``"(none)"`` if never injected)."""
    first = table.dropna(subset=["cocktail_id"]).groupby("subject_id", sort=False)["cocktail_id"]
    mapping = first.first().astype(str)
    out = table["subject_id"].map(mapping)
    return out.fillna("(none)").astype(str)


def _trajectory_table(source: Any, outcome: str) -> tuple[pd.DataFrame, Study, str]:
    kind, obj = _domain(source)
    if kind == "regrowth":
        study, outcome = obj.study, obj.outcome
    elif kind == "study":
        study = obj
    else:
        raise _wrong_input("spaghetti", "a Study or a RegrowthResults", source)
    table = study.outcome_table(outcome)
    frame = pd.DataFrame(
        {
            "subject_id": table["subject_id"].astype(str).to_numpy(),
            "visit": table["visit"].to_numpy(dtype=float),
            "week": table["week"].to_numpy(dtype=float),
            "value": table["value"].to_numpy(dtype=float),
            "cocktail_id": table["cocktail_id"].to_numpy(dtype=object),
        }
    )
    frame["cocktail"] = _subject_cocktails(frame).to_numpy()
    frame = frame.sort_values(["subject_id", "week"], kind="stable").reset_index(drop=True)
    return frame, study, outcome


def _draw_trajectories(
    ax: Axes, frame: pd.DataFrame, colours: Mapping[str, Colour], alpha: float
) -> None:
    """Thin lines (one LineCollection per cocktail) and the cocktail mean per visit."""
    for cocktail, part in frame.groupby("cocktail", sort=True):
        colour = colours.get(str(cocktail), _NEUTRAL)
        xy = part[["week", "value"]].to_numpy(dtype=float)
        cuts = np.flatnonzero(
            part["subject_id"].to_numpy()[1:] != part["subject_id"].to_numpy()[:-1]
        )
        segments = [s for s in np.split(xy, cuts + 1) if len(s) > 1]
        if segments:
            ax.add_collection(
                LineCollection(segments, colors=[colour], linewidths=0.7, alpha=alpha)
            )
        mean = part.groupby("visit", sort=True)[["week", "value"]].mean()
        ax.plot(
            mean["week"].to_numpy(),
            mean["value"].to_numpy(),
            color=colour,
            linewidth=2.6,
            label=str(cocktail),
        )
    ax.autoscale_view()


def spaghetti(
    study_or_results: Study | Any,
    outcome: str = "hair_density",
    *,
    ax: Axes | None = None,
    col_wrap: int | None = None,
    height: float = 3.0,
    alpha: float = 0.35,
    colours: Mapping[str, Colour] | None = None,
) -> sns.FacetGrid | Axes:
    """Individual trajectories of an outcome by cocktail, with the cocktail mean per visit.

    Parameters
    ----------
    study_or_results : Study or RegrowthResults
        A study (``outcome`` chooses the column) or a regrowth fit (its study and outcome).
    outcome : str, default "hair_density"
    ax : Axes, optional
        Draw every cocktail on this one Axes (overlaid, coloured by cocktail) and return it.
        Without ``ax``: one facet per cocktail, returning the :class:`seaborn.FacetGrid`.
    col_wrap : int, optional
        Facets per row (default: up to 4).
    height : float, default 3.0
        Facet height in inches.
    alpha : float, default 0.35
        Opacity of the individual lines.
    colours : mapping, optional
        Cocktail → colour; default :func:`cocktail_palette` of the study.

    Returns
    -------
    seaborn.FacetGrid or matplotlib.axes.Axes

    Notes
    -----
    A person's cocktail is the first one injected; visits before it (baseline) belong to the
    same line. The mean is the average value and week of each visit number.
    """
    frame, study, outcome = _trajectory_table(study_or_results, outcome)
    cols = dict(colours) if colours is not None else cocktail_palette(study)
    if ax is not None:
        target = _axes(ax)
        _draw_trajectories(target, frame, cols, alpha)
        target.set_xlabel("week")
        target.set_ylabel(outcome)
        target.legend(title="cocktail", frameon=False, fontsize="small")
        return target
    order = sorted(frame["cocktail"].unique())
    wrap = col_wrap or min(len(order), 4)
    grid = sns.FacetGrid(
        frame,
        col="cocktail",
        col_order=order,
        col_wrap=wrap,
        height=height,
        aspect=1.2,
        sharex=True,
        sharey=True,
    )
    for name, facet in zip(order, grid.axes.flat, strict=False):
        _draw_trajectories(facet, frame[frame["cocktail"] == name], cols, alpha)
    grid.set_titles("cocktail {col_name}")
    grid.set_axis_labels("week", outcome)
    return grid


# --------------------------------------------------------------------------- caterpillar
def _person_table(source: Any) -> tuple[pd.DataFrame, str, Study | None]:
    kind, obj = _domain(source)
    if kind in ("regrowth", "side_effects"):
        return obj.variability.person_effects, kind, obj.study
    if kind == "variability":
        return obj.person_effects, obj._ctx.kind, obj.study
    if kind == "model":
        return _model_person_table(obj), "model", None
    raise _wrong_input(
        "caterpillar", "a RegrowthResults, SideEffectResults, Variability or MixedResults", source
    )


def _model_person_table(model: MixedResults, level: float = 0.95) -> pd.DataFrame:
    from mesostats.variability import conditional_mode_table

    return conditional_mode_table(model, level)


_CATERPILLAR_COLUMNS = {
    "regrowth": {
        "change": ("change", "change_lower", "change_upper", "predicted change from baseline"),
        "intercept": ("intercept", "intercept_lower", "intercept_upper", "person intercept"),
        "slope": ("slope", "slope_lower", "slope_upper", "person slope (per week)"),
    },
    "side_effects": {
        "intercept": ("intercept", "intercept_lower", "intercept_upper", "person effect (logit)"),
        "probability": (
            "probability",
            "probability_lower",
            "probability_upper",
            "per-session event probability",
        ),
    },
}


def caterpillar(
    results_or_variability: Any,
    *,
    which: str | None = None,
    group: str | None = None,
    ax: Axes | None = None,
    colours: Mapping[str, Colour] | None = None,
) -> Axes:
    """Person effects with their 95 % conditional intervals, sorted (a caterpillar plot).

    Parameters
    ----------
    results_or_variability : RegrowthResults, SideEffectResults, Variability or MixedResults
    which : str, optional
        Regrowth: ``"change"`` (default; each person's predicted change at week W),
        ``"intercept"`` or ``"slope"``. Side effects: ``"intercept"`` (default, logit scale)
        or ``"probability"``. MixedResults: a random-effect term name (default the first).
    group : str, optional
        MixedResults: the grouping factor (default the first).
    ax : Axes, optional
    colours : mapping, optional
        Cocktail → colour (default :func:`cocktail_palette`).

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    Intervals from :meth:`mesostats.variability.Variability.person_effects_table`; people are
    sorted by their estimate, coloured by cocktail; the reference line is 0 (or 1 for odds).
    """
    table, kind, study = _person_table(results_or_variability)
    target = _axes(ax, (6.4, 5.0))
    if kind == "model":
        g = group or str(table["group"].iloc[0])
        sub = table[table["group"] == g]
        if sub.empty:
            raise ModelSpecError(
                f"Unknown group {group!r}; the model's groups are "
                f"{', '.join(pd.unique(table['group']))}."
            )
        term = which or str(sub["term"].iloc[0])
        sub = sub[sub["term"] == term]
        if sub.empty:
            raise ModelSpecError(f"Unknown term {which!r} for group {g!r}.")
        est, lo, hi = (sub[c].to_numpy(dtype=float) for c in ("mode", "ci_lower", "ci_upper"))
        colour_of = np.array([_NEUTRAL] * len(sub))
        xlabel = f"{term} | {g} (conditional mode)"
        labels = [None] * len(sub)
    else:
        options = _CATERPILLAR_COLUMNS[kind]
        choice = which or next(iter(options))
        if choice not in options:
            raise ModelSpecError(
                f"which must be one of {', '.join(options)} for this result, got {which!r}."
            )
        c_est, c_lo, c_hi, xlabel = options[choice]
        sub = table
        est, lo, hi = (sub[c].to_numpy(dtype=float) for c in (c_est, c_lo, c_hi))
        cocktails = sub["cocktail"].astype(str).to_numpy()
        cols = (
            dict(colours)
            if colours is not None
            else (cocktail_palette(study) if study is not None else palette(cocktails))
        )
        colour_of = np.array([cols.get(c, _NEUTRAL) for c in cocktails])
        labels = list(cocktails)
        if kind == "regrowth" and choice == "change" and "week" in sub.columns:
            xlabel += f" at week {float(sub['week'].iloc[0]):g}"
    order = np.argsort(est, kind="stable")
    y = np.arange(len(order))
    seen: set[str] = set()
    for rank, i in zip(y, order, strict=True):
        label = labels[i]
        shown = label if label is not None and label not in seen else None
        if label is not None:
            seen.add(label)
        target.errorbar(
            est[i],
            rank,
            xerr=[[est[i] - lo[i]], [hi[i] - est[i]]],
            fmt="o",
            markersize=2.5,
            color=tuple(colour_of[i]),
            elinewidth=0.8,
            label=shown,
        )
    null = 0.0
    target.axvline(null, color="0.5", linewidth=0.8, linestyle="--")
    target.set_yticks([])
    target.set_ylabel(f"people (n = {len(order)}), sorted")
    target.set_xlabel(xlabel)
    if seen:
        target.legend(title="cocktail", frameon=False, fontsize="small")
    sns.despine(ax=target, left=True)
    return target


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
    for y, (name, rec) in enumerate(zip(names, table.itertuples(index=False), strict=True)):
        est = float(getattr(rec, est_col))
        lo, hi = float(rec.ci_lower), float(rec.ci_upper)
        target.errorbar(
            est,
            y,
            xerr=[[est - lo], [hi - est]],
            fmt="o",
            markersize=6,
            capsize=3,
            color=cols.get(name, _NEUTRAL),
            label=name,
        )
    target.set_yticks(range(len(names)), names)
    target.invert_yaxis()
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
    :meth:`~mesostats.variability.Variability.prediction_interval`, without the fixed part's
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
    :func:`mesostats.outcomes.event_rates`; the dashed line is the overall rate.
    """
    from mesostats.outcomes import event_rates

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
