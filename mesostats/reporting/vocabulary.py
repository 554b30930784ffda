"""How the report names things: the unit of each outcome and each variance component in words.

Units and responder thresholds are the study schema's (``x-mesostats-unit``,
``x-mesostats-change-unit``, ``x-mesostats-responder-threshold``), so a study with its own
schema is described in its own terms.
"""

from __future__ import annotations

from typing import Any

from mesostats._display import is_missing
from mesostats.data.schema import FieldSpec, StudySchema, load_schema

__all__ = ["component_label", "responder_threshold", "unit_of"]


def _outcome_spec(outcome: str, schema: StudySchema | None) -> FieldSpec | None:
    try:
        return (load_schema() if schema is None else schema).outcome(outcome)
    except KeyError:
        return None


def unit_of(outcome: str, schema: StudySchema | None = None) -> str:
    """Unit of a *change* in an outcome column, as the study's schema states it
    (``x-mesostats-change-unit``, else ``x-mesostats-unit``; ``""`` when it states none).
    ``schema``: the study's (default: the schema shipped with mesostats)."""
    spec = _outcome_spec(outcome, schema)
    return "" if spec is None or spec.change_unit is None else spec.change_unit


def responder_threshold(outcome: str, schema: StudySchema | None = None) -> float:
    """The clinically meaningful change of an outcome (``x-mesostats-responder-threshold``;
    0 when the schema sets none)."""
    spec = _outcome_spec(outcome, schema)
    return 0.0 if spec is None or spec.responder_threshold is None else spec.responder_threshold


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
