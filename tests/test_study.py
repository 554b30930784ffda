"""Study: outcome_table (CDISC baseline, CHG, PCHG against hand-computed values), event_table
(counts against the adverse-event rows), exclusions, display, immutability."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from mesostats.data.load import load_study
from mesostats.data.schema import load_schema, schema_dir
from mesostats.data.study import Study
from mesostats.exceptions import ModelSpecError

Tables = dict[str, pd.DataFrame]


def rows_of(table: pd.DataFrame, subject: str) -> pd.DataFrame:
    return table[table["subject_id"] == subject]


# --------------------------------------------------------------------------------------------
# outcome_table
# --------------------------------------------------------------------------------------------


def test_outcome_table_baseline_is_last_value_on_or_before_day_1(valid_tables: Tables) -> None:
    table = load_study(valid_tables).outcome_table("hair_density")
    s01 = rows_of(table, "S01")
    # S01: day -7 → 100, day 1 → 104 (baseline), day 29 → 120, day 85 → 130
    assert_allclose(s01["baseline"], [104.0] * 4)
    assert_allclose(s01["chg"], [-4.0, 0.0, 16.0, 26.0])
    assert_allclose(s01["pchg"], [-400 / 104, 0.0, 1600 / 104, 2600 / 104])
    assert_allclose(s01["week"], [-1.0, 0.0, 4.0, 12.0])
    assert s01["value"].tolist() == [100.0, 104.0, 120.0, 130.0]


def test_outcome_table_uses_last_earlier_value_when_day_1_is_missing(
    valid_tables: Tables,
) -> None:
    valid_tables["sessions"].loc[5, "hair_density"] = np.nan  # S02, day 1
    study = load_study(valid_tables)
    s02 = rows_of(study.outcome_table(), "S02")
    assert s02["visit"].tolist() == [1, 3, 4]  # the missing visit is not in the table
    assert_allclose(s02["baseline"], [80.0, 80.0, 80.0])  # day -7 value
    assert_allclose(s02["chg"], [0.0, 15.0, 21.0])
    assert_allclose(s02["pchg"], [0.0, 15 / 80 * 100, 21 / 80 * 100])
    excluded = study.outcome_exclusions("hair_density")
    assert excluded["row"].tolist() == [5, 15]
    assert excluded["reason"].tolist() == [
        "hair_density missing: not in outcome_table('hair_density')",
        "no outcome recorded at this visit: not in any outcome_table",  # S04 visit 4
    ]


def test_outcome_table_flagged_baseline_wins(valid_tables: Tables) -> None:
    valid_tables["sessions"]["baseline_flag"] = False
    valid_tables["sessions"].loc[8, "baseline_flag"] = True  # S03 day -7: 150 (day 1: 149)
    s03 = rows_of(load_study(valid_tables).outcome_table(), "S03")
    assert_allclose(s03["baseline"], [150.0] * 4)
    assert_allclose(s03["chg"], [0.0, -1.0, 1.0, -2.0])
    # unflagged subjects keep the day rule
    s01 = rows_of(load_study(valid_tables).outcome_table(), "S01")
    assert_allclose(s01["baseline"], [104.0] * 4)


def test_flagged_visit_without_this_outcome_falls_back_to_day_rule(
    valid_tables: Tables,
) -> None:
    valid_tables["sessions"]["baseline_flag"] = False
    valid_tables["sessions"].loc[0, "baseline_flag"] = True  # S01 day -7: pain_vas missing
    s01 = rows_of(load_study(valid_tables).outcome_table("pain_vas"), "S01")
    assert s01["value"].tolist() == [3.0, 2.5]
    assert_allclose(s01["baseline"], [3.0, 3.0])  # pain on day 1


def test_baseline_zero_gives_missing_pchg(valid_tables: Tables) -> None:
    valid_tables["sessions"].loc[13, "hair_density"] = 0.0  # S04 day 1
    s04 = rows_of(load_study(valid_tables).outcome_table(), "S04")
    assert_allclose(s04["baseline"], [0.0, 0.0, 0.0])
    assert_allclose(s04["chg"], [60.0, 0.0, 70.0])
    assert s04["pchg"].isna().all()


def test_subject_without_pre_treatment_value_has_missing_baseline(valid_tables: Tables) -> None:
    valid_tables["sessions"].loc[[12, 13], "hair_density"] = np.nan  # S04 days -7 and 1
    s04 = rows_of(load_study(valid_tables).outcome_table(), "S04")
    assert s04["value"].tolist() == [70.0]
    assert s04["baseline"].isna().all() and s04["chg"].isna().all()


def test_negative_baseline_uses_absolute_value_in_pchg(valid_tables: Tables) -> None:
    valid_tables["sessions"]["gpa_score"] = [0, -2, 1, 2] * 4
    s01 = rows_of(load_study(valid_tables).outcome_table("gpa_score"), "S01")
    assert_allclose(s01["baseline"], [-2.0] * 4)
    assert_allclose(s01["chg"], [2.0, 0.0, 3.0, 4.0])
    assert_allclose(s01["pchg"], [100.0, 0.0, 150.0, 200.0])


def test_outcome_table_ingredient_indicators_and_subject_columns(valid_tables: Tables) -> None:
    study = load_study(valid_tables)
    table = study.outcome_table()
    assert list(table.columns) == [
        "subject_id", "visit", "day", "week", "cocktail_id", "value", "baseline", "chg",
        "pchg", "biotin", "dutasteride", "minoxidil", "site", "arm", "sex", "age",
        "diagnosis", "stage",
    ]  # fmt: skip
    by_visit = table.set_index(["subject_id", "visit"])
    assert by_visit.loc[("S01", 2), ["biotin", "dutasteride", "minoxidil"]].tolist() == [1, 0, 1]
    assert by_visit.loc[("S02", 3), ["biotin", "dutasteride", "minoxidil"]].tolist() == [1, 1, 0]
    assert by_visit.loc[("S03", 2), ["biotin", "dutasteride", "minoxidil"]].tolist() == [0, 0, 0]
    assert by_visit.loc[("S01", 1), ["biotin", "dutasteride", "minoxidil"]].tolist() == [0, 0, 0]
    assert by_visit.loc[("S02", 1), "site"] == "Lyon" and by_visit.loc[("S02", 1), "age"] == 41
    assert table["biotin"].dtype == np.int64
    assert table.index.name == "row" and table.index.tolist()[:3] == [0, 1, 2]


def test_outcome_table_dose_exposure_is_concentration_times_volume(valid_tables: Tables) -> None:
    table = (
        load_study(valid_tables).outcome_table(exposure="dose").set_index(["subject_id", "visit"])
    )
    # S02 visit 2: cocktail DB (dutasteride 0.01 %, biotin 5 mg/mL), 1.5 mL
    assert_allclose(table.loc[("S02", 2), ["biotin", "dutasteride", "minoxidil"]], [7.5, 0.015, 0])
    # S04 visit 3: MB (minoxidil 0.5 %, biotin 5 mg/mL), 2 mL
    assert_allclose(table.loc[("S04", 3), ["biotin", "dutasteride", "minoxidil"]], [10.0, 0, 1.0])
    assert_allclose(table.loc[("S01", 4), ["biotin", "dutasteride", "minoxidil"]], [0, 0, 0])


def test_unknown_outcome_lists_available_outcomes(valid_tables: Tables) -> None:
    study = load_study(valid_tables)
    with pytest.raises(ModelSpecError, match=r"'hair_count' .* available: hair_density, pain_vas"):
        study.outcome_table("hair_count")
    valid_tables["sessions"]["anagen_pct"] = np.nan
    with pytest.raises(ModelSpecError, match="'anagen_pct' is missing on every session"):
        load_study(valid_tables).outcome_table("anagen_pct")
    with pytest.raises(ModelSpecError, match="exposure must be 'indicator' or 'dose'"):
        study.outcome_table(exposure="amount")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# event_table
# --------------------------------------------------------------------------------------------


def test_event_table_counts_events_per_assessed_session(valid_tables: Tables) -> None:
    table = load_study(valid_tables).event_table()
    assert len(table) == 8  # visits 2 and 3 of 4 subjects were assessed
    keyed = table.set_index(["subject_id", "visit"])
    assert keyed.loc[("S01", 2), "events"] == 2
    assert keyed.loc[("S02", 3), "events"] == 1
    assert keyed.loc[("S04", 3), "events"] == 1
    assert int(table["events"].sum()) == 4
    assert table["any_event"].tolist() == (table["events"] > 0).astype(int).tolist()
    assert keyed.loc[("S03", 2), ["biotin", "dutasteride", "minoxidil"]].tolist() == [0, 0, 0]
    assert {"site", "sex", "age"} <= set(table.columns)


def test_event_table_for_one_term(valid_tables: Tables) -> None:
    study = load_study(valid_tables)
    keyed = study.event_table("erythema").set_index(["subject_id", "visit"])
    assert keyed["events"].to_dict() == {
        ("S01", 2): 1, ("S01", 3): 0, ("S02", 2): 0, ("S02", 3): 1,
        ("S03", 2): 0, ("S03", 3): 0, ("S04", 2): 0, ("S04", 3): 0,
    }  # fmt: skip
    assert study.event_table("headache")["events"].sum() == 0
    with pytest.raises(ModelSpecError, match=r"'redness' is not a coded event term.*present"):
        study.event_table("redness")


def test_event_at_unassessed_session_is_excluded_not_counted(valid_tables: Tables) -> None:
    extra = valid_tables["adverse_events"].iloc[[0]].assign(visit=1)  # S01 visit 1: unassessed
    valid_tables["adverse_events"] = pd.concat(
        [valid_tables["adverse_events"], extra], ignore_index=True
    )
    study = load_study(valid_tables)
    assert int(study.event_table()["events"].sum()) == 4
    ae_excluded = study.exclusions[study.exclusions["table"] == "adverse_events"]
    assert ae_excluded["row"].tolist() == [4]
    assert "reactions_assessed false" in ae_excluded["reason"].iloc[0]


def test_event_table_without_adverse_events_table(valid_tables: Tables) -> None:
    del valid_tables["adverse_events"]
    table = load_study(valid_tables).event_table()
    assert len(table) == 8 and table["events"].sum() == 0


# --------------------------------------------------------------------------------------------
# exclusions, ingredients, display, immutability
# --------------------------------------------------------------------------------------------


def test_exclusions_list_every_visit_left_out_with_its_reason(valid_tables: Tables) -> None:
    valid_tables["sessions"].loc[15, "pain_vas"] = np.nan
    study = load_study(valid_tables)
    excl = study.exclusions
    assert list(excl.columns) == ["table", "row", "reason"]
    no_outcome = excl[excl["reason"].str.startswith("no outcome")]
    assert no_outcome["row"].tolist() == [15]  # S04 visit 4: neither outcome recorded
    pain = study.outcome_exclusions("pain_vas")
    assert sorted(pain["row"].tolist()) == [0, 3, 4, 7, 8, 11, 12, 15]
    # every session row is either in the outcome table or in its exclusions
    table = study.outcome_table("pain_vas")
    assert sorted([*table.index, *pain["row"]]) == list(range(16))


def test_ingredients_are_sorted_active_names(valid_tables: Tables) -> None:
    assert load_study(valid_tables).ingredients == ["biotin", "dutasteride", "minoxidil"]


def test_repr_is_one_informative_line(valid_tables: Tables) -> None:
    text = repr(load_study(valid_tables))
    assert "\n" not in text
    assert text.startswith("Study(4 subjects at 2 sites, 16 sessions, 3 cocktails, 4 adverse ")
    assert "ingredients: biotin, dutasteride, minoxidil" in text


def test_repr_html_escapes_user_strings(valid_tables: Tables) -> None:
    valid_tables["subjects"].loc[0, "site"] = "<script>alert(1)</script>"
    valid_tables["cocktails"]["cocktail_id"] = valid_tables["cocktails"]["cocktail_id"].replace(
        {"MB": "M&B"}
    )
    valid_tables["sessions"]["cocktail_id"] = valid_tables["sessions"]["cocktail_id"].replace(
        {"MB": "M&B"}
    )
    html = load_study(valid_tables)._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<td>M&amp;B</td><td>biotin, minoxidil</td>" in html
    assert "<tr><td>sessions</td><td>16</td></tr>" in html


def test_study_is_frozen_and_replace_sets_truth(valid_tables: Tables) -> None:
    study = load_study(valid_tables)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'source'"):
        study.source = "elsewhere"  # type: ignore[misc]
    simulated = dataclasses.replace(study, truth={"slope": 1.5})
    assert isinstance(simulated, Study)
    assert simulated.truth == {"slope": 1.5} and study.truth is None
    assert simulated.sessions is study.sessions
    assert_allclose(simulated.outcome_table()["chg"], study.outcome_table()["chg"])


def test_event_counts_follow_replaced_tables(valid_tables: Tables) -> None:
    """The cached session of each event is only used for the tables it was computed for."""
    study = load_study(valid_tables)
    fewer = study.adverse_events.iloc[[0, 3]]
    replaced = dataclasses.replace(study, adverse_events=fewer)
    keyed = replaced.event_table().set_index(["subject_id", "visit"])
    assert keyed.loc[("S01", 2), "events"] == 1 and keyed.loc[("S04", 3), "events"] == 1
    assert int(keyed["events"].sum()) == 2
    assert int(study.event_table()["events"].sum()) == 4


# --------------------------------------------------------------------------------------------
# the study's own schema
# --------------------------------------------------------------------------------------------


def custom_schema_folder(folder: Path) -> Path:
    """The shipped schema plus an outcome (scalp_redness) and an event term (folliculitis)."""
    for item in schema_dir().iterdir():
        if item.suffix == ".json":
            (folder / item.name).write_bytes(item.read_bytes())
    sessions = json.loads((folder / "sessions.schema.json").read_text(encoding="utf-8"))
    sessions["fields"].append(
        {
            "name": "scalp_redness",
            "type": "number",
            "title": "Scalp redness (0-4)",
            "description": "Investigator-rated scalp redness, 0 none to 4 severe.",
            "constraints": {"minimum": 0, "maximum": 4},
            "x-mesostats-role": "outcome",
            "x-mesostats-unit": "points",
        }
    )
    (folder / "sessions.schema.json").write_text(json.dumps(sessions), encoding="utf-8")
    events = json.loads((folder / "adverse_events.schema.json").read_text(encoding="utf-8"))
    event = next(f for f in events["fields"] if f["name"] == "event")
    event["constraints"]["enum"].append("folliculitis")
    (folder / "adverse_events.schema.json").write_text(json.dumps(events), encoding="utf-8")
    return folder


def test_study_answers_from_the_schema_it_was_loaded_with(
    valid_tables: Tables, tmp_path: Path
) -> None:
    """A custom schema's outcome and event term are the study's, not the packaged schema's."""
    valid_tables["sessions"]["scalp_redness"] = [0.0, 1.0, 2.0, 1.0] * 4
    valid_tables["adverse_events"].loc[1, "event"] = "folliculitis"
    schema = load_schema(custom_schema_folder(tmp_path))
    study = load_study(valid_tables, schema=schema)
    assert "scalp_redness" in study.outcomes and "folliculitis" in study.event_terms
    assert study.outcome_table("scalp_redness")["chg"].tolist()[:4] == [-1.0, 0.0, 1.0, 0.0]
    assert study.event_table("folliculitis")["events"].sum() == 1
    assert study.schema is schema
    packaged = load_study(make_tables_without(valid_tables, "scalp_redness"))
    assert "scalp_redness" not in packaged.outcomes and "folliculitis" not in packaged.event_terms
    with pytest.raises(ModelSpecError, match="'scalp_redness' is not an outcome column"):
        packaged.outcome_table("scalp_redness")


def make_tables_without(tables: Tables, column: str) -> Tables:
    """The tables with ``column`` dropped from sessions and every event term a packaged one."""
    out = {name: frame.copy() for name, frame in tables.items()}
    out["sessions"] = out["sessions"].drop(columns=[column])
    out["adverse_events"].loc[1, "event"] = "pain"
    return out
