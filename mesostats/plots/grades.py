"""Graded outcomes: cumulative odds ratios and stacked grade probabilities per cocktail.

* :func:`cumulative_odds_ratios` — the ingredient (severity) or cocktail (global assessment)
  cumulative odds ratios with 95 % CIs on a log axis, null line at 1;
* :func:`grade_probabilities` — per cocktail, a horizontal bar split into the probability of
  each grade (marginal over persons), lowest grade on the left, in an ordered palette
  (seaborn ``"rocket_r"`` for severity, the diverging ``"vlag_r"`` for the −3 … +3 scale).

Axes-level, as the rest of :mod:`mesostats.plots`: ``ax=None`` draws on a new figure and the
Axes is returned; nothing calls ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes

from mesostats.domain.ordinal_results import GlobalAssessmentResults, SeverityResults
from mesostats.plots.colours import (
    Colour,
    _axes,
    _interval_rows,
    _wrong_input,
    cocktail_palette,
    ingredient_palette,
)

__all__ = ["cumulative_odds_ratios", "grade_probabilities"]

_ACCEPTED = "a SeverityResults or a GlobalAssessmentResults"


def _effects(results: Any, func: str) -> tuple[Any, str, str, dict[str, Colour], str]:
    if isinstance(results, SeverityResults):
        what = "any side effect" if results.event is None else results.event
        return (
            results.ingredient_effects,
            "ingredient",
            f"cumulative odds ratio of a worse grade of {what} (95 % CI, log scale)",
            ingredient_palette(results.study),
            "cocktail_id",
        )
    if isinstance(results, GlobalAssessmentResults):
        return (
            results.cocktail_effects,
            "cocktail",
            f"cumulative odds ratio of a higher GPA vs {results.control} (95 % CI, log scale)",
            cocktail_palette(results.study),
            "cocktail",
        )
    raise _wrong_input(func, _ACCEPTED, results)


def cumulative_odds_ratios(
    results: Any, *, ax: Axes | None = None, colours: Mapping[str, Colour] | None = None
) -> Axes:
    """Cumulative odds ratios with 95 % CIs (log axis; infinite limits are clipped).

    Parameters
    ----------
    results : SeverityResults or GlobalAssessmentResults
    ax : Axes, optional
    colours : mapping, optional
        Ingredient / cocktail → colour (default the study's palette).

    Returns
    -------
    matplotlib.axes.Axes
    """
    table, name_col, label, default, _ = _effects(results, "cumulative_odds_ratios")
    cols = dict(colours) if colours is not None else default
    target = _axes(ax, (6.0, 0.6 + 0.5 * len(table)))
    names = [str(n) for n in table[name_col]]
    finite = table[["odds_ratio", "ci_lower", "ci_upper"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    lo_clip = float(finite.min()) / 2 if finite.size else 0.1
    hi_clip = float(finite.max()) * 2 if finite.size else 10.0
    est = np.clip(table["odds_ratio"].to_numpy(dtype=float), lo_clip, hi_clip)
    lo = np.clip(table["ci_lower"].to_numpy(dtype=float), lo_clip, est)
    hi = np.clip(table["ci_upper"].to_numpy(dtype=float), est, hi_clip)
    _interval_rows(target, names, est, lo, hi, cols)
    target.set_xscale("log")
    target.axvline(1.0, color="0.5", linestyle="--", linewidth=0.8)
    target.set_xlabel(label)
    sns.despine(ax=target)
    return target


def grade_probabilities(results: Any, *, ax: Axes | None = None) -> Axes:
    """Stacked bars: per cocktail, the probability of each grade (marginal over persons).

    Parameters
    ----------
    results : SeverityResults or GlobalAssessmentResults
    ax : Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Each bar segment carries its grade as ``label`` (the first bar's segments only).
    """
    _, _, _, _, by = _effects(results, "grade_probabilities")
    probs = results.probabilities
    grades = list(results.levels)
    severity = isinstance(results, SeverityResults)
    colours = sns.color_palette("rocket_r" if severity else "vlag_r", len(grades))
    target = _axes(ax, (7.0, 0.8 + 0.5 * len(probs)))
    names = [str(c) for c in probs[by]]
    left = np.zeros(len(probs))
    for grade, colour in zip(grades, colours, strict=True):
        width = probs[grade].to_numpy(dtype=float)
        target.barh(
            range(len(names)),
            width,
            left=left,
            color=colour,
            label=grade,
            edgecolor="white",
            linewidth=0.5,
        )
        left += width
    target.set_yticks(range(len(names)), names)
    target.invert_yaxis()
    target.set_xlim(0.0, 1.0)
    what = "worst severity per session" if severity else "GPA score"
    target.set_xlabel(f"probability of each {what} (marginal over persons)")
    target.legend(
        ncol=len(grades),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
        fontsize="small",
    )
    sns.despine(ax=target)
    return target
