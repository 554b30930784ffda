"""Read the Frictionless Table Schema files that describe a mesostats study.

The canonical schema files live in ``data_schema/`` at the root of the repository; the wheel
ships them as ``mesostats/data_schema/`` (hatch ``force-include``). :func:`schema_dir` finds
them in either place. They are plain JSON read with :mod:`json`: frictionless-py is not a
dependency (its row-by-row validation is far too slow for a million sessions), and the
vectorised checks of :mod:`mesostats.data.validate` only need the descriptors.

What is read from each ``<table>.schema.json`` (Table Schema v1):

- ``fields``: ``name``, ``type`` (``string``, ``integer``, ``number``, ``boolean``,
  ``date`` with its ``format``: ``"default"`` ISO, ``"any"`` detected, or a strptime pattern),
  ``title``, ``description``, ``trueValues``/``falseValues`` (booleans), ``constraints``
  (``required``, ``unique``, ``enum``, ``minimum``, ``maximum``, ``pattern``,
  ``minLength``, ``maxLength``) and the custom field properties that carry domain facts:

  - ``x-mesostats-role``: ``"outcome"`` marks the outcome columns of the sessions table (the
    only role so far; an unknown role is a :class:`SchemaError`);
  - ``x-mesostats-unit``: the unit of the values (``"hairs/cm²"``, ``"µm"``, ``"%"``, …);
  - ``x-mesostats-change-unit``: the unit of a *change* in the field, where it differs from the
    unit (a change in a percentage is in ``"percentage points"``);
  - ``x-mesostats-responder-threshold``: the clinically meaningful change (in the change unit)
    that makes a person a responder; only on outcome fields;
  - ``x-mesostats-unit-field``: for a number whose unit varies by row, the string field of the
    same table holding it (``cocktails.concentration`` → ``unit``);
- ``primaryKey``, ``foreignKeys`` and ``missingValues``;
- ``x-mesostats-rules``: cross-row and cross-field rules that Table Schema cannot express, each
  an object with ``name``, ``kind``, ``description`` and kind-specific keys (see
  :mod:`mesostats.data.rules` for the kinds).

``datapackage.json`` lists the tables (resources) in order and says, with the custom
``x-mesostats-required`` key, which may be absent.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mesostats.exceptions import SchemaError

__all__ = [
    "FIELD_ROLES",
    "FieldSpec",
    "ForeignKey",
    "SchemaError",
    "StudySchema",
    "TableSchema",
    "load_schema",
    "outcome_specs",
    "schema_dir",
]

FIELD_TYPES = ("string", "integer", "number", "boolean", "date")
#: Values of ``x-mesostats-role``.
FIELD_ROLES = ("outcome",)
DEFAULT_MISSING_VALUES = ("",)
DEFAULT_TRUE_VALUES = ("true", "True", "TRUE", "1")
DEFAULT_FALSE_VALUES = ("false", "False", "FALSE", "0")


@dataclass(frozen=True)
class FieldSpec:
    """One field (column) of a table schema."""

    name: str
    type: str
    title: str = ""
    description: str = ""
    required: bool = False
    unique: bool = False
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    true_values: tuple[str, ...] = DEFAULT_TRUE_VALUES
    false_values: tuple[str, ...] = DEFAULT_FALSE_VALUES
    role: str | None = None
    unit: str | None = None
    explicit_change_unit: str | None = None
    responder_threshold: float | None = None
    unit_field: str | None = None
    format: str = "default"

    @property
    def is_outcome(self) -> bool:
        """The field is an outcome (``x-mesostats-role: outcome``)."""
        return self.role == "outcome"

    @property
    def change_unit(self) -> str | None:
        """Unit of a change in this field: ``x-mesostats-change-unit``, else :attr:`unit`."""
        return self.explicit_change_unit or self.unit

    @property
    def label(self) -> str:
        """The title without a trailing ``" (unit)"`` (``"Hair density"``); else the title,
        else the name."""
        title = self.title or self.name
        suffix = f" ({self.unit})" if self.unit else None
        if suffix and title.endswith(suffix) and len(title) > len(suffix):
            return title[: -len(suffix)]
        return title


@dataclass(frozen=True)
class ForeignKey:
    """``fields`` of this table must match ``reference_fields`` of ``reference_table``."""

    fields: tuple[str, ...]
    reference_table: str
    reference_fields: tuple[str, ...]


@dataclass(frozen=True)
class TableSchema:
    """The parsed descriptor of one table."""

    name: str
    fields: tuple[FieldSpec, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    rules: tuple[Mapping[str, Any], ...] = ()
    title: str = ""
    description: str = ""
    required_table: bool = True

    @property
    def field_names(self) -> list[str]:
        """Names of the fields, in schema order."""
        return [f.name for f in self.fields]

    @property
    def required_fields(self) -> list[str]:
        """Fields that must be present as a column and filled on every row."""
        return [f.name for f in self.fields if f.required]

    @property
    def outcome_fields(self) -> list[str]:
        """Names of the fields marked ``x-mesostats-role: outcome``, in schema order."""
        return [f.name for f in self.fields if f.is_outcome]

    @property
    def outcome_specs(self) -> tuple[FieldSpec, ...]:
        """The outcome fields themselves (name, label, unit, change unit, threshold)."""
        return tuple(f for f in self.fields if f.is_outcome)

    def field(self, name: str) -> FieldSpec:
        """The field called ``name`` (``KeyError`` if there is none)."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclass(frozen=True)
class StudySchema:
    """All table schemas of a study, in datapackage order."""

    tables: Mapping[str, TableSchema]
    directory: str = ""
    package: Mapping[str, Any] = field(default_factory=dict)

    @property
    def table_names(self) -> list[str]:
        """Table names in datapackage order."""
        return list(self.tables)

    @property
    def required_tables(self) -> list[str]:
        """Tables that must be present."""
        return [name for name, t in self.tables.items() if t.required_table]

    @property
    def outcome_specs(self) -> tuple[FieldSpec, ...]:
        """The outcome fields of the sessions table, in schema order.

        Each :class:`FieldSpec` says its ``name``, ``label`` (e.g. ``"Hair density"``),
        ``unit``, ``change_unit`` and ``responder_threshold``.
        """
        sessions = self.tables.get("sessions")
        return () if sessions is None else sessions.outcome_specs

    def outcome(self, name: str) -> FieldSpec:
        """The outcome field called ``name`` (``KeyError`` naming the outcomes if none)."""
        for spec in self.outcome_specs:
            if spec.name == name:
                return spec
        known = ", ".join(f.name for f in self.outcome_specs) or "none"
        raise KeyError(f"{name!r} is not an outcome field of the schema (outcomes: {known})")


def outcome_specs(schema: StudySchema | None = None) -> tuple[FieldSpec, ...]:
    """The outcome fields of ``schema`` (default: the schema shipped with mesostats).

    Returns
    -------
    tuple of FieldSpec
        In schema order; read ``name``, ``label``, ``unit``, ``change_unit`` (the unit of a
        change from baseline) and ``responder_threshold`` (``None`` where the schema sets
        none) from each.

    Examples
    --------
    >>> from mesostats.data.schema import outcome_specs
    >>> [(f.name, f.change_unit, f.responder_threshold) for f in outcome_specs()][:2]
    [('hair_density', 'hairs/cm²', 10.0), ('hair_count', 'hairs', 10.0)]
    """
    return (load_schema() if schema is None else schema).outcome_specs


def schema_dir() -> Path:
    """Folder holding the schema JSON files.

    Returns
    -------
    pathlib.Path
        ``mesostats/data_schema`` inside an installed wheel, else ``<repo>/data_schema`` in a
        source or editable checkout.
    """
    package_root = Path(__file__).resolve().parent.parent
    for candidate in (package_root / "data_schema", package_root.parent / "data_schema"):
        if (candidate / "datapackage.json").is_file():
            return candidate
    raise SchemaError(
        "mesostats cannot find its table schemas (data_schema/datapackage.json) next to the "
        f"package ({package_root}) nor in the source checkout; the installation is incomplete: "
        "reinstall mesostats."
    )


def resolve_schema(schema: StudySchema | str | os.PathLike[str] | None) -> StudySchema:
    """The schema a loader validates against: the one given, the one in a folder, or (None)
    the schema shipped with mesostats."""
    if schema is None:
        return load_schema()
    if isinstance(schema, StudySchema):
        return schema
    return load_schema(Path(schema))


def load_schema(directory: str | Path | None = None) -> StudySchema:
    """Read ``datapackage.json`` and every table schema it names.

    Parameters
    ----------
    directory : str or Path, optional
        Folder with ``datapackage.json`` and ``<table>.schema.json`` files; default: the
        schema shipped with mesostats (:func:`schema_dir`).

    Returns
    -------
    StudySchema
    """
    folder = schema_dir() if directory is None else Path(directory)
    return _load_schema_cached(str(folder.resolve()))


@lru_cache(maxsize=8)
def _load_schema_cached(folder: str) -> StudySchema:
    root = Path(folder)
    package = _read_json(root / "datapackage.json")
    resources = package.get("resources")
    if not isinstance(resources, list) or not resources:
        raise SchemaError(f"{root / 'datapackage.json'} lists no resources")
    tables: dict[str, TableSchema] = {}
    for resource in resources:
        name = str(resource["name"])
        descriptor = resource.get("schema", f"{name}.schema.json")
        raw = descriptor if isinstance(descriptor, dict) else _read_json(root / str(descriptor))
        tables[name] = parse_table_schema(
            name, raw, required_table=bool(resource.get("x-mesostats-required", True))
        )
    return StudySchema(tables=tables, directory=str(root), package=package)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"schema file {path} does not hold a JSON object")
    return data


def parse_table_schema(
    name: str, raw: Mapping[str, Any], *, required_table: bool = True
) -> TableSchema:
    """Turn a Table Schema descriptor (a JSON object) into a :class:`TableSchema`."""
    fields = [_parse_field(name, item) for item in raw.get("fields", [])]
    primary_key = raw.get("primaryKey", [])
    if isinstance(primary_key, str):
        primary_key = [primary_key]
    foreign_keys = [_parse_foreign_key(fk) for fk in raw.get("foreignKeys", [])]
    names = {f.name for f in fields}
    strings = {f.name for f in fields if f.type == "string"}
    for spec in fields:
        if spec.unit_field is not None and spec.unit_field not in strings:
            raise SchemaError(
                f"table {name}, field {spec.name}: x-mesostats-unit-field {spec.unit_field!r} "
                "is not a string field of the table"
            )
    for key in (*primary_key, *(k for fk in foreign_keys for k in fk.fields)):
        if key not in names:
            raise SchemaError(f"table {name}: key field {key!r} is not a field of the schema")
    return TableSchema(
        name=name,
        fields=tuple(fields),
        primary_key=tuple(primary_key),
        foreign_keys=tuple(foreign_keys),
        missing_values=tuple(raw.get("missingValues", DEFAULT_MISSING_VALUES)),
        rules=tuple(raw.get("x-mesostats-rules", [])),
        title=str(raw.get("title", "")),
        description=str(raw.get("description", "")),
        required_table=required_table,
    )


def _parse_field(table: str, item: Mapping[str, Any]) -> FieldSpec:
    ftype = str(item.get("type", "string"))
    if ftype not in FIELD_TYPES:
        raise SchemaError(
            f"table {table}, field {item.get('name')}: type {ftype!r} is not supported "
            f"(use one of {', '.join(FIELD_TYPES)})"
        )
    cons = item.get("constraints", {})
    enum = cons.get("enum")
    fmt = str(item.get("format", "default"))
    if ftype == "date" and fmt not in ("default", "any") and "%" not in fmt:
        raise SchemaError(
            f"table {table}, field {item.get('name')}: date format {fmt!r} is not 'default' "
            "(ISO YYYY-MM-DD), 'any' (detected) or a strptime pattern such as '%d/%m/%Y'"
        )
    return FieldSpec(
        name=str(item["name"]),
        type=ftype,
        title=str(item.get("title", "")),
        description=str(item.get("description", "")),
        required=bool(cons.get("required", False)),
        unique=bool(cons.get("unique", False)),
        enum=tuple(enum) if enum is not None else None,
        minimum=_number_or_none(cons.get("minimum")),
        maximum=_number_or_none(cons.get("maximum")),
        pattern=cons.get("pattern"),
        min_length=cons.get("minLength"),
        max_length=cons.get("maxLength"),
        true_values=tuple(item.get("trueValues", DEFAULT_TRUE_VALUES)),
        false_values=tuple(item.get("falseValues", DEFAULT_FALSE_VALUES)),
        format=fmt,
        **_domain_facts(table, item),
    )


def _parse_foreign_key(fk: Mapping[str, Any]) -> ForeignKey:
    own = fk["fields"]
    ref = fk["reference"]
    ref_fields = ref["fields"]
    return ForeignKey(
        fields=tuple([own] if isinstance(own, str) else own),
        reference_table=str(ref["resource"]),
        reference_fields=tuple([ref_fields] if isinstance(ref_fields, str) else ref_fields),
    )


def _domain_facts(table: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """The ``x-mesostats-*`` properties of one field descriptor, checked."""
    where = f"table {table}, field {item.get('name')}"
    role = item.get("x-mesostats-role")
    if role is not None and role not in FIELD_ROLES:
        raise SchemaError(
            f"{where}: x-mesostats-role {role!r} is not one of {', '.join(FIELD_ROLES)}"
        )
    texts: dict[str, str | None] = {}
    for key in ("x-mesostats-unit", "x-mesostats-change-unit", "x-mesostats-unit-field"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise SchemaError(f"{where}: {key} must be a non-empty string, got {value!r}")
        texts[key] = value
    if texts["x-mesostats-change-unit"] is not None and texts["x-mesostats-unit"] is None:
        raise SchemaError(f"{where}: x-mesostats-change-unit needs an x-mesostats-unit")
    threshold = item.get("x-mesostats-responder-threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise SchemaError(
                f"{where}: x-mesostats-responder-threshold must be a number, got {threshold!r}"
            )
        if not math.isfinite(threshold) or threshold <= 0:
            raise SchemaError(
                f"{where}: x-mesostats-responder-threshold must be a positive change, got "
                f"{threshold!r}"
            )
        if role != "outcome":
            raise SchemaError(
                f"{where}: x-mesostats-responder-threshold is only meaningful on an outcome "
                "field (x-mesostats-role: outcome)"
            )
    return {
        "role": role,
        "unit": texts["x-mesostats-unit"],
        "explicit_change_unit": texts["x-mesostats-change-unit"],
        "responder_threshold": None if threshold is None else float(threshold),
        "unit_field": texts["x-mesostats-unit-field"],
    }


def _number_or_none(value: object) -> float | None:
    if value is None:
        return None
    return float(value)  # type: ignore[arg-type]
