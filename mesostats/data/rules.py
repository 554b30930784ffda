"""Cross-row and cross-field rules of ``x-mesostats-rules``: what Table Schema cannot say.

Each table schema may list rules, each an object with a ``name`` (the ``rule`` of the problems
it finds), a ``kind`` (which check runs: a key of :data:`RULE_CHECKERS`), a ``description``
(the message) and kind-specific keys:

=========================  ===================================================================
kind                       the rule
=========================  ===================================================================
``min_rows``               the table has at least ``value`` rows
``not_equal``              ``field`` is not ``value``
``exclusive_minimum``      ``field`` is greater than ``value``
``not_in``                 ``field`` is none of ``values``
``required_if_present``    ``field`` is filled where ``if_present`` is
``increasing_within``      ``field`` increases with ``order_by`` within ``group_by``
``at_most_one_true``       ``field`` is true on at most one row per ``group_by``
``true_only_if_at_most``   ``field`` is true only where ``condition_field`` ≤ ``value``
=========================  ===================================================================

Rules skip rows whose inputs are missing or invalid (those are reported by the type and
``required`` checks). Each check is vectorised over the rows (sorting and comparing
neighbours, :func:`numpy.bincount` per group).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.checks import CheckedTable
from mesostats.data.parse import isin_values
from mesostats.data.problems import ProblemLog
from mesostats.exceptions import SchemaError

__all__ = ["RULE_CHECKERS", "check_rules"]

Rule = Mapping[str, Any]


def check_rules(table: CheckedTable, log: ProblemLog) -> None:
    """Run every rule of the table's schema."""
    for rule in table.schema.rules:
        kind = rule.get("kind")
        checker = RULE_CHECKERS.get(str(kind))
        if checker is None:
            raise SchemaError(
                f"table {table.name}: rule {rule.get('name')!r} has unknown kind {kind!r} "
                f"(known: {', '.join(sorted(RULE_CHECKERS))})"
            )
        checker(table, rule, log)


def _rule_message(rule: Rule) -> str:
    return str(rule.get("description", rule.get("name", "")))


def _rule_min_rows(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    minimum = int(rule.get("value", 1))
    if table.n < minimum:
        log.add(
            table.name,
            None,
            None,
            table.n,
            str(rule["name"]),
            f"{table.name} ({table.raw.origin}) has {table.n} rows; {_rule_message(rule)}",
        )


def _rule_field(table: CheckedTable, rule: Rule) -> str | None:
    col = str(rule["field"])
    return col if col in table.typed else None


def _rule_not_equal(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    col = _rule_field(table, rule)
    if col is None:
        return
    arr = table.float_values(col)
    table.report(
        log,
        col,
        table.valid[col] & (arr == float(rule["value"])),
        str(rule["name"]),
        _rule_message(rule),
    )


def _rule_exclusive_minimum(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    col = _rule_field(table, rule)
    if col is None:
        return
    arr = table.float_values(col)
    with np.errstate(invalid="ignore"):
        mask = table.valid[col] & (arr <= float(rule["value"]))
    table.report(log, col, mask, str(rule["name"]), _rule_message(rule))


def _rule_not_in(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    col = _rule_field(table, rule)
    if col is None:
        return
    mask = table.valid[col] & isin_values(table.typed[col], list(rule["values"]))
    table.report(log, col, mask, str(rule["name"]), _rule_message(rule))


def _rule_required_if_present(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    target = str(rule["field"])
    trigger = str(rule["if_present"])
    if trigger not in table.typed:
        return
    present = table.valid[trigger]
    if not present.any():
        return
    if target not in table.typed:
        log.add(
            table.name,
            table.raw.header_row,
            target,
            None,
            str(rule["name"]),
            f"column {target} is missing but {trigger} is filled on {int(present.sum())} rows; "
            f"{_rule_message(rule)}",
        )
        return
    missing = table.missing[target]
    table.report(log, target, present & missing, str(rule["name"]), _rule_message(rule))


def _group_codes(table: CheckedTable, group_by: Sequence[str]) -> np.ndarray | None:
    if any(g not in table.typed for g in group_by):
        return None
    if not group_by:
        return np.zeros(table.n, dtype=np.int64)
    return table.key_codes(list(group_by))


def _rule_increasing_within(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    col = str(rule["field"])
    order_col = str(rule["order_by"])
    if col not in table.typed or order_col not in table.typed:
        return
    groups = _group_codes(table, rule.get("group_by", []))
    if groups is None:
        return
    usable = (groups >= 0) & table.valid[col] & table.valid[order_col]
    order = table.float_values(order_col)
    value = table.float_values(col)
    if usable.all():
        pos, g = np.arange(len(groups)), groups
    else:
        pos = np.flatnonzero(usable)
        g, order, value = groups[pos], order[pos], value[pos]
    if len(pos) < 2:
        return
    step_g = g[1:] - g[:-1]
    already_sorted = bool(np.all((step_g > 0) | ((step_g == 0) & (order[1:] >= order[:-1]))))
    if not already_sorted:
        perm = np.lexsort((value, order, g))
        pos, g, order, value = pos[perm], g[perm], order[perm], value[perm]
    same = (g[1:] == g[:-1]) & (order[1:] > order[:-1])
    broken = same & (value[1:] <= value[:-1])
    if not broken.any():
        return
    later = pos[1:][broken]
    earlier_value = value[:-1][broken]
    earlier_order = order[:-1][broken]
    head = f"{col} must increase with {order_col} within {', '.join(rule.get('group_by', []))}: "
    messages = (
        head
        + f"{order_col} "
        + _number_text(earlier_order)
        + f" has {col} "
        + _number_text(earlier_value)
        + f", not after; {_rule_message(rule)}"
    ).to_numpy(dtype=object)
    # one problem per offending (later) row; the message names the earlier visit.
    table.report(log, col, later, str(rule["name"]), messages)


def _rule_at_most_one_true(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    col = str(rule["field"])
    if col not in table.typed:
        return
    groups = _group_codes(table, rule.get("group_by", []))
    if groups is None:
        return
    flag = table.valid[col] & table.typed[col].fillna(False).to_numpy(dtype=bool) & (groups >= 0)
    if flag.sum() < 2:
        return
    counts = np.bincount(groups[flag], minlength=int(groups.max()) + 1)
    offending = flag & (counts[np.maximum(groups, 0)] > 1)
    table.report(log, col, offending, str(rule["name"]), _rule_message(rule))


def _rule_true_only_if_at_most(table: CheckedTable, rule: Rule, log: ProblemLog) -> None:
    col = str(rule["field"])
    cond = str(rule["condition_field"])
    if col not in table.typed or cond not in table.typed:
        return
    flag = table.valid[col] & table.typed[col].fillna(False).to_numpy(dtype=bool)
    arr = table.float_values(cond)
    with np.errstate(invalid="ignore"):
        mask = flag & table.valid[cond] & (arr > float(rule["value"]))
    table.report(log, col, mask, str(rule["name"]), _rule_message(rule))


def _number_text(values: np.ndarray) -> pd.Series:
    """Numbers as text, vectorised; whole numbers without a decimal point."""
    if np.all(np.isfinite(values)) and np.all(values == np.floor(values)):
        return pd.Series(values.astype(np.int64).astype(str))
    return pd.Series(values.astype(str))


RULE_CHECKERS: dict[str, Callable[[CheckedTable, Rule, ProblemLog], None]] = {
    "min_rows": _rule_min_rows,
    "not_equal": _rule_not_equal,
    "exclusive_minimum": _rule_exclusive_minimum,
    "not_in": _rule_not_in,
    "required_if_present": _rule_required_if_present,
    "increasing_within": _rule_increasing_within,
    "at_most_one_true": _rule_at_most_one_true,
    "true_only_if_at_most": _rule_true_only_if_at_most,
}
