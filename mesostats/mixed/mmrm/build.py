"""From an mmrm formula and a DataFrame to an :class:`~mesostats.mixed.mmrm.problem.MMRMProblem`.

Rows with a missing response, covariate, visit, subject, group or weight are set aside with
their reason (the helpers of :mod:`mesostats.mixed.design`, one ``ExclusionWarning``); each
subject then uses the visits it has. X comes from formulaic with treatment contrasts (first
level the reference), as in :func:`mesostats.mixed.design.build_design`, through the
compiled recipes of :mod:`mesostats.mixed.compiled` (formulaic's columns, without its pandas
work). Rows are sorted by subject and visit, and subjects are grouped into patterns (same
visits, same covariance group) whose sufficient statistics the likelihood uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.formula import parse_formula
from mesostats.mixed.aliasing import _format_alias, aliased_columns
from mesostats.mixed.compiled import model_columns
from mesostats.mixed.design import _set_aside_missing, _used_columns
from mesostats.mixed.formula_eval import (
    _close_matches,
    _formula_variables,
    _grouping_factor,
    _reason,
)
from mesostats.mixed.mmrm.patterns import pattern_block
from mesostats.mixed.mmrm.problem import MMRMProblem
from mesostats.mixed.mmrm.structures import make_structure
from mesostats.mixed.mmrm.terms import CovarianceTerm, split_mmrm_formula
from mesostats.mixed.response import _response

__all__ = ["build_problem"]

_WEIGHT_COLUMN = "(weights)"


def _check_columns(term: CovarianceTerm, data: pd.DataFrame) -> None:
    for role, name in (("time", term.time), ("subject", term.subject), ("group", term.group)):
        if name is not None and name not in data.columns:
            raise ModelSpecError(
                f"The {role} variable `{name}` of the covariance term `{term}` is not in the "
                "data." + _close_matches(name, list(map(str, data.columns)))
            )


def _weights_frame(data: pd.DataFrame, weights: Any) -> pd.DataFrame:
    if weights is None:
        return data
    if isinstance(weights, str):
        if weights not in data.columns:
            raise ModelSpecError(
                f"The weights column `{weights}` is not in the data."
                + _close_matches(weights, list(map(str, data.columns)))
            )
        values = data[weights]
    else:
        array = np.asarray(weights, dtype=float).ravel()
        if len(array) != len(data):
            raise ModelSpecError(
                f"weights has {len(array)} values but the data has {len(data)} rows; give one "
                "weight per row (or the name of a column)."
            )
        values = pd.Series(array, index=data.index)
    if not pd.api.types.is_numeric_dtype(values.dtype):
        raise ModelSpecError(f"weights must be numeric, got dtype {values.dtype}.")
    num = values.to_numpy(dtype=float, na_value=np.nan)
    bad = np.isfinite(num) & (num <= 0) | np.isinf(num)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ModelSpecError(
            f"weights must be positive and finite; {int(bad.sum())} are not (e.g. {num[i]} at "
            f"index {data.index[i]!r})."
        )
    frame = data.copy(deep=False)
    frame[_WEIGHT_COLUMN] = num
    return frame


def _visit_coding(term: CovarianceTerm, kept: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    series = kept[term.time]
    if term.structure == "sp_exp":
        if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(
            series.dtype
        ):
            raise ModelSpecError(
                f"`sp_exp` needs a numeric time, but `{term.time}` has dtype {series.dtype} "
                f"(e.g. {series.iloc[0]!r}). Use a numeric visit time such as the study day, or "
                "a structure on a visit factor (`us`, `ar1`, ...)."
            )
        return series.to_numpy(dtype=float), ()
    codes, levels = _grouping_factor(kept, (term.time,))
    if len(levels) < 2:
        raise ModelSpecError(
            f"The visit factor `{term.time}` has only {len(levels)} level "
            f"({', '.join(map(str, levels))}) in the fitted rows: a within-subject covariance "
            "needs at least two visits. Check the visit column or fit a linear model."
        )
    return codes.astype(float), tuple(str(v) for v in levels)


def _check_duplicates(
    term: CovarianceTerm,
    subj: np.ndarray,
    coords: np.ndarray,
    ids: pd.Index,
    levels: tuple,
    order: np.ndarray,
) -> None:
    """Two rows of one subject at one visit; ``order`` sorts the rows by subject, then visit."""
    s, c = subj[order], coords[order]
    same = (s[1:] == s[:-1]) & (c[1:] == c[:-1])
    if not same.any():
        return
    dup_sorted = np.zeros(len(s), dtype=bool)
    dup_sorted[1:] |= same
    dup_sorted[:-1] |= same
    dup = np.empty_like(dup_sorted)
    dup[order] = dup_sorted  # every row of a duplicated (subject, visit), in data order
    i = int(np.flatnonzero(dup)[0])
    at = levels[int(coords[i])] if levels else coords[i]
    raise ModelSpecError(
        f"Subject {ids[subj[i]]!r} has {int((dup & (subj == subj[i])).sum())} rows at "
        f"{term.time} = {at!r} ({int(dup.sum())} duplicated rows in all): each subject "
        f"may have one row per {term.time}. Remove or aggregate the duplicates, or check "
        f"that `{term.subject}` identifies subjects."
    )


def _drop_unused(kept: pd.DataFrame, names: Any) -> pd.DataFrame:
    """Unused categories dropped from the categorical columns among ``names`` that have some
    (as :func:`~mesostats.mixed.design._drop_unused_categories`; the others are the same
    either way). Only the fixed part needs it (no dummy column for an absent level): the
    visit, subject and group codes drop unused levels themselves."""
    unused = []
    for name, dtype in kept.dtypes.items():
        if name in names and isinstance(dtype, pd.CategoricalDtype):
            codes = np.asarray(kept[name].array.codes)
            seen = np.bincount(codes[codes >= 0], minlength=len(dtype.categories))
            if not seen.all():
                unused.append(name)
    if not unused:
        return kept
    kept = kept.copy(deep=False)
    for name in unused:
        kept[name] = kept[name].cat.remove_unused_categories()
    return kept


def _group_codes(
    term: CovarianceTerm, kept: pd.DataFrame, subj: np.ndarray, ids: pd.Index
) -> tuple[np.ndarray, tuple[str, ...]]:
    if term.group is None:
        return np.zeros(len(ids), dtype=np.intp), ("(all)",)
    codes, levels = _grouping_factor(kept, (term.group,))
    first = np.full(len(ids), -1)
    first[subj[::-1]] = codes[::-1]
    changes = codes != first[subj]
    if changes.any():
        i = int(np.flatnonzero(changes)[0])
        raise ModelSpecError(
            f"The covariance group `{term.group}` changes within subject {ids[subj[i]]!r} "
            f"({levels[first[subj[i]]]!r} and {levels[codes[i]]!r}): a subject must belong to "
            "one group. Check the group column or drop the group from the covariance term."
        )
    return first.astype(np.intp), tuple(str(v) for v in levels)


def _patterns(
    coords: np.ndarray, starts: np.ndarray, groups: np.ndarray, n_visits: int
) -> np.ndarray:
    """Pattern id of each subject: same group and same visits (times), numbered in order of
    first appearance."""
    if 0 < n_visits <= 62:
        # the set of visits as a bit mask, summed per subject (visits are unique per subject)
        bits = np.left_shift(np.int64(1), coords.astype(np.int64))
        key = np.add.reduceat(bits, starts) + (groups.astype(np.int64) << n_visits)
        codes, _ = pd.factorize(key)  # numbered in order of first appearance
    else:  # spatial times (or very many visits): the tuple of coordinates
        ends = np.r_[starts[1:], len(coords)]
        labels = pd.Series(
            [(int(g), coords[a:b].tobytes()) for g, a, b in zip(groups, starts, ends, strict=True)],
            dtype=object,
        )
        codes, _ = pd.factorize(labels)
    return np.asarray(codes, dtype=np.intp)


def build_problem(
    formula: str, data: pd.DataFrame, *, reml: bool = True, weights: Any = None
) -> MMRMProblem:
    """Parse, validate and arrange the data of an MMRM (see the module docstring).

    Raises
    ------
    ModelSpecError
        Unknown columns or structure, a visit factor with one level, a non-numeric time for
        ``sp_exp``, two rows of one subject at one visit, a group that changes within a
        subject, non-positive weights, aliased fixed effects.
    """
    if not isinstance(data, pd.DataFrame):
        raise ModelSpecError(
            f"data must be a pandas DataFrame, got {type(data).__name__}; wrap it with "
            "`pd.DataFrame(...)`."
        )
    fixed_formula, term = split_mmrm_formula(formula)
    parsed = parse_formula(fixed_formula)
    if parsed.offsets:
        raise ModelSpecError("offset() terms are not supported in an MMRM formula.")
    _check_columns(term, data)
    frame = _weights_frame(data, weights)
    used = _used_columns(parsed, frame)
    for name in (term.time, term.subject, term.group):
        if name is not None and name not in used:
            used.append(name)
    if weights is not None:
        used.append(_WEIGHT_COLUMN)
    if len(frame) == 0:
        raise ModelSpecError("The data has no rows.")
    kept, excluded = _set_aside_missing(frame, used)
    if len(kept) == 0:
        raise ModelSpecError(
            f"Every row has a missing value in a column the model uses ({', '.join(used)})."
        )
    fixed_vars = _formula_variables(parsed.fixed, "fixed part")
    kept = _drop_unused(kept, fixed_vars)
    y, _ = _response(parsed, kept, "gaussian")
    coords, visit_levels = _visit_coding(term, kept)
    subj, ids = _grouping_factor(kept, (term.subject,))
    order = np.lexsort((coords, subj))
    _check_duplicates(term, subj, coords, ids, visit_levels, order)
    group_of_subject, group_levels = _group_codes(term, kept, subj, ids)

    y, coords, subj = y[order], coords[order], subj[order]
    w = (
        kept[_WEIGHT_COLUMN].to_numpy(dtype=float)[order]
        if weights is not None
        else np.ones(len(y))
    )
    try:  # the rows of X in data order, then sorted (no sort of the whole frame)
        names, X_data, fixed_spec = model_columns(parsed.fixed, kept)
    except Exception as exc:
        raise ModelSpecError(
            f"Cannot build the fixed part `{parsed.fixed}`: {_reason(exc)}"
        ) from exc
    X = np.ascontiguousarray(X_data[order])
    aliased = aliased_columns(X, names)
    if aliased:
        listing = "; ".join(_format_alias(name, deps) for name, deps in aliased)
        raise ModelSpecError(
            f"The fixed effects are not estimable: {len(aliased)} column(s) of X are linear "
            f"combinations of earlier columns ({listing}). Drop one of each aliased set."
        )
    if len(y) <= len(names):
        raise ModelSpecError(f"Only {len(y)} row(s) for {len(names)} fixed effects.")

    starts = np.flatnonzero(np.r_[True, subj[1:] != subj[:-1]])
    ends = np.r_[starts[1:], len(subj)]
    subject_rows = np.split(np.arange(len(subj)), starts[1:])  # views, one per subject
    subj_codes = subj[starts]
    groups = group_of_subject[subj_codes]
    pattern = _patterns(coords, starts, groups, len(visit_levels))
    sw = np.sqrt(w)
    Xw, yw = X * sw[:, None], y * sw
    blocks = []
    order_of = np.argsort(pattern, kind="stable")
    bounds = np.searchsorted(pattern[order_of], np.arange(int(pattern.max()) + 2))
    for pat in range(int(pattern.max()) + 1):
        members = order_of[bounds[pat] : bounds[pat + 1]]
        first = members[0]
        d = int(ends[first] - starts[first])
        rows = starts[members][:, None] + np.arange(d)  # each subject's rows are contiguous
        visits = coords[starts[first] : ends[first]]
        blocks.append(pattern_block(int(groups[first]), visits.copy(), Xw[rows], yw[rows]))
    n_visits = len(visit_levels) if visit_levels else 2
    structure = make_structure(term.structure, n_visits)
    for arr in (X, y, w, coords, pattern, groups):
        arr.setflags(write=False)
    return MMRMProblem(
        X=X,
        y=y,
        weights=w,
        fixed_names=names,
        reml=bool(reml),
        structure=structure,
        term=term,
        visit_levels=visit_levels,
        group_levels=group_levels,
        subject_ids=pd.Index(ids[subj_codes]),
        subject_rows=subject_rows,
        subject_pattern=pattern,
        subject_group=groups,
        coords=coords,
        blocks=blocks,
        row_index=kept.index[order],
        excluded_rows=excluded,
        fixed_rows=kept.take(
            [j for j, c in enumerate(kept.columns) if c in fixed_vars], axis=1
        ).take(order),
        fixed_spec=fixed_spec,
        formula=formula,
        fixed_formula=fixed_formula,
        response_name=parsed.response,
    )
