"""``mesostats fit SOURCE --severity``: the cumulative-logit model of the worst side-effect
severity per session (:func:`mesostats.fit_severity`), as text or one JSON object
(``--json``, keys :data:`SEVERITY_JSON_KEYS`)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from mesostats.cli.common import EXIT_OK, PROG, emit, json_records, model_json, source_label

__all__ = ["SEVERITY_JSON_KEYS", "run_severity"]

#: Top-level keys of ``mesostats fit --severity --json``.
SEVERITY_JSON_KEYS = (
    "source",
    "analysis",
    "event",
    "formula",
    "levels",
    "model",
    "thresholds",
    "fixed_effects",
    "variance_components",
    "ingredient_effects",
    "probabilities",
    "observed",
    "warnings",
    "messages",
    "notes",
    "excluded_rows",
)


def run_severity(args: argparse.Namespace, study: Any) -> int:
    """Fit the severity model of a loaded study; print text or JSON (exit 0)."""
    from mesostats.domain import fit_severity  # loads the engines only when run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = fit_severity(study, event=args.event, nagq=args.nagq)
    found = [(w.category.__name__, str(w.message)) for w in caught]
    for category, message in found:
        emit(f"{PROG}: warning: [{category}] {message}", sys.stderr)
    model = results.model
    if not args.json:
        emit(str(results))
        emit("")
        emit(f"Rows set aside from this analysis: {len(results.excluded_rows)}")
        return EXIT_OK
    payload = {
        "source": source_label(args.source),
        "analysis": "severity",
        "event": results.event,
        "formula": results.formula,
        "levels": list(results.levels),
        "model": model_json(model, link=True),
        "thresholds": json_records(model.thresholds, index="threshold"),
        "fixed_effects": json_records(model.fixed_effects, index="term"),
        "variance_components": json_records(model.variance_components),
        "ingredient_effects": json_records(results.ingredient_effects),
        "probabilities": json_records(results.probabilities),
        "observed": json_records(results.observed),
        "warnings": [{"category": c, "message": m} for c, m in found],
        "messages": list(model.messages),
        "notes": list(results.notes),
        "excluded_rows": len(results.excluded_rows),
    }
    emit(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False))
    return EXIT_OK
