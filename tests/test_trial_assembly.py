"""How fit_trial assembles its results (formula, fallback, tables, display, immutability),
driven by stand-in engine calls (trial_doubles.py) so that the assembly is tested apart from
the MMRM engine; the numbers the stand-ins give are checked against the cell means of the
analysis frame. The real engine's results are tested in test_trial.py."""

from __future__ import annotations

import inspect

import matplotlib
import numpy as np
import pytest
from numpy.testing import assert_allclose
from trial_doubles import fake_engine

import mesostats as ms
from mesostats.domain.trial import analyse_trial, trial_formula
from mesostats.domain.trial_results import LSMEANS_COLUMNS, VS_CONTROL_COLUMNS, TrialResults
from mesostats.exceptions import ModelSpecError

matplotlib.use("Agg")


def analyse(study, *, fails=None, calls=None, **options):
    kwargs = {"visit": None, "control": None, "covariance": "us", "df": "kenward-roger"}
    kwargs.update(options)
    return analyse_trial(study, "hair_density", engine=fake_engine(fails, calls), **kwargs)


@pytest.fixture(scope="module")
def example():
    return ms.example_study()


@pytest.fixture(scope="module")
def trial(example):
    return analyse(example)


def test_public_names_are_exported():
    assert inspect.isfunction(ms.fit_trial) and ms.fit_trial.__name__ == "fit_trial"
    assert inspect.isclass(ms.TrialResults)
    assert "fit_trial" in ms.__all__ and "TrialResults" in ms.__all__


def test_formula_is_the_documented_mmrm():
    assert trial_formula("us") == (
        "chg ~ baseline * visit + cocktail * visit + us(visit | subject_id)"
    )


def test_tables_have_the_documented_columns_and_order(trial):
    assert list(trial.lsmeans.columns) == LSMEANS_COLUMNS
    assert list(trial.vs_control.columns) == VS_CONTROL_COLUMNS
    assert list(trial.lsmeans["cocktail"][:4]) == ["P", "A", "B", "C"]
    assert list(trial.vs_control["contrast"][:3]) == ["A - P", "B - P", "C - P"]
    assert trial.vs_control["visit"].tolist() == sorted(trial.vs_control["visit"])
    assert len(trial.lsmeans) == 4 * 9 and len(trial.vs_control) == 3 * 9


def test_lsmeans_are_the_engine_means_of_the_analysis_frame(trial):
    cell = trial.data.groupby(["visit_number", "cocktail"], observed=True)["chg"].mean()
    got = trial.lsmeans.set_index(["visit", "cocktail"])["estimate"]
    assert_allclose(got.to_numpy(), cell.reindex(got.index).to_numpy(), rtol=1e-12)


def test_p_adjusted_is_dunnett_at_the_primary_visit_only(trial):
    v = trial.vs_control
    primary = (v["visit"] == 10).to_numpy()
    assert_allclose(
        v["p_adjusted"][primary], np.minimum(1.0, 3 * v["p_value"][primary]), rtol=1e-12
    )
    assert v["p_adjusted"][~primary].isna().all()


def test_primary_visit_defaults_to_the_last_and_can_be_chosen(example, trial):
    assert trial.primary_visit == 10
    assert set(trial.primary["visit"]) == {10}
    assert analyse(example, visit=7).primary_visit == 7
    assert analyse(example, visit="7").primary_visit == 7
    for bad in (1, 11, True, 7.5, "week 7"):
        with pytest.raises(
            ModelSpecError,
            match=r"is not a scheduled post-baseline visit; "
            r"scheduled visits: 2, 3, 4, 5, 6, 7, 8, 9, 10",
        ):
            analyse(example, visit=bad)


def test_fallback_is_used_and_said(example):
    calls = []
    t = analyse(example, fails={"us": False}, calls=calls)
    assert calls == ["us", "toeph"]
    assert t.covariance == "toeph" and t.fell_back
    assert t.formula.endswith("toeph(visit | subject_id)")
    assert t.messages[0].startswith("Covariance fallback: unstructured (us) did not converge")
    assert "after fallback" in str(t)


def test_no_fallback_when_us_converges(trial):
    assert trial.covariance == "us" and not trial.fell_back
    assert trial.messages[0] == (
        "Covariance: unstructured (us), the first of the pre-specified order "
        "us → toeph → ar1h → cs, converged."
    )


def test_bad_options_are_refused_with_the_choices(example):
    with pytest.raises(ModelSpecError, match=r"df must be one of kenward-roger, "):
        analyse(example, df="kr")
    with pytest.raises(ModelSpecError, match=r"covariance must be one of us, toep"):
        analyse(example, covariance="UN")
    with pytest.raises(ModelSpecError, match=r"study must be a mesostats Study"):
        analyse_trial(
            "x",
            "hair_density",
            visit=None,
            control=None,
            covariance="us",
            df="kenward-roger",
            engine=fake_engine(),
        )


def test_results_are_immutable_and_hand_out_copies(trial):
    with pytest.raises(AttributeError, match=r"cannot assign to field .control."):
        trial.control = "A"  # type: ignore[misc]
    table = trial.vs_control
    table.loc[0, "estimate"] = 1e9
    assert trial.vs_control.loc[0, "estimate"] != 1e9


def test_display_text_html_and_repr(trial):
    text = str(trial)
    assert text.startswith("Primary analysis: MMRM of change from baseline in hair_density")
    assert "Difference to control at the primary visit 10 (week 32) (Dunnett-adjusted p):" in text
    html = trial._repr_html_()
    assert html.startswith('<div class="mesostats-summary">')
    assert "Covariance" in html and "&lt;" not in trial.formula
    assert repr(trial).startswith("<TrialResults hair_density at visit 10: A - P +")
    assert isinstance(trial, TrialResults)


def test_plot_draws_one_line_per_cocktail_with_its_colour(trial):
    from matplotlib.figure import Figure

    from mesostats.plots import cocktail_palette, trial_means

    ax = Figure().add_subplot()
    assert trial_means(trial, ax=ax) is ax
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["P (control)", "A", "B", "C"]
    colours = cocktail_palette(trial.study)
    for line, name in zip(ax.get_lines()[:1], ["P"], strict=True):
        assert_allclose(matplotlib.colors.to_rgb(line.get_color()), colours[name])
    with pytest.raises(ModelSpecError, match=r"trial_means\(\) takes a TrialResults"):
        trial_means(trial.model, ax=ax)
