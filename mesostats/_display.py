"""The one display layer: how every number, p-value, interval, table and summary is shown.

Every results object, the HTML report and the command line format through this module, so a
p-value or a missing value looks the same wherever it is read. Two named styles cover the two
kinds of reader:

``"engine"``
    lme4-like, for the summaries of fitted models (``MixedResults.summary()``): a fixed
    number of decimals (4), scientific notation for very small or very large values, ASCII
    signs, p-values down to ``<2e-16``, intervals as ``[lower, upper]``.
``"reader"``
    for people reading a report: about three significant digits, thousands separators, a
    typographic minus, p-values as ``<0.001`` or three decimals, intervals as ``lower to
    upper``.

A missing value (``None``, NaN, ``pandas.NA``, ``NaT``) shows as :data:`MISSING` in both.

Tables are :class:`Table` records of preformatted strings with an alignment per column
(numbers right, text left); :func:`render_text_table` and :func:`render_html_table` draw them
(the HTML escapes every string). A :class:`Summary` (title, info lines, tables, notes) renders
itself as text or static HTML, and the :class:`SummaryDisplay` mixin gives a results class
``str()`` and Jupyter display from its ``summary()``, as linearmodels' ``_SummaryStr`` does.

A results class adopts it in three steps::

    class MixedResults(SummaryDisplay):          # __str__ and _repr_html_ come with it
        def summary(self) -> Summary:
            fixed = Table.of(
                ["Term", "Estimate", "p"],
                [(t, format_number(b, style="engine"), format_p(p, style="engine"))
                 for t, b, p in rows],
                caption="Fixed effects",
                numeric=[False, True, True],
            )
            return Summary("Linear mixed model fit by REML",
                           info=(("Formula", self.formula),), tables=(fixed,),
                           notes=self.messages, notes_title="Messages")

        def __repr__(self) -> str:                # stays one line, its own
            ...

A DataFrame with well-named columns can go through :func:`table_from_frame` instead of
:meth:`Table.of` (p-value columns are found by name, numeric columns right-aligned).

Pure functions and frozen records; no mesostats module is imported.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MISSING",
    "STYLES",
    "Style",
    "Summary",
    "SummaryDisplay",
    "Table",
    "format_cell",
    "format_estimate",
    "format_interval",
    "format_number",
    "format_p",
    "format_percent",
    "format_percent_range",
    "format_plain",
    "format_signed",
    "format_text",
    "is_missing",
    "is_p_column",
    "render_html_table",
    "render_text_table",
    "table_from_frame",
]

Style = Literal["engine", "reader"]
#: The named number styles (see the module docstring).
STYLES: tuple[Style, ...] = ("engine", "reader")
#: What a missing value shows as, in every style and every output.
MISSING = "–"
#: The smallest p-value the engine style prints as a number (lme4's ``<2e-16``).
_P_FLOOR = 2.2e-16
_MINUS = "−"  # U+2212, the reader style's minus sign


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """Whether ``value`` is missing: ``None``, NaN, ``pandas.NA`` or ``NaT``."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT are unequal to themselves
    except (TypeError, ValueError):  # pandas.NA: its comparison is NA, whose bool() raises
        return True if type(value).__name__ == "NAType" else False


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}.")


def format_number(value: Any, *, style: Style = "reader", digits: int | None = None) -> str:
    """A number in a named style.

    ``"engine"``: ``digits`` decimals (default 4), scientific notation with ``digits - 1``
    decimals below 1e-3 or from 1e6, ``Inf``/``-Inf``. ``"reader"``: about ``digits``
    significant digits (default 3), thousands separators, ``−`` and ``∞``, scientific
    notation below 1e-4 or from 1e6, ``yes``/``no`` for booleans. Whole numbers print in
    full in both. Missing values show :data:`MISSING`; strings are returned unchanged.
    """
    _check_style(style)
    if isinstance(value, str):
        return value
    if is_missing(value):
        return MISSING
    if style == "engine":
        return _engine_number(value, 4 if digits is None else digits)
    return _reader_number(value, 3 if digits is None else digits)


def _engine_number(value: Any, decimals: int) -> str:
    if _is_bool(value):
        return str(bool(value))
    if _is_integer(value):
        return str(int(value))
    v = float(value)
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        return f"{v:.{max(decimals - 1, 0)}e}"
    return f"{v:.{decimals}f}"


def _reader_number(value: Any, digits: int) -> str:
    if _is_bool(value):
        return "yes" if value else "no"
    if _is_integer(value):
        return f"{int(value):,}".replace("-", _MINUS)
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else f"{_MINUS}∞"
    if v == 0:
        return "0"
    size = abs(v)
    if size >= 1e6 or size < 1e-4:
        text = f"{v:.{digits - 1}e}"
    elif size >= 10 ** (digits - 1):
        text = f"{v:,.0f}"
    else:
        decimals = digits - 1 - math.floor(math.log10(size))
        text = f"{v:.{decimals}f}"
    return text.replace("-", _MINUS)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral)


def format_plain(value: Any) -> str:
    """A number as written by hand (``0.5``, ``37.5``, ``224``; Python's ``g``), reader signs."""
    if is_missing(value):
        return MISSING
    return f"{float(value):g}".replace("-", _MINUS)


def format_signed(value: Any, digits: int = 3) -> str:
    """A reader-style number with its sign (``+1.21``, ``−0.104``; zero and missing bare)."""
    text = format_number(value, style="reader", digits=digits)
    return text if text.startswith((_MINUS, MISSING)) or text == "0" else "+" + text


def format_p(value: Any, *, style: Style = "reader") -> str:
    """A p-value. ``"engine"``: ``<2e-16`` below 2.2e-16, two-decimal scientific notation
    below 1e-4, else four decimals. ``"reader"``: ``<0.001`` below 0.001, else three
    decimals."""
    _check_style(style)
    if is_missing(value):
        return MISSING
    p = float(value)
    if style == "engine":
        if p < 1e-4:
            return "<2e-16" if p < _P_FLOOR else f"{p:.2e}"
        return f"{p:.4f}"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_interval(
    lower: Any, upper: Any, *, style: Style = "reader", digits: int | None = None
) -> str:
    """An interval: ``[lower, upper]`` (engine) or ``lower to upper`` (reader); each bound
    formatted by :func:`format_number`, a missing bound shows :data:`MISSING`."""
    low = format_number(lower, style=style, digits=digits)
    high = format_number(upper, style=style, digits=digits)
    return f"[{low}, {high}]" if style == "engine" else f"{low} to {high}"


def format_estimate(
    estimate: Any,
    lower: Any,
    upper: Any,
    *,
    ci_label: str = "95 % CI",
    style: Style = "reader",
    digits: int | None = None,
) -> str:
    """An estimate with its interval, ``1.21 (95 % CI 0.98 to 1.50)``; an empty
    ``ci_label`` leaves the label out (``1.21 (0.98 to 1.50)``)."""
    text = format_interval(lower, upper, style=style, digits=digits)
    label = f"{ci_label} " if ci_label else ""
    return f"{format_number(estimate, style=style, digits=digits)} ({label}{text})"


def format_percent(value: Any, digits: int = 1) -> str:
    """A proportion as a percentage, ``18.0 %``."""
    if is_missing(value):
        return MISSING
    return f"{100 * float(value):.{digits}f} %"


def format_percent_range(lower: Any, upper: Any, digits: int = 1) -> str:
    """Two proportions as a percentage range, ``18.0–22.9 %`` (missing if either is)."""
    if is_missing(lower) or is_missing(upper):
        return MISSING
    return f"{100 * float(lower):.{digits}f}–{100 * float(upper):.{digits}f} %"


def format_text(value: Any) -> str:
    """Any value as text: :data:`MISSING` when missing, else ``str(value)``."""
    return MISSING if is_missing(value) else str(value)


def is_p_column(name: str) -> bool:
    """Whether a column holds p-values by its name (``p``, ``p_value``, ``p_adjusted``,
    ``wald_p_value``)."""
    return name == "p" or name.startswith("p_") or name.endswith("p_value")


def format_cell(value: Any, *, style: Style = "reader", column: str = "") -> str:
    """One table cell: a p-value if ``column`` names p-values (:func:`is_p_column`), a
    number in ``style``, else text."""
    if isinstance(value, str):
        return value
    if is_missing(value):
        return MISSING
    if isinstance(value, (int, float)) or hasattr(value, "dtype"):
        if is_p_column(column) and not _is_bool(value):
            return format_p(value, style=style)
        return format_number(value, style=style)
    return str(value)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table of preformatted strings; ``numeric[i]`` right-aligns column i (numbers),
    other columns are left-aligned (text). Missing flags mean text."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = ()

    @classmethod
    def of(
        cls,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        caption: str = "",
        numeric: Sequence[bool] = (),
    ) -> Table:
        """A table from any cells: strings stay, missing values show :data:`MISSING`,
        anything else ``str()``."""
        return cls(
            columns=tuple(str(c) for c in columns),
            rows=tuple(tuple(format_text(c) for c in row) for row in rows),
            caption=caption,
            numeric=tuple(bool(f) for f in numeric),
        )

    @property
    def alignments(self) -> tuple[str, ...]:
        """``"num"`` or ``"text"`` per column."""
        flags = tuple(self.numeric) + (False,) * (len(self.columns) - len(self.numeric))
        return tuple("num" if f else "text" for f in flags[: len(self.columns)])


def table_from_frame(
    frame: pd.DataFrame,
    *,
    caption: str = "",
    style: Style = "reader",
    index: str | None = None,
) -> Table:
    """A DataFrame as a :class:`Table`: every cell by :func:`format_cell` (p-value columns
    by name), numeric columns right-aligned. ``index`` names a column made of the index
    (left out when ``None``)."""
    import pandas as pd  # only here: the CLI imports this module and must start fast

    _check_style(style)
    data = frame.reset_index(names=index) if index is not None else frame
    columns = [str(c) for c in data.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_bool_dtype(data[c])
        for c in data.columns
    ]
    rows = [
        tuple(format_cell(v, style=style, column=c) for v, c in zip(rec, columns, strict=True))
        for rec in data.itertuples(index=False, name=None)
    ]
    return Table(tuple(columns), tuple(rows), caption, tuple(numeric))


def render_text_table(table: Table) -> str:
    """The table as aligned plain text (two spaces between columns; numbers right-aligned,
    text left; no trailing spaces). The caption is not included."""
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    align = table.alignments

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if a == "num" else c.ljust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ).rstrip()

    return "\n".join([line(table.columns), *(line(row) for row in table.rows)])


def render_html_table(table: Table) -> str:
    """The table as static HTML; every string escaped, numeric columns right-aligned."""
    esc = html.escape
    right = ' style="text-align: right"'
    styles = [right if a == "num" else "" for a in table.alignments]
    head = "".join(f"<th{s}>{esc(c)}</th>" for c, s in zip(table.columns, styles, strict=True))
    body = "".join(
        "<tr>"
        + "".join(f"<td{s}>{esc(c)}</td>" for c, s in zip(row, styles, strict=True))
        + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{esc(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A printable summary: a title, key–value info lines, captioned tables and notes.

    :meth:`as_text` and :meth:`as_html` render it; the HTML is static (no scripts) and every
    string in it is escaped (names and ids are user data).
    """

    title: str
    info: tuple[tuple[str, str], ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()
    notes_title: str = "Notes"

    def as_text(self) -> str:
        """Plain text: the title, the info lines aligned, each table under its caption, the
        notes as a list."""
        out = [self.title]
        width = max((len(key) for key, _ in self.info), default=0) + 1
        out += [f"  {(key + ':').ljust(width)}  {value}" for key, value in self.info]
        for table in self.tables:
            out += ["", f"{table.caption}:"] if table.caption else [""]
            out.append(render_text_table(table))
        if self.notes:
            out += ["", f"{self.notes_title}:", *(f"  - {note}" for note in self.notes)]
        return "\n".join(out)

    def as_html(self) -> str:
        """Static HTML in a ``<div class="mesostats-summary">``; every string escaped."""
        esc = html.escape
        parts = [f'<div class="mesostats-summary"><h4>{esc(self.title)}</h4>']
        if self.info:
            rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.info)
            parts.append(f"<table><tbody>{rows}</tbody></table>")
        parts += [render_html_table(table) for table in self.tables]
        if self.notes:
            items = "".join(f"<li>{esc(note)}</li>" for note in self.notes)
            parts.append(f"<p><strong>{esc(self.notes_title)}</strong></p><ul>{items}</ul>")
        parts.append("</div>")
        return "".join(parts)

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.as_html()


class SummaryDisplay:
    """Mixin: ``str()`` and Jupyter display of a results object from its one ``summary()``.

    A results class defines ``summary(self) -> Summary`` and inherits ``__str__`` (the text)
    and ``_repr_html_`` (the HTML); ``__repr__`` stays its own one-line description.
    """

    def summary(self) -> Summary:
        """The object's :class:`Summary`."""
        raise NotImplementedError(f"{type(self).__name__} must define summary()")

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()
