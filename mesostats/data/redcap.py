"""Read a REDCap export (records + data dictionary) into a validated :class:`Study`.

:func:`load_redcap` follows REDCap's export format (REDCap Help & FAQ, "Data Export" and
"Data Dictionary"; names in :mod:`.redcap_dictionary`, rows in :mod:`.redcap_export`, fields
in :mod:`.redcap_mapping`, tables in :mod:`.redcap_tables`) and maps
it onto mesostats' tables:

- **record** → a subject (``subject_id`` is the record ID unless ``mapping`` names another
  field); subject fields are read from the record's non-repeating rows, on any event (two
  different values on two events are a ``conflict``);
- **event** → a visit: one session per record and visit event (its non-repeating row); the
  visit number comes from the event (``events=``, or the numbered unique names), or from a
  field when ``mapping={"visit": field}``;
- **repeating instrument** holding the adverse-event fields → one adverse event per instance,
  at the visit of its event (a non-repeating adverse-event form gives one event per visit);
- **coded choices** (dropdown, radio, checkbox, yes/no, true/false) → decoded with the
  dictionary, from codes (raw export) or labels (labels export); the mesostats value is the
  enum member the code or label names (``1, Mild`` → ``mild``; ``F, Female`` → ``F``),
  ``true``/``false`` for booleans, the code for numbers and for ``cocktail_id`` (a key), else
  the label. A value that is neither a code nor a label is a ``choice`` problem;
- **checkbox** (``f___code`` columns) mapped to one column → the one checked choice (none:
  missing; several: a ``checkbox_multiple`` problem); a one-choice checkbox mapped to a boolean
  column is ``true`` when checked;
- **missing-data codes** (``missing_codes=``, default REDCap's suggested list; fields tagged
  ``@NOMISSING`` excepted) → a missing value, recorded in ``study.exclusions`` with the code and
  its REDCap location, never read as a value. In a required column the validation problem
  shows the code.

Then the tables go through the same validation as :func:`~mesostats.data.load.load_study`, and
every problem is reported in REDCap terms: ``row`` is the line of the records file (the index
label for a DataFrame), ``column`` the REDCap field, and the message starts with ``record R,
event E, instance I, field F``. Rows that hold no mapped data are listed in ``exclusions``
(table ``records``). Recipes are not patient data and have no REDCap form: the ``cocktails``
table is passed as a file or DataFrame. Inputs are never modified.

Why hand-written: REDCap's own layout rules (events, repeating instruments, checkbox columns,
choices) have no offline Python library; reading the CSV uses pandas/pyarrow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mesostats.data.assemble import validated_study
from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.recipes import read_cocktails
from mesostats.data.redcap_dictionary import declared_missing_codes, read_dictionary
from mesostats.data.redcap_export import RECORDS, read_export, read_records
from mesostats.data.redcap_mapping import EVENT, resolve_mapping
from mesostats.data.redcap_tables import TableBuilder
from mesostats.data.schema import StudySchema, resolve_schema
from mesostats.data.study import Study

__all__ = ["load_redcap"]

DICTIONARY = "dictionary"


def load_redcap(
    records: Any,
    dictionary: Any,
    *,
    mapping: Mapping[str, str] | None = None,
    events: Mapping[str, int | None] | None = None,
    cocktails: Any = None,
    missing_codes: Mapping[str, str] | Sequence[str] | None = None,
    schema: StudySchema | str | os.PathLike[str] | None = None,
) -> Study:
    """Read a REDCap export, validate it like :func:`load_study`, and return the Study.

    Parameters
    ----------
    records : str, Path or DataFrame
        The records export as CSV ("CSV / Microsoft Excel", raw data or labels) or a DataFrame
        of it: one row per record × event (× repeating instrument instance).
    dictionary : str, Path or DataFrame
        The project's data dictionary (CSV from Project Setup, or the API's metadata).
    mapping : dict, optional
        mesostats column → REDCap field, e.g. ``{"hair_density": "hd_cm2", "severity":
        "ae_sev"}``. Columns not given are read from the field of the same name, when the
        dictionary has it; ``subject_id`` defaults to the record ID and ``visit`` to the event
        (``"redcap_event_name"``). Every required column without a field is listed in one
        ``ValidationError``.
    events : dict, optional
        Unique event name (or label) → visit number, or None for an event without a visit
        (e.g. enrolment). Default: events numbered alike (``visit_1_arm_1``, …) are the visits,
        events without a number hold no visit; any other event is a problem.
    cocktails : str, Path or DataFrame
        The cocktails table (recipes): a CSV, Parquet or XLSX file, or a DataFrame.
    missing_codes : dict or list, optional
        The project's missing-data codes (code → label); default REDCap's suggested list
        (``UNK``, ``NASK``, ``NA``, …). Numeric codes such as ``-999`` must be declared here.
    schema : StudySchema or path, optional
        As in :func:`load_study`.

    Returns
    -------
    Study
        Table indexes are lines of the records file (DataFrame: its index labels);
        ``exclusions`` also lists missing-data codes and rows with no mapped data.

    Raises
    ------
    ValidationError
        Every problem at once, in REDCap terms (record, event, instance, field).

    Examples
    --------
    >>> import mesostats as ms
    >>> study = ms.load_redcap("records.csv", "dictionary.csv",
    ...                        cocktails="cocktails.csv")  # doctest: +SKIP
    """
    study_schema = resolve_schema(schema)
    log = ProblemLog([*study_schema.table_names, DICTIONARY, RECORDS])
    codes = declared_missing_codes(missing_codes)
    dd = read_dictionary(dictionary)
    for row, column, value, rule, message in dd.problems:
        log.add_one(DICTIONARY, row, column, value, rule, message)
    raw_records = read_records(records, log) if dd.fields else None
    raw_cocktails = read_cocktails(cocktails, study_schema, log, "a REDCap export")
    from_field = (mapping or {}).get("visit", EVENT) != EVENT
    export = (
        read_export(raw_records, dd, events, codes, log, visits_from_field=from_field)
        if raw_records
        else None
    )
    tables: dict[str, RawTable] = {}
    builder: TableBuilder | None = None
    if export is not None:
        plan = resolve_mapping(mapping, dd, export, study_schema, log)
        builder = TableBuilder(export, dd, plan, study_schema, codes, log)
        tables = builder.build()
    if raw_cocktails is not None:
        tables["cocktails"] = raw_cocktails
    source = f"REDCap export {records if isinstance(records, (str, Path)) else 'DataFrame'}"

    def in_redcap_terms(problems: pd.DataFrame) -> pd.DataFrame:
        return problems if builder is None else builder.in_redcap_terms(problems)

    return validated_study(
        tables,
        study_schema,
        log,
        in_source_terms=in_redcap_terms,
        source=source,
        set_aside=builder.exclusions() if builder is not None else None,
    )
