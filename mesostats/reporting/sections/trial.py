"""The report's primary-analysis section: the trial's MMRM of change from baseline
(:func:`mesostats.fit_trial`) — LS-mean change by cocktail and visit as a plot with 95 % CIs,
the differences to the control with Dunnett-adjusted p at the primary visit, the covariance
structure used (and any fallback) and the degrees-of-freedom method.

Included when the study has a control cocktail (made only of a placebo) and at least two
scheduled post-baseline visits with the outcome; otherwise the section says why not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matplotlib.axes import Axes

from mesostats import plots
from mesostats._display import Table, format_interval, format_number, format_p, format_signed
from mesostats.domain.trial_data import trial_frame
from mesostats.exceptions import ModelSpecError
from mesostats.reporting.figures import draw_figure
from mesostats.reporting.steps import Failure, MessageLog, guarded, log_concerning_notes
from mesostats.reporting.vocabulary import unit_of

__all__ = ["primary_analysis_section"]

SOURCE = "Primary analysis"


def primary_analysis_section(
    study: Any, outcome: str, log: MessageLog, *, fit: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """The section's values: ``why_not`` (not included, and why), ``failure`` (included but
    not computed), or the sentences, figure, tables and facts of the analysis.

    ``fit`` is :func:`mesostats.fit_trial` (tests pass a stand-in)."""
    try:
        trial_frame(study, outcome)
    except ModelSpecError as err:
        return {"why_not": str(err), "failure": None}
    from mesostats.domain.trial import fit_trial

    fitter = fit_trial if fit is None else fit
    trial, failure = guarded(log, SOURCE, lambda: fitter(study, outcome))
    if trial is None:
        return {"why_not": None, "failure": failure or Failure(SOURCE, "not fitted")}
    for text in trial.messages[1:]:  # the first says which covariance was used
        log.add(SOURCE, "model message", text)
    if trial.fell_back:
        log.add(SOURCE, "covariance fallback", trial.messages[0])
    log_concerning_notes(log, SOURCE, trial.notes)
    return _values(trial, outcome, log)


def _values(trial: Any, outcome: str, log: MessageLog) -> dict[str, Any]:
    unit = unit_of(outcome, trial.study.schema)
    week = trial.visit_weeks[trial.primary_visit]
    at = f"visit {trial.primary_visit} (week {week:.3g})"

    def draw(ax: Axes) -> Any:
        return plots.trial_means(trial, ax=ax)

    figure = draw_figure(
        log,
        "Plot of LS-mean change by cocktail and visit",
        draw,
        size=(7.5, 4.4),
        alt=f"LS-mean change from baseline in {outcome} by cocktail and visit, with 95 % CIs",
        caption="Each point is a cocktail's least-squares mean change from baseline at a visit "
        "(at the average baseline), with its 95 % confidence interval; the primary visit is "
        "shaded.",
    )
    return {
        "why_not": None,
        "failure": None,
        "at": at,
        "sentences": _sentences(trial, unit, at),
        "differences": _difference_table(trial, at),
        "figure": figure,
        "lsmeans": _lsmeans_table(trial),
        "all_differences": _all_differences_table(trial),
        "attempts": _attempts_table(trial),
        "facts": [
            ("Model", trial.formula),
            ("Covariance", f"{trial.covariance_name} ({trial.covariance})"),
            ("Degrees of freedom", trial.df_method),
            ("Control", trial.control),
            ("Primary visit", at),
            (
                "Analysed",
                f"{len(trial.data):,} post-baseline visits of "
                f"{trial.data['subject_id'].nunique():,} people",
            ),
        ],
        "covariance_message": trial.messages[0] if trial.messages else "",
        "fell_back": trial.fell_back,
        "excluded_subjects": _excluded_table(trial),
        "trial": trial,  # for the missing-data sensitivity section
        "notes": list(trial.notes) + list(trial.messages[1:]),
    }


def _sentences(trial: Any, unit: str, at: str) -> list[str]:
    u = f" {unit}" if unit else ""
    return [
        f"{r['contrast']} at {at}: {format_signed(r['estimate'])}{u} (95 % CI "
        f"{format_interval(r['ci_lower'], r['ci_upper'])}; Dunnett-adjusted p "
        f"{format_p(r['p_adjusted'])})."
        for r in trial.primary.to_dict("records")
    ]


def _difference_table(trial: Any, at: str) -> Table:
    rows = [
        (
            r["contrast"],
            format_number(r["estimate"]),
            format_number(r["std_error"]),
            format_number(r["df"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
            format_p(r["p_value"]),
            format_p(r["p_adjusted"]),
        )
        for r in trial.primary.to_dict("records")
    ]
    return Table.of(
        ["Comparison", "Difference", "SE", "df", "95 % CI", "p", "Dunnett-adjusted p"],
        rows,
        caption=f"Difference in LS-mean change from baseline to the control {trial.control} "
        f"at the primary {at}; p adjusted by Dunnett's method over the cocktails.",
        numeric=[False, True, True, True, True, True, True],
    )


def _lsmeans_table(trial: Any) -> Table:
    rows = [
        (
            r["cocktail"],
            str(r["visit"]),
            format_number(trial.visit_weeks[int(r["visit"])]),
            format_number(r["estimate"]),
            format_number(r["std_error"]),
            format_number(r["df"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
        )
        for r in trial.lsmeans.to_dict("records")
    ]
    return Table.of(
        ["Cocktail", "Visit", "Week", "LS-mean change", "SE", "df", "95 % CI"],
        rows,
        caption="Least-squares mean change from baseline by cocktail and visit (at the average "
        "baseline).",
        numeric=[False, True, True, True, True, True, True],
    )


def _all_differences_table(trial: Any) -> Table:
    rows = [
        (
            r["contrast"],
            str(r["visit"]),
            format_number(r["estimate"]),
            format_interval(r["ci_lower"], r["ci_upper"]),
            format_p(r["p_value"]),
        )
        for r in trial.vs_control.to_dict("records")
    ]
    return Table.of(
        ["Comparison", "Visit", "Difference", "95 % CI", "p (unadjusted)"],
        rows,
        caption="Differences to the control at every visit (supportive; the confirmatory "
        "comparisons, Dunnett-adjusted, are those at the primary visit).",
        numeric=[False, True, True, True, True],
    )


def _attempts_table(trial: Any) -> Table:
    rows = [
        (
            r["covariance"],
            "yes" if r["converged"] else "no",
            "yes" if r["used"] else "",
            r["message"],
        )
        for r in trial.attempts.to_dict("records")
    ]
    return Table.of(
        ["Covariance", "Converged", "Used", "Message"],
        rows,
        caption="Covariance structures tried, in the pre-specified order us → toeph → ar1h → cs.",
    )


def _excluded_table(trial: Any) -> Table | None:
    ex = trial.excluded_subjects
    if not len(ex):
        return None
    return Table.of(
        ["Person", "Cocktail", "Reason"],
        ex.itertuples(index=False, name=None),
        caption="People not in the primary analysis, with the reason.",
    )
