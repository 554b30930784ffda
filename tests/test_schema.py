"""The Table Schema files: well-formed descriptors, consistent keys, documented fields, rules
and domain facts (units, outcomes, responder thresholds), agreement with the example study and
the README, and the schema reader."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from mesostats.data.rules import RULE_CHECKERS
from mesostats.data.schema import (
    SchemaError,
    load_schema,
    outcome_specs,
    parse_table_schema,
    schema_dir,
)
from mesostats.datasets import EXAMPLE_DIR

TABLE_SCHEMA_CONSTRAINTS = {
    "required", "unique", "minLength", "maxLength", "minimum", "maximum", "pattern", "enum",
}  # fmt: skip
REPOSITORY = Path(__file__).resolve().parent.parent


def raw_descriptors() -> dict[str, dict]:
    folder = schema_dir()
    package = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    return {
        r["name"]: json.loads((folder / r["schema"]).read_text(encoding="utf-8"))
        for r in package["resources"]
    }


def test_shipped_schema_files_equal_the_canonical_data_schema_folder() -> None:
    """Installed (wheel copy inside the package) or in a checkout: same files, same bytes."""
    canonical = REPOSITORY / "data_schema"
    shipped = schema_dir()
    names = sorted(p.name for p in canonical.glob("*.json"))
    assert names == sorted(p.name for p in shipped.glob("*.json"))
    assert len(names) == 5
    for name in names:
        assert (shipped / name).read_bytes() == (canonical / name).read_bytes(), name


def test_datapackage_lists_the_four_tables_and_which_are_required() -> None:
    schema = load_schema()
    assert schema.table_names == ["subjects", "cocktails", "sessions", "adverse_events"]
    assert schema.required_tables == ["subjects", "cocktails", "sessions"]


def test_descriptors_use_only_table_schema_v1_types_and_constraints() -> None:
    for name, raw in raw_descriptors().items():
        assert raw["name"] == name
        assert set(raw["missingValues"]) >= {""}
        for field in raw["fields"]:
            assert field["type"] in {"string", "integer", "number", "boolean", "date"}
            assert set(field.get("constraints", {})) <= TABLE_SCHEMA_CONSTRAINTS
            assert field["title"] and field["description"], (name, field["name"])


def test_number_fields_and_outcomes_state_their_unit() -> None:
    """x-mesostats-unit, or for a per-row unit the string field holding it."""
    for name, table in load_schema().tables.items():
        strings = {f.name for f in table.fields if f.type == "string"}
        for spec in table.fields:
            if spec.type == "number" or spec.is_outcome:
                assert spec.unit or spec.unit_field in strings, (name, spec.name)
    concentration = load_schema().tables["cocktails"].field("concentration")
    assert concentration.unit is None and concentration.unit_field == "unit"
    assert load_schema().tables["subjects"].field("age").unit == "years"


def test_outcomes_carry_label_units_and_responder_threshold() -> None:
    """The numbers the report used for responders; a change in a percentage is in points."""
    facts = {
        f.name: (f.label, f.unit, f.change_unit, f.responder_threshold) for f in outcome_specs()
    }
    assert facts == {
        "hair_density": ("Hair density", "hairs/cm²", "hairs/cm²", 10.0),
        "hair_count": ("Hair count (hairs in target area)", "hairs", "hairs", 10.0),
        "shaft_diameter_um": ("Shaft diameter", "µm", "µm", 5.0),
        "terminal_density": ("Terminal hair density", "hairs/cm²", "hairs/cm²", 10.0),
        "vellus_density": ("Vellus hair density", "hairs/cm²", "hairs/cm²", 10.0),
        "anagen_pct": ("Anagen hairs", "%", "percentage points", 5.0),
        "gpa_score": ("Global photographic assessment (-3 to +3)", "points", "points", 1.0),
        "pain_vas": ("Injection pain (VAS 0-10)", "points", "points", None),
    }
    schema = load_schema()
    assert schema.outcome_specs == outcome_specs(schema) == outcome_specs()
    assert schema.outcome("anagen_pct").unit == "%"
    with pytest.raises(KeyError, match=r"'volume_ml' is not an outcome field .*: hair_density, "):
        schema.outcome("volume_ml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"x-mesostats-role": "result"}, "x-mesostats-role 'result' is not one of outcome"),
        ({"x-mesostats-unit": " "}, "x-mesostats-unit must be a non-empty string, got ' '"),
        ({"x-mesostats-change-unit": "pp"}, "x-mesostats-change-unit needs an x-mesostats-unit"),
        (
            {"x-mesostats-role": "outcome", "x-mesostats-responder-threshold": "10"},
            "x-mesostats-responder-threshold must be a number, got '10'",
        ),
        (
            {"x-mesostats-role": "outcome", "x-mesostats-responder-threshold": 0},
            "x-mesostats-responder-threshold must be a positive change, got 0",
        ),
        ({"x-mesostats-responder-threshold": 5}, "only meaningful on an outcome field"),
        ({"x-mesostats-unit-field": "currency"}, "'currency' is not a string field of the table"),
    ],
)
def test_broken_domain_facts_raise_schema_error(extra: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        parse_table_schema("t", {"fields": [{"name": "x", "type": "number", **extra}]})


def test_keys_refer_to_existing_fields_and_tables() -> None:
    descriptors = raw_descriptors()
    for raw in descriptors.values():
        fields = {f["name"] for f in raw["fields"]}
        assert set(raw.get("primaryKey", [])) <= fields
        for spec in raw["fields"]:
            if spec["name"] in raw.get("primaryKey", []):
                assert spec["constraints"]["required"] is True
        for fk in raw.get("foreignKeys", []):
            assert set(fk["fields"]) <= fields
            target = descriptors[fk["reference"]["resource"]]
            assert set(fk["reference"]["fields"]) <= {f["name"] for f in target["fields"]}


def test_foreign_keys_are_the_contracted_ones() -> None:
    schema = load_schema()
    keys = {
        (name, fk.fields, fk.reference_table, fk.reference_fields)
        for name, table in schema.tables.items()
        for fk in table.foreign_keys
    }
    assert keys == {
        ("sessions", ("subject_id",), "subjects", ("subject_id",)),
        ("sessions", ("cocktail_id",), "cocktails", ("cocktail_id",)),
        ("adverse_events", ("subject_id", "visit"), "sessions", ("subject_id", "visit")),
    }


def test_custom_rules_are_described_and_known_to_the_validator() -> None:
    names = []
    for raw in raw_descriptors().values():
        for rule in raw.get("x-mesostats-rules", []):
            assert rule["kind"] in RULE_CHECKERS
            assert len(rule["description"]) > 30
            names.append(rule["name"])
    assert {
        "day_increases_with_visit", "one_baseline_per_subject", "baseline_on_or_before_day_1",
        "volume_with_cocktail", "area_with_hair_count", "day_not_zero",
    } <= set(names)  # fmt: skip


def test_outcome_fields_are_marked() -> None:
    assert load_schema().tables["sessions"].outcome_fields == [
        "hair_density", "hair_count", "shaft_diameter_um", "terminal_density",
        "vellus_density", "anagen_pct", "gpa_score", "pain_vas",
    ]  # fmt: skip


def test_example_study_files_have_the_schema_columns_in_schema_order() -> None:
    """The bundled example (written by the simulator) is laid out exactly as the schema says."""
    schema = load_schema()
    files = sorted(p.stem for p in EXAMPLE_DIR.glob("*.csv"))
    assert files == sorted(schema.table_names)
    for name in files:
        with open(EXAMPLE_DIR / f"{name}.csv", encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle))
        # sessions.date (visit date) is the alternative to day: the example writes days
        expected = [c for c in schema.tables[name].field_names if (name, c) != ("sessions", "date")]
        assert header == expected, name


def test_readme_data_model_names_only_schema_columns() -> None:
    """Every column the README's data-model table names is a field of that table."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    schema = load_schema()
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\|(.*)\|$", readme, flags=re.MULTILINE)
    assert sorted(table for table, _ in rows) == sorted(schema.table_names)
    for table, cells in rows:
        named = re.findall(r"`(\w+)`", cells)
        assert named, table
        assert set(named) <= set(schema.tables[table].field_names), table


def test_load_schema_is_cached_and_reads_other_folders(tmp_path: Path) -> None:
    assert load_schema() is load_schema()
    for item in schema_dir().iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    assert load_schema(tmp_path).table_names == load_schema().table_names


def test_broken_schema_files_raise_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_schema(tmp_path)
    with pytest.raises(SchemaError, match="type 'datetime' is not supported"):
        parse_table_schema("t", {"fields": [{"name": "when", "type": "datetime"}]})
    with pytest.raises(SchemaError, match="date format 'dd/mm/yyyy' is not 'default'"):
        parse_table_schema(
            "t", {"fields": [{"name": "when", "type": "date", "format": "dd/mm/yyyy"}]}
        )
    with pytest.raises(SchemaError, match="key field 'id' is not a field"):
        parse_table_schema("t", {"fields": [{"name": "x"}], "primaryKey": "id"})


def test_schema_dir_prefers_the_copy_inside_an_installed_wheel(tmp_path, monkeypatch) -> None:
    """A wheel ships data_schema/ as mesostats/data_schema/ (pyproject force-include)."""
    import mesostats.data.schema as schema_module

    package = tmp_path / "site-packages" / "mesostats"
    (package / "data").mkdir(parents=True)
    (package / "data_schema").mkdir()
    (package / "data_schema" / "datapackage.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(schema_module, "__file__", str(package / "data" / "schema.py"))
    assert schema_module.schema_dir() == package / "data_schema"
    (package / "data_schema" / "datapackage.json").unlink()
    with pytest.raises(SchemaError, match="installation is incomplete"):
        schema_module.schema_dir()
