"""``mesostats fit SOURCE --trial``: the trial's primary analysis (:func:`mesostats.fit_trial`)
as text or one JSON object (keys :data:`TRIAL_JSON_KEYS`)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import TYPE_CHECKING, Any

from mesostats.cli.common import EXIT_OK, PROG, emit, json_records, json_safe, source_label

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["TRIAL_JSON_KEYS", "run_trial"]

#: Top-level keys of ``mesostats fit SOURCE --trial --json``.
TRIAL_JSON_KEYS = (
    "source",
    "analysis",
    "outcome",
    "formula",
    "control",
    "cocktails",
    "visits",
    "primary_visit",
    "covariance",
    "covariance_attempts",
    "df_method",
    "model",
    "lsmeans",
    "vs_control",
    "primary",
    "warnings",
    "messages",
    "notes",
    "excluded_rows",
    "excluded_subjects",
)


def run_trial(args: argparse.Namespace, study: Study) -> int:
    """Fit the primary analysis of ``study``; print its summary or ``--json`` (exit 0)."""
    from mesostats.domain.trial import fit_trial  # the engines load only when this runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trial = fit_trial(
            study,
            args.outcome,
            visit=args.visit,
            control=args.control,
            covariance=args.covariance or "us",
        )
    found = [(w.category.__name__, str(w.message)) for w in caught]
    for category, message in found:
        emit(f"{PROG}: warning: [{category}] {message}", sys.stderr)
    for message in trial.messages:
        emit(f"{PROG}: message from the fit: {message}", sys.stderr)
    if args.json:
        emit(
            json.dumps(
                trial_payload(args, trial, found), indent=2, ensure_ascii=False, allow_nan=False
            )
        )
    else:
        emit(str(trial))
        emit("")
        emit(
            f"People not analysed: {len(trial.excluded_subjects)}; post-baseline visits set "
            f"aside: {len(trial.excluded_rows)}"
        )
    return EXIT_OK


def trial_payload(
    args: argparse.Namespace, trial: Any, found: list[tuple[str, str]]
) -> dict[str, Any]:
    """The ``--json`` object (keys :data:`TRIAL_JSON_KEYS`)."""
    model = trial.model
    return {
        "source": source_label(args.source),
        "analysis": "trial",
        "outcome": trial.outcome,
        "formula": trial.formula,
        "control": trial.control,
        "cocktails": list(trial.cocktails),
        "visits": [int(v) for v in trial.visits],
        "primary_visit": int(trial.primary_visit),
        "covariance": trial.covariance,
        "covariance_attempts": json_records(trial.attempts),
        "df_method": trial.df_method,
        "model": json_safe(
            {
                "converged": getattr(model, "converged", None),
                "nobs": len(trial.data),
                "n_subjects": int(trial.data["subject_id"].nunique()),
                "loglik": getattr(model, "loglik", None),
                "aic": getattr(model, "aic", None),
            }
        ),
        "lsmeans": json_records(trial.lsmeans),
        "vs_control": json_records(trial.vs_control),
        "primary": json_records(trial.primary),
        "warnings": [{"category": c, "message": m} for c, m in found],
        "messages": list(trial.messages),
        "notes": list(trial.notes),
        "excluded_rows": json_records(trial.excluded_rows),
        "excluded_subjects": json_records(trial.excluded_subjects),
    }
