"""Tests of the lme4 formula parser (mesostats/formula.py)."""

from __future__ import annotations

import pytest

from mesostats.exceptions import ModelSpecError
from mesostats.formula import RandomTermSpec, parse_formula, split_top_level


def test_random_slope_and_fixed_interaction() -> None:
    p = parse_formula("y ~ a * b + x + (1 + x | g)")
    assert p.response == "y"
    assert p.fixed == "a * b + x"
    assert p.random == (RandomTermSpec("1 + x", "g", True),)
    assert p.offsets == ()
    assert p.cbind is None


def test_crossed_terms_keep_formula_order() -> None:
    p = parse_formula("diameter ~ 1 + (1 | plate) + (1 | sample)")
    assert [(t.expr, t.group) for t in p.random] == [("1", "plate"), ("1", "sample")]
    assert p.fixed == "1"


def test_nested_terms_are_named_inner_colon_outer_like_lme4() -> None:
    p = parse_formula("strength ~ 1 + (1 | batch/cask)")
    assert [t.group for t in p.random] == ["batch", "cask:batch"]
    assert p.random[1].group_columns == ("cask", "batch")


def test_three_level_nesting() -> None:
    p = parse_formula("y ~ 1 + (1 | a/b/c)")
    assert [t.group for t in p.random] == ["a", "b:a", "c:b:a"]


def test_double_bar_marks_uncorrelated_terms() -> None:
    p = parse_formula("Reaction ~ Days + (Days || Subject)")
    assert p.random == (RandomTermSpec("Days", "Subject", False),)


def test_offset_and_cbind_are_extracted() -> None:
    p = parse_formula(
        "cbind(incidence, size - incidence) ~ period + offset(log(exposure)) + (1|herd)"
    )
    assert p.cbind == ("incidence", "size - incidence")
    assert p.offsets == ("log(exposure)",)
    assert p.fixed == "period"


def test_intercept_removal_is_kept_for_formulaic() -> None:
    assert parse_formula("y ~ x - 1 + (1 | g)").fixed == "x - 1"
    assert parse_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_parenthesised_fixed_terms_are_not_random_terms() -> None:
    p = parse_formula("y ~ week * (minoxidil + biotin) + I(x - 1) + (1 + week | subject)")
    assert p.fixed == "week * (minoxidil + biotin) + I(x - 1)"
    assert len(p.random) == 1


def test_split_top_level_respects_parentheses_and_quotes() -> None:
    assert split_top_level("a + f(b + c) + 'd + e'", "+") == ["a ", " f(b + c) ", " 'd + e'"]


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y + (1 | g)", "needs exactly one `~`"),
        ("y ~ x ~ z", "needs exactly one `~`"),
        (" ~ x + (1 | g)", "no response"),
        ("y ~ ", "no terms on the right"),
        ("y ~ x + (1 | g", "Unbalanced parentheses"),
        ("y ~ x + ( | g)", "nothing before the bar"),
        ("y ~ x + (1 | )", "no grouping factor"),
        ("y ~ x + (1 | a | b)", "must have one `|`"),
        ("y ~ x + (1 | log(g))", "must be a column name"),
        ("y ~ x + (1 | a//b)", "empty part"),
        ("y ~ x - (1 | g)", "subtracted"),
        ("y ~ x + 1 | g", "bar outside parentheses"),
        ("cbind(a) ~ x + (1 | g)", "exactly two arguments"),
        ("y ~ x) + (1 | g", "a `\\)` at position 5 has no `\\(`"),
        ("y ~ x + (1 || a || b)", "more than one `\\|\\|`"),
        ("y ~ x - offset(z) + (1 | g)", "cannot be subtracted"),
    ],
)
def test_malformed_formulas_raise_actionable_errors(formula: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        parsed = parse_formula(formula)
        parsed.cbind  # noqa: B018  (cbind arguments are checked on access)


def test_non_string_formula_is_refused() -> None:
    with pytest.raises(ModelSpecError, match="must be a string"):
        parse_formula(42)  # type: ignore[arg-type]
