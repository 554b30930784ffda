"""Command line: ``mesostats <command> ...`` (also ``python -m mesostats``).

Each command is a pair of functions, ``add_<command>(subparsers)`` declaring its arguments
and ``run_<command>(args) -> int`` doing the work; :data:`COMMANDS` lists them, so a new
command is one more pair and one more entry. Exit codes: 0 success, 1 the data are invalid
or could not be read, 2 usage errors (bad arguments, a SOURCE that does not exist, an output
folder that is not empty). Errors are printed as one clear message on stderr, never as a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mesostats.cli_args import whole_number
from mesostats.cli_power import add_power_subcommand
from mesostats.exceptions import MesostatsError, ModelSpecError, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from mesostats.data.study import Study

__all__ = ["COMMANDS", "build_parser", "main"]

PROG = "mesostats"
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad invocation found after argument parsing (exit code 2)."""


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def _emit(text: str, stream: TextIO | None = None) -> None:
    """Print text; characters the terminal cannot encode are escaped, not fatal."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def _error(message: str) -> None:
    _emit(f"{PROG}: error: {message}", sys.stderr)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so that the interpreter's final flush
    does not raise again (Python documentation, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


def _one_line(value: Any, limit: int = 40) -> str:
    """A problem's value on one line: missing → empty, control characters escaped."""
    if value is None:
        return ""
    try:
        if value != value:  # NaN
            return ""
    except (TypeError, ValueError):
        pass
    text = (
        str(value).encode("unicode_escape").decode("ascii") if _has_control(value) else str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _has_control(value: Any) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in str(value))


def _problem_lines(problems: pd.DataFrame) -> list[str]:
    """Every problem as an aligned table: table, row, column, value, rule, message."""
    header = ["table", "row", "column", "value", "rule", "message"]
    cells = [
        [_one_line(rec[col], limit=10_000 if col == "message" else 40) for col in header]
        for rec in problems.to_dict("records")
    ]
    widths = [max([len(header[i])] + [len(row[i]) for row in cells]) for i in range(5)]

    def line(row: list[str]) -> str:
        return (
            "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
            + "  "
            + row[5]
        )

    return [line(header), *(line(row) for row in cells)]


# --------------------------------------------------------------------------------------------
# SOURCE resolution
# --------------------------------------------------------------------------------------------


def resolve_source(source: str) -> Path:
    """The path a SOURCE argument names: a folder, a ``datapackage.json``, or the word
    ``example`` (the bundled example study; ``./example`` names a local folder)."""
    if source == "example":
        from mesostats.datasets import EXAMPLE_DIR

        return EXAMPLE_DIR
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"SOURCE {source!r} does not exist. Give a folder holding subjects, cocktails, "
            "sessions (and adverse_events) tables, a datapackage.json, or the word 'example'."
        )
    if path.is_file() and path.suffix.lower() != ".json":
        raise UsageError(
            f"SOURCE {source!r} is a file; give the folder that holds the tables "
            f"({str(path.parent)!r}) or a datapackage.json."
        )
    return path


def _load(source: str) -> Study:
    path = resolve_source(source)
    from mesostats.data.load import load_study

    return load_study(path)


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------

_VALIDATE_EXAMPLES = """\
examples:
  mesostats validate example                 # the bundled example study
  mesostats validate data/my_study           # a folder of CSV / Parquet / XLSX tables
  mesostats validate data/datapackage.json -q
exit status: 0 valid, 1 invalid (every problem is listed), 2 usage error"""


def add_validate(subparsers: Any) -> None:
    """Declare ``mesostats validate SOURCE [-q]``."""
    parser = subparsers.add_parser(
        "validate",
        help="check a study's tables against the schema",
        description=(
            "Read a study and check every table against the schema and the cross-table "
            "rules. A valid study gets a one-line summary and a short description; an "
            "invalid one gets the list of every problem (table, row, column, value, rule, "
            "message)."
        ),
        epilog=_VALIDATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="folder of tables, a datapackage.json, or 'example'",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the one-line summary"
    )
    parser.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Load and validate SOURCE; print the summary (exit 0) or every problem (exit 1)."""
    try:
        study = _load(args.source)
    except ValidationError as err:
        problems = err.problems
        tables = ", ".join(sorted({str(t) for t in problems["table"]}))
        n = len(problems)
        _emit(f"INVALID {args.source}: {n} problem{'s' if n != 1 else ''} in {tables}")
        for text in _problem_lines(problems):
            _emit(text)
        return EXIT_INVALID
    _emit(f"OK {args.source}: {_one_line_summary(study)}")
    if not args.quiet:
        _emit(study_summary(study))
    return EXIT_OK


def _subject_cocktails(study: Study) -> pd.DataFrame:
    """subject_id, site, cocktail_id: each cocktail a subject received (once)."""
    sessions = study.sessions
    received = sessions.loc[sessions["cocktail_id"].notna(), ["subject_id", "cocktail_id"]]
    received = received.drop_duplicates()
    return received.merge(study.subjects[["subject_id", "site"]], on="subject_id", how="left")


def _one_line_summary(study: Study) -> str:
    n_sites = study.subjects["site"].nunique()
    n_cocktails = study.cocktails["cocktail_id"].nunique()
    n_events = 0 if study.adverse_events is None else len(study.adverse_events)
    return (
        f"valid study, {len(study.subjects)} subjects at {n_sites} site"
        f"{'s' if n_sites != 1 else ''}, {n_cocktails} cocktail{'s' if n_cocktails != 1 else ''}, "
        f"{len(study.sessions)} sessions, {n_events} adverse event{'s' if n_events != 1 else ''}"
    )


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=100, subsequent_indent="  ", break_on_hyphens=False)


def study_summary(study: Study) -> str:
    """A short human description of a study: subjects per site and cocktail, visits,
    outcomes present, adverse events and exclusions."""
    import pandas as pd

    parts: list[str] = []
    received = _subject_cocktails(study)
    if len(received):
        table = pd.crosstab(
            received["site"], received["cocktail_id"], margins=True, margins_name="total"
        )
        table = table.rename_axis(index="site", columns=None)
        parts.append("Subjects per site and cocktail received:")
        parts.append(textwrap.indent(table.to_string(), "  "))
    recipes = study.cocktails.groupby("cocktail_id", sort=False)["ingredient"].agg(
        lambda s: " + ".join(s)
    )
    parts.append(
        _wrapped("Cocktails: " + "; ".join(f"{cid} = {ing}" for cid, ing in recipes.items()))
    )
    parts.append(f"Active ingredients: {', '.join(study.ingredients) or '(none)'}")

    sessions = study.sessions
    per_subject = sessions.groupby("subject_id").size()
    injected = int(sessions["cocktail_id"].notna().sum())
    parts.append(
        f"Visits: {len(sessions)} ({injected} with an injection); per subject median "
        f"{per_subject.median():g}, range {per_subject.min()}–{per_subject.max()}; study days "
        f"{sessions['day'].min()} to {sessions['day'].max()}"
    )
    outcome_columns = [
        "hair_density",
        "hair_count",
        "shaft_diameter_um",
        "terminal_density",
        "vellus_density",
        "anagen_pct",
        "gpa_score",
        "pain_vas",
    ]
    present = [
        f"{col} {int(sessions[col].notna().sum())}"
        for col in outcome_columns
        if col in sessions.columns and sessions[col].notna().any()
    ]
    parts.append(_wrapped(f"Outcomes (values present): {', '.join(present) or '(none)'}"))

    assessed = int(sessions["reactions_assessed"].astype(bool).sum())
    events = study.adverse_events
    if events is None or len(events) == 0:
        parts.append(f"Adverse events: none recorded ({assessed} sessions assessed)")
    else:
        counts = events["event"].value_counts()
        listed = ", ".join(f"{term} {n}" for term, n in counts.items())
        serious = int(events["serious"].astype(bool).sum())
        n_with = len(events[["subject_id", "visit"]].drop_duplicates())
        parts.append(
            _wrapped(
                f"Adverse events: {len(events)} ({serious} serious) at {n_with} of {assessed} "
                f"assessed sessions: {listed}"
            )
        )

    exclusions = getattr(study, "exclusions", None)
    if exclusions is None or len(exclusions) == 0:
        parts.append("Exclusions: none")
    else:
        reasons = exclusions.groupby("reason").size().sort_values(ascending=False)
        parts.append(f"Exclusions: {len(exclusions)} rows set aside from some analysis")
        width = len(str(int(reasons.max())))
        parts.extend(f"  {n:>{width}}  {reason}" for reason, n in reasons.items())
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------------

_SIMULATE_EXAMPLES = """\
examples:
  mesostats simulate --subjects 120 --sessions 8 --seed 1 -o sim_study
  mesostats simulate --subjects 5000 --sessions 10 --seed 7 --dropout 0.05 -o big --force
  mesostats validate sim_study
writes subjects.csv, cocktails.csv, sessions.csv, adverse_events.csv and truth.json
(every true value used, including the per-subject random effects)"""


_positive_int = whole_number(1)
_seed = whole_number(0, what="a seed")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {value}")
    return value


def add_simulate(subparsers: Any) -> None:
    """Declare ``mesostats simulate --subjects N --sessions K --seed S -o FOLDER``."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a simulated study with known truth",
        description=(
            "Draw a randomised mesotherapy study from a known model (saline placebo and "
            "three cocktails of minoxidil, dutasteride and biotin; per-person intercepts and "
            "slopes; side effects by ingredient; dropout) and write its tables as CSV with "
            "the true values in truth.json."
        ),
        epilog=_SIMULATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--subjects",
        type=_positive_int,
        default=120,
        metavar="N",
        help="number of subjects (default 120)",
    )
    parser.add_argument(
        "--sessions",
        type=_positive_int,
        default=8,
        metavar="K",
        help="visits per subject, the last ones follow-ups (default 8)",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="S",
        help="random seed; the same seed gives the same tables (default 0)",
    )
    parser.add_argument(
        "--sites", type=_positive_int, default=3, metavar="M", help="number of sites (default 3)"
    )
    parser.add_argument(
        "--dropout",
        type=_probability,
        default=0.03,
        metavar="H",
        help="per-visit dropout hazard (default 0.03)",
    )
    parser.add_argument(
        "--missing-rate",
        type=_probability,
        default=0.02,
        metavar="P",
        help="share of missing post-baseline measurements (default 0.02)",
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
        _error(f"cannot write the study into {str(folder)!r}: {err.strerror or err}{where}")
        return EXIT_INVALID
    n_events = len(tables["adverse_events"])
    _emit(
        f"Wrote {folder}: {len(tables['subjects'])} subjects, {len(tables['sessions'])} "
        f"sessions, {n_events} adverse events (seed {args.seed}); true values in truth.json"
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------

#: Top-level keys of ``mesostats fit --json`` (documented in the command's help).
FIT_JSON_KEYS = (
    "source",
    "analysis",
    "outcome",
    "event",
    "formula",
    "model",
    "fixed_effects",
    "variance_components",
    "ingredient_effects",
    "variability",
    "rates",
    "population_average",
    "warnings",
    "messages",
    "notes",
    "excluded_rows",
    "excluded_by_reason",
)

_FIT_EXAMPLES = """\
examples:
  mesostats fit example                                # regrowth of hair_density
  mesostats fit data/my_study --outcome shaft_diameter_um
  mesostats fit example --side-effects                 # any side effect, AGQ with 25 nodes
  mesostats fit example --event erythema --json > erythema.json
--json prints one JSON object with the keys: source, analysis ("regrowth" or
"side_effects"), outcome, event, formula, model (method, family, nobs, ngroups, loglik,
aic, bic, converged, singular), fixed_effects, variance_components, ingredient_effects,
variability (components with 95 % CIs, icc, median_odds_ratio, week, prediction_interval,
notes; or error), rates and population_average (side effects; null for regrowth),
warnings ([{category, message}]), messages (the engine's), notes, excluded_rows (rows set
aside from this analysis) and excluded_by_reason. Missing numbers are null.
exit status: 0 fitted (warnings go to stderr and into the JSON), 1 invalid data or a model
that cannot be fitted, 2 usage error"""


def add_fit(subparsers: Any) -> None:
    """Declare ``mesostats fit SOURCE [--outcome O] [--side-effects] [--event T] [--json]``."""
    parser = subparsers.add_parser(
        "fit",
        help="fit the regrowth or side-effect model and print the results",
        description=(
            "Fit the baseline-adjusted linear mixed model of regrowth by ingredient (default) "
            "or, with --side-effects / --event, the binomial mixed model of side effects by "
            "ingredient, and print the ingredient effects, the variance components and how "
            "much people differ (SDs with profile-likelihood CIs, ICC or median odds ratio, "
            "prediction intervals). Warnings are printed on stderr."
        ),
        epilog=_FIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="folder of tables, a datapackage.json, or 'example'"
    )
    parser.add_argument(
        "--outcome",
        default="hair_density",
        metavar="COLUMN",
        help="outcome column for regrowth (default hair_density)",
    )
    parser.add_argument(
        "--side-effects",
        action="store_true",
        help="fit the side-effect model (any event) instead of regrowth",
    )
    parser.add_argument(
        "--event",
        default=None,
        metavar="TERM",
        help="side-effect model of one coded event term, e.g. erythema (implies --side-effects)",
    )
    parser.add_argument(
        "--nagq",
        type=_positive_int,
        default=25,
        metavar="K",
        help="side effects: adaptive Gauss-Hermite nodes, 1 = Laplace (default 25)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, metavar="S", help="seed of the simulations (default 0)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (pipelines)")
    parser.set_defaults(handler=run_fit)


def _json_value(value: Any) -> Any:
    """Plain JSON values: NaN/inf/NA → None, numpy scalars → Python, containers recursed."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, int):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _records(frame: pd.DataFrame | None, index: str | None = None) -> list[dict[str, Any]] | None:
    if frame is None:
        return None
    table = frame.reset_index(names=index) if index else frame
    return [_json_value(rec) for rec in table.to_dict("records")]


def _interval_json(estimate: Any) -> dict[str, Any] | None:
    if estimate is None:
        return None
    keys = ("name", "estimate", "ci_lower", "ci_upper", "level", "method", "note")
    return {k: _json_value(getattr(estimate, k, None)) for k in keys}


def _variability_json(var: Any, error: str | None) -> dict[str, Any]:
    if var is None:
        return {"error": error}
    return {
        "components": _records(var.components),
        "icc": _interval_json(var.icc),
        "median_odds_ratio": _interval_json(var.median_odds_ratio),
        "week": _json_value(var.week),
        "prediction_interval": _records(var.prediction_interval()),
        "notes": list(var.notes),
    }


def _exclusions_for(study: Study, results: Any, side_effects: bool) -> pd.DataFrame:
    """Rows set aside from this analysis: the study's (for this outcome or the events) and
    the model's own."""
    import pandas as pd

    if side_effects:
        ex = study.exclusions
        study_rows = ex[(ex["table"] == "adverse_events").to_numpy(dtype=bool)]
    else:
        study_rows = study.outcome_exclusions(results.outcome)
    model_rows = results.model.excluded_rows
    reasons = (
        model_rows["reason"].astype(str)
        if "reason" in model_rows.columns
        else pd.Series(["missing value in a model column"] * len(model_rows), dtype="str")
    )
    return pd.concat(
        [study_rows[["reason"]], pd.DataFrame({"reason": reasons.to_numpy()})],
        ignore_index=True,
    )


def run_fit(args: argparse.Namespace) -> int:
    """Fit the regrowth (or side-effect) model of SOURCE; print text or JSON (exit 0)."""
    import json
    import warnings

    study = _load(args.source)
    side_effects = bool(args.side_effects or args.event is not None)
    if not side_effects and args.outcome not in study.outcomes:
        raise UsageError(
            f"--outcome {args.outcome!r} is not an outcome column of this study; available: "
            f"{', '.join(study.outcomes) or 'none'}."
        )
    from mesostats.outcomes import fit_regrowth, fit_side_effects
    from mesostats.variability import variability

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if side_effects:
            results: Any = fit_side_effects(study, args.event, nagq=args.nagq)
        else:
            results = fit_regrowth(study, args.outcome)
        var, var_error = None, None
        try:
            var = variability(results, seed=args.seed)
        except (MesostatsError, ValueError, ArithmeticError) as err:
            var_error = f"{type(err).__name__}: {err}"
    found = [(w.category.__name__, str(w.message)) for w in caught]
    if var_error:
        found.append(("VariabilityError", f"varied results could not be computed: {var_error}"))
    for category, message in found:
        _emit(f"{PROG}: warning: [{category}] {message}", sys.stderr)
    shown = {message for _, message in found}
    for message in results.model.messages:
        if message not in shown:
            _emit(f"{PROG}: message from the fit: {message}", sys.stderr)
    excluded = _exclusions_for(study, results, side_effects)
    if args.json:
        payload = _fit_payload(args, study, results, var, var_error, found, excluded)
        _emit(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False))
    else:
        _emit(str(results))
        _emit("")
        _emit(str(var) if var is not None else f"Varied results: not computed ({var_error})")
        _emit("")
        _emit(f"Rows set aside from this analysis: {len(excluded)}")
    return EXIT_OK


def _fit_payload(
    args: argparse.Namespace,
    study: Study,
    results: Any,
    var: Any,
    var_error: str | None,
    found: list[tuple[str, str]],
    excluded: pd.DataFrame,
) -> dict[str, Any]:
    model = results.model
    side_effects = hasattr(results, "rates")
    gee = getattr(results, "gee", None)
    by_reason = excluded.groupby("reason", sort=False).size()
    return {
        "source": args.source,
        "analysis": "side_effects" if side_effects else "regrowth",
        "outcome": None if side_effects else results.outcome,
        "event": results.event if side_effects else None,
        "formula": results.formula,
        "model": _json_value(
            {
                "method": model.method,
                "family": model.family,
                "nobs": model.nobs,
                "ngroups": dict(model.ngroups),
                "loglik": model.loglik,
                "aic": model.aic,
                "bic": model.bic,
                "converged": model.converged,
                "singular": model.singular,
            }
        ),
        "fixed_effects": _records(model.fixed_effects, index="term"),
        "variance_components": _records(model.variance_components),
        "ingredient_effects": _records(results.ingredient_effects),
        "variability": _variability_json(var, var_error),
        "rates": _records(results.rates) if side_effects else None,
        "population_average": _records(gee.table) if gee is not None else None,
        "warnings": [{"category": c, "message": m} for c, m in found],
        "messages": list(model.messages),
        "notes": list(results.notes),
        "excluded_rows": len(excluded),
        "excluded_by_reason": {str(k): int(v) for k, v in by_reason.items()},
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------

_REPORT_EXAMPLES = """\
examples:
  mesostats report example -o report.html              # the bundled example study
  mesostats report data/my_study -o out/my_study.html --outcome shaft_diameter_um
  mesostats report data/datapackage.json -o report.html --seed 7 --threshold 15
writes ONE self-contained HTML file (no scripts, no external files; open it offline).
The file appears only once the whole report is ready: a failure never leaves a partial file.
exit status: 0 written (warnings are listed on stderr and in the report's banner),
1 invalid data or the file cannot be written, 2 usage error"""


def _finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or abs(value) == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_report(subparsers: Any) -> None:
    """Declare ``mesostats report SOURCE -o FILE [--outcome O] [--seed S] [--threshold T]``."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a study",
        description=(
            "Validate the study, fit the regrowth and side-effect models, compute how much "
            "people differ, and write one self-contained HTML report: the data and every "
            "row set aside, regrowth by ingredient, side effects by ingredient (with every "
            "serious adverse event), varied results, and methods with every warning."
        ),
        epilog=_REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="folder of tables, a datapackage.json, or 'example'"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="FILE",
        help="the HTML file to write (its folder must exist; an existing file is replaced)",
    )
    parser.add_argument(
        "--outcome",
        default="hair_density",
        metavar="COLUMN",
        help="outcome column for regrowth (default hair_density)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, metavar="S", help="seed of the simulations (default 0)"
    )
    parser.add_argument(
        "--threshold",
        type=_finite_number,
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
    study = _load(args.source)
    if args.outcome not in study.outcomes:
        raise UsageError(
            f"--outcome {args.outcome!r} is not an outcome column of this study; available: "
            f"{', '.join(study.outcomes) or 'none'}."
        )
    from mesostats.reporting.build import build_report, write_atomic

    built = build_report(study, outcome=args.outcome, seed=args.seed, threshold=args.threshold)
    try:
        write_atomic(output, built.html)
    except OSError as err:
        _error(f"cannot write the report {str(output)!r}: {err.strerror or err}")
        return EXIT_INVALID
    for message in built.messages:
        _emit(f"{PROG}: warning: [{message.kind}] {message.source}: {message.text}", sys.stderr)
    n = len(built.messages)
    _emit(
        f"Wrote {output} ({len(built.html.encode('utf-8')) / 1024:,.0f} KB)"
        + (f"; {n} warning(s) and message(s), also in the banner at its top" if n else "")
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------------

#: (name, function adding the subcommand to the subparsers); run functions are set as
#: ``handler`` defaults by each add function.
COMMANDS: list[tuple[str, Callable[[Any], None]]] = [
    ("validate", add_validate),
    ("simulate", add_simulate),
    ("fit", add_fit),
    ("report", add_report),
    ("power", add_power_subcommand),  # declared in mesostats/cli_power.py
]

_MAIN_EXAMPLES = """\
examples:
  mesostats validate example
  mesostats fit example --json
  mesostats report example -o report.html
  mesostats simulate --subjects 120 --sessions 8 --seed 1 -o sim_study
  mesostats power --subjects 40 80 120 --sims 200 --jobs 2
  python -m mesostats validate sim_study
run 'mesostats COMMAND --help' for a command's options"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command of :data:`COMMANDS`."""
    from mesostats import __version__

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
        _error(str(err))
        return EXIT_USAGE
    except MesostatsError as err:
        _error(str(err))
        return EXIT_INVALID
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        _silence_stdout()
        return EXIT_INVALID
    except OSError as err:
        _error(f"{err.strerror or err} ({err.filename})" if err.filename else str(err))
        return EXIT_INVALID
