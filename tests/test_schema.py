"""The Table Schema files: well-formed descriptors, consistent keys, documented fields and
rules, agreement with the table contract in TABLES.md, and the schema reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesostats.data.schema import SchemaError, load_schema, parse_table_schema, schema_dir
from mesostats.data.validate import _RULE_CHECKERS

TABLE_SCHEMA_CONSTRAINTS = {
    "required", "unique", "minLength", "maxLength", "minimum", "maximum", "pattern", "enum",
}  # fmt: skip
TABLES_MD = Path("/work/notes/TABLES.md")


def raw_descriptors() -> dict[str, dict]:
    folder = schema_dir()
    package = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    return {
        r["name"]: json.loads((folder / r["schema"]).read_text(encoding="utf-8"))
        for r in package["resources"]
    }


def test_shipped_schema_files_equal_the_canonical_data_schema_folder() -> None:
    """Installed (wheel copy inside the package) or in a checkout: same files, same bytes."""
    canonical = Path(__file__).resolve().parent.parent / "data_schema"
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
            assert field["type"] in {"string", "integer", "number", "boolean"}
            assert set(field.get("constraints", {})) <= TABLE_SCHEMA_CONSTRAINTS
            assert field["title"] and field["description"], (name, field["name"])


def test_number_fields_state_their_units_or_scale() -> None:
    for raw in raw_descriptors().values():
        for field in raw["fields"]:
            if field["type"] == "number":
                assert "(" in field["title"], field["name"]


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
            assert rule["kind"] in _RULE_CHECKERS
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


def _tables_md_columns() -> dict[str, dict[str, tuple[str, str]]]:
    """{table: {column: (type, required)}} parsed from the markdown tables of TABLES.md."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    current = None
    for line in TABLES_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            words = line[3:].split()
            current = words[0] if words else None
        elif current and line.startswith("| ") and not line.startswith("| column"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) >= 3 and cells[0] != "---":
                out.setdefault(current, {})[cells[0]] = (cells[1], cells[2])
    return out


@pytest.mark.skipif(not TABLES_MD.exists(), reason="project notes not available")
def test_schema_matches_the_table_contract_in_tables_md() -> None:
    contract = _tables_md_columns()
    schema = load_schema()
    assert set(contract) == set(schema.table_names)
    for table, columns in contract.items():
        fields = {f.name: f for f in schema.tables[table].fields}
        assert list(columns) == list(fields), table
        for column, (ftype, required) in columns.items():
            assert fields[column].type == ftype, (table, column)
            assert fields[column].required == (required == "yes"), (table, column)


def test_load_schema_is_cached_and_reads_other_folders(tmp_path: Path) -> None:
    assert load_schema() is load_schema()
    for item in schema_dir().iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    assert load_schema(tmp_path).table_names == load_schema().table_names


def test_broken_schema_files_raise_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_schema(tmp_path)
    with pytest.raises(SchemaError, match="type 'date' is not supported"):
        parse_table_schema("t", {"fields": [{"name": "when", "type": "date"}]})
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
