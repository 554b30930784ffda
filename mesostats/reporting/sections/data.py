"""Section 1 of the report, the data: who was treated, with what and when, and every row set
aside from an analysis with its reason (the study's own exclusions and the models')."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from mesostats import plots
from mesostats._display import MISSING, Table, format_number, format_plain
from mesostats.data.derive import cocktails_received
from mesostats.reporting.figures import facets_uri
from mesostats.reporting.steps import Failure, Figure, MessageLog, guarded

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["analysis_exclusion_table", "analysis_exclusions", "data_section"]


def _cocktails_received(study: Study) -> pd.DataFrame:
    """subject_id, cocktail_id: each cocktail a subject received (once per pair)."""
    return cocktails_received(study.sessions)[["subject_id", "cocktail_id"]]


def _recipes(study: Study) -> dict[str, str]:
    c = study.cocktails
    parts = c["ingredient"].astype(str) + (
        " " + c["concentration"].map(format_plain) + " " + c["unit"].astype(str)
        if {"concentration", "unit"} <= set(c.columns)
        else ""
    )
    frame = pd.DataFrame({"cocktail_id": c["cocktail_id"].astype(str), "part": parts})
    return frame.groupby("cocktail_id", sort=True)["part"].agg(", ".join).to_dict()


def _overview(study: Study) -> list[tuple[str, str]]:
    s, ae = study.sessions, study.adverse_events
    injected = int(s["cocktail_id"].notna().sum()) if "cocktail_id" in s.columns else 0
    assessed = int(s["reactions_assessed"].fillna(False).astype(bool).sum())
    per_subject = s.groupby("subject_id").size()
    n_serious = int(ae["serious"].fillna(False).astype(bool).sum()) if len(ae) else 0
    sites = sorted(pd.unique(study.subjects["site"].dropna().astype(str)))
    return [
        ("Source", study.source or "(tables given in memory)"),
        ("Subjects", f"{len(study.subjects):,}"),
        ("Sites", f"{len(sites)}: {', '.join(sites)}"),
        (
            "Visits",
            f"{len(s):,} ({injected:,} with an injection, {assessed:,} with side effects "
            f"assessed); {per_subject.median():g} per subject (median, range "
            f"{per_subject.min()}–{per_subject.max()}); study days {s['day'].min()} to "
            f"{s['day'].max()}",
        ),
        ("Cocktails", f"{study.cocktails['cocktail_id'].nunique()}"),
        ("Active ingredients", ", ".join(study.ingredients) or "none"),
        ("Adverse events", f"{len(ae):,} recorded, {n_serious} serious"),
        (
            "Validation",
            "passed: every table was checked against the published schemas and the "
            "cross-table rules when the study was loaded",
        ),
        ("Rows set aside", f"{len(study.exclusions):,} (listed below with the reason)"),
    ]


def _cocktail_table(study: Study) -> Table:
    received = _cocktails_received(study)
    subjects = received.groupby("cocktail_id").size()
    s = study.sessions
    sessions = s.groupby("cocktail_id").size() if "cocktail_id" in s.columns else pd.Series()
    rows = [
        (
            cid,
            recipe,
            format_number(int(subjects.get(cid, 0))),
            format_number(int(sessions.get(cid, 0))),
        )
        for cid, recipe in _recipes(study).items()
    ]
    return Table.of(
        ["Cocktail", "Ingredients (concentration)", "People given it", "Injection sessions"],
        rows,
        caption="Cocktails: what each recipe contains and how often it was given.",
        numeric=[False, False, True, True],
    )


def _people_table(study: Study, outcome: str) -> Table:
    """Per cocktail received: people, women, age, diagnoses, baseline outcome."""
    received = _cocktails_received(study)
    subj = study.subjects.drop_duplicates("subject_id")
    merged = received.merge(subj, on="subject_id", how="left")
    baseline = pd.Series(dtype=float)
    if outcome in study.outcomes:
        table = study.outcome_table(outcome)
        baseline = table.groupby("subject_id")["baseline"].first()
    merged["baseline"] = merged["subject_id"].map(baseline)
    diagnoses = sorted(pd.unique(subj["diagnosis"].dropna().astype(str)))
    rows = []
    for cid, group in merged.groupby("cocktail_id", sort=True):  # a few cocktails
        age = group["age"].astype(float)
        base = group["baseline"].astype(float)
        counts = group["diagnosis"].astype(str).value_counts()
        rows.append(
            (
                str(cid),
                format_number(len(group)),
                format_number(int((group["sex"] == "F").sum())),
                f"{format_plain(age.median())} "
                f"({format_plain(age.min())}–{format_plain(age.max())})",
                ", ".join(f"{d} {int(counts.get(d, 0))}" for d in diagnoses),
                f"{format_number(base.mean())} ({format_number(base.std())})"
                if base.notna().any()
                else MISSING,
            )
        )
    return Table.of(
        [
            "Cocktail",
            "People",
            "Women",
            "Age, median (range)",
            "Diagnosis",
            f"Baseline {outcome}, mean (SD)",
        ],
        rows,
        caption="Who received each cocktail (a person given two cocktails counts in both).",
        numeric=[False, True, True, True, False, True],
    )


def _site_table(study: Study) -> Table:
    received = _cocktails_received(study).merge(
        study.subjects[["subject_id", "site"]].drop_duplicates("subject_id"), on="subject_id"
    )
    cross = pd.crosstab(received["site"].astype(str), received["cocktail_id"].astype(str))
    total = study.subjects.groupby(study.subjects["site"].astype(str)).size()
    cross = cross.reindex(total.index, fill_value=0)
    rows = [
        (
            str(site),
            *(format_number(int(v)) for v in cross.loc[site]),
            format_number(int(total[site])),
        )
        for site in cross.index
    ]
    return Table.of(
        ["Site", *(f"Cocktail {c}" for c in cross.columns), "Subjects"],
        rows,
        caption="People per site and cocktail received.",
        numeric=[False, *([True] * (len(cross.columns) + 1))],
    )


def _visit_table(study: Study, outcome: str) -> Table:
    s = study.sessions
    grouped = s.groupby("visit", sort=True)
    measured: dict[Any, Any] = (
        s[outcome].notna().groupby(s["visit"]).sum().to_dict() if outcome in s.columns else {}
    )
    injected: dict[Any, Any] = s["cocktail_id"].notna().groupby(s["visit"]).sum().to_dict()
    assessed: dict[Any, Any] = (
        s["reactions_assessed"].fillna(False).astype(bool).groupby(s["visit"]).sum().to_dict()
    )
    day: dict[Any, Any] = grouped["day"].agg(["median", "min", "max"]).to_dict("index")
    rows = [
        (
            format_plain(v),
            f"{format_plain(day[v]['median'])} "
            f"({format_plain(day[v]['min'])} to {format_plain(day[v]['max'])})",
            format_number(int(n)),
            format_number(int(injected.get(v, 0))),
            format_number(int(measured.get(v, 0))),
            format_number(int(assessed.get(v, 0))),
        )
        for v, n in grouped.size().items()
    ]
    return Table.of(
        [
            "Visit",
            "Study day, median (range)",
            "People seen",
            "Injected",
            f"{outcome} measured",
            "Side effects assessed",
        ],
        rows,
        caption="Visits: when they happened and what was recorded (day 1 = first injection).",
        numeric=[True] * 6,
    )


def _exclusion_tables(study: Study) -> tuple[Table, Table]:
    ex = study.exclusions
    by_reason: dict[Any, Any] = (
        ex.groupby(["table", "reason"], sort=False).size().sort_values(ascending=False).to_dict()
    )
    summary = Table.of(
        ["Table", "Reason", "Rows"],
        [(key[0], key[1], format_number(int(n))) for key, n in by_reason.items()],
        caption="Rows set aside from some analysis, by reason.",
        numeric=[False, False, True],
    )
    full = Table.of(
        ["Table", "Row (file line)", "Reason"],
        ex[["table", "row", "reason"]].itertuples(index=False),
        caption="Every row set aside, with its reason.",
        numeric=[False, True, False],
    )
    return summary, full


def data_section(study: Study, outcome: str, log: MessageLog) -> dict[str, Any]:
    """Section 1: overview facts, the cocktail, people, site and visit tables, the exclusions
    and the trajectories figure (each table a guarded step)."""
    source = "Data summary"
    tables: dict[str, Table | Failure] = {}
    for key, build in (
        ("cocktails", lambda: _cocktail_table(study)),
        ("people", lambda: _people_table(study, outcome)),
        ("sites", lambda: _site_table(study)),
        ("visits", lambda: _visit_table(study, outcome)),
    ):
        value, failure = guarded(log, source, build)
        tables[key] = value if value is not None else failure or Failure(source, "empty")
    exclusions, failure = guarded(log, source, lambda: _exclusion_tables(study))
    return {
        "overview": _overview(study),
        "tables": tables,
        "exclusions": exclusions,
        "exclusions_failure": failure,
        "n_exclusions": len(study.exclusions),
        "spaghetti": _spaghetti(study, outcome, log),
    }


def _spaghetti(study: Study, outcome: str, log: MessageLog) -> Figure | Failure:
    def draw() -> Any:
        return plots.spaghetti(study, outcome, col_wrap=4, height=2.4)

    what = "Figure of individual trajectories"
    uri, failure = guarded(log, what, lambda: facets_uri(draw))
    if uri is None:
        return failure or Failure(what, "no figure was drawn")
    return Figure(
        uri=uri,
        alt=f"{outcome} over time, one line per person, one panel per cocktail",
        caption=f"Each thin line is one person's {outcome} over the study weeks, one panel per "
        "cocktail; the thick line is the cocktail's mean at each visit.",
        width=1100,
    )


def analysis_exclusions(study: Study, outcome: str, regrowth: Any, side: Any) -> pd.DataFrame:
    """Rows the models leave out beyond ``study.exclusions``: ``analysis, table, row, reason``.

    Taken from the fits' own ``excluded_rows`` (regrowth: post-baseline visits without a
    baseline value, rows the engine did not fit; side effects: assessed sessions without an
    injection, the engine's rows). ``study`` and ``outcome`` are kept for callers.
    """
    parts = [
        pd.DataFrame(
            {
                "analysis": analysis,
                "table": "sessions",
                "row": pd.Series(list(fit.excluded_rows["row"]), dtype=object),
                "reason": pd.Series(list(fit.excluded_rows["reason"]), dtype=object),
            }
        )
        for analysis, fit in (("Regrowth", regrowth), ("Side effects", side))
        if fit is not None and len(fit.excluded_rows)
    ]
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=object) for c in ("analysis", "table", "row", "reason")}
        )
    return pd.concat(parts, ignore_index=True)


def analysis_exclusion_table(frame: pd.DataFrame) -> Table:
    """The rows the models leave out (:func:`analysis_exclusions`) as a report table."""
    return Table.of(
        ["Analysis", "Table", "Row (file line)", "Reason"],
        frame[["analysis", "table", "row", "reason"]].itertuples(index=False),
        caption="Rows the models leave out, beyond those above, with the reason.",
        numeric=[False, False, True, False],
    )
