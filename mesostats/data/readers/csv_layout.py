"""The byte layout of a CSV file: encoding, record boundaries, line numbers, field counts.

What the readers of :mod:`.csv` need before and around parsing, computed on the raw bytes with
numpy (one pass per byte class, no Python loop over lines):

- **encoding**: UTF-8 is checked by pyarrow's SIMD validator; a file that is not UTF-8 (a
  Latin-1 / Windows-1252 or UTF-16 export, an Excel file renamed ``.csv``) is reported with the
  line of each bad byte, and a declared encoding (``datapackage.json``) is honoured;
- **records**: a newline ends a record only outside double quotes, so a value spanning lines is
  one record labelled with its *first* line, and later records keep their true line numbers
  (header = line 1); blank lines are skipped but counted. Lines are counted by ``\\n``;
- **field counts** per record (delimiters outside quotes), to report each line with too many or
  too few fields, and an unterminated quote; rows that another delimiter splits into the
  header's number of fields are reported together, as one problem (a file whose delimiter
  changes between rows).

No CSV library reports these in the file's own terms: pyarrow's reader gives no line numbers
for the records it returns (only a callback for rows it skips), pandas' C parser drops or
shifts lines, and the stdlib :mod:`csv` module walks the file in Python, line by line.
"""

from __future__ import annotations

import codecs
import csv
import mmap
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from mesostats.data.problems import ProblemLog

__all__ = [
    "Bytes",
    "decode_problems",
    "field_counts",
    "is_valid_utf8",
    "map_file",
    "parse_header",
    "record_layout",
    "report_field_counts",
    "report_mixed_delimiters",
    "report_unterminated_quote",
]

Bytes = bytes | mmap.mmap  # file contents: bytes, or a read-only memory map


def map_file(path: Path) -> Bytes:
    """The file's bytes, memory-mapped when possible (no copy; read-only)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return handle.read()
        try:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return handle.read()


def is_valid_utf8(data: Bytes) -> bool:
    """UTF-8 validity of the whole buffer, checked by pyarrow's (SIMD) validator."""
    if len(data) == 0:
        return True
    buffer = pa.py_buffer(data)
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, buffer])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def decode_problems(
    data: bytes, table: str, origin: str, log: ProblemLog, encoding: str
) -> bytes | None:
    """Check the encoding; return UTF-8 bytes to parse (or None when unreadable).

    UTF-16 text and zip files are refused; a declared encoding other than UTF-8 is decoded and
    re-encoded; bytes that are not UTF-8 are reported per line and replaced by U+FFFD.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        encoding.lower().replace("-", "") == "utf8" and b"\x00" in data[:4096]
    ):
        _report_not_text(data, table, origin, log)
        return None
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        try:
            return data.decode(encoding).encode("utf-8")
        except (LookupError, UnicodeDecodeError) as exc:
            log.add_one(table, None, None, encoding, "encoding", f"{origin}: {exc}")
            return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    return _replace_bad_utf8(data, table, origin, log)


def _report_not_text(data: bytes, table: str, origin: str, log: ProblemLog) -> None:
    is_zip = data.startswith(b"PK\x03\x04")
    what = (
        "an Excel/zip file, not CSV text: save it with the .xlsx extension"
        if is_zip
        else "UTF-16 text (or a binary file): re-save it as CSV UTF-8"
    )
    log.add_one(
        table,
        None,
        None,
        repr(data[:16]),
        "encoding",
        f"{origin} is {what}. mesostats reads CSV files encoded as UTF-8.",
    )


def _replace_bad_utf8(data: bytes, table: str, origin: str, log: ProblemLog) -> bytes:
    """Report the first byte that is not UTF-8 on each line; return the text with U+FFFD."""
    bad_positions: list[int] = []

    def collect(exc: UnicodeError) -> tuple[str, int]:
        assert isinstance(exc, UnicodeDecodeError)  # only registered for decoding
        bad_positions.append(exc.start)
        return ("\ufffd", exc.end)

    handler_name = f"mesostats_collect_{id(bad_positions)}"
    codecs.register_error(handler_name, collect)
    text = data.decode("utf-8", errors=handler_name)
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    positions = np.asarray(bad_positions, dtype=np.int64)
    lines = np.searchsorted(newlines, positions) + 1
    first_per_line = np.unique(lines, return_index=True)[1]
    starts = np.concatenate([[0], newlines + 1])
    for i in first_per_line:
        line = int(lines[i])
        pos = int(positions[i])
        line_start = int(starts[line - 1])
        line_end = int(newlines[line - 1]) if line - 1 < len(newlines) else len(data)
        snippet = data[max(line_start, pos - 40) : min(line_end, pos + 40)]
        log.add_one(
            table,
            line,
            None,
            snippet.decode("utf-8", "backslashreplace"),
            "encoding",
            f"line {line} of {origin} holds bytes that are not UTF-8 (e.g. byte "
            f"0x{data[pos]:02x}); the file was probably saved as Latin-1/Windows-1252. "
            "Re-save it as CSV UTF-8, or declare its encoding in a datapackage.json.",
            position=line,
        )
    return text.encode("utf-8")


def record_layout(data: Bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Start offset, end offset and first line number of every non-empty CSV record.

    A newline ends a record only outside double quotes (even number of quote characters
    before it); records that are empty (or only ``\\r``) are blank lines and are dropped.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    has_quotes = data.find(b'"') >= 0
    if has_quotes:
        quotes = np.flatnonzero(arr == 34)
        breaks_idx = np.flatnonzero(np.searchsorted(quotes, newlines) % 2 == 0)
    else:
        breaks_idx = np.arange(len(newlines))
    breaks = newlines[breaks_idx]
    starts = np.concatenate([[0], breaks + 1]).astype(np.int64)
    ends = np.concatenate([breaks, [len(data)]]).astype(np.int64)
    lines = np.concatenate([[1], breaks_idx + 2]).astype(np.int64)
    length = ends - starts
    carriage = np.zeros(len(starts), dtype=bool)
    one = length == 1
    carriage[one] = arr[starts[one]] == 13
    keep = (length > 0) & ~carriage
    return starts[keep], ends[keep], lines[keep], has_quotes


def report_unterminated_quote(data: Bytes, table: str, origin: str, log: ProblemLog) -> None:
    """An odd number of double quotes: the last one opens a value that never closes."""
    arr = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(arr == 34)
    if len(quotes) % 2 == 0:
        return
    last = int(quotes[-1])
    line = int(np.count_nonzero(arr[:last] == 10)) + 1
    start = data.rfind(b"\n", 0, last) + 1
    end = data.find(b"\n", last)
    end = len(data) if end < 0 else end
    log.add_one(
        table,
        line,
        None,
        data[start : min(end, start + 200)].decode("utf-8", "replace").rstrip("\r"),
        "unterminated_quote",
        f"line {line} of {origin} opens a double-quoted value that is never closed, so the "
        "rest of the file is read as part of that value. Close the quote, or double the "
        'quote characters inside a value ("").',
        position=line,
    )


def field_counts(data: Bytes, starts: np.ndarray, delimiter: str, has_quotes: bool) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.uint8)
    delims = np.flatnonzero(arr == ord(delimiter))
    if has_quotes:
        quotes = np.flatnonzero(arr == 34)
        delims = delims[np.searchsorted(quotes, delims) % 2 == 0]
    record = np.searchsorted(starts, delims, side="right") - 1
    record = record[record >= 0]
    return np.bincount(record, minlength=len(starts)) + 1


def parse_header(text: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    except csv.Error:
        row = text.rstrip("\r\n").split(delimiter)
    return [name.strip().lstrip("\ufeff").strip() for name in row]


def report_field_counts(
    data: Bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    lines: np.ndarray,
    counts: np.ndarray,
    bad: np.ndarray,
    names: list[str],
    table: str,
    origin: str,
    log: ProblemLog,
) -> None:
    for i in np.flatnonzero(bad):
        text = data[int(starts[i]) : min(int(ends[i]), int(starts[i]) + 200)]
        log.add_one(
            table,
            int(lines[i]),
            None,
            text.decode("utf-8", "replace").rstrip("\r"),
            "field_count",
            f"line {int(lines[i])} of {origin} has {int(counts[i])} fields but the header has "
            f"{len(names)}; the row was not read. A value holding the delimiter must be "
            "wrapped in double quotes; otherwise a delimiter is missing or extra.",
            position=int(lines[i]),
        )


def report_mixed_delimiters(
    data: Bytes,
    starts: np.ndarray,
    lines: np.ndarray,
    has_quotes: bool,
    bad: np.ndarray,
    n_names: int,
    delimiter: str,
    table: str,
    origin: str,
    log: ProblemLog,
) -> np.ndarray:
    """One problem per other delimiter that splits some of the ``bad`` records right.

    Returns the records explained that way (they are not reported again one by one).
    """
    explained = np.zeros(len(starts), dtype=bool)
    for other in (",", ";", "\t", "|"):
        if other == delimiter or not bad.any():
            continue
        fits = bad & ~explained & (field_counts(data, starts, other, has_quotes) == n_names)
        if not fits.any():
            continue
        explained |= fits
        where = lines[fits]
        shown = ", ".join(str(int(x)) for x in where[:5]) + (", …" if len(where) > 5 else "")
        name = "tab" if other == "\t" else repr(other)
        sep = "tab" if delimiter == "\t" else repr(delimiter)
        log.add_one(
            table,
            int(where[0]),
            None,
            name,
            "mixed_delimiters",
            f"{origin} changes delimiter between rows: the header and most rows are "
            f"separated by {sep}, but {len(where)} rows (lines {shown}) by {name}; those rows "
            "were not read. Re-export the file with one delimiter.",
            position=int(where[0]),
        )
    return explained
