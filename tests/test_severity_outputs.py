"""Severity and global assessment in the figures, the report and `mesostats fit --severity`."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats import plots
from mesostats._display import format_number
from mesostats.cli import main
from mesostats.cli.fit_severity import SEVERITY_JSON_KEYS
from mesostats.exceptions import ModelSpecError
from mesostats.reporting.build import SECTION_TITLES, build_report


@pytest.fixture(scope="module")
def example() -> ms.Study:
    return ms.example_study()


@pytest.fixture(scope="module")
def severity(example: ms.Study) -> ms.SeverityResults:
    return ms.fit_severity(example)


@pytest.fixture(scope="module")
def gpa(example: ms.Study) -> ms.GlobalAssessmentResults:
    return ms.fit_global_assessment(example, visit="all")


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- figures
def test_stacked_bars_are_the_grade_probabilities(severity, gpa) -> None:
    for fit, by in ((severity, "cocktail_id"), (gpa, "cocktail")):
        ax = plots.grade_probabilities(fit, ax=Figure().add_subplot())
        assert isinstance(ax, Axes)
        bars = ax.patches
        k = len(fit.levels)
        n = len(fit.probabilities)
        assert len(bars) == k * n
        widths = np.array([b.get_width() for b in bars]).reshape(k, n)
        assert_allclose(widths.T, fit.probabilities[list(fit.levels)].to_numpy(), rtol=1e-12)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(fit.levels)
        assert [t.get_text() for t in ax.get_yticklabels()] == list(fit.probabilities[by])


def test_odds_ratio_figure_marks_each_effect_on_a_log_axis(severity, gpa) -> None:
    ax = plots.cumulative_odds_ratios(severity, ax=Figure().add_subplot())
    assert ax.get_xscale() == "log"
    labels = [c.get_label() for c in ax.containers]
    assert labels == list(severity.ingredient_effects["ingredient"])
    ax = plots.cumulative_odds_ratios(gpa, ax=Figure().add_subplot())
    assert [c.get_label() for c in ax.containers] == ["A", "B", "C"]
    with pytest.raises(ModelSpecError, match="takes a SeverityResults or a GlobalAssessment"):
        plots.grade_probabilities(object())


# --------------------------------------------------------------------------- report
def test_report_has_the_graded_section(example: ms.Study, severity) -> None:
    built = build_report(example)
    html = built.html
    assert SECTION_TITLES["graded"] in html
    assert "Severity of side effects by ingredient" in html
    assert "Global photographic assessment by cocktail" in html
    assert html.count("data:image/png;base64,") >= 4
    # the severity odds ratio of minoxidil as the table formats it
    minoxidil = severity.ingredient_effects.set_index("ingredient").loc["minoxidil"]
    assert format_number(minoxidil["odds_ratio"]) in html
    # every visit is modelled (no separation at the last one): no message from these models
    assert "gpa ~ cocktail + visit_f + (1 | subject_id)" in html
    assert not any("assessment" in m.source or "Severity" in m.source for m in built.messages)


# --------------------------------------------------------------------------- command line
def test_cli_fit_severity_json_matches_fit_severity(example: ms.Study) -> None:
    code, out, err = _run("fit", "example", "--severity", "--nagq", "1", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert tuple(payload) == SEVERITY_JSON_KEYS
    fit = ms.fit_severity(example)
    assert payload["analysis"] == "severity" and payload["levels"] == list(fit.levels)
    got = [r["odds_ratio"] for r in payload["ingredient_effects"]]
    assert_allclose(got, fit.ingredient_effects["odds_ratio"], rtol=1e-12)
    assert_allclose(payload["model"]["loglik"], fit.model.loglik, rtol=1e-12)
    assert len(payload["probabilities"]) == 4


def test_cli_fit_severity_text_and_event() -> None:
    code, out, _ = _run("fit", "example", "--severity", "--event", "pain", "--nagq", "1")
    assert code == 0
    assert "Severity: ingredient effects on the worst grade of pain" in out
    assert "Rows set aside from this analysis: 0" in out
