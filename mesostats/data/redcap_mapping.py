"""Which REDCap field holds each mesostats column: ``mapping=`` resolved against the export.

``subject_id`` is the record ID (the dictionary's first field) unless mapped to another field;
``visit`` comes from the event (``redcap_event_name``) unless mapped to a field; every other
column of ``subjects``, ``sessions`` and ``adverse_events`` is read from the field the mapping
names, else from the field of the same name when the dictionary has it. Every required column
without a field, every mapping to a field the dictionary or the export lacks, and every mapping
key that is not a mesostats column is reported, all at once (rule ``mapping``). The
``adverse_events`` table is absent when none of its columns has a field (no adverse-event form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mesostats.data.problems import ProblemLog
from mesostats.data.redcap_dictionary import DataDictionary
from mesostats.data.redcap_export import RECORDS, Export
from mesostats.data.schema import StudySchema

__all__ = ["EVENT", "STRUCTURAL", "TABLES", "MappingPlan", "resolve_mapping"]

EVENT = "redcap_event_name"
TABLES = ("subjects", "sessions", "adverse_events")
STRUCTURAL = ("subject_id", "visit")


@dataclass
class MappingPlan:
    """Which REDCap field holds each mesostats column."""

    columns: dict[str, dict[str, str]]  # table → column → field (structural columns excluded)
    subject_field: str
    visit_field: str
    unmapped: set[tuple[str, str]] = field(default_factory=set)  # reported as mapping problems


def resolve_mapping(
    mapping: Mapping[str, str] | None,
    dd: DataDictionary,
    export: Export,
    schema: StudySchema,
    log: ProblemLog,
) -> MappingPlan:
    """Resolve ``mapping`` against the dictionary and the export; report every gap at once."""
    given = {str(k): str(v) for k, v in (mapping or {}).items()}
    owners = {c: t for t in TABLES for c in schema.tables[t].field_names}
    for key in given:
        if key not in owners:
            log.add_one(
                RECORDS,
                None,
                key,
                given[key],
                "mapping",
                f"mapping key {key!r} is not a mesostats column; keys are the columns of "
                + "; ".join(f"{t}: {', '.join(schema.tables[t].field_names)}" for t in TABLES)
                + ".",
            )
    record_id = dd.record_id or ""  # read_export made sure the record ID is a column
    plan = MappingPlan({t: {} for t in TABLES}, given.get("subject_id", record_id), EVENT)
    plan.visit_field = given.get("visit", EVENT if EVENT in export.columns else "visit")
    for column, name in (("subject_id", plan.subject_field), ("visit", plan.visit_field)):
        if name != EVENT and name not in dd.fields:
            plan.unmapped |= {(t, column) for t in TABLES if t != "subjects" or column != "visit"}
            _mapping_problem(log, "sessions", column, name, column in given)
    for table in TABLES:
        resolved: dict[str, str] = {}
        required: list[str] = []
        for spec in schema.tables[table].fields:
            if spec.name in STRUCTURAL:
                continue
            name = given.get(spec.name, spec.name)
            if name in dd.fields and _exported(name, dd, export):
                resolved[spec.name] = name
            elif spec.name in given or (spec.required and name in dd.fields):
                _mapping_problem(log, table, spec.name, name, spec.name in given, name in dd.fields)
                plan.unmapped.add((table, spec.name))
            elif spec.required:
                required.append(spec.name)
        optional_table = not schema.tables[table].required_table
        if optional_table and not resolved and not any(t == table for t, _ in plan.unmapped):
            continue  # e.g. no adverse-event form: a study without adverse events
        for column in required:
            _mapping_problem(log, table, column, column, False)
            plan.unmapped.add((table, column))
        plan.columns[table] = resolved
    return plan


def _exported(name: str, dd: DataDictionary, export: Export) -> bool:
    if dd.fields[name].type == "checkbox":
        return any(c.startswith(f"{name}___") for c in export.columns)
    return name in export.columns


def _mapping_problem(
    log: ProblemLog, table: str, column: str, name: str, given: bool, in_dictionary: bool = False
) -> None:
    if in_dictionary:
        why = f"field {name} is in the data dictionary but not a column of the records export"
        fix = "export it with the other fields"
    elif given:
        why = f"mapping[{column!r}] = {name!r}, but the data dictionary has no field {name!r}"
        fix = "check the field name (Variable / Field Name)"
    else:
        why = f"the data dictionary has no field named {column!r}"
        fix = f"say which field holds it: mapping={{{column!r}: '<field name>'}}"
    log.add_one(
        table,
        None,
        column,
        name,
        "mapping",
        f"no REDCap field for {table}.{column}: {why}; {fix}.",
    )
