"""ProblemLog: one log for readers (one problem at a time) and checks (a column at a time)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mesostats.data.problems import ProblemLog
from mesostats.exceptions import PROBLEM_COLUMNS


def test_problems_are_ordered_by_table_then_line_whatever_the_recording_order() -> None:
    log = ProblemLog(["subjects", "sessions"])
    log.add_one("sessions", 9, "day", "x", "type", "late line", position=9)
    log.add("sessions", np.array([4, 2]), "visit", ["a", "b"], "type", "col", positions=[3, 1])
    log.add_one("subjects", None, None, None, "missing_table", "no subjects")
    log.add_one("other", 1, None, None, "unknown_table", "not a table")
    frame = log.frame()
    assert list(frame.columns) == PROBLEM_COLUMNS and len(log) == 5
    assert list(zip(frame["table"], frame["row"], strict=True)) == [
        ("subjects", None),
        ("sessions", 2),
        ("sessions", 4),
        ("sessions", 9),
        ("other", 1),
    ]


def test_rows_that_are_not_line_numbers_are_ordered_by_position() -> None:
    log = ProblemLog(["subjects"])
    log.add("subjects", pd.Index(["c", "a"]), "age", [200, 300], "maximum", "too old", [2, 0])
    assert log.frame()["row"].tolist() == ["a", "c"]


def test_one_problem_keeps_a_list_value_whole_and_records_hand_over_positions() -> None:
    log = ProblemLog(["t"])
    log.add_one("t", 3, "c", [1, 2], "type", "a list in a cell", position=3)
    assert log.frame()["value"].tolist() == [[1, 2]]
    other = ProblemLog(["t"])
    other.add("t", 1, "c", None, "required", "empty", positions=[1])
    other.extend(log.records())
    assert other.frame()[["row", "value"]].values.tolist() == [[1, None], [3, [1, 2]]]


def test_an_empty_log_gives_an_empty_problems_table() -> None:
    log = ProblemLog()
    log.add("t", np.array([], dtype=np.int64), "c", [], "type", "never")
    assert len(log) == 0 and log.frame().empty
    assert list(log.frame().columns) == PROBLEM_COLUMNS
    assert list(log.records().columns) == [*PROBLEM_COLUMNS, "_pos"]
