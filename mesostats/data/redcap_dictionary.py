"""The REDCap data dictionary, and the names REDCap gives things in an export.

A REDCap project describes its fields in a *data dictionary* (Project Setup → "Data
Dictionary" → download, or the API's ``content=metadata``): one row per field, with the
columns this module reads (export header / API name):

- ``Variable / Field Name`` / ``field_name``: the field's name; the **first** field is the
  record ID;
- ``Form Name`` / ``form_name``: the instrument the field is on;
- ``Field Type`` / ``field_type``: ``text``, ``notes``, ``dropdown``, ``radio``, ``checkbox``,
  ``yesno``, ``truefalse``, ``calc``, ``slider``, ``descriptive``, ``file``, ``sql``;
- ``Field Label`` / ``field_label``: the question text (the column header of a "labels"
  export; HTML tags are stripped there);
- ``Choices, Calculations, OR Slider Labels`` / ``select_choices_or_calculations``: for
  dropdown, radio and checkbox fields, the coded choices ``code, label | code, label``;
  ``yesno`` is ``1, Yes | 0, No`` and ``truefalse`` is ``1, True | 0, False`` (implicit);
- ``Field Annotation`` / ``field_annotation``: action tags; ``@NOMISSING`` turns the project's
  missing-data codes off for the field.

Names in an export (REDCap "Export data" in CSV, raw or labels; REDCap Help & FAQ, "Data
Export"): a checkbox field ``f`` becomes one column per choice, ``f___code`` (the code in lower
case, other characters than letters and digits as ``_``), holding ``1``/``0`` (raw) or
``Checked``/``Unchecked`` (labels); a labels export heads checkbox columns
``Label (choice=Choice label)``. Longitudinal projects add ``redcap_event_name`` (the unique
event name, e.g. ``visit_3_arm_1``, made from the event's label and arm; a labels export shows
the label, ``Visit 3 (Arm 1: Main)``), projects with repeating instruments add
``redcap_repeat_instrument`` (the form name; its label in a labels export) and
``redcap_repeat_instance``.

Missing-data codes (Project Setup → Additional customizations → "Missing Data Codes"): codes a
user may enter in any field instead of a value. REDCap suggests the HL7 NullFlavor codes listed
in :data:`REDCAP_MISSING_CODES`; projects may declare their own (e.g. ``-999``).

Why hand-written: pandas reads the CSV files; no maintained Python library interprets a REDCap
dictionary offline (PyCap talks to a live server's API).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "CHOICE_TYPES",
    "REDCAP_MISSING_CODES",
    "SYSTEM_COLUMNS",
    "DataDictionary",
    "DictionaryField",
    "checkbox_suffix",
    "event_unique_name",
    "read_dictionary",
]

#: REDCap's suggested missing-data codes (HL7 v3 NullFlavor), code → label.
REDCAP_MISSING_CODES: dict[str, str] = {
    "NI": "No information",
    "INV": "Invalid",
    "UNK": "Unknown",
    "NASK": "Not asked",
    "ASKU": "Asked but unknown",
    "NAV": "Temporarily unavailable",
    "MSK": "Masked",
    "NA": "Not applicable",
    "NAVU": "Not available",
    "NP": "Not present",
    "QS": "Sufficient quantity",
    "QI": "Insufficient quantity",
    "TRC": "Trace",
    "UNC": "Unencoded",
    "DER": "Derived",
    "PINF": "Positive infinity",
    "NINF": "Negative infinity",
    "OTH": "Other",
}

#: Field types whose values are coded choices.
CHOICE_TYPES = ("dropdown", "radio", "checkbox", "yesno", "truefalse")

#: Columns REDCap adds to a records export (raw name → labels-export header).
SYSTEM_COLUMNS: dict[str, str] = {
    "redcap_event_name": "Event Name",
    "redcap_repeat_instrument": "Repeat Instrument",
    "redcap_repeat_instance": "Repeat Instance",
    "redcap_data_access_group": "Data Access Group",
    "redcap_survey_identifier": "Survey Identifier",
}

_IMPLICIT_CHOICES = {
    "yesno": {"1": "Yes", "0": "No"},
    "truefalse": {"1": "True", "0": "False"},
}

# dictionary column → our key; headers are compared in lower case, letters and digits only
_HEADERS = {
    "variablefieldname": "name",
    "fieldname": "name",
    "formname": "form",
    "fieldtype": "type",
    "fieldlabel": "label",
    "choicescalculationsorsliderlabels": "choices",
    "selectchoicesorcalculations": "choices",
    "fieldannotation": "annotation",
}
_REQUIRED_HEADERS = ("name", "form", "type")
_TAG = re.compile(r"<[^>]*>")
_ARM_SUFFIX = re.compile(r"\s*\(arm\s+(\d+)\s*:[^)]*\)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class DictionaryField:
    """One row of the data dictionary."""

    name: str
    form: str
    type: str
    label: str = ""
    choices: dict[str, str] = field(default_factory=dict)  # code → label, in order
    annotation: str = ""
    line: object = None  # row label in the dictionary (file line or index label)

    @property
    def allows_missing_codes(self) -> bool:
        """False when the ``@NOMISSING`` action tag turns missing-data codes off."""
        return "@NOMISSING" not in self.annotation.upper()


@dataclass(frozen=True)
class DataDictionary:
    """The fields of a REDCap project, in dictionary order, with the problems met reading it."""

    fields: dict[str, DictionaryField]
    problems: list[tuple[object, str | None, object, str, str]]  # row, column, value, rule, msg
    origin: str = "data dictionary"

    @property
    def record_id(self) -> str | None:
        """The record ID field: the first field of the dictionary."""
        return next(iter(self.fields), None)

    @property
    def forms(self) -> list[str]:
        """Instrument (form) names, in dictionary order."""
        return list(dict.fromkeys(f.form for f in self.fields.values()))


def read_dictionary(source: Any) -> DataDictionary:
    """Read a data dictionary from a CSV path or a DataFrame (never modified)."""
    problems: list[tuple[object, str | None, object, str, str]] = []
    if isinstance(source, pd.DataFrame):
        frame, origin, first_line = source, "data dictionary (DataFrame)", None
    else:
        path = Path(source)
        origin = path.name
        try:
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, encoding="utf-8-sig", on_bad_lines="error"
            )
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            msg = f"cannot read the REDCap data dictionary {path}: {exc}"
            problems.append((None, None, str(path), "unreadable", msg))
            return DataDictionary({}, problems, origin)
        first_line = 2
    keys = {_HEADERS.get(re.sub(r"[^a-z0-9]", "", str(c).lower())): i for i, c in enumerate(frame)}
    lacking = [k for k in _REQUIRED_HEADERS if k not in keys]
    if lacking:
        msg = (
            f"{origin} is not a REDCap data dictionary: it lacks the column(s) "
            f"{', '.join(lacking)} (columns found: {', '.join(map(str, frame.columns[:8]))}). "
            "Download it from Project Setup → Data Dictionary, or the API's content=metadata."
        )
        problems.append((None, None, None, "dictionary", msg))
        return DataDictionary({}, problems, origin)
    fields: dict[str, DictionaryField] = {}
    cells = {k: frame.iloc[:, i].to_numpy(dtype=object) for k, i in keys.items() if k}
    for pos in range(len(frame)):

        def cell(key: str, pos: int = pos) -> str:
            value = cells[key][pos] if key in cells else ""
            return "" if value is None or value != value else str(value).strip()

        line = frame.index[pos] if first_line is None else pos + first_line
        name, ftype = cell("name"), cell("type").lower()
        if not name:
            continue
        if name in fields:
            msg = f"{origin}: field {name} is defined twice; REDCap field names are unique."
            problems.append((line, "field_name", name, "dictionary", msg))
            continue
        choices: dict[str, str] = dict(_IMPLICIT_CHOICES.get(ftype, {}))
        if ftype in ("dropdown", "radio", "checkbox"):
            choices, bad = parse_choices(cell("choices"))
            for item in bad:
                msg = (
                    f"{origin}: choice {item!r} of field {name} is not 'code, label' "
                    "(choices are written '1, Mild | 2, Moderate')."
                )
                problems.append((line, "choices", item, "dictionary", msg))
        fields[name] = DictionaryField(
            name, cell("form"), ftype, cell("label"), choices, cell("annotation"), line
        )
    return DataDictionary(fields, problems, origin)


def parse_choices(text: str) -> tuple[dict[str, str], list[str]]:
    """``"1, Mild | 2, Moderate"`` → ``{"1": "Mild", "2": "Moderate"}``, and unparsable items."""
    choices: dict[str, str] = {}
    bad: list[str] = []
    for item in text.split("|"):
        if not item.strip():
            continue
        code, comma, label = item.partition(",")
        if not comma or not code.strip():
            bad.append(item.strip())
            continue
        choices[code.strip()] = label.strip()
    return choices, bad


def plain_label(label: str) -> str:
    """A field label as a labels export heads its column: HTML tags stripped, spaces folded."""
    return " ".join(_TAG.sub("", label).split())


def checkbox_suffix(code: str) -> str:
    """The column suffix REDCap gives a checkbox choice: ``f___<suffix>``."""
    return re.sub(r"[^a-z0-9]", "_", code.strip().lower())


def slug(text: str) -> str:
    """Lower case, runs of other characters than letters and digits as one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def event_unique_name(value: str) -> str:
    """The unique event name of an event given by unique name or by label.

    ``"visit_3_arm_1"`` stays; ``"Visit 3 (Arm 1: Main)"`` → ``"visit_3_arm_1"``; a label
    without an arm (single-arm project) gets ``_arm_1``.
    """
    text = value.strip()
    arm = _ARM_SUFFIX.search(text)
    if arm:
        return f"{slug(text[: arm.start()])}_arm_{arm.group(1)}"
    name = slug(text)
    return name if re.search(r"_arm_\d+$", name) else f"{name}_arm_1"


def label_headers(dictionary: DataDictionary) -> dict[str, list[str]]:
    """Labels-export column header → the raw column names it can stand for (in order)."""
    out: dict[str, list[str]] = {}
    for raw, header in SYSTEM_COLUMNS.items():
        out.setdefault(header, []).append(raw)
    for f in dictionary.fields.values():
        if f.type == "descriptive":
            continue
        label = plain_label(f.label)
        if f.type == "checkbox":
            for code, choice in f.choices.items():
                header = f"{label} (choice={plain_label(choice)})"
                out.setdefault(header, []).append(f"{f.name}___{checkbox_suffix(code)}")
        else:
            out.setdefault(label, []).append(f.name)
    return out


def declared_missing_codes(
    missing_codes: Mapping[str, str] | Sequence[str] | None,
) -> dict[str, str]:
    """The missing-data codes in force: REDCap's suggested list, or those declared."""
    if missing_codes is None:
        return dict(REDCAP_MISSING_CODES)
    if isinstance(missing_codes, Mapping):
        return {str(k).strip(): str(v) for k, v in missing_codes.items()}
    if isinstance(missing_codes, str):
        return {missing_codes.strip(): missing_codes.strip()}
    return {str(code).strip(): str(code).strip() for code in missing_codes}
