"""The dialect of a CSV file: delimiter, decimal mark, thousands separator and encoding.

(The order of numeric dates, ``dateOrder``, is declared here too; it is detected per column
by :mod:`.dates`.)

A dialect is **declared** (``load_study(..., dialect={...})``, or a ``datapackage.json``
resource's ``dialect`` and ``encoding``, Frictionless CSV Dialect keys ``delimiter``,
``decimalChar``, ``groupChar``) or **detected**: on a sample (the header and the first 64 KB)
and then confirmed on the whole file while it is parsed (:mod:`.csv`, :mod:`.csv_numbers`).

- **Encoding**: UTF-8 (with or without BOM) is checked on the whole file by pyarrow. A file
  that is not UTF-8 and that no UTF-8 multi-byte sequence appears in is read as Windows-1252
  when it decodes to Western European text (letters, and the punctuation Excel writes: ``’ “ ”
  – … € °``): the usual "CSV" export of Excel in France, Spain or Italy. Anything else keeps
  the per-line report of :mod:`.csv_layout`. Neither pyarrow nor the stdlib detects encodings.
- **Delimiter**: the candidate (``,`` ``;`` tab ``|``) that splits the header into the most
  schema column names; when the header does not tell, :class:`csv.Sniffer` on the sample.
  The header comes first because the Sniffer knows no column names and counts characters
  per line: in a ``;`` file with ``,`` decimals and no empty cells both characters are
  equally regular, and it may pick ``,``.
  The whole file is confirmed by counting fields per record (rows separated by another
  delimiter are reported together, one problem, by :func:`mixed_delimiter_rows`).
- **Decimal mark and thousands separator**: counted on the sample, in the schema's number
  columns (``133,1`` vs ``133.1``; ``1.234,5`` shows both). pyarrow parses ``,`` decimals
  itself (``decimal_point``); :mod:`.csv_numbers` does what it cannot (thousands separators,
  and the one-problem report of a wrong or mixed mark).

A declared dialect that the file contradicts gives **one** problem for the file naming the
cause ("sessions.csv is separated by ';', not ','"), not one per value.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mesostats.data.problems import ProblemLog
from mesostats.data.readers.dates import DATE_ORDERS

__all__ = [
    "DELIMITERS",
    "CsvDialect",
    "choose_delimiter",
    "detect_numbers",
    "dialect_from_mapping",
    "looks_like_cp1252",
    "sample_lines",
]

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_BYTES = 1 << 16
_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
# Characters besides letters and digits that Windows-1252 text from Excel commonly holds.
_CP1252_PUNCTUATION = set("’‘“”–—…€°µ«»·×§¡¿ºª²³±½¼¾•™©®\u00a0")
_KEYS = {
    "delimiter": "delimiter",
    "decimalChar": "decimal",
    "decimal": "decimal",
    "groupChar": "thousands",
    "thousands": "thousands",
    "encoding": "encoding",
    "dateOrder": "date_order",
}


def delimiter_name(delimiter: str) -> str:
    """How a delimiter is named in messages (``';'``, ``tab``)."""
    return _NAMES.get(delimiter, repr(delimiter))


@dataclass(frozen=True)
class CsvDialect:
    """What is known of a CSV file's dialect; ``None`` = detect it.

    ``declared_by`` says where the declared values come from (for messages).
    """

    delimiter: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    encoding: str | None = None
    date_order: str | None = None
    declared_by: str = "dialect="

    def merged(self, other: CsvDialect) -> CsvDialect:
        """This dialect with the values ``other`` declares on top."""
        values = {
            key: getattr(other, key)
            for key in ("delimiter", "decimal", "thousands", "encoding", "date_order")
            if getattr(other, key) is not None
        }
        if not values:
            return self
        return replace(self, **values, declared_by=other.declared_by)


def dialect_from_mapping(value: Any, declared_by: str, table: str, log: ProblemLog) -> CsvDialect:
    """A :class:`CsvDialect` from Frictionless keys; bad keys or values are logged."""
    if value is None:
        return CsvDialect(declared_by=declared_by)
    if isinstance(value, CsvDialect):
        return value
    if not isinstance(value, Mapping):
        log.add_one(
            table,
            None,
            None,
            repr(value),
            "dialect",
            f"{declared_by}: a dialect is a mapping such as {{'delimiter': ';', "
            f"'decimalChar': ',', 'encoding': 'cp1252'}}, not a {type(value).__name__}.",
        )
        return CsvDialect(declared_by=declared_by)
    out: dict[str, str] = {}
    for key, item in value.items():
        name = _KEYS.get(str(key))
        if name is None:
            continue  # other Frictionless keys (quoteChar, header, …) keep their defaults
        text = str(item) if item is not None else ""
        valid = (
            (name == "delimiter" and len(text) == 1 and text not in '"\r\n')
            or (name == "decimal" and text in (".", ","))
            or (name == "thousands" and text in (".", ",", " ", "'", "\u00a0"))
            or (name == "encoding" and _known_encoding(text))
            or (name == "date_order" and text in DATE_ORDERS)
        )
        if not valid:
            log.add_one(
                table,
                None,
                None,
                repr(item),
                "dialect",
                f"{declared_by}: {key}={item!r} is not a usable {name} (delimiter: one "
                "character such as ',' ';' or '\\t'; decimalChar: '.' or ','; groupChar: '.' "
                "',' ' ' or \"'\"; encoding: a name such as 'utf-8' or 'cp1252'; dateOrder: "
                "'DMY', 'MDY' or 'YMD').",
            )
            continue
        out[name] = text
    if out.get("decimal") and out.get("decimal") == out.get("thousands"):
        log.add_one(
            table,
            None,
            None,
            out["decimal"],
            "dialect",
            f"{declared_by}: decimalChar and groupChar are both {out['decimal']!r}.",
        )
        out.pop("thousands")
    return CsvDialect(declared_by=declared_by, **out)


def _known_encoding(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def looks_like_cp1252(data: bytes) -> str | None:
    """The text of bytes that are not UTF-8 but read as Western European Windows-1252 text.

    Text when no valid UTF-8 multi-byte sequence appears (a file mixing UTF-8 and other bytes
    is reported line by line instead) and every non-ASCII character decoded as Windows-1252
    is a letter or common punctuation (Japanese Shift-JIS bytes, say, decode to symbols);
    None otherwise.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    high = bytes(np.unique(arr[arr >= 0x80]).tolist())  # the distinct non-ASCII bytes
    try:
        odd = high.decode("cp1252")
    except UnicodeDecodeError:
        return None
    if not all(ch.isalpha() or ch in _CP1252_PUNCTUATION for ch in odd):
        return None
    if not data.decode("utf-8", errors="ignore").isascii():
        return None
    return data.decode("cp1252")


def sample_lines(data: bytes) -> list[str]:
    """The first lines of the file (up to 64 KB, cut at a line end), decoded."""
    head = data[:_SAMPLE_BYTES]
    if len(data) > _SAMPLE_BYTES:
        cut = head.rfind(b"\n")
        head = head[: cut if cut > 0 else len(head)]
    return [line for line in head.decode("utf-8", "replace").splitlines() if line.strip()]


def _split(line: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        row = line.split(delimiter)
    return [name.strip().lstrip("\ufeff").strip() for name in row]


def choose_delimiter(
    lines: list[str],
    known: set[str],
    dialect: CsvDialect,
    table: str,
    origin: str,
    log: ProblemLog,
) -> str | None:
    """The delimiter to parse with; None (one problem logged) when declared wrongly or unclear.

    The header decides when one candidate splits it into more schema column names than any
    other; otherwise :class:`csv.Sniffer` decides on the sample.
    """
    if not lines:
        return dialect.delimiter or ","
    header = lines[0]
    found = {d: sum(n in known for n in _split(header, d)) for d in DELIMITERS}
    ranked = sorted(DELIMITERS, key=lambda d: -found[d])
    best = ranked[0] if found[ranked[0]] >= 2 and found[ranked[0]] > found[ranked[1]] else None
    declared = dialect.delimiter
    if declared is not None:
        if best is not None and best != declared and found[declared] <= 1:
            log.add_one(
                table,
                1,
                None,
                header[:200],
                "dialect",
                f"{origin} is separated by {delimiter_name(best)}, not "
                f"{delimiter_name(declared)} as declared in {dialect.declared_by}: its header "
                f"read with {delimiter_name(best)} has the columns "
                f"{', '.join(_split(header, best)[:6])}, …. Correct the declared delimiter, "
                "or leave it out and mesostats detects it.",
                position=0,
            )
            return None
        return declared
    if best is not None:
        return best
    present = [d for d in DELIMITERS if d in header]
    try:
        sniffed = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters="".join(DELIMITERS))
        if found[sniffed.delimiter] or len(present) <= 1:
            return sniffed.delimiter
    except csv.Error:
        pass
    if len(present) <= 1:
        return present[0] if present else ","
    counts = ", ".join(f"{len(_split(header, d))} by {delimiter_name(d)}" for d in present)
    log.add_one(
        table,
        1,
        None,
        header[:200],
        "dialect",
        f"cannot tell the delimiter of {origin}: its header splits into {counts} fields and "
        "names no known column. Declare it: load_study(..., dialect={'delimiter': ';'}) or "
        '"dialect": {"delimiter": ";"} in datapackage.json.',
        position=0,
    )
    return None


_COMMA_DECIMAL = re.compile(r"^[+-]?\d*,\d+$")
_DOT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+$")
_DOT_GROUPS_COMMA_DECIMAL = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$")
_COMMA_GROUPS_DOT_DECIMAL = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_ONE_GROUP = re.compile(r"^[+-]?[1-9]\d{0,2}[.,]\d{3}$")  # 1,250 or 1.250: which mark?


def detect_numbers(
    lines: list[str],
    delimiter: str,
    number_columns: set[str],
    dialect: CsvDialect,
    table: str,
    origin: str,
    log: ProblemLog,
) -> tuple[str, str | None] | None:
    """Decimal mark and thousands separator: declared, or counted on the sample's numbers.

    ``1.234,5`` shows both marks (``,`` decimal, ``.`` groups); otherwise the mark used by the
    most values wins (a minority is reported, per column, when the whole file is parsed).
    With ``,`` as the delimiter the decimal mark is ``.`` unless declared. When every such
    value could be read either way (``1,250`` and ``2,500`` only: one and a quarter, or one
    thousand two hundred and fifty?) nothing is guessed: one problem says how to declare it,
    and None is returned.
    """
    decimal, thousands = dialect.decimal, dialect.thousands
    if decimal is not None and thousands is not None:
        return decimal, thousands
    if not lines:
        return decimal or ".", thousands
    header = _split(lines[0], delimiter)
    positions = [i for i, name in enumerate(header) if name in number_columns]
    comma = dot = dot_groups = comma_groups = 0
    either: dict[str, list[str]] = {",": [], ".": []}  # values that could be either mark
    for line in lines[1:]:
        cells = _split(line, delimiter)
        for i in positions:
            cell = cells[i] if i < len(cells) else ""
            if _DOT_GROUPS_COMMA_DECIMAL.match(cell) and "," in cell:
                dot_groups += 1
            elif _COMMA_GROUPS_DOT_DECIMAL.match(cell) and "." in cell:
                comma_groups += 1
            elif _COMMA_DECIMAL.match(cell):
                comma += 1
                if _ONE_GROUP.match(cell):
                    either[","].append(cell)
            elif _DOT_DECIMAL.match(cell):
                dot += 1
                if _ONE_GROUP.match(cell):
                    either["."].append(cell)
    if decimal is None:
        if delimiter == ",":
            decimal = "."
        elif dot_groups or comma + dot_groups > dot + comma_groups:
            decimal = ","
        else:
            decimal = "."
    if thousands is None:
        if decimal == "," and dot_groups:
            thousands = "."
        elif decimal == "." and comma_groups and delimiter != ",":
            thousands = ","
    seen = comma if decimal == "," else dot
    unsure = either[decimal]
    if (
        delimiter != ","
        and dialect.decimal is None
        and thousands is None
        and seen
        and len(unsure) == seen
    ):
        log.add_one(
            table,
            None,
            None,
            unsure[0],
            "dialect",
            f"cannot tell what {decimal!r} means in the numbers of {origin}: every such value "
            f"(e.g. {', '.join(repr(v) for v in unsure[:3])}) could be a decimal mark or a "
            f"thousands separator. Declare it: dialect={{'decimalChar': {decimal!r}}} (or "
            f"{{'groupChar': {decimal!r}}}), or the same in datapackage.json.",
        )
        return None
    return decimal, thousands
