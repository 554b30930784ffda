"""ValidationError's message: counts, every problem (first 50), and no 'row None'."""

from __future__ import annotations

import pandas as pd
import pytest

from mesostats.exceptions import ValidationError


def _problems(n: int, row: object = 7) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": ["sessions"] * n,
            "row": [row] * n,
            "column": ["hair_density"] * n,
            "value": ["-3"] * n,
            "rule": ["minimum"] * n,
            "message": [f"problem {i}" for i in range(n)],
        }
    )


def test_message_counts_and_lists_each_problem_with_where_and_rule() -> None:
    err = ValidationError(_problems(2))
    text = str(err)
    assert text.startswith("2 validation problems in sessions:")
    assert "sessions, row 7, column hair_density (value '-3'): problem 0 [rule: minimum]" in text
    assert "problem 1" in text
    assert len(err.problems) == 2


def test_more_than_fifty_problems_are_summarised_after_the_first_fifty() -> None:
    text = str(ValidationError(_problems(57)))
    assert "problem 49" in text and "problem 50 " not in text
    assert text.endswith("… and 7 more")


def test_table_level_problem_without_a_row_does_not_print_row_none() -> None:
    text = str(ValidationError(_problems(1, row=None)))
    assert "row None" not in text
    assert "  - sessions, column hair_density" in text


def test_problems_table_must_have_the_documented_columns() -> None:
    with pytest.raises(TypeError, match=r"problems table lacks columns \['message'\]"):
        ValidationError(_problems(1).drop(columns="message"))


def test_schema_error_lives_with_the_other_errors_and_keeps_its_old_path() -> None:
    from mesostats.data.schema import SchemaError as OldPath
    from mesostats.exceptions import MesostatsError, SchemaError

    assert OldPath is SchemaError and issubclass(SchemaError, MesostatsError)
    assert not issubclass(SchemaError, ValueError)  # a broken schema file is not bad data
