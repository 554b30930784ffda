"""The report's missing-data sensitivity section: the primary comparisons at the primary
visit re-estimated by multiple imputation under MAR and the three reference-based
assumptions (:func:`mesostats.sensitivity`), and the tipping point
(:func:`mesostats.tipping_point`) — the shift of the dropouts' imputed values at which each
comparison stops being significant.

The report keeps this fast: :data:`REPORT_IMPUTATIONS` imputations (stated in the section),
on the primary analysis the report has already fitted. Included when the primary analysis is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesostats._display import Table, format_interval, format_number, format_p, format_signed
from mesostats.imputation import sensitivity, tipping_point
from mesostats.reporting.steps import Failure, MessageLog, guarded
from mesostats.reporting.vocabulary import unit_of

__all__ = ["REPORT_IMPUTATIONS", "sensitivity_section"]

SOURCE = "Missing-data sensitivity"
#: Imputations per analysis in the report (ms.sensitivity's default is 100).
REPORT_IMPUTATIONS = 20
#: Methods in the report's table, with their names in words.
METHOD_NAMES = {
    "mar": "Multiple imputation, missing at random (MAR)",
    "jump_to_reference": "Jump to reference (J2R)",
    "copy_reference": "Copy reference (CR)",
    "copy_increments": "Copy increments in reference (CIR)",
}


def sensitivity_section(
    primary: dict[str, Any], outcome: str, log: MessageLog, *, seed: int = 0
) -> dict[str, Any]:
    """Values of the section: ``why_not`` (no primary analysis), ``failure``, or the tables."""
    trial = primary.get("trial")
    if trial is None:
        return {
            "why_not": "the primary analysis is not available (see section 2).",
            "failure": None,
        }
    n_missing = int(len(trial.visits) * trial.data["subject_id"].nunique() - len(trial.data))
    if n_missing == 0:
        return {
            "why_not": "every analysed person has the outcome at every scheduled visit: "
            "there is nothing to impute.",
            "failure": None,
        }
    tables, failure = guarded(log, SOURCE, lambda: _compute(trial, seed))
    if tables is None:
        return {"why_not": None, "failure": failure or Failure(SOURCE, "not computed")}
    methods, tipping = tables
    week = trial.visit_weeks[trial.primary_visit]
    return {
        "why_not": None,
        "failure": None,
        "n_imputations": REPORT_IMPUTATIONS,
        "n_missing": n_missing,
        "at": f"visit {trial.primary_visit} (week {week:.3g})",
        "methods": _methods_table(trial, methods),
        "tipping": _tipping_table(trial, tipping),
        "sentences": _sentences(trial, tipping, unit_of(outcome, trial.study.schema)),
    }


def _compute(trial: Any, seed: int) -> tuple[dict[str, Any], Any]:
    methods = {
        m: sensitivity(trial, method=m, n_imputations=REPORT_IMPUTATIONS, seed=seed)
        for m in METHOD_NAMES
    }
    tipping = tipping_point(trial, n_imputations=REPORT_IMPUTATIONS, seed=seed)
    return methods, tipping


def _methods_table(trial: Any, methods: dict[str, Any]) -> Table:
    rows = [
        (
            r["contrast"],
            "Primary MMRM (missing visits not imputed; MAR)",
            format_number(r["estimate"]),
            format_number(r["std_error"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
            format_p(r["p_value"]),
        )
        for r in trial.primary.to_dict("records")
    ]
    for method, table in methods.items():
        at = table[table["visit"] == trial.primary_visit]
        rows.extend(
            (
                r["contrast"],
                METHOD_NAMES[method],
                format_number(r["estimate"]),
                format_number(r["std_error"]),
                format_interval(r["ci_lower"], r["ci_upper"]),
                format_p(r["p_value"]),
            )
            for r in at.to_dict("records")
        )
    order = {c: i for i, c in enumerate(trial.primary["contrast"])}
    rows.sort(key=lambda r: order[r[0]])
    return Table.of(
        ["Comparison", "Analysis", "Difference", "SE", "95 % CI", "p (unadjusted)"],
        rows,
        caption=f"Difference to the control {trial.control} at the primary visit under each "
        f"assumption about the missing visits ({REPORT_IMPUTATIONS} imputations each; "
        "Rubin's rules, Barnard–Rubin df).",
        numeric=[False, False, True, True, True, True],
    )


def _tip_rows(trial: Any, tipping: Any) -> list[tuple[str, float | None, float, float]]:
    """(contrast, tipping δ or None, estimate there, p there) per comparison."""
    out: list[tuple[str, float | None, float, float]] = []
    for contrast, part in tipping.groupby("contrast", sort=False):
        hit = part[part["tips"]]
        if len(hit):
            r = hit.iloc[0]
            out.append(
                (str(contrast), float(r["delta"]), float(r["estimate"]), float(r["p_value"]))
            )
        else:
            last = part.iloc[-1]
            out.append((str(contrast), None, float(last["estimate"]), float(last["p_value"])))
    return out


def _tipping_table(trial: Any, tipping: Any) -> Table:
    rows = []
    for contrast, delta, est, p in _tip_rows(trial, tipping):
        part = tipping[tipping["contrast"] == contrast]
        significant = bool(part["p_value"].iloc[0] < 0.05)
        if delta is None:
            what = (
                "not significant without a shift"
                if not significant
                else f"still significant at δ = {format_signed(part['delta'].iloc[-1])}"
            )
            rows.append((contrast, "–", what, format_number(est), format_p(p)))
        else:
            rows.append(
                (
                    contrast,
                    format_signed(delta),
                    "significance lost",
                    format_number(est),
                    format_p(p),
                )
            )
    return Table.of(
        ["Comparison", "Tipping δ", "", "Difference at δ", "p at δ"],
        rows,
        caption="Tipping point: δ added to every imputed value of the cocktail's people (MAR "
        "imputation), growing towards the control; the first δ of the grid at which p ≥ 0.05.",
        numeric=[False, True, False, True, True],
    )


def _sentences(trial: Any, tipping: Any, unit: str) -> list[str]:
    u = f" {unit}" if unit else ""
    out = []
    for contrast, delta, _, _ in _tip_rows(trial, tipping):
        if delta is None:
            continue
        out.append(
            f"{contrast}: the comparison stays significant unless the people who left did "
            f"worse than MAR predicts by about {format_number(abs(delta))}{u} (the first shift of "
            "the grid at which p ≥ 0.05)."
        )
    if not out and np.all(tipping["p_value"] >= 0.05):
        out.append("No comparison is significant under MAR imputation, so none can tip.")
    return out
