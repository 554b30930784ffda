"""load_cdisc: the example study as ADaM datasets (SAS transport and Dataset-JSON) read back,
DTYPE / ANL01FL / ABLFL honoured, and bad deliveries reported in CDISC terms (dataset,
USUBJID, PARAMCD, AVISITN, observation, variable).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyreadstat
import pytest

import mesostats as ms
from mesostats.datasets import CDISC_EXAMPLE_DIR, example_study
from mesostats.exceptions import ValidationError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_cdisc_example.py"
TABLES = ["subjects", "cocktails", "sessions", "adverse_events"]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_cdisc_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = _script()


@pytest.fixture(scope="module")
def example() -> ms.Study:
    return example_study()


@pytest.fixture()
def datasets() -> dict[str, pd.DataFrame]:
    """The first 12 subjects as DataFrames (fresh copies)."""
    return SCRIPT_MODULE.adam_datasets(12)


def restricted(study: ms.Study, n: int) -> dict[str, pd.DataFrame]:
    ids = set(study.subjects["subject_id"].iloc[:n])
    out = {}
    for name in TABLES:
        frame = getattr(study, name)
        if "subject_id" in frame:
            frame = frame[frame["subject_id"].isin(ids)]
        out[name] = frame.reset_index(drop=True)
    return out


def assert_tables(study: ms.Study, expected: dict[str, pd.DataFrame] | ms.Study) -> None:
    for name in TABLES:
        want = expected[name] if isinstance(expected, dict) else getattr(expected, name)
        pd.testing.assert_frame_equal(
            getattr(study, name).reset_index(drop=True), want.reset_index(drop=True)
        )


def load(datasets: dict[str, pd.DataFrame], **options: Any) -> ms.Study:
    return ms.load_cdisc(datasets, cocktails=example_study().cocktails, **options)


def test_bundled_xpt_example_reads_back_as_the_example_subjects(example) -> None:
    study = ms.load_cdisc(CDISC_EXAMPLE_DIR, cocktails=CDISC_EXAMPLE_DIR / "cocktails.csv")
    assert_tables(study, restricted(example, 12))
    reasons = study.exclusions.query("table == 'ADHAIR'")["reason"]
    assert reasons.str.contains("DTYPE = LOCF \\(derived, not observed\\)").any()
    assert reasons.str.contains("ANL01FL is not Y").any()
    assert reasons.str.startswith("ADHAIR USUBJID ").all()


def test_bundled_files_hold_what_the_script_writes(datasets) -> None:
    for name, frame in datasets.items():
        read, meta = pyreadstat.read_xport(str(CDISC_EXAMPLE_DIR / f"{name.lower()}.xpt"))
        assert meta.table_name == name
        assert list(read.columns) == list(frame.columns)
        assert len(read) == len(frame)


@pytest.mark.parametrize("fmt", ["xpt", "json"])
def test_whole_example_round_trips_through_files(example, tmp_path, fmt) -> None:
    SCRIPT_MODULE.write_example(tmp_path, 0, fmt)
    study = ms.load_cdisc(tmp_path, cocktails=tmp_path / "cocktails.csv")
    assert_tables(study, example)
    flagged = study.exclusions.query("table == 'ADHAIR'")
    adhair = SCRIPT_MODULE.adam_datasets(0)["ADHAIR"]
    assert len(flagged) == int(((adhair["ANL01FL"] != "Y") | (adhair["DTYPE"] != "")).sum())


def test_dataframes_are_read_and_not_modified(datasets, example) -> None:
    before = {k: v.copy(deep=True) for k, v in datasets.items()}
    assert_tables(load(datasets), restricted(example, 12))
    for name, frame in datasets.items():
        pd.testing.assert_frame_equal(frame, before[name])


def test_dataset_json_1_0_is_read(datasets, tmp_path, example) -> None:
    for name, frame in datasets.items():
        doc = SCRIPT_MODULE.dataset_json(frame, name)
        items = [{"OID": "ITEMGROUPDATASEQ", "name": "ITEMGROUPDATASEQ", "type": "integer"}]
        items += [{"OID": c["itemOID"], "name": c["name"], "type": c["dataType"]}
                  for c in doc["columns"]]  # fmt: skip
        rows = [[i, *row] for i, row in enumerate(doc["rows"], 1)]
        group = {"records": len(rows), "name": name, "items": items, "itemData": rows}
        old = {"datasetJSONVersion": "1.0.0",
               "clinicalData": {"itemGroupData": {f"IG.{name}": group}}}  # fmt: skip
        (tmp_path / f"{name.lower()}.json").write_text(json.dumps(old), encoding="utf-8")
    study = ms.load_cdisc(tmp_path, cocktails=example.cocktails)
    assert_tables(study, restricted(example, 12))


def test_baseline_flag_comes_from_ablfl(datasets) -> None:
    adhair = datasets["ADHAIR"]
    adhair.loc[adhair["AVISITN"] == 1, "ABLFL"] = ""
    study = load(datasets)
    assert not study.sessions["baseline_flag"].any()


def write_xpt(folder: Path, datasets: dict[str, pd.DataFrame]) -> None:
    for name, frame in datasets.items():
        SCRIPT_MODULE.write_xpt(frame, folder / f"{name.lower()}.xpt", name)


def test_xpt_with_a_duplicated_usubjid_avisitn_is_reported(datasets, tmp_path) -> None:
    adhair = datasets["ADHAIR"]
    record = adhair[(adhair["PARAMCD"] == "HAIRDENS") & (adhair["ANL01FL"] == "Y")].iloc[[3]]
    datasets["ADHAIR"] = pd.concat([adhair, record.assign(AVAL=1.0)], ignore_index=True)
    write_xpt(tmp_path, datasets)
    subject, visit = record["USUBJID"].iloc[0], int(record["AVISITN"].iloc[0])
    with pytest.raises(
        ValidationError,
        match=rf"ADHAIR USUBJID {subject}, PARAMCD HAIRDENS, AVISITN {visit} \(obs \d+\): 2 "
        r"analysis records \(obs \d+, \d+\) for one parameter at one visit",
    ) as info:
        ms.load_cdisc(tmp_path, cocktails=example_study().cocktails)
    problems = info.value.problems
    assert set(problems["rule"]) == {"duplicate_record"} and len(problems) == 2
    assert set(problems["row"]) == {record.index[0] + 1, len(adhair) + 1}  # observations


def test_records_set_aside_by_flags_do_not_count_as_duplicates(datasets) -> None:
    adhair = datasets["ADHAIR"]
    adhair.loc[adhair["ANL01FL"] == "", "ANL01FL"] = "Y"  # retests become analysis records
    adhair.loc[adhair["DTYPE"] == "LOCF", "ANL01FL"] = ""
    with pytest.raises(ValidationError, match="2 analysis records") as info:
        load(datasets)
    assert set(info.value.problems["rule"]) == {"duplicate_record"}


def test_validation_problems_are_located_by_dataset_and_observation(datasets) -> None:
    datasets["ADSL"].loc[2, "AGE"] = 5.0
    adhair = datasets["ADHAIR"]
    at = adhair.index[(adhair["PARAMCD"] == "HAIRDENS") & (adhair["AVISITN"] == 3)][0]
    adhair.loc[at, "AVAL"] = 900.0
    with pytest.raises(ValidationError, match=r"\d+ validation problems? in") as info:
        load(datasets)
    problems = info.value.problems.set_index("table")
    age, density = problems.loc["ADSL"], problems.loc["ADHAIR"]
    subject = datasets["ADSL"].loc[2, "USUBJID"]
    assert (age["row"], age["column"], age["rule"]) == (2, "AGE", "minimum")
    assert age["message"].startswith(f"ADSL USUBJID {subject} (obs 2), variable AGE: ")
    assert (density["row"], density["column"], density["rule"]) == (at, "AVAL", "maximum")
    assert "PARAMCD HAIRDENS, AVISITN 3" in density["message"]


def test_unknown_paramcd_is_reported_once(datasets) -> None:
    adhair = datasets["ADHAIR"]
    adhair.loc[adhair["PARAMCD"] == "SHAFTD", "PARAMCD"] = "SHAFTDIA"
    with pytest.raises(ValidationError, match=r"PARAMCD SHAFTDIA \(\d+ records\) is not a") as info:
        load(datasets)
    assert info.value.problems["rule"].tolist() == ["unknown_param"]
    study = load(datasets, params={**SCRIPT_MODULE.ADAM_PARAMS, "SHAFTDIA": "shaft_diameter_um"})
    assert study.sessions["shaft_diameter_um"].notna().any()


def test_exposure_not_in_millilitres_is_reported(datasets) -> None:
    datasets["ADEX"].loc[0, "EXDOSU"] = "uL"
    with pytest.raises(ValidationError, match=r"ADEX USUBJID .*: EXDOSU is uL, not mL"):
        load(datasets)


def test_sdtm_example_round_trips_through_xpt(example, tmp_path) -> None:
    SCRIPT_MODULE.write_example(tmp_path, 0, "xpt", "sdtm")
    study = ms.load_cdisc(tmp_path, cocktails=tmp_path / "cocktails.csv")
    assert_tables(study, example)
    assert study.source.startswith("CDISC SDTM")
    not_done = study.exclusions.query("table == 'XH'")["reason"]
    assert len(not_done) and not_done.str.endswith("XHSTAT = NOT DONE (no result)").all()


@pytest.fixture()
def sdtm() -> dict[str, pd.DataFrame]:
    return SCRIPT_MODULE.sdtm_datasets(12)


def test_sdtm_xpt_with_a_duplicated_usubjid_visitnum_is_reported(sdtm, tmp_path) -> None:
    xh = sdtm["XH"]
    record = xh[(xh["XHTESTCD"] == "HAIRDENS") & (xh["XHSTAT"] == "")].iloc[[2]]
    copy = record.assign(XHSEQ=999.0, XHSTRESN=150.0)
    sdtm["XH"] = pd.concat([xh, copy], ignore_index=True)
    write_xpt(tmp_path, sdtm)
    subject, visit = record["USUBJID"].iloc[0], int(record["VISITNUM"].iloc[0])
    with pytest.raises(
        ValidationError,
        match=rf"XH USUBJID {subject}, XHTESTCD HAIRDENS, VISITNUM {visit}, XHSEQ 999 "
        r"\(obs \d+\): 2 records \(obs \d+, \d+\) for one parameter at one visit",
    ) as info:
        ms.load_cdisc(tmp_path, cocktails=example_study().cocktails)
    problems = info.value.problems
    assert set(problems["table"]) == {"XH"} and len(problems) == 2
    assert set(problems["column"]) == {"USUBJID, XHTESTCD, VISITNUM"}


def test_sdtm_problems_use_sdtm_variable_names(sdtm, example) -> None:
    xh = sdtm["XH"]
    at = xh.index[(xh["XHTESTCD"] == "HAIRDENS") & (xh["VISITNUM"] == 2)][0]
    xh.loc[at, "XHSTRESN"] = 900.0
    sdtm["DM"].loc[1, "SEX"] = "X"
    with pytest.raises(ValidationError, match=r"\d+ validation problems? in") as info:
        ms.load_cdisc(sdtm, cocktails=example.cocktails)
    problems = info.value.problems.set_index("table")
    assert (problems.loc["XH", "column"], problems.loc["XH", "row"]) == ("XHSTRESN", at)
    assert "XHTESTCD HAIRDENS, VISITNUM 2" in problems.loc["XH", "message"]
    assert problems.loc["DM", "column"] == "SEX"


def test_sdtm_adverse_event_on_no_visit_day_is_reported(sdtm, example) -> None:
    sdtm["AE"].loc[0, "AESTDY"] = 999.0
    with pytest.raises(ValidationError, match=r"AE USUBJID \S+, AESEQ 1 \(obs 0\): AESTDY 999"):
        ms.load_cdisc(sdtm, cocktails=example.cocktails)


def test_sdtm_diagnosis_and_stage_come_from_suppdm(sdtm, example) -> None:
    sdtm["SUPPDM"] = sdtm["SUPPDM"][sdtm["SUPPDM"]["QNAM"] != "DIAGNOS"]
    with pytest.raises(
        ValidationError,
        match=r"DM has no variable DIAGNOS \(SDTM keeps it in SUPPDM: QNAM DIAGNOS, QVAL\)",
    ) as info:
        ms.load_cdisc(sdtm, cocktails=example.cocktails)
    assert set(info.value.problems["rule"]) == {"missing_column"}


def test_neither_adsl_nor_dm_is_reported(datasets) -> None:
    with pytest.raises(ValidationError, match=r"no ADSL \(ADaM\) or DM \(SDTM\) dataset"):
        load({"ADAE": datasets["ADAE"]})


def test_unreadable_transport_file_is_a_problem_not_a_crash(tmp_path, datasets) -> None:
    write_xpt(tmp_path, datasets)
    (tmp_path / "adae.xpt").write_bytes(b"not a SAS transport file" * 10)
    with pytest.raises(ValidationError, match=r"cannot read adae\.xpt as SAS transport"):
        ms.load_cdisc(tmp_path, cocktails=example_study().cocktails)
