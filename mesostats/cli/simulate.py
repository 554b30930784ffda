"""``mesostats simulate``: draw a randomised study with known truth and write its tables as CSV
with the true values in truth.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mesostats._defaults import DEFAULT_DROPOUT, DEFAULT_MISSING_RATE
from mesostats.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    UsageError,
    command_parser,
    emit,
    error,
    positive_int,
    probability,
    seed_number,
)
from mesostats.exceptions import ModelSpecError

__all__ = ["add_simulate", "run_simulate"]

_SIMULATE_EXAMPLES = """\
examples:
  mesostats simulate --subjects 120 --sessions 8 --seed 1 -o sim_study
  mesostats simulate --subjects 5000 --sessions 10 --seed 7 --dropout 0.05 -o big --force
  mesostats validate sim_study
writes subjects.csv, cocktails.csv, sessions.csv, adverse_events.csv and truth.json
(every true value used, including the per-subject random effects)"""


def add_simulate(subparsers: Any) -> None:
    """Declare ``mesostats simulate --subjects N --sessions K --seed S -o FOLDER``."""
    parser = command_parser(
        subparsers,
        "simulate",
        help="write a simulated study with known truth",
        description=(
            "Draw a randomised mesotherapy study from a known model (saline placebo and "
            "three cocktails of minoxidil, dutasteride and biotin; per-person intercepts and "
            "slopes; side effects by ingredient; dropout) and write its tables as CSV with "
            "the true values in truth.json."
        ),
        examples=_SIMULATE_EXAMPLES,
    )
    parser.add_argument(
        "--subjects",
        type=positive_int,
        default=120,
        metavar="N",
        help="number of subjects (default 120)",
    )
    parser.add_argument(
        "--sessions",
        type=positive_int,
        default=8,
        metavar="K",
        help="visits per subject, the last ones follow-ups (default 8)",
    )
    parser.add_argument(
        "--seed",
        type=seed_number,
        default=0,
        metavar="S",
        help="random seed; the same seed gives the same tables (default 0)",
    )
    parser.add_argument(
        "--sites", type=positive_int, default=3, metavar="M", help="number of sites (default 3)"
    )
    parser.add_argument(
        "--dropout",
        type=probability,
        default=DEFAULT_DROPOUT,
        metavar="H",
        help="per-visit dropout hazard (default %(default)s)",
    )
    parser.add_argument(
        "--missing-rate",
        type=probability,
        default=DEFAULT_MISSING_RATE,
        metavar="P",
        help="share of missing post-baseline measurements (default %(default)s)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="FOLDER",
        help="folder to write (created if needed)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a folder that is not empty (replaces files of the "
        "same names, leaves others)",
    )
    parser.set_defaults(handler=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Draw a study with :func:`mesostats.simulate.simulate_tables` and write its CSV tables
    and truth.json into the output folder (exit 0)."""
    # the simulator (numpy, pandas) loads only when this command runs: `mesostats --help` is fast
    from mesostats.simulate import simulate_tables, truth_to_json, write_tables

    folder: Path = args.output
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output {str(folder)!r} is a file; give a folder.")
    if folder.is_dir() and any(folder.iterdir()) and not args.force:
        raise UsageError(
            f"output folder {str(folder)!r} is not empty; choose a new folder or add --force "
            "to replace the study files in it."
        )
    try:
        tables, truth = simulate_tables(
            args.subjects,
            args.sessions,
            seed=args.seed,
            n_sites=args.sites,
            dropout=args.dropout,
            missing_rate=args.missing_rate,
        )
    except ModelSpecError as err:
        raise UsageError(str(err)) from None
    try:
        write_tables(tables, folder)
        (folder / "truth.json").write_text(truth_to_json(truth), encoding="utf-8")
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        error(f"cannot write the study into {str(folder)!r}: {err.strerror or err}{where}")
        return EXIT_INVALID
    n_events = len(tables["adverse_events"])
    emit(
        f"Wrote {folder}: {len(tables['subjects'])} subjects, {len(tables['sessions'])} "
        f"sessions, {n_events} adverse events (seed {args.seed}); true values in truth.json"
    )
    return EXIT_OK
