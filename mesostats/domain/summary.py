"""Text and HTML summaries of the domain results (title, key–value lines, tables, notes)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


class _SummaryDisplay:
    """``str()`` and Jupyter display from one ``summary()`` (as linearmodels' results)."""

    def summary(self) -> OutcomeSummary:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()


class OutcomeSummary:
    """A printable summary: title, key–value lines, tables and notes (text and static HTML).

    Every string is HTML-escaped in :meth:`as_html` (ids and ingredient names are user data).
    """

    def __init__(
        self,
        title: str,
        lines: Sequence[tuple[str, str]],
        tables: Sequence[tuple[str, pd.DataFrame]],
        notes: Sequence[str],
    ) -> None:
        self.title = title
        self.lines = list(lines)
        self.tables = list(tables)
        self.notes = list(notes)

    def as_text(self) -> str:
        """Plain-text rendering."""
        out = [self.title, "=" * len(self.title)]
        width = max((len(k) for k, _ in self.lines), default=0)
        out += [f"{k.ljust(width)}  {v}" for k, v in self.lines]
        for caption, table in self.tables:
            out += ["", caption, "-" * len(caption), _text_table(table)]
        if self.notes:
            out += ["", "Notes", "-----"]
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)

    def as_html(self) -> str:
        """Static HTML (no scripts); every string escaped."""
        esc = html.escape
        parts = [f'<div class="mesostats-outcome"><h4>{esc(self.title)}</h4><table>']
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.lines]
        parts.append("</table>")
        for caption, table in self.tables:
            parts.append(_html_table(table, caption))
        if self.notes:
            parts.append("<p><strong>Notes</strong></p><ul>")
            parts += [f"<li>{esc(n)}</li>" for n in self.notes]
            parts.append("</ul>")
        parts.append("</div>")
        return "".join(parts)

    def __str__(self) -> str:
        return self.as_text()


def _format_cell(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if column.startswith("p_") or column.endswith("p_value"):
            return "<0.001" if v < 0.001 else f"{v:.3f}"
        return f"{v:.4g}"
    return str(value)


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in table.columns]
    rows = [
        [_format_cell(v, c) for v, c in zip(rec, header, strict=True)]
        for rec in table.itertuples(index=False)
    ]
    return header, rows


def _text_table(table: pd.DataFrame) -> str:
    header, rows = _cells(table)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _html_table(table: pd.DataFrame, caption: str) -> str:
    esc = html.escape
    header, rows = _cells(table)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )
