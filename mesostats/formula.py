"""lme4 model formulas: split ``y ~ fixed + (expr | group)`` into its parts.

The fixed part and each random term's expression are handed to *formulaic* (which builds the
model matrices, with treatment contrasts); this module only does what formulaic cannot: find
the lme4 random-effect bars, expand them the way lme4 does, and pull out ``offset(...)`` terms
and a ``cbind(successes, failures)`` response.

Expansion rules (lme4's ``findbars`` / ``expandSlash`` / ``expandDoubleVerts``):

* ``(1 | g1/g2)`` becomes ``(1 | g1) + (1 | g2:g1)``; lme4 names the inner group
  ``inner:outer`` (``cask:batch`` for ``batch/cask``), and so do we. ``a/b/c`` gives
  ``a``, ``b:a`` and ``c:b:a``.
* ``(x || g)`` becomes uncorrelated terms: the term is kept with ``correlated=False`` and the
  design layer gives every model-matrix column its own scalar term (lme4 splits by formula
  term; for a numeric ``x`` the two agree).
* ``(1 | g1) + (1 | g2)`` are two crossed terms.

Formulas are parsed by a small scanner that respects parentheses and quotes; no ``eval``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mesostats.exceptions import ModelSpecError

__all__ = ["ParsedFormula", "RandomTermSpec", "parse_formula", "split_top_level"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effect term ``(expr | group)`` after lme4's expansion.

    Attributes
    ----------
    expr : str
        formulaic right-hand side of the term's model matrix (``"1 + Days"``, ``"0 + x"``).
    group : str
        Grouping expression as lme4 names it: a column (``"Subject"``) or an interaction of
        columns written ``inner:outer`` (``"cask:batch"``).
    correlated : bool
        ``False`` for ``(x || g)``: the design gives each column its own scalar term.
    """

    expr: str
    group: str
    correlated: bool = True

    @property
    def group_columns(self) -> tuple[str, ...]:
        """Data columns whose combination defines the grouping factor."""
        return tuple(part.strip() for part in self.group.split(":"))


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula split into response, fixed part, random terms and offsets.

    Attributes
    ----------
    formula : str
        The formula as given.
    response : str
        Left-hand side (``"Reaction"`` or ``"cbind(incidence, size - incidence)"``).
    fixed : str
        Fixed-effects right-hand side for formulaic (``"1"`` when only an intercept).
    random : tuple of RandomTermSpec
        Random terms in formula order, nested and ``||`` terms already expanded.
    offsets : tuple of str
        Expressions inside ``offset(...)`` in the fixed part.
    """

    formula: str
    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]
    offsets: tuple[str, ...]

    @property
    def cbind(self) -> tuple[str, str] | None:
        """``(successes, failures)`` expressions of a ``cbind`` response, else ``None``."""
        match = re.fullmatch(r"\s*cbind\s*\((.*)\)\s*", self.response, flags=re.S)
        if match is None:
            return None
        parts = split_top_level(match.group(1), ",")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ModelSpecError(
                f"`{self.response}` must have exactly two arguments, "
                "`cbind(successes, failures)` (e.g. `cbind(events, trials - events)`)."
            )
        return parts[0].strip(), parts[1].strip()


def split_top_level(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` where it is outside parentheses, brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ModelSpecError(
                    f"Unbalanced parentheses in `{text}`: a `)` at position {i} has no `(`."
                )
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            i += len(separator)
            start = i
            continue
        i += 1
    if depth != 0 or quote is not None:
        raise ModelSpecError(f"Unbalanced parentheses or quotes in `{text}`.")
    parts.append(text[start:])
    return parts


def _top_level_additive_pieces(rhs: str) -> list[tuple[str, str]]:
    """Split an additive right-hand side into ``(sign, piece)`` at top-level ``+``/``-``."""
    pieces: list[tuple[str, str]] = []
    depth = 0
    quote: str | None = None
    sign = "+"
    start = 0
    for i, ch in enumerate(rhs):
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch in "+-":
            # a binary operator only if something precedes it in this piece (so `-1` at the
            # start, or `x ** -1` inside I(), keep their meaning)
            before = rhs[start:i].strip()
            if before and not before.endswith(("*", "/", ":", "^", "**", "(", "~")):
                pieces.append((sign, before))
                sign = ch
                start = i + 1
            elif not before:
                sign = ch if sign == "+" else ("+" if ch == "-" else "-")
                start = i + 1
    last = rhs[start:].strip()
    if last:
        pieces.append((sign, last))
    return pieces


def _strip_outer_parens(text: str) -> str | None:
    """Return the inside of ``( ... )`` when the parentheses enclose all of ``text``."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return None
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return None
    return text[1:-1]


def _expand_groups(group: str, formula: str) -> list[str]:
    """Expand ``a/b/c`` into lme4's group names ``a``, ``b:a``, ``c:b:a``."""
    parts = [p.strip() for p in split_top_level(group, "/")]
    if any(not p for p in parts):
        raise ModelSpecError(
            f"Grouping `{group}` in `{formula}` has an empty part; write e.g. "
            "`(1 | site/subject)` for subjects nested in sites."
        )
    for part in parts:
        for name in part.split(":"):
            name = name.strip()
            if not _NAME.match(name):
                raise ModelSpecError(
                    f"Grouping factor `{part}` in `{formula}` must be a column name or an "
                    "interaction of column names (`g1:g2`); derive the grouping column in the "
                    "DataFrame first."
                )
    groups: list[str] = []
    inner: list[str] = []
    for part in parts:
        inner = [part, *inner]
        groups.append(":".join(inner))
    return groups


def _parse_random_term(inside: str, formula: str) -> list[RandomTermSpec]:
    double = split_top_level(inside, "||")
    if len(double) == 2:
        expr, group, correlated = double[0], double[1], False
    elif len(double) > 2:
        raise ModelSpecError(f"Random term `({inside})` in `{formula}` has more than one `||`.")
    else:
        single = split_top_level(inside, "|")
        if len(single) != 2:
            raise ModelSpecError(
                f"Random term `({inside})` in `{formula}` must have one `|` between the "
                "effects and the grouping factor, e.g. `(1 + week | subject_id)`."
            )
        expr, group, correlated = single[0], single[1], True
    expr = expr.strip()
    group = group.strip()
    if not expr:
        raise ModelSpecError(
            f"Random term `({inside})` in `{formula}` has nothing before the bar; "
            "write `(1 | group)` for a random intercept."
        )
    if not group:
        raise ModelSpecError(
            f"Random term `({inside})` in `{formula}` has no grouping factor after the bar."
        )
    return [
        RandomTermSpec(expr=expr, group=name, correlated=correlated)
        for name in _expand_groups(group, formula)
    ]


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4-style mixed-model formula.

    Parameters
    ----------
    formula : str
        ``response ~ fixed + (expr | group) + ...``; ``offset(expr)`` may appear in the fixed
        part, ``cbind(successes, failures)`` as the response.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    ModelSpecError
        No ``~``, no response, unbalanced parentheses, a malformed bar term, or a fixed term
        subtracted that formulaic cannot remove.

    Examples
    --------
    >>> p = parse_formula("strength ~ 1 + (1 | batch/cask)")
    >>> [(t.expr, t.group) for t in p.random]
    [('1', 'batch'), ('1', 'cask:batch')]
    """
    if not isinstance(formula, str):
        raise ModelSpecError(
            f"The formula must be a string such as 'y ~ x + (1 | g)', got {type(formula).__name__}."
        )
    sides = split_top_level(formula, "~")
    if len(sides) != 2:
        raise ModelSpecError(
            f"Formula `{formula}` needs exactly one `~` between the response and the terms, "
            "e.g. `hair_density ~ week + (1 + week | subject_id)`."
        )
    response, rhs = sides[0].strip(), sides[1].strip()
    if not response:
        raise ModelSpecError(f"Formula `{formula}` has no response on the left of `~`.")
    if not rhs:
        raise ModelSpecError(f"Formula `{formula}` has no terms on the right of `~`.")

    fixed_parts: list[str] = []
    random: list[RandomTermSpec] = []
    offsets: list[str] = []
    for sign, piece in _top_level_additive_pieces(rhs):
        inside = _strip_outer_parens(piece)
        if inside is not None and ("|" in inside) and len(split_top_level(inside, "|")) > 1:
            if sign == "-":
                raise ModelSpecError(
                    f"Random term `{piece}` in `{formula}` is subtracted; random terms can "
                    "only be added."
                )
            random.extend(_parse_random_term(inside, formula))
            continue
        offset = re.fullmatch(r"offset\s*\((.*)\)", piece, flags=re.S)
        if offset is not None:
            if sign == "-":
                raise ModelSpecError(f"`{piece}` in `{formula}` cannot be subtracted.")
            offsets.append(offset.group(1).strip())
            continue
        if "|" in piece and len(split_top_level(piece, "|")) > 1:
            raise ModelSpecError(
                f"`{piece}` in `{formula}` contains a bar outside parentheses; random terms "
                "are written in parentheses: `(1 + x | group)`."
            )
        fixed_parts.append(piece if sign == "+" else f"- {piece}")
    fixed = " + ".join(p for p in fixed_parts if not p.startswith("-"))
    removed = [p for p in fixed_parts if p.startswith("-")]
    if not fixed:
        fixed = "1"
    if removed:
        fixed = f"{fixed} " + " ".join(removed)
    return ParsedFormula(
        formula=formula,
        response=response,
        fixed=fixed,
        random=tuple(random),
        offsets=tuple(offsets),
    )
