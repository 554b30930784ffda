"""Trajectories: each person's outcome over time (spaghetti plot), by cocktail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection

from mesostats.data.derive import first_cocktail
from mesostats.plots.colours import _NEUTRAL, Colour, _axes, _domain, _wrong_input, cocktail_palette

if TYPE_CHECKING:
    from mesostats.data.study import Study


# --------------------------------------------------------------------------- spaghetti
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
    first = first_cocktail(study.sessions)  # a switcher is drawn under the first cocktail
    first.index = first.index.astype(str)
    frame["cocktail"] = frame["subject_id"].map(first).fillna(NO_COCKTAIL).astype(str).to_numpy()
    frame = frame.sort_values(["subject_id", "week"], kind="stable").reset_index(drop=True)
    return frame, study, outcome


#: Shown for people who were never injected.
NO_COCKTAIL = "(none)"


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
