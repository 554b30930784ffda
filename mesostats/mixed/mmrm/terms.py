"""The covariance term of an MMRM formula, written as in R's mmrm: ``us(AVISIT | USUBJID)``.

``split_mmrm_formula`` finds the one term ``structure(time | subject)`` or
``structure(time | group / subject)`` among the top-level additive pieces of the right-hand
side (the scanner of :mod:`mesostats.formula`), and returns it with the remaining formula,
which is an ordinary fixed-effects formula for formulaic. The structure name is checked here
(:func:`~mesostats.mixed.mmrm.structures.make_structure` suggests a close match). A spatial
structure may take several numeric coordinates, separated by commas as in mmrm and SAS's
``type=sp(exp)(c1 c2)``: ``sp_exp(x, y | subject)`` (Euclidean distance between the points).
The split is memoised (a pure function of the text; the term is immutable).
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass

from mesostats.exceptions import ModelSpecError
from mesostats.formula import _top_level_additive_pieces, split_top_level
from mesostats.mixed.mmrm.structures import STRUCTURES

__all__ = ["CovarianceTerm", "split_mmrm_formula"]

_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*\((.*)\)$", flags=re.S)
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class CovarianceTerm:
    """``structure(time | group / subject)`` parsed.

    Attributes
    ----------
    structure : str
        mmrm's abbreviation (``"us"``, ``"ar1h"``, ``"sp_exp"``).
    time : str
        Visit factor (numeric time for ``sp_exp``; its first coordinate when it has several).
    subject : str
        Subject identifier column.
    group : str or None
        Column whose levels each get their own covariance matrix, or None.
    more_coordinates : tuple of str
        The further numeric coordinates of a spatial structure (``sp_exp(x, y | s)``: ``("y",)``).
    """

    structure: str
    time: str
    subject: str
    group: str | None = None
    more_coordinates: tuple[str, ...] = ()

    @property
    def coordinates(self) -> tuple[str, ...]:
        """The time / coordinate columns: ``(time,)``, or all coordinates of ``sp_exp``."""
        return (self.time, *self.more_coordinates)

    def __str__(self) -> str:
        inner = f"{self.group} / {self.subject}" if self.group else self.subject
        return f"{self.structure}({', '.join(self.coordinates)} | {inner})"


def _column(text: str, role: str, term: str) -> str:
    name = text.strip()
    if not _NAME.match(name):
        raise ModelSpecError(
            f"The {role} in the covariance term `{term}` must be a column name, got `{name}`. "
            "Derive the column in the DataFrame first."
        )
    return name


def _parse_term(name: str, inside: str, piece: str) -> CovarianceTerm:
    if name not in STRUCTURES:
        close = difflib.get_close_matches(name, STRUCTURES, n=1, cutoff=0.5)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise ModelSpecError(
            f"Unknown covariance structure `{name}` in `{piece}`.{hint} Known structures: "
            f"{', '.join(STRUCTURES)}."
        )
    sides = split_top_level(inside, "|")
    if len(sides) != 2:
        raise ModelSpecError(
            f"The covariance term `{piece}` needs exactly one `|` between the time and the "
            "subject: `us(visit | subject)` or `us(visit | group / subject)`."
        )
    coords = [_column(c, "time variable", piece) for c in split_top_level(sides[0], ",")]
    if len(coords) > 1 and not name.startswith("sp_"):
        raise ModelSpecError(
            f"The covariance term `{piece}` gives {len(coords)} time variables "
            f"({', '.join(coords)}); `{name}` takes one visit factor. Several coordinates "
            "(Euclidean distance) are for the spatial structure: `sp_exp(x, y | subject)`."
        )
    if len(set(coords)) < len(coords):
        raise ModelSpecError(
            f"The covariance term `{piece}` names a coordinate twice; give each column once."
        )
    time, more = coords[0], tuple(coords[1:])
    right = split_top_level(sides[1], "/")
    if len(right) == 1:
        return CovarianceTerm(name, time, _column(right[0], "subject", piece), None, more)
    if len(right) == 2:
        return CovarianceTerm(
            name,
            time,
            _column(right[1], "subject", piece),
            _column(right[0], "group", piece),
            more,
        )
    raise ModelSpecError(
        f"The covariance term `{piece}` has more than one `/`; write "
        "`us(visit | group / subject)` with one grouping column."
    )


@functools.lru_cache(maxsize=256)
def _split(formula: str) -> tuple[str, CovarianceTerm]:
    return _split_uncached(formula)


def split_mmrm_formula(formula: str) -> tuple[str, CovarianceTerm]:
    """Split ``y ~ fixed + us(visit | subject)`` into ``"y ~ fixed"`` and the term (memoised;
    see :func:`_split_uncached` for the errors)."""
    if not isinstance(formula, str):
        return _split_uncached(formula)
    return _split(formula)


def _split_uncached(formula: str) -> tuple[str, CovarianceTerm]:
    """Split ``y ~ fixed + us(visit | subject)`` into ``"y ~ fixed"`` and the term.

    Raises
    ------
    ModelSpecError
        No or several covariance terms, a subtracted one, an unknown structure (with the
        close match), lme4-style random-effect terms, or a malformed term.
    """
    if not isinstance(formula, str):
        raise ModelSpecError(
            "The formula must be a string such as 'y ~ x * visit + us(visit | subject)', got "
            f"{type(formula).__name__}."
        )
    sides = split_top_level(formula, "~")
    if len(sides) != 2 or not sides[0].strip() or not sides[1].strip():
        raise ModelSpecError(
            f"Formula `{formula}` must read `response ~ terms + us(visit | subject)`."
        )
    response, rhs = sides[0].strip(), sides[1]
    kept: list[str] = []
    terms: list[CovarianceTerm] = []
    for sign, piece in _top_level_additive_pieces(rhs):
        match = _TERM.match(piece.strip())
        if match and "|" in match.group(2):
            if sign == "-":
                raise ModelSpecError(f"The covariance term `{piece}` cannot be subtracted.")
            terms.append(_parse_term(match.group(1), match.group(2), piece.strip()))
            continue
        if "|" in piece:
            raise ModelSpecError(
                f"`{piece}` in `{formula}` looks like a random-effect term. An MMRM has no "
                "random effects: give the within-subject covariance as one term such as "
                "`us(visit | subject)`, or fit a mixed model with `fit_lmm`."
            )
        kept.append(piece if sign == "+" else f"- {piece}")
    if not terms:
        raise ModelSpecError(
            f"Formula `{formula}` has no covariance term. Add one such as "
            f"`us(visit | subject)` (structures: {', '.join(STRUCTURES)})."
        )
    if len(terms) > 1:
        raise ModelSpecError(
            f"Formula `{formula}` has {len(terms)} covariance terms "
            f"({', '.join(map(str, terms))}); an MMRM takes exactly one."
        )
    plus = [p for p in kept if not p.startswith("-")]
    minus = [p for p in kept if p.startswith("-")]
    fixed = " + ".join(plus) if plus else "1"
    if minus:
        fixed = f"{fixed} " + " ".join(minus)
    return f"{response} ~ {fixed}", terms[0]
