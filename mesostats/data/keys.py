"""Integer codes for key columns: the fast path of every key comparison in validation.

Keys are compared as integers, never as text row by row: a text key column is
dictionary-encoded once (pyarrow; only the first value of each run of equal values, so rows
grouped by subject cost little), small-range integers are offset from their minimum, a
composite key is combined in mixed radix into one int64 per row, and duplicates or lookups
are counted with :func:`numpy.bincount` / boolean tables. pandas offers
``duplicated``/``merge`` on the values themselves, which hash every row's text again for every
check; these helpers hash each distinct value once. Codes are ``-1`` where a value is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mesostats.data.parse import arrow_array, as_text, is_arrow_text

__all__ = [
    "codes_among",
    "codes_isin",
    "combine_codes",
    "duplicated_codes",
    "factorize_column",
    "factorize_with_uniques",
    "index_in",
    "joint_key_codes",
]


def factorize_column(series: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes (int64, -1 where missing) and the number of distinct values.

    Text stored by pyarrow is dictionary-encoded by :func:`pyarrow.compute.dictionary_encode`;
    other columns by :func:`pandas.factorize`.
    """
    codes, uniques = factorize_with_uniques(series)
    return codes, len(uniques)


def factorize_with_uniques(series: pd.Series) -> tuple[np.ndarray, Any]:
    """Like :func:`factorize_column`, also returning the distinct values (pyarrow or Index)."""
    if is_arrow_text(series):
        return _factorize_text_runs(arrow_array(series))
    if pd.api.types.is_integer_dtype(series.dtype) and len(series):
        # Small-range integers (visit numbers): the offset from the minimum is the code.
        if isinstance(series.dtype, np.dtype):
            ints, present = series.to_numpy(), None
        else:  # nullable Int64
            present = ~series.isna().to_numpy(dtype=bool)
            ints = series.to_numpy(dtype=np.int64, na_value=0)
        if present is None or present.any():
            chosen = ints if present is None else ints[present]
            low, high = int(chosen.min()), int(chosen.max())
            if high - low <= 4 * len(series) + 1024:
                codes = ints.astype(np.int64) - low
                if present is not None:
                    codes[~present] = -1
                return codes, pd.Index(np.arange(low, high + 1, dtype=np.int64))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques)


def _factorize_text_runs(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Exact factorisation of text, cheap when equal values sit together (rows grouped by
    subject): compare each value with the previous one, dictionary-encode only the first value
    of every run, and repeat its code over the run. Equal values in separate runs still get
    the same code (the encoding is over all run heads)."""
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.int64), pa.array([], type=arr.type)
    changed = pc.fill_null(pc.not_equal(arr[1:], arr[:-1]), True)
    starts = np.concatenate([[0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1])
    if len(starts) > n // 2:  # hardly any runs: encode every row directly
        encoded = pc.dictionary_encode(arr)
        indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return np.asarray(indices, dtype=np.int64), encoded.dictionary
    encoded = pc.dictionary_encode(arr.take(pa.array(starts)))
    run_codes = np.asarray(
        pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    return np.repeat(run_codes, np.diff(np.append(starts, n))), encoded.dictionary


def codes_among(series: pd.Series, uniques: Any) -> np.ndarray:
    """Position of each value of ``series`` in ``uniques`` (-1 where missing or absent)."""
    if isinstance(uniques, (pa.Array, pa.ChunkedArray)):
        if not is_arrow_text(series):
            series = as_text(series)
        arr = arrow_array(series)
        found = pc.index_in(arr, value_set=uniques.cast(arr.type))
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(uniques) == 0:
        return np.full(len(series), -1, dtype=np.int64)
    return np.asarray(pd.Index(uniques).get_indexer(pd.Index(series)), dtype=np.int64)


def combine_codes(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Mixed-radix combination of per-column codes: one int64 per row, -1 if any part is -1."""
    if len(parts) == 1:
        return parts[0][0]
    combined = np.zeros(len(parts[0][0]), dtype=np.int64)
    missing = np.zeros(len(combined), dtype=bool)
    span = 1  # number of distinct values ``combined`` can take so far
    for codes, radix in parts:
        radix = max(radix, 1)
        missing |= codes < 0
        if span * radix >= 2**62:
            # Very many distinct keys: re-number the partial key to keep it small.
            combined, uniques = pd.factorize(combined)
            combined = np.asarray(combined, dtype=np.int64)
            span = max(len(uniques), 1)
        combined = combined * radix + np.maximum(codes, 0)
        span *= radix
    combined[missing] = -1
    return combined


def index_in(series: pd.Series, universe: pd.Series) -> tuple[np.ndarray, int]:
    """Position of each value of ``series`` among the distinct values of ``universe``.

    Returns the codes (int64; -1 where missing or absent from ``universe``) and the number of
    distinct values of ``universe``; equal values of the two columns get equal codes.
    Uses :func:`pyarrow.compute.index_in` for text, :meth:`pandas.Index.get_indexer` else.
    """
    if is_arrow_text(series) and is_arrow_text(universe):
        arr = arrow_array(series)
        uniques = pc.unique(arrow_array(universe.dropna())).cast(arr.type)
        found = pc.index_in(arr, value_set=uniques)
        codes = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
        return np.asarray(codes, dtype=np.int64), len(uniques)
    index = pd.Index(pd.unique(universe.dropna()))
    if len(index) == 0:
        return np.full(len(series), -1, dtype=np.int64), 0
    codes = index.get_indexer(pd.Index(series))
    return np.asarray(codes, dtype=np.int64), len(index)


def joint_key_codes(
    left: Sequence[pd.Series], right: Sequence[pd.Series]
) -> tuple[np.ndarray, np.ndarray]:
    """Codes for composite keys of two tables such that equal keys get equal codes.

    ``right`` defines the universe of each key part; a ``left`` key with a part missing or
    absent from ``right`` gets -1 (as does a ``right`` key with a missing part).
    """
    left_parts = []
    right_parts = []
    for lcol, rcol in zip(left, right, strict=True):
        lcodes, radix = index_in(lcol, rcol)
        rcodes, _ = index_in(rcol, rcol)
        left_parts.append((lcodes, radix))
        right_parts.append((rcodes, radix))
    n_left = len(left[0])
    both = combine_codes(
        [
            (np.concatenate([lc, rc]), radix)
            for (lc, radix), (rc, _) in zip(left_parts, right_parts, strict=True)
        ]
    )
    return both[:n_left], both[n_left:]


def duplicated_codes(codes: np.ndarray) -> np.ndarray:
    """Rows whose code (>= 0) occurs more than once (all of them, like ``keep=False``)."""
    ok = codes >= 0
    if not ok.any():
        return ok
    top = int(codes.max())
    if top <= 8 * len(codes) + 1024:
        counts = np.bincount(codes[ok], minlength=top + 1)
        return ok & (counts[np.maximum(codes, 0)] > 1)
    return ok & pd.Series(codes).duplicated(keep=False).to_numpy(dtype=bool)


def codes_isin(codes: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """``codes >= 0`` and present among the non-negative ``lookup`` codes."""
    found = codes >= 0
    valid_lookup = lookup[lookup >= 0]
    top = max(int(codes.max(initial=-1)), int(valid_lookup.max(initial=-1)))
    if top <= 8 * (len(codes) + len(lookup)) + 1024:
        present = np.zeros(top + 1, dtype=bool)
        present[valid_lookup] = True
        found[found] = present[codes[found]]
        return found
    found[found] = pd.Series(codes[found]).isin(pd.Series(valid_lookup)).to_numpy(dtype=bool)
    return found
