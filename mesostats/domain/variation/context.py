"""What a fit tells the variability layer beyond its MixedResults (:class:`VariationContext`).

A domain results object (regrowth, side effects) describes itself through its
``variation_context()`` method; a bare :class:`~mesostats.mixed.results.MixedResults` gets the
generic context. This keeps the dependency one way: the domain results know this module, not
the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.results import MixedResults


@dataclass(frozen=True)
class VariationContext:
    """What a results object tells us beyond its MixedResults."""

    kind: str  # "regrowth", "side_effects" or "model"
    model: MixedResults
    data: pd.DataFrame | None
    subject: str | None
    time: str | None
    cocktail_design: pd.DataFrame | None
    cocktail_column: str | None
    shift: float  # subtracted from predictions (regrowth: the baseline centre → change)
    week: float | None
    week_note: str
    outcome: str
    study: Any = None


class DescribesVariation(Protocol):
    """A domain fit that tells the variability layer its context (regrowth, side effects)."""

    def variation_context(self) -> VariationContext: ...


def regrowth_context(
    *,
    model: MixedResults,
    data: pd.DataFrame,
    subject: str,
    time: str,
    cocktail_design: pd.DataFrame,
    baseline_center: float,
    outcome: str,
    study: Any,
) -> VariationContext:
    """The context of a regrowth fit (change from baseline over weeks, by course cocktail)."""
    week, note = _default_week(data, time)
    return VariationContext(
        kind="regrowth",
        model=model,
        data=data,
        subject=subject,
        time=time,
        cocktail_design=_real_cocktails(cocktail_design),
        cocktail_column="course_cocktail",
        shift=float(baseline_center),
        week=week,
        week_note=note,
        outcome=outcome,
        study=study,
    )


def side_effect_context(
    *,
    model: MixedResults,
    data: pd.DataFrame,
    subject: str,
    cocktail_design: pd.DataFrame,
    event: str | None,
    study: Any,
) -> VariationContext:
    """The context of a side-effect fit (per-session event probability, by cocktail)."""
    return VariationContext(
        kind="side_effects",
        model=model,
        data=data,
        subject=subject,
        time=None,
        cocktail_design=_real_cocktails(cocktail_design),
        cocktail_column="cocktail_id",
        shift=0.0,
        week=None,
        week_note="",
        outcome="any side effect" if event is None else str(event),
        study=study,
    )


def context_of(results: Any) -> VariationContext:
    """The context of a fit: its own ``variation_context()``, or the generic one of a model."""
    describe = getattr(results, "variation_context", None)
    if callable(describe):
        context: VariationContext = describe()
        return context
    if isinstance(results, MixedResults):
        return VariationContext(
            kind="model",
            model=results,
            data=None,
            subject=None,
            time=None,
            cocktail_design=None,
            cocktail_column=None,
            shift=0.0,
            week=None,
            week_note="",
            outcome=results.design.response_name,
        )
    raise ModelSpecError(
        f"variability() needs a RegrowthResults (ms.fit_regrowth), a SideEffectResults "
        f"(ms.fit_side_effects) or a MixedResults (ms.fit_lmm / ms.fit_glmm); got "
        f"{type(results).__name__}."
    )


def _real_cocktails(design: pd.DataFrame) -> pd.DataFrame:
    """Cocktails actually given (drops the "(none)" row of people not yet injected)."""
    keep = [str(c) != "(none)" for c in design.index]
    return design.loc[keep]


def _default_week(data: pd.DataFrame, time: str) -> tuple[float, str]:
    """The last scheduled post-baseline week: median week of the highest visit number."""
    weeks = data[time].to_numpy(dtype=float)
    if "visit" not in data.columns:
        w = float(np.nanmax(weeks))
        return w, f"week {w:.3g} (the latest post-baseline week in the data)"
    visits = data["visit"].to_numpy(dtype=float)
    last = float(np.nanmax(visits))
    at_last = weeks[visits == last]
    w = round(float(np.nanmedian(at_last)), 1)
    return w, (
        f"week {w:g}: the last scheduled post-baseline visit (visit {last:g}, median week of "
        f"its {at_last.size} measurements)"
    )
