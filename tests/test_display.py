"""Tests of the display layer (mesostats._display): the two number styles, p-values,
intervals, percentages, the one missing-value mark, text and HTML tables, Summary and the
SummaryDisplay mixin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mesostats._display import (
    MISSING,
    Summary,
    SummaryDisplay,
    Table,
    format_cell,
    format_estimate,
    format_interval,
    format_number,
    format_p,
    format_percent,
    format_percent_range,
    format_plain,
    format_signed,
    format_text,
    is_missing,
    render_html_table,
    render_text_table,
    table_from_frame,
)

# --- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, float("nan"), np.float64("nan"), pd.NA, pd.NaT])
def test_every_kind_of_missing_value_shows_one_mark(value):
    assert is_missing(value)
    assert format_number(value, style="engine") == MISSING
    assert format_number(value, style="reader") == MISSING
    assert format_p(value) == MISSING
    assert format_text(value) == MISSING
    assert format_cell(value, column="p_value") == MISSING


@pytest.mark.parametrize("value", [0, 0.0, "", "x", np.array([1.0, np.nan])])
def test_present_values_are_not_missing(value):
    assert not is_missing(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.207315, "1.21"),
        (-0.103507, "−0.104"),
        (124.3, "124"),
        (0.0464, "0.0464"),
        (12345.6, "12,346"),
        (3, "3"),
        (np.int64(1305), "1,305"),
        (float("nan"), "–"),
        (None, "–"),
        (2.5e-7, "2.50e−07"),
        (0.0, "0"),
        (float("-inf"), "−∞"),
        (True, "yes"),
    ],
)
def test_reader_numbers_look_like_a_table_in_a_paper(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (251.40510, "251.4051"),
        (-10.4673, "-10.4673"),
        (0.000123456, "1.235e-04"),
        (1234567.0, "1.235e+06"),
        (18, "18"),
        (float("inf"), "Inf"),
        (float("-inf"), "-Inf"),
        (0.0, "0.0000"),
    ],
)
def test_engine_numbers_are_lme4_like(value, text):
    assert format_number(value, style="engine") == text


def test_engine_digits_are_decimals_and_reader_digits_are_significant():
    assert format_number(0.123456, style="engine", digits=2) == "0.12"
    assert format_number(0.123456, style="reader", digits=2) == "0.12"
    assert format_number(123.456, style="engine", digits=2) == "123.46"
    assert format_number(123.456, style="reader", digits=2) == "123"


@pytest.mark.parametrize(
    ("p", "engine", "reader"),
    [
        (0.0456, "0.0456", "0.046"),
        (0.0004, "0.0004", "<0.001"),
        (3.2e-6, "3.20e-06", "<0.001"),
        (1e-20, "<2e-16", "<0.001"),
        (0.5, "0.5000", "0.500"),
    ],
)
def test_p_values_in_both_styles(p, engine, reader):
    assert format_p(p, style="engine") == engine
    assert format_p(p, style="reader") == reader
    assert format_p(p) == reader


def test_intervals_percentages_and_signs():
    assert format_interval(1.5, 2.25) == "1.50 to 2.25"
    assert format_interval(-1.5, 2.25, style="engine") == "[-1.5000, 2.2500]"
    assert format_interval(None, 2.25) == "– to 2.25"
    assert format_percent(0.1834) == "18.3 %"
    assert format_percent_range(0.18, 0.229) == "18.0–22.9 %"
    assert format_percent_range(0.18, float("nan")) == MISSING
    assert format_signed(1.5) == "+1.50"
    assert format_signed(-1.5) == "−1.50"
    assert format_signed(0.0) == "0"
    assert format_signed(None) == MISSING
    assert format_plain(-37.5) == "−37.5"
    assert format_plain(224.0) == "224"


def test_estimates_with_their_interval():
    assert format_estimate(1.207, 0.98, 1.5) == "1.21 (95 % CI 0.980 to 1.50)"
    assert format_estimate(0.5, 0.25, 0.75, ci_label="", digits=2) == "0.50 (0.25 to 0.75)"
    assert format_estimate(0.5, None, 0.75, ci_label="90 % CI") == "0.500 (90 % CI – to 0.750)"
    assert format_estimate(1.5, 1, 2, style="engine") == "1.5000 (95 % CI [1, 2])"


def test_cells_pick_p_value_format_by_column_name():
    assert format_cell(0.0002, column="p_value") == "<0.001"
    assert format_cell(0.0002, column="p_adjusted") == "<0.001"
    assert format_cell(0.00002, column="p", style="engine") == "2.00e-05"
    assert format_cell(0.0002, column="estimate") == "0.000200"
    assert format_cell("<b>", column="p_value") == "<b>"


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="style must be one of engine, reader, got 'paper'"):
        format_number(1.0, style="paper")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style must be one of"):
        format_p(0.1, style="paper")  # type: ignore[arg-type]


# --- tables --------------------------------------------------------------------------------------


def test_text_table_right_aligns_numbers_and_left_aligns_text():
    table = Table.of(
        ["Term", "Estimate"], [("Intercept", "251.4"), ("Days", "10.47")], numeric=[False, True]
    )
    assert render_text_table(table).splitlines() == [
        "Term       Estimate",
        "Intercept     251.4",
        "Days          10.47",
    ]


def test_text_table_has_no_trailing_spaces():
    table = Table.of(["a", "message"], [("x", "short"), ("yyyy", "")])
    assert all(line == line.rstrip() for line in render_text_table(table).splitlines())


def test_table_of_shows_missing_cells_and_alignment_defaults_to_text():
    table = Table.of(["a", "b", "c"], [(None, float("nan"), 3)], numeric=[True])
    assert table.rows == (("–", "–", "3"),)
    assert table.alignments == ("num", "text", "text")


def test_html_table_escapes_every_string():
    table = Table.of(["<th>"], [("<script>alert(1)</script>",)], caption="A&B", numeric=[True])
    page = render_html_table(table)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<caption>A&amp;B</caption>" in page and "&lt;th&gt;" in page
    assert page.startswith("<table>") and 'style="text-align: right"' in page


def test_table_from_frame_formats_by_column_and_dtype():
    frame = pd.DataFrame(
        {
            "term": ["a", "b"],
            "estimate": [1.5, np.nan],
            "p_value": [0.00001, 0.2],
            "ok": [True, False],
        },
        index=pd.Index(["x", "y"], name="id"),
    )
    table = table_from_frame(frame, caption="Effects", index="id")
    assert table.columns == ("id", "term", "estimate", "p_value", "ok")
    assert table.rows == (("x", "a", "1.50", "<0.001", "yes"), ("y", "b", "–", "0.200", "no"))
    assert table.alignments == ("text", "text", "num", "num", "text")
    engine = table_from_frame(frame, style="engine")
    assert engine.rows[0][1:3] == ("1.5000", "1.00e-05")


# --- summaries -----------------------------------------------------------------------------------


def _summary() -> Summary:
    table = Table.of(
        ["Name", "Value"], [("<b>x</b>", "1.00")], caption="Effects", numeric=[False, True]
    )
    return Summary(
        title="A & B model",
        info=(("Formula", "y ~ x"), ("Observations", "12")),
        tables=(table,),
        notes=("one <note>",),
        notes_title="Messages",
    )


def test_summary_text_layout():
    assert _summary().as_text().splitlines() == [
        "A & B model",
        "  Formula:       y ~ x",
        "  Observations:  12",
        "",
        "Effects:",
        "Name      Value",
        "<b>x</b>   1.00",
        "",
        "Messages:",
        "  - one <note>",
    ]


def test_summary_html_is_static_and_escaped():
    page = _summary().as_html()
    assert page.startswith('<div class="mesostats-summary"><h4>A &amp; B model</h4>')
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "one &lt;note&gt;" in page and "<script" not in page
    assert page.endswith("</div>")


def test_summary_display_mixin_prints_and_displays_the_summary():
    class Results(SummaryDisplay):
        def summary(self) -> Summary:
            return _summary()

        def __repr__(self) -> str:
            return "<Results>"

    res = Results()
    assert str(res) == _summary().as_text() == str(_summary())
    assert res._repr_html_() == _summary().as_html() == _summary()._repr_html_()
    assert repr(res) == "<Results>"


def test_summary_display_without_summary_says_what_is_missing():
    class Bare(SummaryDisplay):
        pass

    with pytest.raises(NotImplementedError, match="Bare must define summary"):
        str(Bare())
