"""The domain layer: a Study in, answers out.

Which ingredient drives regrowth (:func:`fit_regrowth`), which drives side effects
(:func:`fit_side_effects`), how severe they get (:func:`fit_severity`), the global
photographic assessment by cocktail (:func:`fit_global_assessment`), and how much results
vary between people (:func:`variability`).
The fits are the field-agnostic engines of :mod:`mesostats.mixed`; this layer picks the rows
and columns, builds the ingredient design and the formula, and words the results.

Files: ``exposure`` (cocktails → ingredient design), ``aliasing`` (which ingredients can be
separated), ``common`` (columns, excluded rows, notes), ``regrowth``, ``side_effects``,
``rates`` (observed rates, GEE), ``severity`` / ``global_assessment`` / ``grades`` /
``ordinal_results`` (graded outcomes), ``results`` (the results records), ``summary`` (their
text and HTML), ``variation/`` ("varied results").
"""

from __future__ import annotations

from mesostats.domain.common import (
    EXCLUDED_COLUMNS,
    GEE_COLUMNS,
    RATE_COLUMNS,
    REGROWTH_EFFECT_COLUMNS,
    SIDE_EFFECT_COLUMNS,
    holm_adjusted,
)
from mesostats.domain.global_assessment import fit_global_assessment
from mesostats.domain.ordinal_results import GlobalAssessmentResults, SeverityResults
from mesostats.domain.rates import PopulationAverage, event_rates, population_average
from mesostats.domain.regrowth import fit_regrowth
from mesostats.domain.results import RegrowthResults, SideEffectResults
from mesostats.domain.severity import fit_severity
from mesostats.domain.side_effects import fit_side_effects
from mesostats.domain.variation import Variability, variability

__all__ = [
    "EXCLUDED_COLUMNS",
    "GEE_COLUMNS",
    "RATE_COLUMNS",
    "REGROWTH_EFFECT_COLUMNS",
    "SIDE_EFFECT_COLUMNS",
    "GlobalAssessmentResults",
    "PopulationAverage",
    "RegrowthResults",
    "SeverityResults",
    "SideEffectResults",
    "Variability",
    "event_rates",
    "fit_global_assessment",
    "fit_regrowth",
    "fit_severity",
    "fit_side_effects",
    "holm_adjusted",
    "population_average",
    "variability",
]
