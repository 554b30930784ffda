"""The results of :func:`mesostats.fit_trial`: :class:`TrialResults`.

A frozen record; every DataFrame it holds is handed out as a copy, so editing a table never
changes the analysis. Displayed through :mod:`mesostats._display` (``summary()``, ``str``,
``_repr_html_``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from mesostats._display import Summary, SummaryDisplay, format_p, table_from_frame
from mesostats._records import FrozenRecord
from mesostats.domain.common import _empty_exclusions
from mesostats.domain.trial_covariance import ATTEMPT_COLUMNS, COVARIANCE_STRUCTURES
from mesostats.domain.trial_data import EXCLUDED_SUBJECT_COLUMNS

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["LSMEANS_COLUMNS", "VS_CONTROL_COLUMNS", "TrialResults"]

#: Columns of :attr:`TrialResults.lsmeans`.
LSMEANS_COLUMNS = ["cocktail", "visit", "estimate", "std_error", "df", "ci_lower", "ci_upper"]
#: Columns of :attr:`TrialResults.vs_control`.
VS_CONTROL_COLUMNS = [
    "contrast",
    "visit",
    "estimate",
    "std_error",
    "df",
    "statistic",
    "p_value",
    "p_adjusted",
    "ci_lower",
    "ci_upper",
]


def _no_attempts() -> pd.DataFrame:
    return pd.DataFrame(columns=ATTEMPT_COLUMNS)


def _no_subjects() -> pd.DataFrame:
    return pd.DataFrame(columns=EXCLUDED_SUBJECT_COLUMNS)


@dataclass(frozen=True, eq=False, repr=False)
class TrialResults(FrozenRecord, SummaryDisplay):
    """The primary analysis of a trial (from :func:`mesostats.fit_trial`).

    Attributes
    ----------
    study : Study
    outcome : str
    model : results of :func:`mesostats.fit_mmrm`
    data : DataFrame
        The rows fitted (see :func:`mesostats.domain.trial_data.trial_frame`).
    formula : str
        The MMRM formula, with the covariance structure used.
    control : str
    cocktails : tuple of str
        The control first.
    visits : tuple of int
        Scheduled post-baseline visits.
    visit_weeks : dict
        Visit → median week.
    primary_visit : int
    covariance : str
        The structure used (``"us"`` unless it fell back).
    attempts : DataFrame
        ``covariance, converged, used, message``: every structure tried, in order.
    df_method : str
    lsmeans : DataFrame
        ``cocktail, visit, estimate, std_error, df, ci_lower, ci_upper``: LS-mean change from
        baseline (mean baseline, equal weights), 95 % CI.
    vs_control : DataFrame
        ``contrast, visit, estimate, std_error, df, statistic, p_value, p_adjusted,
        ci_lower, ci_upper``: each cocktail minus the control at each visit; 95 % CI and
        ``p_value`` unadjusted; ``p_adjusted`` by Dunnett over the cocktails at the primary
        visit (missing at the other visits, whose comparisons are supportive).
    messages : tuple of str
        The covariance used (and any fallback), then the engine's messages.
    notes : tuple of str
    excluded_rows : DataFrame
        ``row, subject_id, visit, reason``: post-baseline visits with the outcome not analysed.
    excluded_subjects : DataFrame
        ``subject_id, cocktail, reason``: people of the study not analysed.
    """

    study: Study
    outcome: str
    model: Any
    data: pd.DataFrame
    formula: str
    control: str
    cocktails: tuple[str, ...]
    visits: tuple[int, ...]
    visit_weeks: dict[int, float]
    primary_visit: int
    covariance: str
    df_method: str
    lsmeans: pd.DataFrame
    vs_control: pd.DataFrame
    messages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    attempts: pd.DataFrame = field(default_factory=_no_attempts)
    excluded_rows: pd.DataFrame = field(default_factory=_empty_exclusions)
    excluded_subjects: pd.DataFrame = field(default_factory=_no_subjects)

    @property
    def primary(self) -> pd.DataFrame:
        """``vs_control`` at the primary visit (the confirmatory comparisons)."""
        table = self.vs_control
        return table[table["visit"] == self.primary_visit].reset_index(drop=True)

    @property
    def fell_back(self) -> bool:
        """True when the requested covariance structure was not the one used."""
        return len(self.attempts) > 1

    @property
    def covariance_name(self) -> str:
        """The structure used in words (``"unstructured"``)."""
        return COVARIANCE_STRUCTURES.get(self.covariance, self.covariance)

    def summary(self) -> Summary:
        """Text / HTML summary: model, differences at the primary visit, LS means, notes."""
        m = self.model
        n_people = self.data["subject_id"].nunique()
        week = self.visit_weeks.get(self.primary_visit)
        at = f"visit {self.primary_visit}" + (f" (week {week:.3g})" if week is not None else "")
        lines = [
            ("Outcome", f"change from baseline in {self.outcome}"),
            ("Formula", self.formula),
            ("Rows", f"{len(self.data)} post-baseline visits of {n_people} people"),
            (
                "Covariance",
                f"{self.covariance_name} ({self.covariance})"
                + (" after fallback" if self.fell_back else ""),
            ),
            ("Fit", f"REML, {self.df_method} df, converged: {getattr(m, 'converged', None)}"),
            ("Control", self.control),
            ("Primary visit", at),
        ]
        best = self.primary.sort_values("p_adjusted", kind="stable")
        if len(best):
            top = best.iloc[0]
            lines.append(
                ("Smallest Dunnett p", f"{top['contrast']}: {format_p(top['p_adjusted'])}")
            )
        tables = [
            (f"Difference to control at the primary {at} (Dunnett-adjusted p)", self.primary),
            ("LS-mean change from baseline by cocktail and visit (95 % CI)", self.lsmeans),
            ("Difference to control at every visit", self.vs_control),
        ]
        return Summary(
            title=f"Primary analysis: MMRM of change from baseline in {self.outcome}",
            info=tuple(lines),
            tables=tuple(table_from_frame(f, caption=c) for c, f in tables),
            notes=(*self.messages, *self.notes),
        )

    def __repr__(self) -> str:
        diffs = ", ".join(
            f"{r.contrast} {r.estimate:+.3g}" for r in self.primary.itertuples(index=False)
        )
        return (
            f"<TrialResults {self.outcome} at visit {self.primary_visit}: {diffs}; "
            f"{self.covariance} covariance, {len(self.data)} visits of "
            f"{self.data['subject_id'].nunique()} people>"
        )
