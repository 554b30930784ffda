"""Checks between tables: foreign keys, and extra columns that would collide in analyses.

- :func:`check_foreign_keys`: every row whose (valid) key is not among the valid keys of the
  referenced table is a ``foreign_key`` problem; rows whose key is missing are left to
  ``required``. A one-column key is looked up once per *distinct* value; a composite key is
  compared as mixed-radix integer codes (:mod:`.keys`), which also gives each row the position
  of its referenced row (:func:`reference_positions`, e.g. the session of every adverse event).
- :func:`check_clashes`: columns of ``subjects`` that no schema names are kept, but not when
  they would collide in :class:`~mesostats.data.study.Study`'s analysis tables (named like a
  sessions column, a derived column in :data:`DERIVED_COLUMNS`, or an ingredient).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from mesostats.data.checks import CheckedTable, joined_values
from mesostats.data.keys import codes_among, codes_isin, combine_codes
from mesostats.data.parse import is_arrow_text, isin_values
from mesostats.data.problems import ProblemLog

__all__ = ["DERIVED_COLUMNS", "check_clashes", "check_foreign_keys", "reference_positions"]

#: Derived columns of Study.outcome_table / event_table: subject columns must not use them.
DERIVED_COLUMNS = (
    "subject_id",
    "visit",
    "day",
    "week",
    "value",
    "baseline",
    "chg",
    "pchg",
    "events",
    "any_event",
    "cocktail_id",
    "volume_ml",
)


def check_foreign_keys(checked: Mapping[str, CheckedTable], log: ProblemLog) -> None:
    for table in checked.values():
        for fk in table.schema.foreign_keys:
            ref = checked.get(fk.reference_table)
            if ref is None:
                continue
            own_cols = list(fk.fields)
            ref_cols = list(fk.reference_fields)
            if any(c not in table.typed for c in own_cols) or any(
                c not in ref.typed for c in ref_cols
            ):
                continue
            own_ok = np.logical_and.reduce([table.valid[c] for c in own_cols])
            if not own_ok.any():
                continue
            found = _keys_found(table, own_cols, ref, ref_cols)
            dangling = own_ok & ~found
            if not dangling.any():
                continue
            pos = np.flatnonzero(dangling)
            values = joined_values([table.raw_columns[c].iloc[pos] for c in own_cols])
            own = ", ".join(own_cols)
            log.add(
                table.name,
                table.raw.rows[pos],
                own,
                values,
                "foreign_key",
                f"{own} is not a ({', '.join(ref_cols)}) of the {fk.reference_table} table; "
                f"add the missing {fk.reference_table} row or correct the key (check spelling, "
                "case and spaces).",
                positions=pos,
            )


def _keys_found(
    table: CheckedTable, own_cols: list[str], ref: CheckedTable, ref_cols: list[str]
) -> np.ndarray:
    """Whether each row's (valid) key exists among the valid keys of ``ref``."""
    if len(own_cols) == 1:
        # Look up each distinct value once, then spread the answer over the rows by code.
        own_codes, _ = table.column_codes(own_cols[0])
        uniques = table.uniques[own_cols[0]]
        lookup = ref.typed[ref_cols[0]][ref.valid[ref_cols[0]]]
        if isinstance(uniques, (pa.Array, pa.ChunkedArray)):
            distinct = pd.Series(pd.arrays.ArrowStringArray(uniques.cast(pa.large_string())))
        else:
            distinct = pd.Series(uniques)
        if not is_arrow_text(distinct) and lookup.dtype != distinct.dtype:
            lookup = lookup.astype(distinct.dtype)
        known = np.append(isin_values(distinct, lookup), False)  # code -1 → not found
        return known[own_codes]
    own_parts = []
    ref_parts = []
    for own_col, ref_col in zip(own_cols, ref_cols, strict=True):
        ref_codes, radix = ref.column_codes(ref_col)
        own_codes = codes_among(table.typed[own_col], ref.uniques[ref_col])
        own_codes[~table.valid[own_col]] = -1
        own_parts.append((own_codes, radix))
        ref_parts.append((ref_codes, radix))
    span = int(np.prod([float(radix) for _, radix in ref_parts]))
    if span < 2**62:
        # No renumbering: both sides combine with the same radices, so the referenced
        # table's (cached) composite codes can be compared with ours directly.
        own_key = combine_codes(own_parts)
        link_key = tuple([ref.name, *ref_cols])
        table.foreign_codes[link_key] = own_key
        return codes_isin(own_key, ref.key_codes(ref_cols))
    n_own = table.n
    both = combine_codes(
        [
            (np.concatenate([o, r]), radix)
            for (o, radix), (r, _) in zip(own_parts, ref_parts, strict=True)
        ]
    )
    return codes_isin(both[:n_own], both[n_own:])


def check_clashes(checked: Mapping[str, CheckedTable], log: ProblemLog) -> None:
    subjects = checked.get("subjects")
    if subjects is None or not subjects.extra_columns:
        return
    reserved = set(DERIVED_COLUMNS)
    sessions = checked.get("sessions")
    if sessions is not None:
        reserved |= {str(c) for c in sessions.raw.frame.columns}
        reserved |= set(sessions.schema.field_names)
    cocktails = checked.get("cocktails")
    ingredients: set[str] = set()
    if cocktails is not None and "ingredient" in cocktails.typed:
        ingredients = set(cocktails.typed["ingredient"].dropna().astype(str))
    for col in subjects.extra_columns:
        if col in reserved or col in ingredients:
            what = "an ingredient" if col in ingredients else "a sessions or derived column"
            log.add(
                "subjects",
                subjects.raw.header_row,
                col,
                col,
                "column_clash",
                f"extra column {col} of subjects has the name of {what}; subject columns are "
                "copied into the analysis tables, where it would collide. Rename the column.",
            )


def reference_positions(checked: Mapping[str, CheckedTable]) -> dict[tuple[str, str], np.ndarray]:
    """For composite foreign keys onto a primary key: the referenced row of every row.

    Returns ``{(table, referenced_table): positions}`` with 0-based positions into the
    referenced table (-1 where there is none), from the integer key codes the foreign-key
    check already built; e.g. the session of every adverse event, which the Study uses to
    count events per session without hashing the keys again.
    """
    links: dict[tuple[str, str], np.ndarray] = {}
    for table in checked.values():
        for fk in table.schema.foreign_keys:
            ref = checked.get(fk.reference_table)
            own_key = table.foreign_codes.get((fk.reference_table, *fk.reference_fields))
            if ref is None or own_key is None or fk.reference_fields != ref.schema.primary_key:
                continue
            ref_key = ref.key_codes(list(fk.reference_fields))
            top = max(int(own_key.max(initial=-1)), int(ref_key.max(initial=-1)))
            if top > 8 * (len(own_key) + len(ref_key)) + 1024:
                continue
            where = np.full(top + 2, -1, dtype=np.int64)  # last slot: code -1
            valid = ref_key >= 0
            where[ref_key[valid]] = np.flatnonzero(valid)
            links[(table.name, ref.name)] = where[own_key]
    return links
