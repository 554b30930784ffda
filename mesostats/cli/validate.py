"""``mesostats validate SOURCE``: check a study's tables against the schema; print a summary
of a valid study (exit 0) or every problem of an invalid one (exit 1)."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from mesostats._display import Table, render_text_table
from mesostats.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    add_source_argument,
    command_parser,
    emit,
    load_source,
    one_line,
    source_label,
)
from mesostats.exceptions import PROBLEM_COLUMNS, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from mesostats.data.study import Study

__all__ = ["add_validate", "run_validate", "study_summary"]

_VALIDATE_EXAMPLES = """\
examples:
  mesostats validate example                 # the bundled example study
  mesostats validate data/my_study           # a folder of CSV / Parquet / XLSX tables
  mesostats validate data/datapackage.json -q
  mesostats validate sqlite:///study.db      # a database (any SQLAlchemy URL)
exit status: 0 valid, 1 invalid (every problem is listed), 2 usage error"""


def add_validate(subparsers: Any) -> None:
    """Declare ``mesostats validate SOURCE [-q]``."""
    parser = command_parser(
        subparsers,
        "validate",
        help="check a study's tables against the schema",
        description=(
            "Read a study and check every table against the schema and the cross-table "
            "rules. A valid study gets a one-line summary and a short description; an "
            "invalid one gets the list of every problem (table, row, column, value, rule, "
            "message)."
        ),
        examples=_VALIDATE_EXAMPLES,
    )
    add_source_argument(parser)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the one-line summary"
    )
    parser.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Load and validate SOURCE; print the summary (exit 0) or every problem (exit 1)."""
    try:
        study = load_source(args.source)
    except ValidationError as err:
        problems = err.problems
        tables = ", ".join(sorted({str(t) for t in problems["table"]}))
        n = len(problems)
        emit(f"INVALID {source_label(args.source)}: {n} problem{'s' if n != 1 else ''} in {tables}")
        for text in _problem_lines(problems):
            emit(text)
        return EXIT_INVALID
    emit(f"OK {source_label(args.source)}: {_one_line_summary(study)}")
    if not args.quiet:
        emit(study_summary(study))
    return EXIT_OK


def _subject_cocktails(study: Study) -> pd.DataFrame:
    """subject_id, site, cocktail_id: each cocktail a subject received (once)."""
    from mesostats.data.derive import cocktails_received  # pandas: not for `mesostats --help`

    received = cocktails_received(study.sessions)[["subject_id", "cocktail_id"]]
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
    return "\n".join(
        [
            *_cocktail_lines(study),
            _visit_line(study.sessions),
            _outcome_line(study),
            _event_line(study),
            *_exclusion_lines(study),
        ]
    )


def _cocktail_lines(study: Study) -> list[str]:
    """Subjects per site and cocktail received, each recipe, the active ingredients."""
    import pandas as pd  # loads only when a study is summarised (`mesostats --help` stays fast)

    lines: list[str] = []
    received = _subject_cocktails(study)
    if len(received):
        table = pd.crosstab(
            received["site"], received["cocktail_id"], margins=True, margins_name="total"
        )
        table = table.rename_axis(index="site", columns=None)
        lines.append("Subjects per site and cocktail received:")
        lines.append(textwrap.indent(table.to_string(), "  "))
    recipes = study.cocktails.groupby("cocktail_id", sort=False)["ingredient"].agg(
        lambda s: " + ".join(s)
    )
    lines.append(
        _wrapped("Cocktails: " + "; ".join(f"{cid} = {ing}" for cid, ing in recipes.items()))
    )
    lines.append(f"Active ingredients: {', '.join(study.ingredients) or '(none)'}")
    return lines


def _visit_line(sessions: pd.DataFrame) -> str:
    """Visits, injections, visits per subject and the span of study days."""
    per_subject = sessions.groupby("subject_id").size()
    injected = int(sessions["cocktail_id"].notna().sum())
    return (
        f"Visits: {len(sessions)} ({injected} with an injection); per subject median "
        f"{per_subject.median():g}, range {per_subject.min()}–{per_subject.max()}; study days "
        f"{sessions['day'].min()} to {sessions['day'].max()}"
    )


def _outcome_line(study: Study) -> str:
    """The outcome fields of the study's own schema that hold values, with their counts."""
    sessions = study.sessions
    outcome_columns = [spec.name for spec in study.schema.outcome_specs]  # the study's own
    present = [
        f"{col} {int(sessions[col].notna().sum())}"
        for col in outcome_columns
        if col in sessions.columns and sessions[col].notna().any()
    ]
    return _wrapped(f"Outcomes (values present): {', '.join(present) or '(none)'}")


def _event_line(study: Study) -> str:
    """Adverse events by term, serious ones, and the sessions assessed for them."""
    assessed = int(study.sessions["reactions_assessed"].astype(bool).sum())
    events = study.adverse_events
    if events is None or len(events) == 0:
        return f"Adverse events: none recorded ({assessed} sessions assessed)"
    counts = events["event"].value_counts()
    listed = ", ".join(f"{term} {n}" for term, n in counts.items())
    serious = int(events["serious"].astype(bool).sum())
    n_with = len(events[["subject_id", "visit"]].drop_duplicates())
    return _wrapped(
        f"Adverse events: {len(events)} ({serious} serious) at {n_with} of {assessed} "
        f"assessed sessions: {listed}"
    )


def _exclusion_lines(study: Study) -> list[str]:
    """How many rows were set aside, by reason."""
    exclusions = getattr(study, "exclusions", None)
    if exclusions is None or len(exclusions) == 0:
        return ["Exclusions: none"]
    reasons = exclusions.groupby("reason").size().sort_values(ascending=False)
    width = len(str(int(reasons.max())))
    return [
        f"Exclusions: {len(exclusions)} rows set aside from some analysis",
        *(f"  {n:>{width}}  {reason}" for reason, n in reasons.items()),
    ]


def _problem_lines(problems: pd.DataFrame) -> list[str]:
    """Every problem as an aligned table: table, row, column, value, rule, message (values
    cut at 40 characters, messages whole)."""
    cells = [
        [one_line(rec[col], limit=10_000 if col == "message" else 40) for col in PROBLEM_COLUMNS]
        for rec in problems.to_dict("records")
    ]
    return render_text_table(Table.of(PROBLEM_COLUMNS, cells)).splitlines()
