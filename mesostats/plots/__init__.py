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
* :func:`side_effect_rates` — observed rates by ingredient with exact Clopper–Pearson CIs;
* :func:`trial_means` — the primary analysis: LS-mean change from baseline by cocktail and
  visit with 95 % CIs.
* :func:`cumulative_odds_ratios`, :func:`grade_probabilities` — graded outcomes (severity,
  global assessment): cumulative odds ratios, and stacked grade probabilities per cocktail.

Artists that stand for an ingredient or a cocktail carry its name as their ``label``.
"""

from __future__ import annotations

from mesostats.plots.colours import cocktail_palette, ingredient_palette, palette
from mesostats.plots.effects import forest, response_distribution, side_effect_rates
from mesostats.plots.grades import cumulative_odds_ratios, grade_probabilities
from mesostats.plots.persons import caterpillar
from mesostats.plots.trajectories import spaghetti
from mesostats.plots.trial import trial_means

__all__ = [
    "caterpillar",
    "cocktail_palette",
    "cumulative_odds_ratios",
    "forest",
    "grade_probabilities",
    "ingredient_palette",
    "palette",
    "response_distribution",
    "side_effect_rates",
    "spaghetti",
    "trial_means",
]
