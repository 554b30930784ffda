"""What every command of the command line shares: exit codes, the usage error, output helpers,
SOURCE resolution, the argparse argument types and the conversion of results to plain JSON.

Command modules import this module and nothing of each other, so no command module depends on
another (the old ``cli`` ↔ ``cli_power`` import cycle is gone).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mesostats._display import is_missing
from mesostats.datasets import EXAMPLE_DIR

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = [
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "UsageError",
    "add_outcome_argument",
    "add_seed_argument",
    "add_source_argument",
    "command_parser",
    "emit",
    "error",
    "finite_number",
    "is_database_url",
    "jobs_count",
    "json_safe",
    "load_source",
    "number_between",
    "one_line",
    "open_unit",
    "positive_int",
    "probability",
    "resolve_source",
    "seed_number",
    "silence_stdout",
    "source_label",
    "whole_number",
]

PROG = "mesostats"
#: Exit codes: success, invalid or unreadable data (or a file that cannot be written), usage.
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad invocation found after argument parsing (exit code 2)."""


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def emit(text: str, stream: TextIO | None = None) -> None:
    """Print text; characters the terminal cannot encode are escaped, not fatal."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def error(message: str) -> None:
    """Print ``mesostats: error: message`` on stderr."""
    emit(f"{PROG}: error: {message}", sys.stderr)


def silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so that the interpreter's final flush
    does not raise again (Python documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


def one_line(value: Any, limit: int = 40) -> str:
    """A value on one line: missing → empty, control characters escaped, at most ``limit``
    characters (cut with ``…``)."""
    if is_missing(value):
        return ""
    text = str(value)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN, ±inf, ``None`` and pandas NA → ``None``; numpy scalars →
    Python numbers; dicts (keys as strings), lists and tuples recursed; anything else
    ``str()``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):  # numpy scalars
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if is_missing(value):
        return None
    return str(value)


# --------------------------------------------------------------------------------------------
# SOURCE
# --------------------------------------------------------------------------------------------


_URL = re.compile(r"^[A-Za-z][\w+.-]*://")


def is_database_url(source: str) -> bool:
    """A SQLAlchemy database URL (``sqlite:///study.db``, ``postgresql://…``)."""
    return bool(_URL.match(source))


def source_label(source: str) -> str:
    """SOURCE as shown in output: a database URL with its password masked."""
    if not is_database_url(source):
        return source
    return re.sub(r"^([^:/]+://[^:/@]*):[^@]*@", r"\1:***@", source)


def resolve_source(source: str) -> Path | str:
    """What a SOURCE argument names: a folder, a ``datapackage.json``, a database URL (returned
    as it is), or the word ``example`` (the bundled example study; ``./example`` names a local
    folder)."""
    if source == "example":
        return EXAMPLE_DIR
    if is_database_url(source):
        return source
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"SOURCE {source!r} does not exist. Give a folder holding subjects, cocktails, "
            "sessions (and adverse_events) tables, a datapackage.json, a database URL such "
            "as sqlite:///study.db, or the word 'example'."
        )
    if path.is_file() and path.suffix.lower() != ".json":
        hint = (
            f"; for a SQLite file write sqlite:///{source}"
            if path.suffix.lower() in (".db", ".sqlite", ".sqlite3")
            else ""
        )
        raise UsageError(
            f"SOURCE {source!r} is a file; give the folder that holds the tables "
            f"({str(path.parent)!r}) or a datapackage.json{hint}."
        )
    return path


def load_source(source: str) -> Study:
    """Resolve SOURCE and load (and validate) the study in it."""
    resolved = resolve_source(source)
    # pandas and pyarrow load only when a command reads data, so `mesostats --help` is fast
    from mesostats.data.load import load_study
    from mesostats.datasets import example_study

    return example_study() if source == "example" else load_study(resolved)


# --------------------------------------------------------------------------------------------
# Parsers and the arguments several commands share
# --------------------------------------------------------------------------------------------


def command_parser(
    subparsers: Any, name: str, *, help: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """The parser of one subcommand; its examples (the epilog) keep their line breaks."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_source_argument(parser: argparse.ArgumentParser) -> None:
    """The positional SOURCE of the commands that read a study."""
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="folder of tables, a datapackage.json, a database URL (sqlite:///study.db), "
        "or 'example'",
    )


def add_outcome_argument(parser: argparse.ArgumentParser) -> None:
    """``--outcome COLUMN`` of the regrowth analysis (fit, report)."""
    parser.add_argument(
        "--outcome",
        default="hair_density",
        metavar="COLUMN",
        help="outcome column for regrowth (default hair_density)",
    )


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """``--seed S`` of the simulations behind the intervals (fit, report)."""
    parser.add_argument(
        "--seed",
        type=seed_number,
        default=0,
        metavar="S",
        help="seed of the simulations (default 0)",
    )


# --------------------------------------------------------------------------------------------
# Argument types: each turns a command-line string into a value or raises
# argparse.ArgumentTypeError with a message naming what was expected and what was given;
# argparse prints it with exit code 2.
# --------------------------------------------------------------------------------------------


def whole_number(low: int, *, what: str = "a number") -> Callable[[str], int]:
    """An argparse type accepting whole numbers ≥ ``low`` ("expected {what} ≥ {low}, got …")."""

    def parse(text: str) -> int:
        value = _whole(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what} ≥ {low}, got {value}")
        return value

    return parse


def jobs_count(text: str) -> int:
    """Worker processes: a whole number ≥ 1, or -1 for every core."""
    value = _whole(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(
            f"expected a number ≥ 1, or -1 for every core, got {value}"
        )
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def finite_number(text: str) -> float:
    """Any finite number."""
    value = _real(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def number_between(
    low: float, high: float, *, include_low: bool, expected: str
) -> Callable[[str], float]:
    """An argparse type accepting numbers in ``(low, high)``, or ``[low, high)`` with
    ``include_low`` ("expected {expected}, got …")."""

    def parse(text: str) -> float:
        value = _real(text)
        above = low <= value if include_low else low < value
        if not (above and value < high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = whole_number(1)
seed_number = whole_number(0, what="a seed")
#: A probability in [0, 1) (dropout hazard, missing rate).
probability = number_between(0, 1, include_low=True, expected="a probability in [0, 1)")
#: A number strictly between 0 and 1 (significance level, target power).
open_unit = number_between(0, 1, include_low=False, expected="a number strictly between 0 and 1")


def json_records(frame: Any, index: str | None = None) -> list[dict[str, Any]] | None:
    """A table as a list of JSON-safe row objects (``index`` names the index column kept;
    ``None`` for no table)."""
    if frame is None:
        return None
    table = frame.reset_index(names=index) if index else frame
    return [json_safe(rec) for rec in table.to_dict("records")]


def model_json(model: Any, *, link: bool = False) -> Any:
    """The ``"model"`` object of a domain fit's ``--json`` output (``link`` for CLMMs)."""
    head = {"method": model.method, "family": model.family}
    if link:
        head["link"] = model.link
    return json_safe(
        {
            **head,
            "nobs": model.nobs,
            "ngroups": dict(model.ngroups),
            "loglik": model.loglik,
            "aic": model.aic,
            "bic": model.bic,
            "converged": model.converged,
            "singular": model.singular,
        }
    )
