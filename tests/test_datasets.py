"""Tests of the bundled example study (mesostats.datasets) and its regeneration script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from mesostats.datasets import EXAMPLE_DIR, EXAMPLE_SETTINGS, example_study
from mesostats.simulate import simulate_tables

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_example_study.py"
TABLES = ["subjects", "cocktails", "sessions", "adverse_events"]


@pytest.fixture(scope="module")
def study():
    return example_study()


def _load_script():
    spec = importlib.util.spec_from_file_location("make_example_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_equal_regeneration_script_output(tmp_path):
    written = _load_script().write_example(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{t}.csv" for t in TABLES)
    for name in TABLES:
        committed = (EXAMPLE_DIR / f"{name}.csv").read_bytes()
        regenerated = (tmp_path / f"{name}.csv").read_bytes()
        assert committed == regenerated, f"{name}.csv differs from the script's output"


def test_example_folder_holds_exactly_the_four_tables():
    assert sorted(p.name for p in EXAMPLE_DIR.iterdir() if p.is_file()) == sorted(
        f"{t}.csv" for t in TABLES
    )


def test_example_study_size_sites_and_cocktails(study):
    assert len(study.subjects) == 150
    assert study.subjects["site"].nunique() == 3
    assert sorted(study.cocktails["cocktail_id"].unique()) == ["A", "B", "C", "P"]
    placebo = study.cocktails[study.cocktails["cocktail_id"] == "P"]
    assert placebo["ingredient"].tolist() == ["saline"]
    assert study.ingredients == ["biotin", "dutasteride", "minoxidil"]
    arms = pd.crosstab(study.subjects["site"], study.subjects["arm"])
    assert (arms.to_numpy() >= 5).all()  # every cocktail at every site


def test_example_study_has_irregular_visits_dropout_and_missing_values(study):
    sessions = study.sessions
    per_subject = sessions.groupby("subject_id")["visit"].max()
    assert per_subject.max() == 10
    assert (per_subject < 10).sum() >= 10  # dropout
    assert (per_subject >= 8).mean() > 0.75
    days = sessions.groupby("visit")["day"]
    assert (days.nunique().iloc[1:] > 1).all()  # jittered
    gaps = days.median().diff().dropna()
    assert gaps.min() <= 8 and gaps.max() >= 60  # weekly at first, months apart at the end
    assert sessions.loc[sessions["visit"] > 8, "cocktail_id"].isna().all()  # follow-ups
    assert 0 < sessions["hair_density"].isna().sum() < 0.1 * len(sessions)


def test_example_adverse_events_have_verbatim_text(study):
    events = study.adverse_events
    assert 150 <= len(events) <= 450
    assert events["event"].value_counts().index[0] == "pain"
    assert events["verbatim"].str.contains("é|œ").any()
    assert events["verbatim"].str.contains('[<&"]').any()


def test_example_study_returns_independent_copies():
    first = example_study()
    first.sessions.loc[first.sessions.index[0], "hair_density"] = -1.0
    assert example_study().sessions["hair_density"].iloc[0] != -1.0


def test_example_truth_is_reproduced_by_settings():
    tables, truth = simulate_tables(**EXAMPLE_SETTINGS)
    committed = pd.read_csv(EXAMPLE_DIR / "subjects.csv")
    assert committed["subject_id"].tolist() == tables["subjects"]["subject_id"].tolist()
    assert truth["seed"] == EXAMPLE_SETTINGS["seed"]
    baseline = pd.read_csv(EXAMPLE_DIR / "sessions.csv").query("visit == 1")
    assert_allclose(baseline["hair_density"].mean(), truth["intercept_mean"], atol=6)
