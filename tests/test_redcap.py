"""load_redcap: the example study's REDCap export read back, raw and labels exports, mapping,
missing-data codes, and bad exports reported in REDCap terms (record, event, instance, field).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mesostats as ms
from mesostats.datasets import REDCAP_EXAMPLE_DIR, example_study
from mesostats.exceptions import ValidationError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_redcap_example.py"
TABLES = ["subjects", "cocktails", "sessions", "adverse_events"]
LABEL_COLUMN = "Choices, Calculations, OR Slider Labels"


@pytest.fixture(scope="module")
def example() -> ms.Study:
    return example_study()


@pytest.fixture()
def export() -> dict[str, pd.DataFrame]:
    """The bundled export as DataFrames of text (fresh copies)."""
    return {
        name: pd.read_csv(REDCAP_EXAMPLE_DIR / f"{name}.csv", dtype=str, keep_default_na=False)
        for name in ("records", "dictionary", "cocktails")
    }


def load(export: dict[str, pd.DataFrame], **options: object) -> ms.Study:
    return ms.load_redcap(
        export["records"], export["dictionary"], cocktails=export["cocktails"], **options
    )


def assert_same_tables(study: ms.Study, expected: ms.Study) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(
            getattr(study, name).reset_index(drop=True),
            getattr(expected, name).reset_index(drop=True),
        )


def problems_of(info: pytest.ExceptionInfo[ValidationError]) -> pd.DataFrame:
    return info.value.problems


def test_example_export_files_read_back_as_the_example_study(example: ms.Study) -> None:
    study = ms.load_redcap(
        REDCAP_EXAMPLE_DIR / "records.csv",
        REDCAP_EXAMPLE_DIR / "dictionary.csv",
        cocktails=REDCAP_EXAMPLE_DIR / "cocktails.csv",
    )
    assert_same_tables(study, example)
    assert sorted(study.exclusions["reason"]) == sorted(example.exclusions["reason"])
    # rows are labelled by their line in records.csv
    records = pd.read_csv(REDCAP_EXAMPLE_DIR / "records.csv", dtype=str)
    line = int(study.sessions.index[0])
    assert records.loc[line - 2, "redcap_event_name"] == "visit_1_arm_1"


def test_committed_example_export_equals_script_output() -> None:
    spec = importlib.util.spec_from_file_location("make_redcap_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.export_texts().items():
        assert (REDCAP_EXAMPLE_DIR / name).read_text(encoding="utf-8") == text, name


def test_dataframe_inputs_are_not_modified(export: dict[str, pd.DataFrame], example) -> None:
    before = {k: v.copy(deep=True) for k, v in export.items()}
    assert_same_tables(load(export), example)
    for name, frame in export.items():
        pd.testing.assert_frame_equal(frame, before[name])


def to_labels_export(records: pd.DataFrame, dictionary: pd.DataFrame) -> pd.DataFrame:
    """What REDCap's 'CSV (labels)' export gives for the same data."""
    fields = dictionary.set_index("Variable / Field Name")
    out = {}
    for column in records.columns:
        values = records[column]
        name, _, code = column.partition("___")
        if column == "redcap_event_name":
            header = "Event Name"
            values = values.str.replace(r"^visit_(\d+)_arm_1$", r"Visit \1", regex=True)
            values = values.replace("enrolment_arm_1", "Enrolment")
        elif column == "redcap_repeat_instrument":
            header, values = "Repeat Instrument", values.replace("adverse_event", "Adverse Event")
        elif column == "redcap_repeat_instance":
            header = "Repeat Instance"
        elif column.endswith("_complete"):
            header = "Complete?"
            values = values.replace({"2": "Complete", "0": "Incomplete"})
        else:
            spec = fields.loc[name]
            choices = dict(
                (c.strip(), lab.strip())
                for c, _, lab in (p.partition(",") for p in spec[LABEL_COLUMN].split("|") if p)
            )
            if spec["Field Type"] == "yesno":
                choices = {"1": "Yes", "0": "No"}
            if spec["Field Type"] == "checkbox":
                label = {c.lower(): lab for c, lab in choices.items()}[code]
                header = f"{spec['Field Label']} (choice={label})"
                values = values.replace({"1": "Checked", "0": "Unchecked"})
            else:
                header = spec["Field Label"]
                if choices:
                    values = values.map(lambda v, ch=choices: ch.get(v, v))
        out[len(out)] = (header, values)
    frame = pd.DataFrame({i: v for i, (_, v) in out.items()})
    frame.columns = [h for h, _ in out.values()]
    return frame


def test_labels_export_reads_as_the_raw_export(export, example) -> None:
    labels = to_labels_export(export["records"], export["dictionary"])
    assert "Event Name" in labels.columns and "Complete?" in labels.columns
    assert (labels["Severity"] == "Mild").any()
    study = ms.load_redcap(labels, export["dictionary"], cocktails=export["cocktails"])
    assert_same_tables(study, example)


def test_labels_export_file_with_repeated_headers_reads(export, example, tmp_path) -> None:
    path = tmp_path / "records_labels.csv"
    to_labels_export(export["records"], export["dictionary"]).to_csv(path, index=False)
    assert path.read_text(encoding="utf-8").count("Complete?") == 3
    study = ms.load_redcap(path, export["dictionary"], cocktails=export["cocktails"])
    assert_same_tables(study, example)
    assert study.sessions.index[0] == 3  # line 3: after the header and the enrolment row


def rename_fields(export: dict[str, pd.DataFrame], renames: dict[str, str]) -> None:
    dictionary = export["dictionary"]
    dictionary["Variable / Field Name"] = dictionary["Variable / Field Name"].replace(renames)
    export["records"] = export["records"].rename(columns=renames)


def test_mapping_names_the_fields_of_mesostats_columns(export, example) -> None:
    renames = {"subject_id": "record_id", "hair_density": "hd_cm2", "severity": "ae_sev"}
    rename_fields(export, renames)
    mapping = {"hair_density": "hd_cm2", "severity": "ae_sev"}
    assert_same_tables(load(export, mapping=mapping), example)


def test_missing_mappings_are_listed_in_one_error(export) -> None:
    rename_fields(export, {"day": "study_day", "severity": "ae_sev", "sex": "gender"})
    with pytest.raises(ValidationError, match=r"no REDCap field for sessions\.day") as info:
        load(export)
    mapping = problems_of(info).query("rule == 'mapping'")
    assert set(mapping["column"]) == {"day", "severity", "sex"}
    assert "mapping={'day': '<field name>'}" in str(info.value)
    assert not (problems_of(info)["rule"] == "missing_column").any()


def test_mapping_to_a_field_the_dictionary_lacks_is_reported(export) -> None:
    with pytest.raises(ValidationError, match=r"mapping\['day'\] = 'dy'"):
        load(export, mapping={"day": "dy"})


def test_dictionary_lacking_a_field_is_reported(export) -> None:
    dictionary = export["dictionary"]
    export["dictionary"] = dictionary[dictionary["Variable / Field Name"] != "pain_vas"]
    with pytest.raises(
        ValidationError, match=r"records column 'pain_vas' is not a field of the data dictionary"
    ) as info:
        load(export)
    assert problems_of(info)["rule"].tolist() == ["unknown_field"]


def test_checkbox_column_with_an_unknown_code_is_reported(export) -> None:
    export["records"].insert(11, "diagnosis___alo", "0")
    with pytest.raises(
        ValidationError,
        match=r"checkbox column diagnosis___alo: code 'alo' is not a choice of field diagnosis",
    ) as info:
        load(export)
    assert problems_of(info)["rule"].tolist() == ["checkbox_code"]


def test_record_with_an_unknown_event_is_reported_once(export) -> None:
    records = export["records"]
    rows = records.index[
        (records["subject_id"] == "LYO-003") & records["redcap_event_name"].eq("visit_4_arm_1")
    ]
    records.loc[rows, "redcap_event_name"] = "week_12_arm_1"
    with pytest.raises(
        ValidationError,
        match=r"record LYO-003: event week_12_arm_1 .* is not numbered like the visit events",
    ) as info:
        load(export)
    unknown = problems_of(info).query("rule == 'unknown_event'")
    assert len(unknown) == 1 and unknown["row"].iloc[0] == rows[0]
    # declared, it is read as visit 4 again
    events = {f"visit_{v}_arm_1": v for v in range(1, 11)} | {"week_12_arm_1": 4}
    study = load(export, events=events | {"enrolment_arm_1": None})
    assert len(study.sessions) == len(example_study().sessions)


def test_missing_data_codes_are_recorded_not_read_as_values(export) -> None:
    records = export["records"]
    row = records.index[records["redcap_event_name"].eq("visit_2_arm_1")][0]
    records.loc[row, "hair_density"] = "UNK"
    records.loc[row + 1, "pain_vas"] = "-999"
    study = load(export, missing_codes={"UNK": "Unknown", "-999": "Not done"})
    line = row  # DataFrame input: rows are labelled by its index
    assert np.isnan(study.sessions.loc[line, "hair_density"])
    reasons = study.exclusions.query("table == 'sessions' and row == @line")["reason"]
    assert any("REDCap missing-data code UNK (Unknown)" in r for r in reasons)
    assert any("-999 (Not done)" in r for r in study.exclusions["reason"])


def test_undeclared_numeric_code_is_a_value_and_fails_validation(export) -> None:
    records = export["records"]
    row = records.index[records["redcap_event_name"].eq("visit_2_arm_1")][0]
    records.loc[row, "pain_vas"] = "-999"
    with pytest.raises(ValidationError, match=r"event visit_2_arm_1, field pain_vas: .*minimum"):
        load(export)


def test_missing_code_in_a_required_field_shows_the_code(export) -> None:
    records = export["records"]
    row = records.index[records["redcap_event_name"].eq("visit_3_arm_1")][0]
    records.loc[row, "day"] = "NASK"
    with pytest.raises(ValidationError, match=r"missing-data code NASK \(Not asked\)") as info:
        load(export)
    problem = problems_of(info).iloc[0]
    assert (problem["row"], problem["column"], problem["value"]) == (row, "day", "NASK")
    assert problem["rule"] == "required"


def test_unknown_choice_is_reported_with_record_event_and_instance(export) -> None:
    records = export["records"]
    row = records.index[records["redcap_repeat_instrument"].eq("adverse_event")][0]
    records.loc[row, "severity"] = "7"
    subject, event = records.loc[row, ["subject_id", "redcap_event_name"]]
    with pytest.raises(
        ValidationError,
        match=rf"record {subject}, event {event}, instance 1, field severity: '7' is not a "
        r"choice of severity \(choices: 1 = Mild",
    ) as info:
        load(export)
    assert problems_of(info)["rule"].tolist() == ["choice"]


def test_several_checked_boxes_for_one_value_are_reported(export) -> None:
    records = export["records"]
    row = records.index[records["redcap_event_name"].eq("enrolment_arm_1")][0]
    records.loc[row, ["diagnosis___aga", "diagnosis___te"]] = "1"
    with pytest.raises(ValidationError, match=r"several boxes of diagnosis are checked \(AGA, TE"):
        load(export)


def test_validation_problems_are_restated_in_redcap_terms(export) -> None:
    records = export["records"]
    enrol = records.index[records["redcap_event_name"].eq("enrolment_arm_1")][1]
    visit = records.index[records["redcap_event_name"].eq("visit_5_arm_1")][0]
    records.loc[enrol, "age"] = "7"
    records.loc[visit, "hair_density"] = "900"
    with pytest.raises(ValidationError, match=r"\d+ validation problems? in") as info:
        load(export)
    problems = problems_of(info)
    age = problems.query("rule == 'minimum'").iloc[0]
    density = problems.query("rule == 'maximum'").iloc[0]
    assert age["message"].startswith(f"record {records.loc[enrol, 'subject_id']}, field age: ")
    assert density["message"].startswith(
        f"record {records.loc[visit, 'subject_id']}, event visit_5_arm_1, field hair_density: "
    )
    assert density["row"] == visit


def test_subject_field_with_two_values_on_two_events_is_a_conflict(export) -> None:
    records = export["records"]
    row = records.index[records["redcap_event_name"].eq("visit_1_arm_1")][0]
    records.loc[row, "age"] = "99"
    with pytest.raises(ValidationError, match=r"age differs between events: 28 \(event enrol"):
        load(export)


def test_rows_without_mapped_data_are_listed_in_exclusions(export, example) -> None:
    records = export["records"]
    blank = records.iloc[[1]].copy()
    blank.loc[:, "subject_id":] = ""
    blank["subject_id"], blank["redcap_event_name"] = "LYO-001", "visit_1_arm_1"
    blank["redcap_repeat_instrument"], blank["redcap_repeat_instance"] = "adverse_event", "9"
    export["records"] = pd.concat([records.iloc[:2], blank, records.iloc[2:]], ignore_index=True)
    study = load(export)
    assert_same_tables(study, example)
    skipped = study.exclusions.query("table == 'records'")
    assert skipped["row"].tolist() == [2]  # the DataFrame's index label
    assert "instance 9: no mapped field is filled" in skipped["reason"].iloc[0]


def test_without_cocktails_the_missing_table_says_how_to_pass_it(export) -> None:
    with pytest.raises(ValidationError, match="a REDCap export holds no recipes; pass cocktails="):
        ms.load_redcap(export["records"], export["dictionary"])


def test_a_file_that_is_not_a_data_dictionary_is_reported(export, tmp_path) -> None:
    path = tmp_path / "dictionary.csv"
    export["cocktails"].to_csv(path, index=False)
    with pytest.raises(ValidationError, match=r"dictionary.csv is not a REDCap data dictionary"):
        ms.load_redcap(REDCAP_EXAMPLE_DIR / "records.csv", path, cocktails=export["cocktails"])


def test_visit_numbered_by_a_field_reads_events_with_any_name(export, example) -> None:
    records, dictionary = export["records"], export["dictionary"]
    event = records["redcap_event_name"]
    number = event.str.extract(r"^visit_(\d+)_arm_1$")[0]
    repeating = records["redcap_repeat_instrument"] != ""
    records.insert(13, "visit_no", number.where(~repeating, "").fillna(""))
    names = {f"visit_{n}_arm_1": f"{'baseline' if n == 1 else f'week_{n * 4}'}_arm_1"
             for n in range(1, 11)}  # fmt: skip
    records["redcap_event_name"] = event.replace(names)
    row = dictionary.iloc[[7]].assign(**{"Variable / Field Name": "visit_no"})
    export["dictionary"] = pd.concat([dictionary.iloc[:7], row, dictionary.iloc[7:]])
    with pytest.raises(
        ValidationError,
        match=r"sessions and adverse_events fields are filled on event baseline_arm_1 \(1",
    ) as info:
        load(export)  # without the mapping, baseline_arm_1 (no number) holds no visit
    assert info.value.problems["rule"].tolist() == ["not_a_visit"]
    assert_same_tables(load(export, mapping={"visit": "visit_no"}), example)


def test_nomissing_action_tag_turns_missing_codes_off_for_a_field(export) -> None:
    dictionary, records = export["dictionary"], export["records"]
    dictionary.loc[dictionary["Variable / Field Name"] == "pain_vas", "Field Annotation"] = (
        "@NOMISSING"
    )
    row = records.index[records["redcap_event_name"].eq("visit_2_arm_1")][0]
    records.loc[row, "pain_vas"] = "UNK"
    with pytest.raises(ValidationError, match=r"field pain_vas: .* must be a number") as info:
        load(export)
    assert info.value.problems[["value", "rule"]].values.tolist() == [["UNK", "type"]]


def test_checked_missing_code_box_is_recorded_and_required_value_reported(export) -> None:
    records = export["records"]
    records.insert(11, "diagnosis___unk", "0")
    row = records.index[records["redcap_event_name"].eq("enrolment_arm_1")][3]
    records.loc[row, ["diagnosis___aga", "diagnosis___fphl", "diagnosis___te"]] = "0"
    records.loc[row, "diagnosis___unk"] = "1"
    with pytest.raises(ValidationError, match=r"missing-data code UNK \(Unknown\)") as info:
        load(export)
    problem = info.value.problems.iloc[0]
    assert (problem["column"], problem["value"], problem["rule"]) == (
        "diagnosis",
        "UNK",
        "required",
    )


def test_events_of_several_arms_and_labels_name_the_same_visits(export, example) -> None:
    records = export["records"]
    second_arm = records["subject_id"].str.startswith("MAD")
    event = records["redcap_event_name"]
    records["redcap_event_name"] = event.where(
        ~second_arm, event.str.replace("_arm_1", "_arm_2", regex=False)
    )
    assert_same_tables(load(export), example)
    labels = event.str.replace(r"^visit_(\d+)_arm_1$", r"Visit \1 (Arm 2: Open label)", regex=True)
    records["redcap_event_name"] = labels.where(second_arm, event)
    assert_same_tables(load(export), example)


def test_non_repeating_adverse_event_form_gives_one_event_per_visit(export) -> None:
    records = export["records"]
    ae_fields = ["event", "severity", "serious", "related", "verbatim"]
    instances = records[records["redcap_repeat_instrument"] == "adverse_event"]
    single = instances.drop_duplicates(["subject_id", "redcap_event_name"], keep=False)
    visit_rows = records[records["redcap_repeat_instrument"] == ""].reset_index()
    merged = visit_rows.merge(
        single[["subject_id", "redcap_event_name", *ae_fields]],
        on=["subject_id", "redcap_event_name"],
        how="left",
        suffixes=("_old", ""),
    )
    flat = records.loc[merged["index"]].copy()
    flat[ae_fields] = merged[ae_fields].fillna("").to_numpy()
    export["records"] = flat
    study = load(export)
    assert len(study.adverse_events) == len(single)
    assert set(study.adverse_events["verbatim"]) == set(single["verbatim"])
