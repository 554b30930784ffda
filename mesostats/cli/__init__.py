"""Command line: ``mesostats <command> ...`` (also ``python -m mesostats``).

Each command is a module of this package with a pair of functions, ``add_<command>(subparsers)``
declaring its arguments and ``run_<command>(args) -> int`` doing the work; :data:`COMMANDS`
lists them, so a new command is one more module and one more entry. What the commands share
(exit codes, the usage error, output helpers, argument types, JSON values) is in
:mod:`mesostats.cli.common`; no command module imports another. Exit codes: 0 success, 1 the
data are invalid or could not be read, 2 usage errors (bad arguments, a SOURCE that does not
exist, an output folder that is not empty). Errors are printed as one clear message on
stderr, never as a traceback.

Heavy modules (pandas, the models, the report) load inside the run functions, so that
``mesostats --help`` answers at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from mesostats import __version__
from mesostats.cli.common import (
    EXIT_INVALID,
    EXIT_USAGE,
    PROG,
    UsageError,
    error,
    silence_stdout,
)
from mesostats.cli.convert import add_convert
from mesostats.cli.fit import FIT_JSON_KEYS, add_fit
from mesostats.cli.power import add_power
from mesostats.cli.report import add_report
from mesostats.cli.simulate import add_simulate
from mesostats.cli.validate import add_validate
from mesostats.exceptions import MesostatsError

__all__ = ["COMMANDS", "FIT_JSON_KEYS", "build_parser", "main"]


#: (name, function adding the subcommand to the subparsers); run functions are set as
#: ``handler`` defaults by each add function.
COMMANDS: list[tuple[str, Callable[[Any], None]]] = [
    ("validate", add_validate),
    ("simulate", add_simulate),
    ("fit", add_fit),
    ("report", add_report),
    ("power", add_power),
    ("convert", add_convert),
]

_MAIN_EXAMPLES = """\
examples:
  mesostats validate example
  mesostats fit example --json
  mesostats report example -o report.html
  mesostats simulate --subjects 120 --sessions 8 --seed 1 -o sim_study
  mesostats power --subjects 40 80 120 --sims 200 --jobs 2
  python -m mesostats validate sim_study
  mesostats validate sqlite:///study.db
  mesostats convert example sqlite:///example.db
run 'mesostats COMMAND --help' for a command's options"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="mesostats: clinical outcome statistics for mesotherapy studies.",
        epilog=_MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 invalid data, 2 usage).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exit_:  # --help, --version, or an argparse usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return int(args.handler(args))
    except UsageError as err:
        error(str(err))
        return EXIT_USAGE
    except MesostatsError as err:
        error(str(err))
        return EXIT_INVALID
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        silence_stdout()
        return EXIT_INVALID
    except OSError as err:
        error(f"{err.strerror or err} ({err.filename})" if err.filename else str(err))
        return EXIT_INVALID
