"""The primary analysis in a picture: LS-mean change from baseline by cocktail and visit
(:func:`trial_means`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes

from mesostats.domain.trial_results import TrialResults
from mesostats.plots.colours import _NEUTRAL, Colour, _axes, _wrong_input, cocktail_palette

__all__ = ["trial_means"]


def trial_means(
    trial: Any, *, ax: Axes | None = None, colours: Mapping[str, Colour] | None = None
) -> Axes:
    """LS-mean change from baseline per cocktail at each visit, with 95 % CIs.

    Parameters
    ----------
    trial : TrialResults
        From :func:`mesostats.fit_trial`.
    ax : Axes, optional
    colours : mapping, optional
        Cocktail → colour (default :func:`cocktail_palette`, the same as in every figure).

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    The x axis is the visit's median week since the first treatment (its ticks name the
    visits); cocktails are shifted slightly apart so that their intervals do not overlap.
    Baseline (week 0, change 0 by definition) starts every line; the primary visit is shaded.
    """
    if not isinstance(trial, TrialResults):
        raise _wrong_input("trial_means", "a TrialResults (from fit_trial)", trial)
    cols = dict(colours) if colours is not None else cocktail_palette(trial.study)
    means = trial.lsmeans
    weeks = trial.visit_weeks
    visits = list(trial.visits)
    span = max(max(weeks.values()), 1.0)
    shift = 0.012 * span
    target = _axes(ax, (7.0, 4.2))
    n = len(trial.cocktails)
    for i, name in enumerate(trial.cocktails):
        rows = means[means["cocktail"].astype(str) == name].sort_values("visit")
        x = np.array([weeks[int(v)] for v in rows["visit"]]) + (i - (n - 1) / 2) * shift
        est = rows["estimate"].to_numpy(dtype=float)
        lo = est - rows["ci_lower"].to_numpy(dtype=float)
        hi = rows["ci_upper"].to_numpy(dtype=float) - est
        colour = cols.get(name, _NEUTRAL)
        label = f"{name} (control)" if name == trial.control else name
        target.plot(np.r_[0.0, x], np.r_[0.0, est], color=colour, linewidth=1.2, label=label)
        target.errorbar(x, est, yerr=[lo, hi], fmt="o", markersize=4, capsize=2.5, color=colour)
    primary = weeks[trial.primary_visit]
    half = shift * (n + 1) / 2
    target.axvspan(primary - half, primary + half, color="0.9", zorder=0)
    target.axhline(0.0, color="0.5", linestyle="--", linewidth=0.8)
    ticks = [weeks[v] for v in visits]
    target.set_xticks(ticks, [f"{v}\n{weeks[v]:.3g}" for v in visits], fontsize=8)
    target.set_xlabel("visit / week since first treatment (primary visit shaded)")
    target.set_ylabel(f"LS-mean change in {trial.outcome} (95 % CI)")
    target.legend(frameon=False, fontsize=8, title="cocktail", title_fontsize=8)
    sns.despine(ax=target)
    return target
