"""From an mmrm formula and a DataFrame to an :class:`~mesostats.mixed.mmrm.problem.MMRMProblem`.

Each used column is looked up and coded once (:mod:`mesostats.mixed.mmrm.columns`: text and
categorical columns factorised to integer codes, missing values found from the codes), and the
fitted rows are taken from the codes with numpy. Rows with a missing response, covariate,
visit (coordinate), subject, group or weight are set aside with their reason (the helper of
:mod:`mesostats.mixed.design`, one ``ExclusionWarning``); each subject then uses the visits it
has. Rows are sorted by subject and visit (time; several coordinates of ``sp_exp`` in their
order), and X comes, already sorted, from formulaic with treatment contrasts (first level the
reference), as in :func:`mesostats.mixed.design.build_design`, through the compiled recipes of
:mod:`mesostats.mixed.compiled` (formulaic's columns, without its pandas work; text columns
arrive there as categoricals with their sorted levels). Subjects are grouped into patterns
(same visits, same covariance group) whose sufficient statistics the likelihood uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.aliasing import _format_alias, aliased_columns
from mesostats.mixed.compiled import model_columns, parsed_formula
from mesostats.mixed.design import _used_columns
from mesostats.mixed.formula_eval import _close_matches, _formula_variables, _reason
from mesostats.mixed.mmrm.columns import ColumnCoder, MissingRows, kept_levels
from mesostats.mixed.mmrm.patterns import pattern_block
from mesostats.mixed.mmrm.problem import MMRMProblem
from mesostats.mixed.mmrm.structures import make_structure
from mesostats.mixed.mmrm.terms import CovarianceTerm, split_mmrm_formula
from mesostats.mixed.response import _response

__all__ = ["build_problem"]

_WEIGHT_COLUMN = "(weights)"


def _check_columns(term: CovarianceTerm, data: pd.DataFrame) -> None:
    roles: list[tuple[str, str | None]] = [("time", c) for c in term.coordinates]
    roles += [("subject", term.subject), ("group", term.group)]
    for role, name in roles:
        if name is not None and name not in data.columns:
            raise ModelSpecError(
                f"The {role} variable `{name}` of the covariance term `{term}` is not in the "
                "data." + _close_matches(name, list(map(str, data.columns)))
            )


def _weights_array(data: pd.DataFrame, weights: Any) -> np.ndarray | None:
    """One weight per row (NaN where missing), validated; None without weights."""
    if weights is None:
        return None
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
    num = np.asarray(values.to_numpy(dtype=float, na_value=np.nan))
    bad = np.isfinite(num) & (num <= 0) | np.isinf(num)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ModelSpecError(
            f"weights must be positive and finite; {int(bad.sum())} are not (e.g. {num[i]} at "
            f"index {data.index[i]!r})."
        )
    return num


def _missing_rows(
    coder: ColumnCoder, used: list[str], w: np.ndarray | None
) -> tuple[np.ndarray, MissingRows]:
    """Positions of the complete rows, and the pattern of the rows set aside."""
    names = list(used)
    masks = [coder.missing(name) for name in names]
    if w is not None:
        names.append(_WEIGHT_COLUMN)
        masks.append(np.isnan(w))
    missing = np.column_stack(masks)
    dropped = np.asarray(missing.any(axis=1), dtype=bool)
    if not dropped.any():
        return np.arange(dropped.size), MissingRows(tuple(names), missing[:0], coder.data.index[:0])
    where = np.flatnonzero(dropped)
    aside = MissingRows(tuple(names), missing[where], coder.data.index[where])
    return np.flatnonzero(~dropped), aside


def _coordinates(
    term: CovarianceTerm, coder: ColumnCoder, rows: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Visit codes (float) and visit levels; for ``sp_exp`` the coordinates, (n,) for one
    and (n, c) for several, and no levels."""
    if term.structure == "sp_exp":
        values = []
        for name in term.coordinates:
            num = coder.numeric(name)
            if num is None:
                s = coder.series(name)
                example = s.iloc[int(rows[0])] if len(rows) else None
                what = "a numeric time" if len(term.coordinates) == 1 else "numeric coordinates"
                raise ModelSpecError(
                    f"`sp_exp` needs {what}, but `{name}` has dtype {s.dtype} (e.g. "
                    f"{example!r}). Use a numeric visit time such as the study day (numeric "
                    "positions for several coordinates), or a structure on a visit factor "
                    "(`us`, `ar1`, ...)."
                )
            values.append(num[rows])
        if len(values) == 1:
            return values[0], ()
        return np.column_stack(values), ()
    codes, levels = kept_levels(*coder.factor(term.time), rows)
    if len(levels) < 2:
        raise ModelSpecError(
            f"The visit factor `{term.time}` has only {len(levels)} level "
            f"({', '.join(map(str, levels))}) in the fitted rows: a within-subject covariance "
            "needs at least two visits. Check the visit column or fit a linear model."
        )
    return codes.astype(float), tuple(str(v) for v in levels)


def _sort_keys(coords: np.ndarray, subj: np.ndarray) -> tuple[np.ndarray, ...]:
    """lexsort keys: subject first, then the coordinates in their order."""
    if coords.ndim == 1:
        return (coords, subj)
    return (*(coords[:, j] for j in range(coords.shape[1] - 1, -1, -1)), subj)


def _check_duplicates(
    term: CovarianceTerm,
    subj: np.ndarray,
    coords: np.ndarray,
    ids: pd.Index,
    levels: tuple,
    order: np.ndarray,
    index: pd.Index,
) -> None:
    """Two rows of one subject at one visit (point); ``order`` sorts the rows by subject,
    then visit; ``index`` labels the rows."""
    s, c = subj[order], coords[order]
    same_c = c[1:] == c[:-1]
    if same_c.ndim > 1:
        same_c = same_c.all(axis=1)
    same = (s[1:] == s[:-1]) & same_c
    if not same.any():
        return
    dup_sorted = np.zeros(len(s), dtype=bool)
    dup_sorted[1:] |= same
    dup_sorted[:-1] |= same
    dup = np.empty_like(dup_sorted)
    dup[order] = dup_sorted  # every row of a duplicated (subject, visit), in data order
    i = int(np.flatnonzero(dup)[0])
    if levels:
        at = repr(levels[int(coords[i])])
    else:
        at = repr(coords[i]) if coords.ndim == 1 else repr(tuple(coords[i].tolist()))
    where = term.time if not term.more_coordinates else f"({', '.join(term.coordinates)})"
    raise ModelSpecError(
        f"Subject {ids[subj[i]]!r} has {int((dup & (subj == subj[i])).sum())} rows at "
        f"{where} = {at} ({int(dup.sum())} duplicated rows in all, first at index "
        f"{index[i]!r}): each subject may have one row per {where}. Remove or aggregate the "
        f"duplicates, or check that `{term.subject}` identifies subjects."
    )


def _group_codes(
    term: CovarianceTerm, coder: ColumnCoder, rows: np.ndarray, subj: np.ndarray, ids: pd.Index
) -> tuple[np.ndarray, tuple[str, ...]]:
    if term.group is None:
        return np.zeros(len(ids), dtype=np.intp), ("(all)",)
    codes, levels = kept_levels(*coder.factor(term.group), rows)
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


def _response_values(
    parsed: Any, coder: ColumnCoder, rows: np.ndarray, index: pd.Index
) -> np.ndarray:
    """y of the fitted rows: a numeric response column taken directly when every value is
    finite; otherwise (an expression, or values to report) through the checks of
    :func:`~mesostats.mixed.response._response`."""
    name = parsed.response
    if parsed.cbind is None and name in coder.data.columns:
        num = coder.numeric(name)
        if num is not None:
            y = num[rows]
            if np.isfinite(y).all():
                return y
        frame = pd.DataFrame({name: coder.take(name, rows)}, index=index)
    else:
        frame = coder.data.iloc[rows]
    y, _ = _response(parsed, frame, "gaussian")
    return np.ascontiguousarray(y, dtype=float)


def build_problem(
    formula: str, data: pd.DataFrame, *, reml: bool = True, weights: Any = None
) -> MMRMProblem:
    """Parse, validate and arrange the data of an MMRM (see the module docstring).

    Raises
    ------
    ModelSpecError
        Unknown columns or structure, a visit factor with one level, non-numeric coordinates
        for ``sp_exp``, two rows of one subject at one visit (point), a group that changes
        within a subject, non-positive weights, aliased fixed effects.
    """
    if not isinstance(data, pd.DataFrame):
        raise ModelSpecError(
            f"data must be a pandas DataFrame, got {type(data).__name__}; wrap it with "
            "`pd.DataFrame(...)`."
        )
    fixed_formula, term = split_mmrm_formula(formula)
    parsed = parsed_formula(fixed_formula)
    if parsed.offsets:
        raise ModelSpecError("offset() terms are not supported in an MMRM formula.")
    _check_columns(term, data)
    w_all = _weights_array(data, weights)
    used = _used_columns(parsed, data)
    for name in (*term.coordinates, term.subject, term.group):
        if name is not None and name not in used:
            used.append(name)
    if len(data) == 0:
        raise ModelSpecError("The data has no rows.")
    coder = ColumnCoder(data)
    rows, excluded = _missing_rows(coder, used, w_all)
    excluded.warn(len(data), stacklevel=3)  # at the caller of fit_mmrm
    if len(rows) == 0:
        columns = used + ([_WEIGHT_COLUMN] if weights is not None else [])
        raise ModelSpecError(
            f"Every row has a missing value in a column the model uses ({', '.join(columns)})."
        )
    coords, visit_levels = _coordinates(term, coder, rows)
    subj, ids = kept_levels(*coder.factor(term.subject), rows)
    order = np.lexsort(_sort_keys(coords, subj))
    _check_duplicates(term, subj, coords, ids, visit_levels, order, data.index[rows])
    group_of_subject, group_levels = _group_codes(term, coder, rows, subj, ids)

    fit_rows = rows[order]  # positions in data of the fitted rows, in fit order
    row_index = data.index[fit_rows]
    coords, subj = coords[order], subj[order]
    fixed_vars = _formula_variables(parsed.fixed, "fixed part")
    fixed_rows = coder.fixed_frame([c for c in used if c in fixed_vars], fit_rows, row_index)
    y = _response_values(parsed, coder, fit_rows, row_index)
    w = w_all[fit_rows] if w_all is not None else np.ones(len(y))
    try:
        names, X, fixed_spec = model_columns(parsed.fixed, fixed_rows)
    except Exception as exc:
        raise ModelSpecError(
            f"Cannot build the fixed part `{parsed.fixed}`: {_reason(exc)}"
        ) from exc
    X = np.ascontiguousarray(X)
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
        at = starts[members][:, None] + np.arange(d)  # each subject's rows are contiguous
        visits = coords[starts[first] : ends[first]]
        blocks.append(pattern_block(int(groups[first]), visits.copy(), Xw[at], yw[at]))
    n_visits = len(visit_levels) if visit_levels else 2
    structure = make_structure(term.structure, n_visits)
    for arr in (X, y, w, coords, pattern, groups, starts):
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
        subject_starts=starts,
        subject_pattern=pattern,
        subject_group=groups,
        coords=coords,
        blocks=blocks,
        row_index=row_index,
        missing_rows=excluded,
        fixed_rows=fixed_rows,
        fixed_spec=fixed_spec,
        formula=formula,
        fixed_formula=fixed_formula,
        response_name=parsed.response,
    )
