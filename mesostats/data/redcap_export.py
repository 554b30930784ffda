"""A REDCap records export as rows: record, event, repeating instrument and instance, fields.

:func:`read_export` reads the records CSV (or DataFrame) of a REDCap "Export data" (raw or
labels; REDCap Help & FAQ, "Data Export"; names explained in :mod:`.redcap_dictionary`) and
resolves what REDCap's layout means, leaving the mesostats semantics to :mod:`.redcap`:

- column headers → raw field names (a labels export heads columns with field labels; checkbox
  columns ``f___code`` or ``Label (choice=…)``); a column the dictionary does not know, and a
  checkbox column whose code is not a choice, are problems;
- ``redcap_event_name`` → the unique event name (labels ``Visit 3 (Arm 1: Main)`` too), and
  each event's visit number: from ``events=`` when given, else from the unique names (the
  events numbered alike, ``visit_1_arm_1``, ``visit_2_arm_1``, … are the visits; an event
  without a number, ``enrolment_arm_1``, holds no visit; when ``mapping`` names a visit
  field, every event is read and that field numbers the visits). An event neither declared
  nor numbered like the visits is a problem, once per event, and its rows are not read;
- ``redcap_repeat_instrument`` → the form name (labels export: the form's label);
- each row's location in REDCap terms, ``record 1001, event visit_3_arm_1, instance 2``
  (:meth:`Export.location`).

Why hand-written: pandas and pyarrow read the CSV (:func:`~.readers.csv.read_csv_table`, with
line numbers as row labels); REDCap's layout rules have no library outside a live server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.parse import RawTable, as_text
from mesostats.data.problems import ProblemLog
from mesostats.data.readers.csv import read_csv_table
from mesostats.data.redcap_dictionary import (
    SYSTEM_COLUMNS,
    DataDictionary,
    checkbox_suffix,
    event_unique_name,
    label_headers,
    plain_label,
    slug,
)

__all__ = ["RECORDS", "Export", "cell_series", "read_export", "read_records"]

#: Table name of problems about the records file itself.
RECORDS = "records"

_NUMBERED_EVENT = re.compile(r"^(?P<prefix>.*?)_?(?P<n>\d+)_arm_(?P<arm>\d+)$")
_IGNORED_LABELS = ("Complete?", "Survey Timestamp")


@dataclass
class Export:
    """A records export resolved to REDCap's structure (positions are rows of ``raw.frame``)."""

    raw: RawTable
    columns: dict[str, int]  # raw column name → position (first of that name)
    record: np.ndarray  # record ID per row (object; None when empty)
    event: np.ndarray  # unique event name per row, or None (not longitudinal)
    instrument: np.ndarray  # repeating instrument (form name) per row, or None
    instance: np.ndarray  # repeat instance per row (text), or None
    visit_of_event: dict[str, int | None]  # visit number of each event read (None: no visit)
    readable: np.ndarray  # bool: the row is on a known event
    label_mode: bool = False
    _text: dict[str, np.ndarray] = field(default_factory=dict)
    _series: dict[str, pd.Series] = field(default_factory=dict)

    def series(self, name: str) -> pd.Series:
        """The column as stripped ``str`` text (empty cells missing), index 0 … n-1."""
        if name not in self._series:
            self._series[name] = cell_series(self.raw.frame.iloc[:, self.columns[name]])
        return self._series[name]

    def text(self, name: str) -> np.ndarray:
        """The column as stripped text (object array; empty cells as None)."""
        if name not in self._text:
            arr = self.series(name).to_numpy(dtype=object)
            arr[pd.isna(arr)] = None
            self._text[name] = arr
        return self._text[name]

    def location(self, pos: int) -> str:
        """Where row ``pos`` is in REDCap terms: ``record X, event Y, instance Z``."""
        text = f"record {self.record[pos]}"
        if self.event[pos] is not None:
            text += f", event {self.event[pos]}"
        if self.instance[pos] is not None:
            text += f", instance {self.instance[pos]}"
        return text


def cell_series(series: pd.Series) -> pd.Series:
    """A column as stripped ``str`` text, empty cells missing (pyarrow string kernels)."""
    text = as_text(series).str.strip().reset_index(drop=True)
    empty = (text == "").to_numpy(dtype=bool, na_value=False)
    return text.mask(empty) if empty.any() else text


def read_records(records: Any, log: ProblemLog) -> RawTable | None:
    """The records export as text: a CSV path (rows = line numbers) or a DataFrame."""
    if isinstance(records, pd.DataFrame):
        frame = records.copy(deep=False)
        frame.columns = pd.Index([str(c) for c in records.columns], dtype=object)
        frame.index = pd.RangeIndex(len(frame))
        return RawTable(frame, records.index, "records (DataFrame)", None, list(frame.columns))
    if isinstance(records, (str, Path)):
        return read_csv_table(Path(records), RECORDS, log)
    log.add_one(
        RECORDS,
        None,
        None,
        type(records).__name__,
        "source",
        f"cannot read REDCap records from a {type(records).__name__}; pass the path of the "
        "records CSV export or a DataFrame of it.",
    )
    return None


def read_export(
    raw: RawTable,
    dictionary: DataDictionary,
    events: Mapping[str, int | None] | None,
    missing_codes: Mapping[str, str],
    log: ProblemLog,
    *,
    visits_from_field: bool = False,
) -> Export | None:
    """Resolve headers, events and instruments; ``None`` (reported) without a record ID.

    With ``visits_from_field`` a field numbers the visits, so every event is read.
    """
    names, label_mode = _raw_names(raw, dictionary, missing_codes, log)
    columns: dict[str, int] = {}
    for i, name in enumerate(names):
        if name is not None:
            columns.setdefault(name, i)
    record_id = dictionary.record_id
    if record_id is None or record_id not in columns:
        log.add_one(
            RECORDS,
            raw.header_row,
            record_id,
            None,
            "missing_column",
            f"the records export has no column for the record ID field {record_id} (the first "
            "field of the data dictionary); export records and dictionary from one project.",
        )
        return None
    n = len(raw.frame)
    export = Export(
        raw,
        columns,
        np.empty(0, dtype=object),
        np.full(n, None, dtype=object),
        np.full(n, None, dtype=object),
        np.full(n, None, dtype=object),
        {},
        np.ones(n, dtype=bool),
        label_mode,
    )
    export.record = export.text(record_id)
    if "redcap_event_name" in columns:
        written = export.text("redcap_event_name")
        uniques, codes = _factorize(written)
        export.event = _take([event_unique_name(u) for u in uniques], codes)
    if "redcap_repeat_instrument" in columns:
        written = export.text("redcap_repeat_instrument")
        forms = {slug(f): f for f in dictionary.forms}
        uniques, codes = _factorize(written)
        export.instrument = _take([forms.get(slug(u), u) for u in uniques], codes)
    if "redcap_repeat_instance" in columns:
        export.instance = export.text("redcap_repeat_instance")
    export.visit_of_event = _event_visits(export, events, visits_from_field, log)
    uniques, codes = _factorize(export.event)
    known = _take([u in export.visit_of_event for u in uniques], codes)
    export.readable = np.where(codes < 0, True, known).astype(bool)
    return export


def _raw_names(
    raw: RawTable, dictionary: DataDictionary, missing_codes: Mapping[str, str], log: ProblemLog
) -> tuple[list[str | None], bool]:
    """Raw name of each column (None: ignored or unknown, reported) and whether it was a
    labels export."""
    headers = [str(c).strip() for c in raw.frame.columns]
    record_id = dictionary.record_id
    label_mode = (
        record_id is not None
        and record_id not in headers
        and plain_label(dictionary.fields[record_id].label) in headers
    )
    queues = label_headers(dictionary) if label_mode else {}
    missing_suffixes = {checkbox_suffix(code) for code in missing_codes}
    forms = set(dictionary.forms)
    names: list[str | None] = []
    for header in headers:
        if label_mode:
            queue = queues.get(header)
            name = queue.pop(0) if queue else None
            if name is None and header in _IGNORED_LABELS:
                names.append(None)
                continue
            if name is None and header.endswith(")") and "(choice=" in header:
                name = _label_checkbox(header, dictionary, missing_codes)
        else:
            name = header
        if name in SYSTEM_COLUMNS or (name is not None and name in dictionary.fields):
            names.append(name)
            continue
        if name is not None and _form_status(name, forms):
            names.append(None)
            continue
        field_name, sep, suffix = (name or "").partition("___")
        spec = dictionary.fields.get(field_name)
        if sep and spec is not None and spec.type == "checkbox":
            known = {checkbox_suffix(code) for code in spec.choices}
            if suffix in known or suffix in missing_suffixes:
                names.append(name)
                continue
            shown = ", ".join(f"{c} ({lab})" for c, lab in spec.choices.items())
            log.add_one(
                RECORDS,
                raw.header_row,
                header,
                suffix,
                "checkbox_code",
                f"checkbox column {header}: code {suffix!r} is not a choice of field "
                f"{field_name} in the data dictionary (choices: {shown}) nor a missing-data "
                "code; export records and dictionary from the same project version.",
            )
        else:
            log.add_one(
                RECORDS,
                raw.header_row,
                header,
                None,
                "unknown_field",
                f"records column {header!r} is not a field of the data dictionary "
                f"({dictionary.origin}); export both from the same project, or add the field "
                "to the dictionary.",
            )
        names.append(None)
    return names, label_mode


def _label_checkbox(
    header: str, dictionary: DataDictionary, missing_codes: Mapping[str, str]
) -> str | None:
    """``Label (choice=Unknown)`` of a missing-data code → ``f___unk``."""
    label, _, choice = header[:-1].rpartition(" (choice=")
    for f in dictionary.fields.values():
        if f.type == "checkbox" and plain_label(f.label) == label:
            for code, text in missing_codes.items():
                if choice in (code, text):
                    return f"{f.name}___{checkbox_suffix(code)}"
    return None


def _form_status(name: str, forms: set[str]) -> bool:
    """``<form>_complete`` and ``<form>_timestamp`` columns (not fields)."""
    for suffix in ("_complete", "_timestamp"):
        if name.endswith(suffix) and name[: -len(suffix)] in forms:
            return True
    return False


def _event_visits(
    export: Export,
    events: Mapping[str, int | None] | None,
    visits_from_field: bool,
    log: ProblemLog,
) -> dict[str, int | None]:
    """Visit number of each event; unknown events reported (once each) and left out."""
    present = [e for e in dict.fromkeys(export.event) if e is not None]
    if not present:
        return {}
    if visits_from_field:
        return dict.fromkeys(present)  # every event may hold a visit; a field numbers it
    if events is not None:
        declared = {event_unique_name(str(k)): v for k, v in events.items()}
        known = {e: declared[e] for e in present if e in declared}
        hint = f"declared in events= ({', '.join(sorted(declared)) or 'none'})"
    else:
        parsed = {e: _NUMBERED_EVENT.match(e) for e in present}
        prefixes = [m.group("prefix") for m in parsed.values() if m]
        visit_prefix = max(sorted(set(prefixes)), key=prefixes.count) if prefixes else None
        known = {}
        for e, m in parsed.items():
            if m is None:
                known[e] = None  # no number: an event without a visit (e.g. enrolment)
            elif m.group("prefix") == visit_prefix:
                known[e] = int(m.group("n"))
        example = f"{visit_prefix}_<n>_arm_<arm>" if visit_prefix else "visit_<n>_arm_<arm>"
        hint = f"numbered like the visit events ({example})"
    for e in present:
        if e in known:
            continue
        rows = np.flatnonzero(export.event == e)
        records = list(dict.fromkeys(export.record[rows]))
        shown = ", ".join(map(str, records[:5])) + (" …" if len(records) > 5 else "")
        first = rows[0]
        log.add_one(
            RECORDS,
            export.raw.rows[first],
            "redcap_event_name",
            e,
            "unknown_event",
            f"record {export.record[first]}: event {e} ({len(rows)} row(s), records {shown}) "
            f"is not {hint}, so its visit number is unknown and its rows are not read. "
            f"Declare it: events={{'{e}': <visit number, or None for no visit>, …}}.",
            position=int(first),
        )
    return known


def _factorize(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    return [str(u) for u in uniques], codes


def _take(mapped: list[Any], codes: np.ndarray) -> np.ndarray:
    lookup = np.empty(len(mapped) + 1, dtype=object)
    lookup[: len(mapped)] = mapped
    lookup[-1] = None
    return lookup[codes]
