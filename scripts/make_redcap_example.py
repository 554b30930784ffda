"""Write the example study as a REDCap export: mesostats/datasets/redcap_example/.

Usage::

    python scripts/make_redcap_example.py            # rewrite the bundled files
    python scripts/make_redcap_example.py --out DIR  # write them elsewhere

The files are what REDCap's "Export data" (CSV, raw) and "Data Dictionary" download give for a
longitudinal project holding the example study (``ms.example_study()``):

- ``dictionary.csv``: forms ``enrolment`` (site dropdown, sex radio, diagnosis checkbox,
  stage dropdown), ``visit`` (cocktail dropdown, GPA radio, yes/no fields) and
  ``adverse_event`` (repeating: coded event term, severity, yes/no seriousness and
  relatedness, verbatim notes); fields use the mesostats names (the default mapping);
- ``records.csv``: one row per record × event (``enrolment_arm_1``, ``visit_1_arm_1`` …),
  one row per adverse-event instance, checkbox columns ``diagnosis___aga`` …, coded values;
- ``cocktails.csv``: the recipes (not patient data: no REDCap form holds them).

``load_redcap(records.csv, dictionary.csv, cocktails=cocktails.csv)`` gives back the example
study's tables; tests/test_redcap.py checks it and that the committed files equal this
script's output.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from mesostats.datasets import example_study

DICTIONARY_HEADER = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]
EVENT_TERMS = [
    "erythema", "oedema", "pain", "haematoma", "bleeding", "headache", "pruritus",
    "tightness", "allergic_reaction", "infection", "hair_loss", "atrophy", "other",
]  # fmt: skip
STAGES = [
    "NH-I", "NH-II", "NH-IIa", "NH-III", "NH-IIIa", "NH-IIIv", "NH-IV", "NH-IVa", "NH-V",
    "NH-Va", "NH-VI", "NH-VII", "Ludwig-I", "Ludwig-II", "Ludwig-III",
]  # fmt: skip
GPA = ["Much worse", "Worse", "Slightly worse", "Unchanged", "Slightly better", "Better",
       "Much better"]  # fmt: skip
DIAGNOSES = {
    "AGA": "Androgenetic alopecia",
    "FPHL": "Female pattern hair loss",
    "TE": "Telogen effluvium",
}
NUMBERS = [
    ("volume_ml", "Volume injected (mL)"),
    ("hair_density", "Hair density (hairs/cm²)"),
    ("hair_count", "Hair count in target area"),
    ("target_area_cm2", "Target area (cm²)"),
    ("shaft_diameter_um", "Shaft diameter (µm)"),
    ("terminal_density", "Terminal hair density (hairs/cm²)"),
    ("vellus_density", "Vellus hair density (hairs/cm²)"),
    ("anagen_pct", "Anagen hairs (%)"),
]
ROOT = Path(__file__).resolve().parents[1]


def _choices(pairs: list[tuple[str, str]]) -> str:
    return " | ".join(f"{code}, {label}" for code, label in pairs)


def dictionary_rows(sites: list[str], cocktails: pd.DataFrame) -> list[dict[str, str]]:
    """The data dictionary: one dict per field (keys of :data:`DICTIONARY_HEADER`)."""
    recipes = []
    for cocktail_id, recipe in cocktails.groupby("cocktail_id", sort=False):
        parts = [f"{r.ingredient} {r.concentration:g} {r.unit}" for r in recipe.itertuples()]
        recipes.append((str(cocktail_id), " + ".join(parts)))

    def row(name: str, form: str, ftype: str, label: str, choices: str = "", **extra: str) -> dict:
        out = dict.fromkeys(DICTIONARY_HEADER, "")
        out.update(
            {
                "Variable / Field Name": name,
                "Form Name": form,
                "Field Type": ftype,
                "Field Label": label,
                "Choices, Calculations, OR Slider Labels": choices,
            }
        )
        out.update({k.replace("_", " "): v for k, v in extra.items()})
        return out

    integer = {"Text Validation Type OR Show Slider Number": "integer"}
    number = {"Text Validation Type OR Show Slider Number": "number"}
    rows = [
        row("subject_id", "enrolment", "text", "Subject ID"),
        row("site", "enrolment", "dropdown", "Site",
            _choices([(str(i), s) for i, s in enumerate(sites, 1)])),
        row("arm", "enrolment", "text", "Randomised arm"),
        row("sex", "enrolment", "radio", "Sex", _choices([("F", "Female"), ("M", "Male")])),
        row("age", "enrolment", "text", "Age (years)", **integer),
        row("diagnosis", "enrolment", "checkbox", "Diagnosis", _choices(list(DIAGNOSES.items()))),
        row("stage", "enrolment", "dropdown", "Stage at baseline",
            _choices([(str(i), s) for i, s in enumerate(STAGES, 1)])),
        row("day", "visit", "text", "Study day", **integer),
        row("cocktail_id", "visit", "dropdown", "Cocktail injected", _choices(recipes)),
    ]  # fmt: skip
    for name, label in NUMBERS:
        rows.append(row(name, "visit", "text", label, **number))
    rows += [
        row("gpa_score", "visit", "radio", "Global photographic assessment",
            _choices([(str(i), g) for i, g in zip(range(-3, 4), GPA, strict=True)])),
        row("pain_vas", "visit", "text", "Injection pain (VAS 0-10)", **number),
        row("reactions_assessed", "visit", "yesno", "Side effects assessed at this session?"),
        row("baseline_flag", "visit", "yesno", "Baseline visit?"),
        row("event", "adverse_event", "dropdown", "Adverse event (coded term)",
            _choices([(str(i), t.replace("_", " ").capitalize())
                      for i, t in enumerate(EVENT_TERMS, 1)])),
        row("severity", "adverse_event", "radio", "Severity",
            _choices([("1", "Mild"), ("2", "Moderate"), ("3", "Severe")])),
        row("serious", "adverse_event", "yesno", "Serious?"),
        row("related", "adverse_event", "yesno", "Related to the injection?"),
        row("verbatim", "adverse_event", "notes", "Event as described by the clinician"),
    ]  # fmt: skip
    return rows


def _text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    return str(value)


def records_rows(study: object, sites: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of the raw records export."""
    subjects = study.subjects  # type: ignore[attr-defined]
    sessions = study.sessions  # type: ignore[attr-defined]
    events = study.adverse_events  # type: ignore[attr-defined]
    site_code = {s: str(i) for i, s in enumerate(sites, 1)}
    stage_code = {s: str(i) for i, s in enumerate(STAGES, 1)}
    term_code = {t: str(i) for i, t in enumerate(EVENT_TERMS, 1)}
    severity_code = {"mild": "1", "moderate": "2", "severe": "3"}
    visit_fields = ["day", "cocktail_id", *(n for n, _ in NUMBERS), "gpa_score", "pain_vas",
                    "reactions_assessed", "baseline_flag"]  # fmt: skip
    ae_fields = ["event", "severity", "serious", "related", "verbatim"]
    header = [
        "subject_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
        "site", "arm", "sex", "age", *(f"diagnosis___{c.lower()}" for c in DIAGNOSES), "stage",
        "enrolment_complete", *visit_fields, "visit_complete", *ae_fields,
        "adverse_event_complete",
    ]  # fmt: skip
    by_subject = dict(tuple(sessions.groupby("subject_id", sort=False)))
    ae_by_visit = dict(tuple(events.groupby(["subject_id", "visit"], sort=False)))
    rows: list[dict[str, str]] = []
    for subject in subjects.itertuples(index=False):
        sid = subject.subject_id
        enrol = dict.fromkeys(header, "")
        enrol.update(
            subject_id=sid, redcap_event_name="enrolment_arm_1", site=site_code[subject.site],
            arm=_text(subject.arm), sex=subject.sex, age=_text(subject.age),
            stage=stage_code.get(_text(subject.stage), ""), enrolment_complete="2",
        )  # fmt: skip
        for code in DIAGNOSES:
            enrol[f"diagnosis___{code.lower()}"] = "1" if subject.diagnosis == code else "0"
        rows.append(enrol)
        for visit in by_subject.get(sid, sessions.iloc[:0]).itertuples(index=False):
            event = f"visit_{visit.visit}_arm_1"
            row = dict.fromkeys(header, "")
            row.update(subject_id=sid, redcap_event_name=event, visit_complete="2")
            row.update({f: _text(getattr(visit, f, None)) for f in visit_fields})
            rows.append(row)
            found = ae_by_visit.get((sid, visit.visit))
            for instance, ae in enumerate(
                [] if found is None else found.itertuples(index=False), 1
            ):
                row = dict.fromkeys(header, "")
                row.update(
                    subject_id=sid, redcap_event_name=event,
                    redcap_repeat_instrument="adverse_event",
                    redcap_repeat_instance=str(instance), event=term_code[ae.event],
                    severity=severity_code[ae.severity], serious=_text(ae.serious),
                    related=_text(ae.related), verbatim=_text(ae.verbatim),
                    adverse_event_complete="2",
                )  # fmt: skip
                rows.append(row)
    return header, rows


def _csv(header: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def export_texts() -> dict[str, str]:
    """The three files of the export, name → CSV text."""
    study = example_study()
    sites = list(dict.fromkeys(study.subjects["site"]))
    header, rows = records_rows(study, sites)
    cocktails = study.cocktails.reset_index(drop=True)
    return {
        "records.csv": _csv(header, rows),
        "dictionary.csv": _csv(DICTIONARY_HEADER, dictionary_rows(sites, cocktails)),
        "cocktails.csv": cocktails.to_csv(index=False, lineterminator="\n"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "mesostats" / "datasets" / "redcap_example",
        help="output folder (default: the package's redcap_example/ folder in this checkout)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in export_texts().items():
        path = args.out / name
        path.write_text(text, encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
