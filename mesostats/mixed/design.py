"""Model matrices of a mixed model: response, X, the random-effect terms and the Λ(θ) template.

``build_design`` turns an lme4-style formula and a DataFrame into a :class:`MixedDesign`:

* the rows used: a row with a missing value in any column the model uses is set aside
  *by us* (listed in ``excluded_rows`` with its reason, one :class:`ExclusionWarning`), and
  formulaic is then called with ``na_action="raise"`` so no library drops rows behind our back;
* ``X`` from formulaic (treatment contrasts, first level as reference; unused categories of a
  ``category`` column are dropped as R's ``model.frame`` does);
* one :class:`RandomTerm` per random-effect term (raw columns ``Z``, level codes), ordered as
  lme4's ``mkReTrms`` orders them (decreasing number of levels, stable), which fixes the order
  of θ;
* the relative covariance factor template of Bates, Mächler, Bolker & Walker (2015,
  *J. Stat. Softw.* 67(1), section 2.2): each term's block Λ_t is lower triangular, and θ
  fills its lower triangle column by column (lme4's order); diagonal entries are bounded
  below by 0.

The family-specific response checks (binomial 0/1 or ``cbind``, Poisson counts;
:mod:`mesostats.mixed.response`) run here too, so both engines see the same validated input.
Rank deficiency of X is found by :func:`mesostats.mixed.aliasing.aliased_columns`; formula
pieces are evaluated by :mod:`mesostats.mixed.formula_eval`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mesostats._parallel import single_threaded_blas
from mesostats.exceptions import ModelSpecError
from mesostats.formula import ParsedFormula, RandomTermSpec
from mesostats.mixed.aliasing import _format_alias, aliased_columns
from mesostats.mixed.compiled import model_columns, parsed_formula
from mesostats.mixed.formula_eval import (
    UsedColumns,
    _close_matches,
    _evaluate_offsets,
    _expression_variables,
    _formula_variables,
    _group_labels,
    _grouping_factor,
    _reason,
    _set_aside_missing,
    _used_rows,
    _warn_set_aside,
)
from mesostats.mixed.response import _response

# aliased_columns, _expression_variables, _formula_variables, _set_aside_missing and
# _warn_set_aside are re-exported for their users
__all__ = [
    "MixedDesign",
    "RandomTerm",
    "_expression_variables",
    "_formula_variables",
    "_set_aside_missing",
    "_warn_set_aside",
    "aliased_columns",
    "build_design",
    "lower_triangle_indices",
    "single_threaded_blas",
]

FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")


@functools.lru_cache(maxsize=64)
def lower_triangle_indices(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a q×q lower triangle in lme4's θ order (column-major).

    Memoised (called on every evaluation); the arrays are read-only.
    """
    upper_rows, upper_cols = np.triu_indices(q)
    upper_rows.setflags(write=False)
    upper_cols.setflags(write=False)
    return upper_cols, upper_rows


@dataclass(frozen=True, eq=False)
class RandomTerm:
    """One random-effect term after expansion: its raw columns, grouping factor and levels.

    Attributes
    ----------
    group : str
        lme4's name of the grouping factor (``"Subject"``, ``"cask:batch"``).
    names : tuple of str
        Column names of the term (``("Intercept", "Days")``).
    levels : pandas.Index
        Level labels; ``codes`` index into it.
    codes : numpy.ndarray
        ``(n,)`` level code of every fitted row.
    Z : numpy.ndarray
        ``(n, q)`` raw model-matrix columns of the term.
    expr : str
        formulaic expression the columns come from.
    group_columns : tuple of str
        Data columns whose combination is the grouping factor.
    model_spec : Any
        formulaic ``ModelSpec`` of ``expr`` (to rebuild the columns for new data).
    spec_columns : tuple of str
        Which columns of ``model_spec``'s output this term uses (a subset after ``||``).
    """

    group: str
    names: tuple[str, ...]
    levels: pd.Index
    codes: np.ndarray
    Z: np.ndarray
    expr: str
    group_columns: tuple[str, ...]
    model_spec: Any
    spec_columns: tuple[str, ...]

    @property
    def q(self) -> int:
        """Number of random effects per level."""
        return len(self.names)

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def n_theta(self) -> int:
        """Number of θ entries of this term's Λ block (its lower triangle)."""
        return self.q * (self.q + 1) // 2

    def level_codes(self, data: pd.DataFrame) -> np.ndarray:
        """Codes of ``data``'s rows into ``levels``; ``-1`` for levels not seen in the fit."""
        labels = _group_labels(data, self.group_columns)
        return np.asarray(self.levels.get_indexer(labels), dtype=np.intp)

    def columns_for(self, data: pd.DataFrame) -> np.ndarray:
        """The term's raw columns for new rows (same coding as in the fit)."""
        mm = self.model_spec.get_model_matrix(data, na_action="raise")
        return np.asarray(mm[list(self.spec_columns)].to_numpy(dtype=float))


@dataclass(frozen=True, eq=False)
class MixedDesign:
    """Everything an engine needs about the data: y, X, random terms and the θ template.

    Build it with :func:`build_design`. Arrays hold only the fitted rows.
    """

    formula: str
    parsed: ParsedFormula
    family: str
    response_name: str
    y: np.ndarray
    prior_weights: np.ndarray
    offset: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    terms: tuple[RandomTerm, ...]
    row_index: pd.Index
    excluded_rows: pd.DataFrame
    fixed_spec: Any
    used_columns: tuple[str, ...]
    used_data: UsedColumns | None = None  # the fitted rows of the used columns
    theta_slices: tuple[slice, ...] = field(init=False)

    def __post_init__(self) -> None:
        slices = []
        start = 0
        for term in self.terms:
            slices.append(slice(start, start + term.n_theta))
            start += term.n_theta
        object.__setattr__(self, "theta_slices", tuple(slices))

    @property
    def model_frame(self) -> pd.DataFrame | None:
        """The fitted rows of the used columns, a DataFrame (built on first access)."""
        return None if self.used_data is None else self.used_data.frame

    # ----------------------------------------------------------------- sizes
    @property
    def n(self) -> int:
        """Number of fitted rows."""
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return int(self.X.shape[1])

    @property
    def n_theta(self) -> int:
        """Length of θ."""
        return sum(t.n_theta for t in self.terms)

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels per grouping factor (lme4's ``ngrps``)."""
        out: dict[str, int] = {}
        for term in self.terms:
            out.setdefault(term.group, term.n_levels)
        return out

    # ----------------------------------------------------------------- θ template
    @property
    def theta_lower(self) -> np.ndarray:
        """Lower bounds of θ: 0 for the diagonal of each Λ block, −∞ elsewhere."""
        parts = []
        for term in self.terms:
            rows, cols = lower_triangle_indices(term.q)
            parts.append(np.where(rows == cols, 0.0, -np.inf))
        return np.concatenate(parts) if parts else np.zeros(0)

    @property
    def theta_is_diagonal(self) -> np.ndarray:
        """Boolean mask of θ entries that sit on the diagonal of their Λ block."""
        return np.isfinite(self.theta_lower)

    @property
    def theta_names(self) -> tuple[str, ...]:
        """Readable name of each θ entry: ``Subject[Days]``, ``Subject[Days,Intercept]``."""
        names = []
        for term in self.terms:
            rows, cols = lower_triangle_indices(term.q)
            for r, c in zip(rows, cols, strict=True):
                inner = term.names[r] if r == c else f"{term.names[r]},{term.names[c]}"
                names.append(f"{term.group}[{inner}]")
        return tuple(names)

    def theta_start(self) -> np.ndarray:
        """lme4's default start: every Λ block the identity."""
        lower = self.theta_lower
        return np.where(np.isfinite(lower), 1.0, 0.0)

    def lambda_blocks(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the q×q lower-triangular block Λ_t filled from θ (column-major)."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_theta,):
            raise ValueError(f"theta has shape {theta.shape}, expected ({self.n_theta},)")
        blocks = []
        for term, sl in zip(self.terms, self.theta_slices, strict=True):
            block = np.zeros((term.q, term.q))
            rows, cols = lower_triangle_indices(term.q)
            block[rows, cols] = theta[sl]
            blocks.append(block)
        return blocks

    # ----------------------------------------------------------------- new data
    def fixed_matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for new rows, with the fit's coding (categories, contrasts)."""
        mm = self.fixed_spec.get_model_matrix(data, na_action="raise")
        return np.asarray(mm.to_numpy(dtype=float))

    def offset_for(self, data: pd.DataFrame) -> np.ndarray:
        """Sum of the formula's offsets for new rows (zeros when there is none)."""
        return _evaluate_offsets(self.parsed.offsets, data)


# --------------------------------------------------------------------------- main
def _used_columns(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    needed: list[str] = []

    def add(names: set[str] | tuple[str, ...], where: str) -> None:
        for name in sorted(names) if isinstance(names, set) else names:
            if name not in data.columns:
                raise ModelSpecError(
                    f"Column `{name}` used in the {where} is not in the data."
                    + _close_matches(name, list(map(str, data.columns)))
                )
            if name not in needed:
                needed.append(name)

    cbind = parsed.cbind
    if cbind is not None:
        add(_expression_variables(cbind[0], "response"), "response")
        add(_expression_variables(cbind[1], "response"), "response")
    elif parsed.response in data.columns:
        add((parsed.response,), "response")
    else:
        add(_expression_variables(parsed.response, "response"), "response")
    add(_formula_variables(parsed.fixed, "fixed part"), "fixed part")
    for expr in parsed.offsets:
        add(_expression_variables(expr, "offset"), f"offset({expr})")
    for spec in parsed.random:
        add(_formula_variables(spec.expr, "random term"), f"random term `({spec.expr} | ...)`")
        add(spec.group_columns, f"grouping factor `{spec.group}`")
    return needed


def _random_terms(specs: tuple[RandomTermSpec, ...], data: UsedColumns) -> list[RandomTerm]:
    terms: list[RandomTerm] = []
    factor_cache: dict[tuple[str, ...], tuple[np.ndarray, pd.Index]] = {}
    for spec in specs:
        try:
            spec_names, Z, model_spec = model_columns(spec.expr, data)
        except Exception as exc:
            raise ModelSpecError(
                f"Cannot build the random term `({spec.expr} | {spec.group})`: {_reason(exc)}"
            ) from exc
        names = spec_names
        if not names:
            raise ModelSpecError(
                f"Random term `({spec.expr} | {spec.group})` has no columns; write "
                f"`(1 | {spec.group})` for a random intercept."
            )
        key = spec.group_columns
        if key not in factor_cache:
            factor_cache[key] = _grouping_factor(data, key)
        codes, levels = factor_cache[key]
        if len(levels) < 2:
            raise ModelSpecError(
                f"The grouping factor `{spec.group}` has only {len(levels)} level "
                f"({', '.join(map(str, levels[:1]))}) in the fitted rows: a random effect "
                "needs at least two groups. Drop the term or fit an ordinary regression."
            )
        pieces = (
            [(names, Z)]
            if spec.correlated
            else [((name,), Z[:, [j]]) for j, name in enumerate(names)]
        )
        for piece_names, piece_Z in pieces:
            terms.append(
                RandomTerm(
                    group=spec.group,
                    names=piece_names,
                    levels=levels,
                    codes=codes,
                    Z=np.ascontiguousarray(piece_Z),
                    expr=spec.expr,
                    group_columns=key,
                    model_spec=model_spec,
                    spec_columns=tuple(spec_names[names.index(nm)] for nm in piece_names),
                )
            )
    # lme4 (mkReTrms): terms in decreasing order of their number of levels, stable
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    return [terms[i] for i in order]


def build_design(
    formula: str, data: pd.DataFrame, *, family: str = "gaussian", require_random: bool = True
) -> MixedDesign:
    """Build the model matrices of a mixed model from an lme4-style formula.

    Parameters
    ----------
    formula : str
        lme4 syntax: ``y ~ a * b + x + (1 + x | g)``, ``(1 | g1) + (1 | g2)`` (crossed),
        ``(1 | g1/g2)`` (nested), ``(x || g)`` (uncorrelated), ``offset(expr)``,
        ``cbind(successes, failures) ~ ...`` (binomial).
    data : pandas.DataFrame
        Any table holding the columns the formula uses. Never modified.
    family : {"gaussian", "binomial", "poisson"}
        Decides the response checks.
    require_random : bool, default True
        Refuse a formula without a random term (False: a fixed-effects-only design, for
        ``fit_clmm``'s cumulative link model without random effects).

    Returns
    -------
    MixedDesign

    Raises
    ------
    ModelSpecError
        Unknown column (with close matches), no random term, a grouping factor with one level,
        non-numeric or invalid response for the family, rank-deficient X (naming the aliased
        columns), more random effects than observations (LMM).

    Warns
    -----
    ExclusionWarning
        Rows with a missing value in a used column were set aside (``excluded_rows``).
    """
    if family not in FAMILIES:
        raise ModelSpecError(
            f"family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}."
        )
    if not isinstance(data, pd.DataFrame):
        raise ModelSpecError(
            f"data must be a pandas DataFrame, got {type(data).__name__}; wrap it with "
            "`pd.DataFrame(...)`."
        )
    parsed = parsed_formula(formula)
    if require_random and not parsed.random:
        raise ModelSpecError(
            f"Formula `{formula}` has no random-effect term such as `(1 | subject_id)`. A "
            "mixed model needs at least one; for an ordinary regression use statsmodels' "
            "`ols`/`glm`."
        )
    used = _used_columns(parsed, data)
    if len(data) == 0:
        raise ModelSpecError("The data has no rows.")
    kept, excluded = _used_rows(data, used)
    if len(kept) == 0:
        raise ModelSpecError(
            "Every row has a missing value in a column the model uses "
            f"({', '.join(used)}); nothing is left to fit."
        )
    kept = kept.without_unused_categories()

    y, weights = _response(parsed, kept, family)
    offset = _evaluate_offsets(parsed.offsets, kept)

    try:
        fixed_names, X, fixed_spec = model_columns(parsed.fixed, kept)
    except Exception as exc:
        raise ModelSpecError(
            f"Cannot build the fixed part `{parsed.fixed}`: {_reason(exc)}"
        ) from exc
    if not fixed_names:
        raise ModelSpecError(
            f"Formula `{formula}` has no fixed effect; keep at least the intercept "
            "(remove `0 +` / `- 1`)."
        )
    aliased = aliased_columns(X, fixed_names)
    if aliased:
        listing = "; ".join(_format_alias(name, deps) for name, deps in aliased)
        raise ModelSpecError(
            f"The fixed effects are not estimable: {len(aliased)} column(s) of X are linear "
            f"combinations of earlier columns ({listing}). The data cannot separate these "
            "effects; drop one of each aliased set or recode the variables."
        )

    terms = _random_terms(parsed.random, kept)
    n = len(y)
    if n <= len(fixed_names):
        raise ModelSpecError(
            f"Only {n} row(s) for {len(fixed_names)} fixed effects; the model cannot be fitted."
        )
    if family == "gaussian":
        for term in terms:
            n_re = term.n_levels * term.q
            if n <= n_re:
                raise ModelSpecError(
                    f"The random term ({' + '.join(term.names)} | {term.group}) has {n_re} "
                    f"random effects ({term.n_levels} levels × {term.q}) but there are only {n} "
                    "observations, so its variance cannot be told apart from the residual "
                    f"variance. Use fewer random effects (e.g. `(1 | {term.group})`) or more "
                    "observations per group."
                )
    return MixedDesign(
        formula=formula,
        parsed=parsed,
        family=family,
        response_name=parsed.response,
        y=y,
        prior_weights=weights,
        offset=offset,
        X=X,
        fixed_names=fixed_names,
        terms=tuple(terms),
        row_index=kept.index,
        excluded_rows=excluded,
        fixed_spec=fixed_spec,
        used_columns=tuple(used),
        used_data=kept,
    )
