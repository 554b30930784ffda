"""``mesostats power``: simulation-based power and sample size from the command line.

Declared by :func:`add_power`, run by :func:`run_power`, which calls
:func:`mesostats.power.power` and prints the power table and the sample-size answer (or JSON
with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mesostats.cli.common import (
    EXIT_OK,
    UsageError,
    command_parser,
    emit,
    finite_number,
    jobs_count,
    json_safe,
    open_unit,
    positive_int,
    whole_number,
)
from mesostats.exceptions import ModelSpecError

__all__ = ["add_power", "run_power"]

_POWER_EXAMPLES = """\
examples:
  mesostats power --subjects 40 80 120 --sims 200 --seed 0 --jobs 2
  mesostats power --subjects 60 90 --effect 0.6 --test dutasteride --json
  mesostats power --subjects 100 200 --outcome side_effect --test minoxidil --effect 0.5
  mesostats power --subjects 40 80 --sims 1000 --backend dask --scheduler tcp://127.0.0.1:8786
the same --seed gives the same numbers whatever --jobs or --backend"""


def _effects_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            "expected a JSON object such as '{\"slope_sd\": 1.0}', got " + repr(text)
        )
    return value


def add_power(subparsers: Any) -> None:
    """Declare ``mesostats power --subjects N [N ...] [--sims S] [--seed X] [--jobs J] ...``."""
    parser = command_parser(
        subparsers,
        "power",
        help="simulation-based power and sample size of a planned trial",
        description=(
            "Simulate the planned trial many times (saline placebo and three cocktails of "
            "minoxidil, dutasteride and biotin; per-person intercepts and slopes; dropout), "
            "analyse each trial with the model of the analysis, and report for each number "
            "of subjects the share of trials in which the tested ingredient's effect is "
            "significant (power), its Monte Carlo error and exact 95 % interval, and the "
            "smallest number of subjects that reaches the target power."
        ),
        examples=_POWER_EXAMPLES,
    )
    _add_trial_arguments(parser)
    _add_tested_effect_arguments(parser)
    _add_run_arguments(parser)
    parser.set_defaults(handler=run_power)


def _add_trial_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulated trials: subjects, simulations, seed, workers, visits."""
    parser.add_argument(
        "--subjects",
        type=whole_number(4),
        nargs="+",
        required=True,
        metavar="N",
        help="numbers of subjects to try, e.g. 40 80 120 (each ≥ 4)",
    )
    parser.add_argument(
        "--sims",
        type=positive_int,
        default=500,
        metavar="S",
        help="simulated trials per number of subjects (default 500)",
    )
    parser.add_argument(
        "--seed", type=whole_number(0), default=0, metavar="X", help="random seed (default 0)"
    )
    parser.add_argument(
        "--jobs", type=jobs_count, default=1, metavar="J", help="worker processes, -1 = all cores"
    )
    parser.add_argument(
        "--sessions", type=whole_number(2), default=8, metavar="K", help="visits per subject (8)"
    )


def _add_tested_effect_arguments(parser: argparse.ArgumentParser) -> None:
    """What is tested: ingredient, outcome, true effects, significance level, target power."""
    parser.add_argument(
        "--test", default="minoxidil", metavar="INGREDIENT", help="ingredient tested"
    )
    parser.add_argument(
        "--outcome",
        default="hair_density",
        metavar="OUTCOME",
        help="outcome column, or 'side_effect' to test the ingredient's odds ratio of a side "
        "effect (default hair_density)",
    )
    parser.add_argument(
        "--event", default=None, metavar="TERM", help="with --outcome side_effect: one event"
    )
    parser.add_argument(
        "--effect",
        type=finite_number,
        default=None,
        metavar="E",
        help="true effect of the tested ingredient: extra hairs/cm² per week, or the log "
        "odds ratio with --outcome side_effect (default: the simulator's)",
    )
    parser.add_argument(
        "--effects-json",
        type=_effects_json,
        default=None,
        metavar="JSON",
        help='other true values, e.g. \'{"slope_sd": 1.0, "dropout": 0.05}\'',
    )
    parser.add_argument(
        "--alpha", type=open_unit, default=0.05, metavar="A", help="significance level"
    )
    parser.add_argument(
        "--target", type=open_unit, default=0.8, metavar="P", help="target power (0.8)"
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Sites of the trial, the parallel backend and the output."""
    parser.add_argument(
        "--sites", type=positive_int, default=3, metavar="M", help="number of sites (default 3)"
    )
    parser.add_argument(
        "--backend", choices=["loky", "dask"], default="loky", help="parallel backend"
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="with --backend dask: scheduler address (default: a local cluster of --jobs)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _effects(args: argparse.Namespace) -> dict[str, Any] | None:
    effects: dict[str, Any] = dict(args.effects_json or {})
    if args.effect is not None:
        key = "event_log_or" if args.outcome == "side_effect" else "ingredient_slopes"
        effects[key] = {**dict(effects.get(key, {})), args.test: args.effect}
    return effects or None


def _power_table(args: argparse.Namespace) -> Any:
    """:func:`mesostats.power.power` called with the command's options."""
    from mesostats.planning import power  # heavy: loads only when the command runs

    return power(
        args.subjects,
        n_sessions=args.sessions,
        effects=_effects(args),
        n_sims=args.sims,
        alpha=args.alpha,
        seed=args.seed,
        n_jobs=args.jobs,
        outcome=args.outcome,
        test=args.test,
        event=args.event,
        n_sites=args.sites,
        backend=args.backend,
        client=args.scheduler,
        progress=False if args.no_progress else None,
    )


def run_power(args: argparse.Namespace) -> int:
    """Run :func:`mesostats.power.power` with the command's options and print the table and
    the sample size (exit 0)."""
    # the simulator, the models and joblib load only when this command runs, so that
    # `mesostats --help` and the other commands stay fast
    from mesostats.planning import POWER_COLUMNS, sample_size

    try:
        table = _power_table(args)
    except ModelSpecError as err:  # the plan itself is wrong: a usage error (exit 2)
        raise UsageError(str(err)) from None
    answer = sample_size(table, args.target)
    if args.json:
        payload = {
            "settings": dict(table.trials.settings),
            "power": table[POWER_COLUMNS].to_dict("records"),
            "sample_size": {
                "target": answer.target,
                "n_subjects": answer.n_subjects,
                "power": answer.power,
                "ci_lower": answer.ci_lower,
                "ci_upper": answer.ci_upper,
                "n_subjects_sure": answer.n_subjects_sure,
                "n_subjects_possible": answer.n_subjects_possible,
                "text": str(answer),
            },
            "failures": table.trials.failures,
        }
        emit(json.dumps(json_safe(payload), indent=2, ensure_ascii=False))
        return EXIT_OK
    what = (
        f"odds ratio of {'any side effect' if args.event is None else args.event}"
        if args.outcome == "side_effect"
        else f"{args.outcome} change per week"
    )
    emit(
        f"Power to detect the {args.test} effect on {what} (alpha {args.alpha:g}, "
        f"{args.sims} simulated trials per size, seed {args.seed}):"
    )
    shown = table[POWER_COLUMNS].copy()
    emit(shown.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    emit(str(answer))
    failures = table.trials.failures
    if failures:
        first = failures[0]
        emit(
            f"{len(failures)} simulated trial(s) could not be analysed (counted in n_failed); "
            f"first: n_subjects={first['n_subjects']} simulation={first['simulation']}: "
            f"{first['reason']}",
            sys.stderr,
        )
    return EXIT_OK
