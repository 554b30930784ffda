"""Argument types shared by the command-line subcommands (``cli.py``, ``cli_power.py``).

Each turns a command-line string into a value or raises ``argparse.ArgumentTypeError`` with a
message that names what was expected and what was given; argparse prints it with exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(low: int, *, what: str = "a number") -> Callable[[str], int]:
    """An argparse type accepting whole numbers ≥ ``low`` ("expected {what} ≥ {low}, got …")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what} ≥ {low}, got {value}")
        return value

    return parse
