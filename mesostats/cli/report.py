"""``mesostats report SOURCE -o FILE``: write the self-contained HTML report of a study
(:mod:`mesostats.reporting`) and list its warnings on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mesostats.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    PROG,
    UsageError,
    add_outcome_argument,
    add_seed_argument,
    add_source_argument,
    command_parser,
    emit,
    error,
    finite_number,
    load_source,
)

__all__ = ["add_report", "run_report"]

_REPORT_EXAMPLES = """\
examples:
  mesostats report example -o report.html              # the bundled example study
  mesostats report data/my_study -o out/my_study.html --outcome shaft_diameter_um
  mesostats report data/datapackage.json -o report.html --seed 7 --threshold 15
writes ONE self-contained HTML file (no scripts, no external files; open it offline).
The file appears only once the whole report is ready: a failure never leaves a partial file.
exit status: 0 written (warnings are listed on stderr and in the report's banner),
1 invalid data or the file cannot be written, 2 usage error"""


def add_report(subparsers: Any) -> None:
    """Declare ``mesostats report SOURCE -o FILE [--outcome O] [--seed S] [--threshold T]``."""
    parser = command_parser(
        subparsers,
        "report",
        help="write a self-contained HTML report of a study",
        description=(
            "Validate the study, fit the regrowth and side-effect models, compute how much "
            "people differ, and write one self-contained HTML report: the data and every "
            "row set aside, regrowth by ingredient, side effects by ingredient (with every "
            "serious adverse event), varied results, and methods with every warning."
        ),
        examples=_REPORT_EXAMPLES,
    )
    add_source_argument(parser)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="FILE",
        help="the HTML file to write (its folder must exist; an existing file is replaced)",
    )
    add_outcome_argument(parser)
    add_seed_argument(parser)
    parser.add_argument(
        "--threshold",
        type=finite_number,
        default=None,
        metavar="T",
        help="clinically meaningful change that defines a responder, in outcome units "
        "(default 10 for hair densities and counts)",
    )
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the HTML report of SOURCE to ``--output`` (exit 0)."""
    output: Path = args.output
    if output.is_dir():
        raise UsageError(
            f"output {str(output)!r} is a folder; give a file name such as "
            f"{str(output / 'report.html')!r}."
        )
    if not output.parent.is_dir():
        raise UsageError(
            f"the folder of the output, {str(output.parent)!r}, does not exist; create it "
            "first or choose another path."
        )
    study = load_source(args.source)
    if args.outcome not in study.outcomes:
        raise UsageError(
            f"--outcome {args.outcome!r} is not an outcome column of this study; available: "
            f"{', '.join(study.outcomes) or 'none'}."
        )
    # the report (jinja2, matplotlib, the models) loads only when this command runs, so that
    # `mesostats --help` and the other commands stay fast
    from mesostats.reporting.build import build_report
    from mesostats.reporting.write import write_atomic  # (as above)

    built = build_report(study, outcome=args.outcome, seed=args.seed, threshold=args.threshold)
    try:
        write_atomic(output, built.html)
    except OSError as err:
        error(f"cannot write the report {str(output)!r}: {err.strerror or err}")
        return EXIT_INVALID
    for message in built.messages:
        emit(f"{PROG}: warning: [{message.kind}] {message.source}: {message.text}", sys.stderr)
    n = len(built.messages)
    emit(
        f"Wrote {output} ({len(built.html.encode('utf-8')) / 1024:,.0f} KB)"
        + (f"; {n} warning(s) and message(s), also in the banner at its top" if n else "")
    )
    return EXIT_OK
