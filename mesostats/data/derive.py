"""Derived quantities of a study: study week, baseline, change from baseline, ingredient design.

Pure, vectorised functions (numpy / pandas column operations, no loops over subjects) used by
:class:`~mesostats.data.study.Study`. They follow the CDISC ADaM Basic Data Structure
conventions (CDISC ADaM Implementation Guide v1.3, section 3.3 "BDS variables"):

- **BASE** is the value of the record flagged ``ABLFL = "Y"``; without a flag, the last
  non-missing value on or before study day 1 (the reference date, i.e. before treatment);
- **CHG** = AVAL − BASE; **PCHG** = 100 · CHG / |BASE|, missing when BASE is 0 (or missing);
- study days have no day 0, so the time since the first treatment in weeks is
  (day − 1) / 7 on and after day 1 and day / 7 before it.

Ingredient exposure is derived from cocktail recipes: a session's cocktail contributes an
indicator (1 if the cocktail holds the ingredient) or a dose (concentration × volume injected,
in the ingredient's unit × mL) per active ingredient; saline (placebo) is not an active
ingredient. Nothing here is available ready-made in a library, hence hand-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mesostats.data.keys import factorize_column, joint_key_codes
from mesostats.data.parse import arrow_array, is_arrow_text

__all__ = [
    "INACTIVE_INGREDIENTS",
    "RECEIVED_COLUMNS",
    "active_ingredients",
    "baseline_values",
    "change_from_baseline",
    "cocktails_received",
    "event_counts",
    "first_cocktail",
    "ingredient_design",
    "ingredient_matrix",
    "matching_rows",
    "study_week",
]

INACTIVE_INGREDIENTS = frozenset({"saline"})


def study_week(day: np.ndarray | pd.Series) -> np.ndarray:
    """Weeks since the first treatment from CDISC study days (no day 0).

    Parameters
    ----------
    day : array-like of int
        Study day: day 1 = first treatment, day −1 = the day before.

    Returns
    -------
    numpy.ndarray of float
        ``(day − 1) / 7`` for ``day ≥ 1``, ``day / 7`` for ``day < 0`` (NaN where missing).
    """
    column = day if isinstance(day, pd.Series) else pd.Series(day)
    d = np.asarray(column.to_numpy(dtype="float64", na_value=np.nan), dtype=float)
    return np.where(d >= 1, (d - 1.0) / 7.0, d / 7.0)


def baseline_values(
    subject: np.ndarray | pd.Series,
    day: np.ndarray | pd.Series,
    value: np.ndarray | pd.Series,
    flag: np.ndarray | pd.Series | None = None,
) -> np.ndarray:
    """Baseline (CDISC BASE) of each row's subject.

    Method: the value of the flagged row (``flag`` true, value non-missing) if the subject
    has one; otherwise the last non-missing value with ``day ≤ 1`` (largest study day on or
    before the first treatment). NaN when the subject has neither.

    Parameters
    ----------
    subject : array-like
        Subject identifier of each row (any hashable values).
    day : array-like of int
        Study day of each row.
    value : array-like of float
        Analysis value (NaN where missing).
    flag : array-like of bool, optional
        Baseline flag (ABLFL); missing counts as false.

    Returns
    -------
    numpy.ndarray of float
        The subject's baseline, repeated on each of its rows.
    """
    codes, _ = factorize_column(pd.Series(subject))
    d = pd.Series(day).to_numpy(dtype="float64", na_value=np.nan)
    v = pd.Series(value).to_numpy(dtype="float64", na_value=np.nan)
    n_subjects = int(codes.max()) + 1 if len(codes) else 0
    base = np.full(n_subjects, np.nan)
    candidate = np.flatnonzero(~np.isnan(v) & (d <= 1) & (codes >= 0))
    if len(candidate):
        order = candidate[np.lexsort((d[candidate], codes[candidate]))]
        last = np.r_[codes[order][1:] != codes[order][:-1], True]
        base[codes[order][last]] = v[order][last]
    if flag is not None:
        f = pd.Series(flag).astype("boolean").fillna(False).to_numpy(dtype=bool)
        flagged = np.flatnonzero(f & ~np.isnan(v) & (codes >= 0))
        base[codes[flagged]] = v[flagged]
    out = np.full(len(codes), np.nan)
    has = codes >= 0
    out[has] = base[codes[has]]
    return out


def change_from_baseline(
    value: np.ndarray | pd.Series, baseline: np.ndarray | pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """CDISC CHG and PCHG.

    Returns
    -------
    chg : numpy.ndarray
        ``value − baseline``.
    pchg : numpy.ndarray
        ``100 · chg / |baseline|``; NaN when the baseline is 0 or missing.
    """
    v = pd.Series(value).to_numpy(dtype="float64", na_value=np.nan)
    b = pd.Series(baseline).to_numpy(dtype="float64", na_value=np.nan)
    chg = v - b
    denom = np.abs(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        pchg = np.where(denom > 0, 100.0 * chg / np.where(denom > 0, denom, 1.0), np.nan)
    return chg, pchg


def active_ingredients(cocktails: pd.DataFrame) -> list[str]:
    """Sorted names of the active ingredients of the cocktails table (saline excluded)."""
    names = pd.unique(cocktails["ingredient"].dropna().astype(str))
    return sorted(str(n) for n in names if str(n) not in INACTIVE_INGREDIENTS)


def ingredient_design(
    cocktails: pd.DataFrame,
    cocktail_id: pd.Series,
    ingredients: Sequence[str],
    *,
    kind: Literal["indicator", "dose"] = "indicator",
    volume_ml: pd.Series | None = None,
) -> pd.DataFrame:
    """Ingredient exposure of each session, one column per ingredient.

    Parameters
    ----------
    cocktails : DataFrame
        Recipes: ``cocktail_id, ingredient, concentration``.
    cocktail_id : Series
        The cocktail of each session (missing: nothing injected → all 0).
    ingredients : sequence of str
        Columns to build, in order.
    kind : {"indicator", "dose"}
        ``"indicator"``: 1 if the session's cocktail holds the ingredient, else 0 (int64).
        ``"dose"``: concentration × ``volume_ml`` (float; in the ingredient's unit × mL).
    volume_ml : Series, optional
        Volume injected per session; required for ``kind="dose"``.

    Returns
    -------
    DataFrame
        Indexed like ``cocktail_id``; the values of :func:`ingredient_matrix`.
    """
    values = ingredient_matrix(cocktails, cocktail_id, ingredients, kind=kind, volume_ml=volume_ml)
    return pd.DataFrame(values, index=cocktail_id.index, columns=pd.Index(list(ingredients)))


def ingredient_matrix(
    cocktails: pd.DataFrame,
    cocktail_id: pd.Series | Any,
    ingredients: Sequence[str],
    *,
    kind: Literal["indicator", "dose"] = "indicator",
    volume_ml: pd.Series | Any | None = None,
) -> np.ndarray:
    """The array behind :func:`ingredient_design`: (sessions × ingredients), int64 0/1 for
    ``"indicator"``, float doses for ``"dose"`` (the analysis tables take it as it is, without
    a DataFrame round trip)."""
    if kind not in ("indicator", "dose"):
        raise ValueError(f"kind must be 'indicator' or 'dose', got {kind!r}")
    labels, recipes = recipe_rows(cocktails, ingredients, kind=kind)
    recipe_pos = {label: i for i, label in enumerate(labels)}
    n_recipes = len(labels)
    matrix = np.vstack([recipes, np.zeros((1, recipes.shape[1]))])  # last row: no cocktail
    session = cocktail_id if isinstance(cocktail_id, pd.Series) else pd.Series(cocktail_id)
    if is_arrow_text(session):
        # the same codes by one hash lookup (pyarrow) instead of a Python loop over rows:
        # a missing cocktail, or one without a recipe, gets the last row (nothing injected)
        arr = arrow_array(session)
        known = pa.array(list(recipe_pos), type=pa.string(), from_pandas=True).cast(arr.type)
        found = pc.index_in(arr, value_set=known, skip_nulls=True)
        codes = np.asarray(
            pc.fill_null(found, n_recipes).to_numpy(zero_copy_only=False), dtype=np.intp
        )
    else:
        missing = session.isna().to_numpy(dtype=bool)
        labels = session.astype("str").to_numpy(dtype=object)
        codes = np.fromiter(
            (
                n_recipes if m else recipe_pos.get(x, n_recipes)
                for x, m in zip(labels, missing, strict=True)
            ),
            dtype=np.intp,
            count=len(labels),
        )
    values = matrix[codes]
    if kind == "indicator":
        return values.astype(np.int64)
    if volume_ml is None:
        raise ValueError("kind='dose' needs volume_ml")
    vol = pd.Series(volume_ml).to_numpy(dtype="float64", na_value=np.nan)
    given = codes < n_recipes
    scale = np.where(given, vol, 0.0)
    return np.asarray(values * scale[:, None])


def recipe_rows(
    cocktails: pd.DataFrame,
    ingredients: Sequence[str],
    *,
    kind: Literal["indicator", "dose"] = "indicator",
) -> tuple[np.ndarray, np.ndarray]:
    """Each cocktail's recipe as a row: the cocktail ids (object array, str-converted, in
    order of first appearance) and the (cocktails × ingredients) float matrix, 1/0 for
    ``"indicator"``, the concentration for ``"dose"`` (a recipe row listing an ingredient
    twice keeps the last). A few rows: plain dictionaries, no pandas indexing."""
    ids = _text_objects(cocktails["cocktail_id"])
    names = _text_objects(cocktails["ingredient"])
    position: dict[Any, int] = {}
    for label in ids:
        position.setdefault(label, len(position))
    column = {name: j for j, name in enumerate(ingredients)}
    matrix = np.zeros((len(position), len(column)))
    if kind == "dose":
        conc = cocktails["concentration"].to_numpy(dtype="float64", na_value=np.nan)
    for i, (label, name) in enumerate(zip(ids, names, strict=True)):
        j = column.get(name)
        if j is not None:
            matrix[position[label], j] = 1.0 if kind == "indicator" else conc[i]
    return np.array(list(position), dtype=object), matrix


def _text_objects(column: pd.Series) -> np.ndarray:
    """``column.astype(str)`` as an object array (text columns as they are: no conversion)."""
    if is_arrow_text(column):
        return np.asarray(column.to_numpy(dtype=object))
    return np.asarray(column.astype(str).to_numpy(dtype=object))


def event_counts(
    session_keys: Sequence[pd.Series],
    event_keys: Sequence[pd.Series],
) -> np.ndarray:
    """Number of event rows matching each session's key (e.g. subject_id, visit).

    Keys are coded jointly (pyarrow hash lookups for text, see
    :func:`mesostats.data.keys.joint_key_codes`) and events are counted with
    :func:`numpy.bincount`; sessions whose key is missing count 0.
    """
    n_sessions = len(session_keys[0])
    if len(event_keys[0]) == 0 or n_sessions == 0:
        return np.zeros(n_sessions, dtype=np.int64)
    event_codes, session_codes = joint_key_codes(event_keys, session_keys)
    event_codes = event_codes[event_codes >= 0]
    compact, uniques = pd.factorize(np.concatenate([session_codes, event_codes]))
    compact = np.asarray(compact, dtype=np.int64)
    counts = np.bincount(compact[n_sessions:], minlength=len(uniques))
    out = counts[compact[:n_sessions]]
    out[session_codes < 0] = 0
    return np.asarray(out, dtype=np.int64)


def matching_rows(left_keys: Sequence[pd.Series], right_keys: Sequence[pd.Series]) -> np.ndarray:
    """Position of the ``right`` row whose key equals each ``left`` row's key (-1 if none).

    ``right`` keys must be unique (a primary key); e.g. the session of each adverse event.
    """
    n_left = len(left_keys[0])
    if n_left == 0 or len(right_keys[0]) == 0:
        return np.full(n_left, -1, dtype=np.int64)
    left_codes, right_codes = joint_key_codes(left_keys, right_keys)
    compact, _ = pd.factorize(np.concatenate([right_codes, left_codes]))
    compact = np.asarray(compact, dtype=np.int64)
    n_right = len(right_codes)
    where = np.full(int(compact.max()) + 1, -1, dtype=np.int64)
    valid = right_codes >= 0
    where[compact[:n_right][valid]] = np.flatnonzero(valid)
    out = where[compact[n_right:]]
    out[left_codes < 0] = -1
    return out


#: Columns of :func:`cocktails_received`.
RECEIVED_COLUMNS = ["subject_id", "cocktail_id", "first_day", "n_sessions", "order"]


def cocktails_received(sessions: pd.DataFrame) -> pd.DataFrame:
    """Which cocktail each person received: one row per subject × cocktail injected.

    The one answer to that question for the whole package (plots, report, CLI): ``subject_id``,
    ``cocktail_id``, ``first_day`` (study day of its first injection), ``n_sessions``
    (injection sessions with it) and ``order`` (1 for the first cocktail a person received,
    2 for a cocktail switched to, …), sorted by subject and order. People never injected have
    no row. A person's cocktail, where one is needed, is the row with ``order == 1``
    (:func:`first_cocktail`); more than one row marks a switcher.
    """
    if "cocktail_id" not in sessions.columns:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RECEIVED_COLUMNS})
    given = sessions.loc[
        sessions["cocktail_id"].notna().to_numpy(dtype=bool), ["subject_id", "cocktail_id", "day"]
    ]
    table = (
        given.groupby(["subject_id", "cocktail_id"], sort=False, observed=True)["day"]
        .agg(first_day="min", n_sessions="size")
        .reset_index()
        .sort_values(["subject_id", "first_day", "cocktail_id"], kind="stable")
    )
    table["order"] = table.groupby("subject_id", sort=False, observed=True).cumcount() + 1
    return table[RECEIVED_COLUMNS].reset_index(drop=True)


def first_cocktail(sessions: pd.DataFrame) -> pd.Series:
    """Each injected person's first cocktail (index ``subject_id``), from
    :func:`cocktails_received`."""
    received = cocktails_received(sessions)
    first = received[received["order"] == 1]
    return pd.Series(
        first["cocktail_id"].astype(str).to_numpy(),
        index=pd.Index(first["subject_id"].to_numpy(), name="subject_id"),
        name="cocktail_id",
    )
