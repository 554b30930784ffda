"""One colour per ingredient and per cocktail, the same in every figure; shared axes helpers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes

from mesostats.data.study import Study
from mesostats.domain import RegrowthResults, SideEffectResults
from mesostats.domain.variation import Variability
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.results import MixedResults

if TYPE_CHECKING:
    from mesostats.data.study import Study


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


def _interval_rows(
    target: Axes,
    names: list[str],
    estimate: Any,
    lower: Any,
    upper: Any,
    colours: dict[str, Colour],
) -> None:
    """One row per name, first at the top: the estimate with its interval as a horizontal
    bar, coloured by name (:data:`_NEUTRAL` for a name without a colour)."""
    for y, (name, est, lo, hi) in enumerate(zip(names, estimate, lower, upper, strict=True)):
        target.errorbar(
            est,
            y,
            xerr=[[est - lo], [hi - est]],
            fmt="o",
            markersize=6,
            capsize=3,
            color=colours.get(name, _NEUTRAL),
            label=name,
        )
    target.set_yticks(range(len(names)), names)
    target.invert_yaxis()


def _domain(results: Any) -> tuple[str, Any]:
    """('regrowth' | 'side_effects' | 'study' | 'variability' | 'model', object)."""

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
