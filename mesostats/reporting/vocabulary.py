"""How the report names things: the unit of each outcome and each variance component in words.

The units are those of the report's captions and sentences (the schema titles carry them
too; moving them into the schema is the domain layer's change, review §3.5).
"""

from __future__ import annotations

from typing import Any

from mesostats._display import is_missing

__all__ = ["OUTCOME_UNITS", "component_label", "unit_of"]

#: Units of the outcome columns, for captions and sentences.
OUTCOME_UNITS: dict[str, str] = {
    "hair_density": "hairs/cm²",
    "hair_count": "hairs",
    "terminal_density": "hairs/cm²",
    "vellus_density": "hairs/cm²",
    "shaft_diameter_um": "µm",
    "anagen_pct": "percentage points",
    "gpa_score": "points",
    "pain_vas": "points",
}


def unit_of(outcome: str) -> str:
    """Unit of an outcome column (``""`` when unknown)."""
    return OUTCOME_UNITS.get(outcome, "")


def component_label(group: str, var1: Any, var2: Any, kind: str, family: str) -> str:
    """A variance component in words ("People: SD of the change per week")."""
    var1 = "" if is_missing(var1) else str(var1)
    var2 = "" if is_missing(var2) else str(var2)
    who = "People" if group == "subject_id" else f"{group}" if group != "site" else "Sites"
    if kind == "sigma" or group == "Residual":
        return "Visit-to-visit noise (residual SD)"
    if kind == "cor":
        return f"{who}: correlation of {_term_words(var1)} and {_term_words(var2)}"
    if family == "binomial" and var1 == "Intercept":
        return f"{who}: SD of proneness to the event (log-odds scale)"
    return f"{who}: SD of {_term_words(var1)}"


def _term_words(term: str) -> str:
    return {"Intercept": "the level", "week": "the change per week"}.get(term, term)
