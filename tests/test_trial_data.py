"""The analysis frame of the primary analysis (mesostats.domain.trial_data): arms, control,
scheduled visits, change from baseline, and every person or row set aside with its reason.
Compared against the study tables themselves (counts and values recomputed here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.domain.trial_data import (
    SCHEDULED_SHARE,
    placebo_cocktails,
    subject_arms,
    trial_frame,
)
from mesostats.exceptions import ModelSpecError


@pytest.fixture(scope="module")
def example():
    return ms.example_study()


@pytest.fixture(scope="module")
def frame(example):
    return trial_frame(example, "hair_density")


def test_example_control_is_the_saline_cocktail_and_comes_first(frame):
    assert frame.control == "P"
    assert frame.cocktails == ("P", "A", "B", "C")
    assert list(frame.data["cocktail"].cat.categories) == ["P", "A", "B", "C"]


def test_example_scheduled_visits_are_the_post_baseline_visit_numbers(example, frame):
    s = example.sessions
    post = s[(s["day"] > 1) & s["hair_density"].notna()]
    assert frame.visits == tuple(sorted(int(v) for v in post["visit"].unique()))
    assert list(frame.data["visit"].cat.categories) == [str(v) for v in frame.visits]


def test_example_change_from_baseline_matches_the_sessions_table(example, frame):
    s = example.sessions.set_index(["subject_id", "visit"])["hair_density"]
    base = example.sessions[example.sessions["baseline_flag"]].set_index("subject_id")[
        "hair_density"
    ]
    d = frame.data
    value = s.reindex(pd.MultiIndex.from_arrays([d["subject_id"], d["visit_number"]]))
    assert_allclose(d["value"], value.to_numpy(), rtol=0, atol=0)
    assert_allclose(d["baseline"], base.reindex(d["subject_id"]).to_numpy(), rtol=0, atol=0)
    assert_allclose(d["chg"], d["value"] - d["baseline"], rtol=0, atol=1e-12)


def test_example_arms_are_the_randomised_arms(example, frame):
    arm = example.subjects.set_index("subject_id")["arm"]
    d = frame.data
    assert (d["cocktail"].astype(str).to_numpy() == arm.reindex(d["subject_id"]).to_numpy()).all()
    assert "150 by their randomised arm" in frame.arm_source


def test_example_every_person_is_analysed_or_listed_with_a_reason(example, frame):
    analysed = set(frame.data["subject_id"])
    listed = set(frame.excluded_subjects["subject_id"])
    assert analysed.isdisjoint(listed)
    assert analysed | listed == set(example.subjects["subject_id"])
    assert frame.excluded_subjects["reason"].str.len().gt(0).all()
    assert any("people are not analysed" in n for n in frame.notes)


def test_arms_fall_back_to_the_first_cocktail_when_arm_names_no_cocktail(valid_tables):
    study = ms.load_study(valid_tables)  # arm is "randomised" for everyone
    arms, source = subject_arms(study)
    assert arms.to_dict() == {"S01": "MB", "S02": "DB", "S03": "PLA", "S04": "MB"}
    assert source == "4 by the first cocktail injected (their arm names no cocktail)"


def test_small_study_frame_uses_post_baseline_visits_only(valid_tables):
    study = ms.load_study(valid_tables)
    tf = trial_frame(study, "hair_density")
    # baseline: day 1 (last value on or before day 1); post-baseline: days 29 and 85
    assert tf.visits == (3, 4)
    assert tf.control == "PLA"
    assert len(tf.data) == 7  # S04 has no hair density at visit 4
    s01 = tf.data[tf.data["subject_id"] == "S01"]
    assert_allclose(s01["chg"], [16.0, 26.0])


def test_people_without_baseline_are_set_aside_with_the_reason(valid_tables):
    sessions = valid_tables["sessions"]
    no_base = (sessions["subject_id"] == "S02") & (sessions["day"] <= 1)
    sessions.loc[no_base, "hair_density"] = np.nan
    tf = trial_frame(ms.load_study(valid_tables), "hair_density")
    assert "S02" not in set(tf.data["subject_id"])
    rows = tf.excluded_rows
    assert list(rows["subject_id"]) == ["S02", "S02"]
    assert rows["reason"].str.contains("no baseline hair_density").all()
    who = tf.excluded_subjects.set_index("subject_id")["reason"]
    assert who["S02"] == "no baseline hair_density (on or before day 1)"


def test_unscheduled_visit_is_set_aside_with_its_attendance(example):
    tables = {
        "subjects": example.subjects.reset_index(drop=True),
        "cocktails": example.cocktails.reset_index(drop=True),
        "sessions": example.sessions.reset_index(drop=True),
    }
    s = tables["sessions"]
    extra = s[(s["visit"] == 10)].head(3).copy()
    extra["visit"] = 11
    extra["day"] = extra["day"] + 30
    extra["baseline_flag"] = False
    tables["sessions"] = pd.concat([s, extra], ignore_index=True)
    tf = trial_frame(ms.load_study(tables), "hair_density")
    assert 11 not in tf.visits
    assert 3 < SCHEDULED_SHARE * tf.data["subject_id"].nunique()
    rows = tf.excluded_rows
    assert len(rows) == 3
    assert (
        rows["reason"]
        .str.startswith(
            "visit 11 is not a scheduled visit: hair_density measured in 3 of 142 people"
        )
        .all()
    )


def test_control_given_must_be_an_analysed_cocktail(example):
    with pytest.raises(ModelSpecError, match=r"control 'Z' is not a cocktail .* P \(saline\)"):
        trial_frame(example, "hair_density", control="Z")
    tf = trial_frame(example, "hair_density", control="A")
    assert tf.cocktails == ("A", "B", "C", "P")


def test_no_placebo_cocktail_lists_the_cocktails(example):
    c = example.cocktails.reset_index(drop=True)
    c.loc[c["cocktail_id"] == "P", "ingredient"] = "biotin"
    tables = {"subjects": example.subjects, "cocktails": c, "sessions": example.sessions}
    study = ms.load_study({k: v.reset_index(drop=True) for k, v in tables.items()})
    assert placebo_cocktails(study, ["A", "B", "C", "P"]) == []
    with pytest.raises(
        ModelSpecError,
        match=r"no cocktail is made only of a placebo .*A \(minoxidil, biotin\);.*P \(biotin\)"
        r".*control='A'",
    ):
        trial_frame(study, "hair_density")


def test_two_placebo_cocktails_are_ambiguous(example):
    c = example.cocktails.reset_index(drop=True)
    c.loc[c["cocktail_id"] == "B", "ingredient"] = "placebo"
    c = c.drop_duplicates(["cocktail_id", "ingredient"])
    tables = {"subjects": example.subjects, "cocktails": c, "sessions": example.sessions}
    study = ms.load_study({k: v.reset_index(drop=True) for k, v in tables.items()})
    with pytest.raises(ModelSpecError, match=r"2 cocktails \(B, P\) are made only of a placebo"):
        trial_frame(study, "hair_density")


def test_one_post_baseline_visit_is_refused_with_the_alternative(valid_tables):
    s = valid_tables["sessions"]
    valid_tables["sessions"] = s[s["visit"] != 4].reset_index(drop=True)
    with pytest.raises(ModelSpecError, match=r"1 scheduled post-baseline visit \(3\).*ANCOVA"):
        trial_frame(ms.load_study(valid_tables), "hair_density")


def test_empty_cocktail_visit_cell_is_named(valid_tables):
    s = valid_tables["sessions"]
    s.loc[(s["subject_id"] == "S03") & (s["visit"] == 4), "hair_density"] = np.nan
    with pytest.raises(ModelSpecError, match=r"no one has hair_density in PLA at visit 4"):
        trial_frame(ms.load_study(valid_tables), "hair_density")


def test_unknown_outcome_lists_the_outcomes(example):
    with pytest.raises(ModelSpecError, match=r"outcome 'hair' is not an outcome.*hair_density"):
        trial_frame(example, "hair")


def test_people_never_injected_without_an_arm_are_set_aside(valid_tables):
    sessions = valid_tables["sessions"]
    never = sessions["subject_id"] == "S04"
    sessions.loc[never, "cocktail_id"] = None
    sessions.loc[never, "volume_ml"] = None
    tf = trial_frame(ms.load_study(valid_tables), "hair_density")
    assert "S04" not in set(tf.data["subject_id"])
    who = tf.excluded_subjects.set_index("subject_id")
    assert who.loc["S04", "reason"] == "no arm: never injected and subjects.arm names no cocktail"
    assert who.loc["S04", "cocktail"] is None
    rows = tf.excluded_rows[tf.excluded_rows["subject_id"] == "S04"]
    assert len(rows) == 1 and rows["reason"].str.startswith("no arm").all()
