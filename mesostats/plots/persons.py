"""Person effects: conditional modes with their intervals (caterpillar plot)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from mesostats.domain.variation import conditional_mode_table
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.results import MixedResults
from mesostats.plots.colours import (
    _NEUTRAL,
    Colour,
    _axes,
    _domain,
    _wrong_input,
    cocktail_palette,
    palette,
)

if TYPE_CHECKING:
    from mesostats.data.study import Study


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
    Intervals from :meth:`mesostats.domain.variation.Variability.person_effects_table`; people are
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
