"""``mesostats convert SOURCE TARGET``: read and validate a study from any source and write it
to a folder (CSV or Parquet) or a database, with :func:`mesostats.save_study`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mesostats.cli.common import (
    EXIT_OK,
    UsageError,
    add_source_argument,
    command_parser,
    emit,
    is_database_url,
    load_source,
    source_label,
)

__all__ = ["add_convert", "run_convert"]

_CONVERT_EXAMPLES = """\
examples:
  mesostats convert example sqlite:///example.db       # a folder into a SQLite database
  mesostats convert sqlite:///example.db copy --format parquet
  mesostats convert data/eu_export data/clean           # a European CSV export to plain CSV
exit status: 0 written, 1 the source is invalid or the target cannot be written, 2 usage"""


def add_convert(subparsers: Any) -> None:
    """Declare ``mesostats convert SOURCE TARGET [--format csv|parquet]``."""
    parser = command_parser(
        subparsers,
        "convert",
        help="write a study to a folder or a database",
        description=(
            "Read a study from SOURCE (a folder, a datapackage.json, a database URL or "
            "'example'), validate it, and write it to TARGET: a new or empty folder (CSV or "
            "Parquet files) or a database URL whose database does not have the study's "
            "tables yet. Nothing is overwritten."
        ),
        examples=_CONVERT_EXAMPLES,
    )
    add_source_argument(parser)
    parser.add_argument(
        "target", metavar="TARGET", help="folder to create, or a database URL to write to"
    )
    parser.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default="csv",
        help="file format when TARGET is a folder (default csv)",
    )
    parser.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    """Load SOURCE (problems → exit 1) and write it to TARGET (exit 0)."""
    target: str = args.target
    if not is_database_url(target):
        folder = Path(target)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UsageError(
                f"TARGET {target!r} exists and is not an empty folder; choose a new folder."
            )
    study = load_source(args.source)
    # pandas and SQLAlchemy load only when this command runs: `mesostats --help` stays fast
    from mesostats.data.save import save_study

    save_study(study, target, format=args.format)
    emit(
        f"Wrote {source_label(target)}: {len(study.subjects)} subjects, "
        f"{len(study.sessions)} sessions, {len(study.adverse_events)} adverse events "
        f"(from {source_label(args.source)})"
    )
    return EXIT_OK
