"""Which ingredients the cocktails of a study can separate (aliasing).

:func:`find_aliasing` / :func:`require_estimable`: the effects of ingredients (with an
intercept: the placebo contrast) are estimable only when the matrix ``A = [1, X]`` of the
cocktails actually used has full column rank. Its null space (``scipy.linalg.null_space``)
gives the exact linear relations between columns. For readable relations we pick the basis of
the null space in reduced row-echelon form: walking the columns in order (intercept first,
then the ingredients in the order asked), a column that lies in the span of the columns kept
before it is written as that combination (least squares on the kept columns, exact up to
rounding), with rational coefficients when they are small fractions. The maximal sets of
ingredients that *can* be estimated are the bases of the column matroid containing the
intercept, found by enumerating subsets of the ingredients involved in a relation.

Why hand-written: the rank test is numpy/scipy, but no library words the relations in the
terms of a study (ingredients, cocktails, placebo) or lists the estimable subsets.

Reference for estimability of linear functions: Searle SR (1971), *Linear Models*, Wiley,
ch. 5 ("estimable functions"); Seber GAF & Lee AJ (2003), *Linear Regression Analysis*,
2nd ed., section 3.8.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import pandas as pd
import scipy.linalg

from mesostats.exceptions import ModelSpecError

Design = Literal["indicator", "dose"]

#: Name of the intercept column in the aliasing matrix (the placebo contrast).
INTERCEPT = "1"
_RANK_RTOL = 1e-9
_MAX_SUBSETS_SHOWN = 6
_MAX_SUBSETS_TRIED = 20_000
_MAX_BASES = 200


# Aliasing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AliasRelation:
    """An exact linear relation between design columns over the cocktails used.

    ``ingredient = Σ coefficient · column`` holds in every cocktail used, where a column is
    another ingredient or :data:`INTERCEPT` (``"1"``, the constant).

    Attributes
    ----------
    ingredient : str
        The ingredient written as a combination of the others.
    coefficients : tuple of (str, float)
        Non-zero coefficients, intercept first.
    cocktails : tuple of str
        Cocktails that contain the ingredient or a column of the relation.
    design : {"indicator", "dose"}
    """

    ingredient: str
    coefficients: tuple[tuple[str, float], ...]
    cocktails: tuple[str, ...]
    design: str = "indicator"

    @property
    def involved(self) -> tuple[str, ...]:
        """Ingredients in the relation (the intercept excluded)."""
        return (self.ingredient, *(n for n, _ in self.coefficients if n != INTERCEPT))

    @property
    def equation(self) -> str:
        """The relation as text, e.g. ``"biotin = minoxidil + dutasteride"``."""
        if not self.coefficients:
            return f"{self.ingredient} = 0"
        parts: list[str] = []
        for name, coef in self.coefficients:
            sign = "−" if coef < 0 else "+"
            size = _readable_number(abs(coef))
            if name == INTERCEPT:
                term = size
            else:
                term = name if size == "1" else f"{size}·{name}"
            parts.append(f"{sign} {term}")
        text = " ".join(parts)
        text = text[2:] if text.startswith("+ ") else "−" + text[2:]
        return f"{self.ingredient} = {text}"

    def explanation(self, intercept_meaning: str) -> str:
        """The relation in plain words, with the cocktails involved."""
        where = ", ".join(self.cocktails)
        others = [(n, c) for n, c in self.coefficients if n != INTERCEPT]
        has_constant = any(n == INTERCEPT for n, _ in self.coefficients)
        if not self.coefficients:
            return f"{self.ingredient} is in none of the cocktails used."
        if has_constant and not others:
            same = "" if self.design == "indicator" else " at the same concentration"
            return (
                f"{self.ingredient} is in every cocktail used{same} ({where}) — there is no "
                f"cocktail without it, such as a saline placebo — so its effect cannot be "
                f"told apart from the {intercept_meaning} ({self.equation})."
            )
        if not has_constant and len(others) == 1:
            name, coef = others[0]
            if self.design == "indicator" and coef == 1.0:
                return (
                    f"{_pair(name, self.ingredient)} always come together (cocktails "
                    f"{where}): {self.equation}."
                )
            if coef > 0:
                return (
                    f"{_pair(name, self.ingredient)} always come together in the same "
                    f"proportion (cocktails {where}): {self.equation}."
                )
        return f"in every cocktail used, {self.equation} (cocktails {where})."


def _pair(a: str, b: str) -> str:
    first, second = sorted([a, b])
    return f"{first} and {second}"


def _readable_number(x: float) -> str:
    """A small fraction (``"1/2"``) or integer when ``x`` is one, else 6 significant digits."""
    frac = Fraction(x).limit_denominator(1000)
    if abs(float(frac) - x) <= 1e-9 * max(1.0, abs(x)):
        if frac.denominator == 1:
            return str(frac.numerator)
        if frac.denominator <= 12:
            return f"{frac.numerator}/{frac.denominator}"
    return f"{x:.6g}"


def _rational(x: float) -> float:
    """Snap a coefficient to a nearby small fraction (removes rounding noise)."""
    frac = Fraction(x).limit_denominator(1000)
    if abs(float(frac) - x) <= 1e-8 * max(1.0, abs(x)):
        return float(frac)
    return x


@dataclass(frozen=True)
class Aliasing:
    """The aliasing structure of an ingredient design over the cocktails used.

    Attributes
    ----------
    ingredients : tuple of str
        The ingredients checked, in order.
    cocktails : tuple of str
        The cocktails used.
    rank : int
        Rank of ``[1, X]``.
    null_dimension : int
        Dimension of its null space (``scipy.linalg.null_space``): 0 when estimable.
    relations : tuple of AliasRelation
        One relation per dimension of the null space (reduced row-echelon basis).
    estimable_sets : tuple of tuple of str
        Maximal sets of ingredients that can be estimated together (at most a few shown).
    """

    ingredients: tuple[str, ...]
    cocktails: tuple[str, ...]
    rank: int
    null_dimension: int
    relations: tuple[AliasRelation, ...]
    estimable_sets: tuple[tuple[str, ...], ...]

    @property
    def estimable(self) -> bool:
        """True when every ingredient's effect can be estimated."""
        return self.null_dimension == 0

    @property
    def aliased(self) -> tuple[str, ...]:
        """Ingredients that appear in some relation, in design order."""
        names = {n for r in self.relations for n in r.involved}
        return tuple(ing for ing in self.ingredients if ing in names)

    def message(self, intercept_meaning: str) -> str:
        """The error text: relations, cocktails, and the estimable subsets."""
        lines = [
            f"The cocktails used in the analysed rows ({', '.join(self.cocktails)}) cannot "
            f"separate the effects of {', '.join(self.aliased)}: their design columns are "
            "linearly dependent, so the data hold no information to split them."
        ]
        lines += [f"  - {r.explanation(intercept_meaning)}" for r in self.relations]
        if self.estimable_sets:
            options = " or ".join(repr(list(s)) for s in self.estimable_sets)
            lines.append(
                f"Estimable: ingredients={options} (the effect of an ingredient left out is "
                "then carried by those it is aliased with), or add cocktails that separate "
                "them."
            )
        else:
            lines.append(
                "No ingredient can be estimated: every analysed session used cocktails that "
                "do not differ in their ingredients; a comparison needs a cocktail without "
                "the ingredient (e.g. a saline placebo)."
            )
        return "\n".join(lines)


def _rank(matrix: np.ndarray) -> int:
    if matrix.size == 0:
        return 0
    s = np.linalg.svd(matrix, compute_uv=False)
    return int(np.sum(s > _RANK_RTOL * max(float(s[0]), 1e-300)))


def find_aliasing(matrix: pd.DataFrame, *, design: str = "indicator") -> Aliasing:
    """Exact linear relations between the ingredient columns and the intercept.

    Parameters
    ----------
    matrix : DataFrame
        Cocktails used (index) × ingredients (columns), as :func:`recipe_matrix`.
    design : {"indicator", "dose"}
        Only changes the wording of the relations.

    Returns
    -------
    Aliasing

    Notes
    -----
    With ``A = [1, X]`` (columns scaled to unit maximum so that concentrations in different
    units weigh alike), the null-space dimension is taken from ``scipy.linalg.null_space``.
    Columns are then visited in order; a column whose addition does not raise the rank of the
    kept columns is dependent, and least squares on the kept columns gives its exact relation
    (coefficients snapped to small fractions). These relations form the reduced row-echelon
    basis of the null space. Estimable sets are the subsets of the ingredients involved in a
    relation, of size (number involved − null dimension), whose columns together with the
    intercept and the uninvolved ingredients have full rank; among them the one whose
    relations read best (fewest negative coefficients, then fewest terms) words the message,
    so that ``biotin = minoxidil + dutasteride`` is preferred to
    ``minoxidil = biotin − dutasteride``.
    """
    names = [INTERCEPT, *(str(c) for c in matrix.columns)]
    cocktails = tuple(str(c) for c in matrix.index)
    X = np.ascontiguousarray(matrix.to_numpy(dtype=float))
    key = (X.tobytes(), X.shape, tuple(names), cocktails, str(design))
    found = _ALIASING_CACHE.get(key)
    if found is None:
        found = _find_aliasing(X, names, cocktails, design)
        if len(_ALIASING_CACHE) >= _ALIASING_CACHE_SIZE:
            _ALIASING_CACHE.clear()
        _ALIASING_CACHE[key] = found
    return found


#: find_aliasing is a pure function of the matrix, its labels and the design kind, and the
#: same cocktails are checked again and again (every fit of a study, every power trial):
#: results (immutable) are kept per process, keyed by the exact values
_ALIASING_CACHE: dict[tuple[object, ...], Aliasing] = {}
_ALIASING_CACHE_SIZE = 256


def _find_aliasing(
    X: np.ndarray, names: list[str], cocktails: tuple[str, ...], design: str
) -> Aliasing:
    """:func:`find_aliasing` on the values (cocktails × ingredients) and labels."""
    A = np.column_stack([np.ones(len(X)), X])
    scale = np.max(np.abs(A), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    B = A / scale
    null_dim = int(scipy.linalg.null_space(B, rcond=_RANK_RTOL).shape[1]) if len(B) else A.shape[1]

    kept: list[int] = []
    for j in range(A.shape[1]):
        if _rank(B[:, [*kept, j]]) > len(kept):
            kept.append(j)
    ingredients = tuple(names[1:])
    if null_dim == 0 or len(kept) == A.shape[1]:
        return Aliasing(ingredients, cocktails, A.shape[1], 0, (), ())
    first = _relations_for_basis(A, scale, names, kept, cocktails, design)
    bases = _bases(B, names, first)
    best = min(
        (_relations_for_basis(A, scale, names, basis, cocktails, design) for basis in bases),
        key=_readability,
        default=first,
    )
    shown = tuple(tuple(names[k] for k in basis if k != 0) for basis in bases[:_MAX_SUBSETS_SHOWN])
    return Aliasing(
        ingredients=ingredients,
        cocktails=cocktails,
        rank=A.shape[1] - null_dim,
        null_dimension=null_dim,
        relations=tuple(best),
        estimable_sets=shown if any(shown) else (),
    )


def _readability(relations: list[AliasRelation]) -> tuple[int, int]:
    negatives = sum(c < 0 for r in relations for _, c in r.coefficients)
    terms = sum(len(r.coefficients) for r in relations)
    return negatives, terms


def _relations_for_basis(
    A: np.ndarray,
    scale: np.ndarray,
    names: list[str],
    basis: list[int],
    cocktails: tuple[str, ...],
    design: str,
) -> list[AliasRelation]:
    """Each column outside ``basis`` as an exact combination of the basis columns."""
    relations = []
    for j in range(A.shape[1]):
        if j in basis:
            continue
        coef = np.linalg.lstsq(A[:, basis], A[:, j], rcond=None)[0]
        terms = tuple(
            (names[k], _rational(float(c)))
            for k, c in zip(basis, coef, strict=True)
            if abs(c) * scale[k] > 1e-9 * scale[j]
        )
        involved_cols = [j] + [names.index(n) for n, _ in terms if n != INTERCEPT]
        present = np.any(A[:, involved_cols] != 0, axis=1)
        relations.append(
            AliasRelation(
                ingredient=names[j],
                coefficients=terms,
                cocktails=tuple(c for c, p in zip(cocktails, present, strict=True) if p),
                design=design,
            )
        )
    return relations


def _bases(B: np.ndarray, names: list[str], relations: list[AliasRelation]) -> list[list[int]]:
    """Maximal full-rank column sets containing the intercept (column 0), in design order."""
    involved = {n for r in relations for n in r.involved}
    order = [k for k in range(1, len(names)) if names[k] in involved]
    free = [k for k in range(1, len(names)) if names[k] not in involved]
    rank = _rank(B)
    size = rank - 1 - len(free)
    if size <= 0:
        return [[0, *free]]
    found: list[list[int]] = []
    for tried, combo in enumerate(itertools.combinations(order, size)):
        if tried >= _MAX_SUBSETS_TRIED or len(found) >= _MAX_BASES:
            break
        cols = sorted([0, *free, *combo])
        if _rank(B[:, cols]) == len(cols):
            found.append(cols)
    return found


def require_estimable(
    matrix: pd.DataFrame, *, design: str = "indicator", intercept_meaning: str
) -> Aliasing:
    """Raise :class:`ModelSpecError` naming the aliased ingredients, else return the check.

    Parameters
    ----------
    matrix : DataFrame
        Cocktails used × ingredients to estimate.
    design : {"indicator", "dose"}
    intercept_meaning : str
        What the intercept stands for in the model, for the message (e.g. ``"change over time
        common to every cocktail (the week term)"``).
    """
    aliasing = find_aliasing(matrix, design=design)
    if not aliasing.estimable:
        raise ModelSpecError(aliasing.message(intercept_meaning))
    return aliasing


def absorbed_by(
    matrix: pd.DataFrame, chosen: Sequence[str], left_out: Sequence[str]
) -> list[AliasRelation]:
    """Relations expressing ingredients left out of a model through the chosen ones.

    An ingredient that the cocktails give but the model leaves out has its effect carried by
    the chosen ingredients when its column is an exact combination of theirs (and the
    intercept); those relations are returned so the caller can say so.
    """
    out = []
    for ing in left_out:
        sub = matrix[[*chosen, ing]]
        aliasing = find_aliasing(sub)
        out += [r for r in aliasing.relations if r.ingredient == ing]
    return out
