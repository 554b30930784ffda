"""The report's primary-analysis section (mesostats.reporting.sections.trial): included with
its table, figure and covariance facts; left out with the reason when the study has no
control or too few visits; a fit that fails shows its reason. The fit is the stand-in of
trial_doubles.py (passed through the section's ``fit`` parameter); test_trial.py renders the
whole report with the real engine."""

from __future__ import annotations

import matplotlib
import pytest
from trial_doubles import fake_engine

import mesostats as ms
from mesostats.domain.trial import analyse_trial
from mesostats.exceptions import ModelSpecError
from mesostats.reporting.sections.trial import primary_analysis_section
from mesostats.reporting.steps import Failure, Figure, MessageLog, Table

matplotlib.use("Agg")


def stand_in(fails=None):
    def fit(study, outcome):
        return analyse_trial(
            study,
            outcome,
            visit=None,
            control=None,
            covariance="us",
            df="kenward-roger",
            engine=fake_engine(fails),
        )

    return fit


@pytest.fixture(scope="module")
def example():
    return ms.example_study()


def test_section_has_the_differences_at_the_primary_visit_figure_and_facts(example):
    log = MessageLog()
    s = primary_analysis_section(example, "hair_density", log, fit=stand_in())
    assert s["why_not"] is None and s["failure"] is None
    table = s["differences"]
    assert isinstance(table, Table)
    assert [r[0] for r in table.rows] == ["A - P", "B - P", "C - P"]
    assert table.columns[-1] == "Dunnett-adjusted p"
    assert isinstance(s["figure"], Figure) and s["figure"].uri.startswith("data:image/png;base64,")
    facts = dict(s["facts"])
    assert facts["Covariance"] == "unstructured (us)"
    assert facts["Degrees of freedom"] == "kenward-roger"
    assert facts["Primary visit"] == "visit 10 (week 32)"
    assert s["sentences"][0].startswith("A - P at visit 10 (week 32): +")
    assert "hairs/cm²" in s["sentences"][0]
    assert log.items == []


def test_fallback_goes_to_the_banner_and_the_section(example):
    log = MessageLog()
    s = primary_analysis_section(example, "hair_density", log, fit=stand_in({"us": False}))
    assert s["fell_back"]
    assert s["covariance_message"].startswith("Covariance fallback: unstructured (us)")
    assert [(m.kind, m.text) for m in log.items] == [
        ("covariance fallback", s["covariance_message"])
    ]
    assert [r[0] for r in s["attempts"].rows] == ["us", "toeph"]


def test_no_control_leaves_the_section_out_with_the_reason(example):
    tables = {k: getattr(example, k).reset_index(drop=True) for k in ("subjects", "sessions")}
    c = example.cocktails.reset_index(drop=True)
    tables["cocktails"] = c[c["cocktail_id"] != "P"].reset_index(drop=True)
    keep = tables["subjects"]["arm"] != "P"
    tables["subjects"] = tables["subjects"][keep].reset_index(drop=True)
    s_ = tables["sessions"]
    tables["sessions"] = s_[s_["subject_id"].isin(tables["subjects"]["subject_id"])]
    study = ms.load_study({k: v.reset_index(drop=True) for k, v in tables.items()})
    s = primary_analysis_section(study, "hair_density", MessageLog(), fit=stand_in())
    assert s["why_not"].startswith("no cocktail is made only of a placebo")


def test_one_visit_leaves_the_section_out_with_the_reason(valid_tables):
    s_ = valid_tables["sessions"]
    valid_tables["sessions"] = s_[s_["visit"] != 4].reset_index(drop=True)
    s = primary_analysis_section(
        ms.load_study(valid_tables), "hair_density", MessageLog(), fit=stand_in()
    )
    assert "1 scheduled post-baseline visit (3)" in s["why_not"]


def test_a_failed_fit_shows_its_reason(example):
    def broken(study, outcome):
        raise ModelSpecError("nothing converged, on purpose")

    log = MessageLog()
    s = primary_analysis_section(example, "hair_density", log, fit=broken)
    assert s["failure"] == Failure("Primary analysis", "nothing converged, on purpose")
    assert [m.kind for m in log.items] == ["not computed"]
