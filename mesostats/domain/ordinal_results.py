"""Results of the graded-outcome fits: :class:`SeverityResults`, :class:`GlobalAssessmentResults`.

Frozen records (tables returned as copies) around a :class:`mesostats.CLMMResults`, with
the effects worded as cumulative odds ratios (the odds of a worse / higher grade, at every
cut of the scale) and the probability of each grade per cocktail, marginal over persons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from mesostats._display import Summary, SummaryDisplay
from mesostats._records import FrozenRecord
from mesostats.domain.common import _empty_exclusions
from mesostats.domain.results import fit_line, outcome_summary

if TYPE_CHECKING:
    from mesostats.data.study import Study
    from mesostats.mixed.clmm import CLMMResults

__all__ = ["GlobalAssessmentResults", "SeverityResults"]


def _graded_fit_lines(
    model: CLMMResults, formula: str, levels: tuple[str, ...], subject: str, rows: str
) -> list[tuple[str, str]]:
    """Formula, grades, rows (``rows`` names them) and fit lines of a graded-outcome summary."""
    groups = model.ngroups.get(subject)
    who = f" of {groups} subjects" if groups else ""
    return [
        ("Formula", formula),
        ("Grades", " < ".join(levels)),
        ("Rows", f"{model.nobs} {rows}{who}"),
        fit_line(model),
    ]


@dataclass(frozen=True, eq=False, repr=False)
class SeverityResults(FrozenRecord, SummaryDisplay):
    """Ingredient effects on the worst side-effect severity (from :func:`fit_severity`).

    Attributes
    ----------
    study : Study
    event : str or None
        The coded event term graded (``None``: the worst grade of any event).
    model : CLMMResults
        The cumulative-logit mixed model (random intercept per subject).
    data : DataFrame
        The assessed injection sessions fitted: ``severity`` (ordered categorical, the model's
        grades), ``worst_grade`` (as recorded, before any merging), one 0/1 column per
        ingredient, ``cocktail_id``, the subject columns.
    formula : str
    levels : tuple of str
        The model's grades, mildest first (a grade never observed is merged with its
        neighbour: ``"moderate/severe"``).
    ingredients : tuple of str
    subject : str
    effect_terms : dict
        Ingredient → fixed-effect name.
    cocktail_design : DataFrame
        Cocktails used × ingredients (0/1).
    ingredient_effects : DataFrame
        ``ingredient, odds_ratio, ci_lower, ci_upper, p_value, p_adjusted``: cumulative odds
        ratios of a worse grade (the same person with vs without the ingredient; the same
        at every cut of the scale), 95 % Wald CI, z test, Holm-adjusted p.
    probabilities : DataFrame
        One row per cocktail (``cocktail_id``), one column per grade: the probability of that
        grade as the worst at a session, marginal over persons (averaged over the random
        intercept), then ``mean_grade`` (expected grade, 0 = the lowest).
    observed : DataFrame
        Observed share of sessions per cocktail and grade (same layout, plus ``n``).
    notes : tuple of str
    excluded_rows : DataFrame
        Assessed sessions not modelled (``row, subject_id, visit, reason``).
    """

    study: Study
    event: str | None
    model: CLMMResults
    data: pd.DataFrame
    formula: str
    levels: tuple[str, ...]
    ingredients: tuple[str, ...]
    subject: str
    effect_terms: dict[str, str]
    cocktail_design: pd.DataFrame
    ingredient_effects: pd.DataFrame
    probabilities: pd.DataFrame
    observed: pd.DataFrame
    notes: tuple[str, ...]
    excluded_rows: pd.DataFrame = field(default_factory=_empty_exclusions)

    @property
    def outcome(self) -> str:
        """``"severity"``."""
        return "severity"

    def summary(self) -> Summary:
        """Text / HTML summary: cumulative odds ratios, grade probabilities, notes."""
        what = "any side effect" if self.event is None else self.event
        lines = [
            ("Outcome", f"worst severity of {what} at an assessed injection session"),
            *_graded_fit_lines(self.model, self.formula, self.levels, self.subject, "rows"),
            ("Effect", "cumulative odds ratio of a worse grade, 95 % CI, Holm-adjusted p"),
        ]
        return outcome_summary(
            title=f"Severity: ingredient effects on the worst grade of {what}",
            lines=lines,
            tables=[
                ("Ingredient effects (cumulative odds ratios)", self.ingredient_effects),
                (
                    "Probability of each grade per cocktail (marginal over persons)",
                    self.probabilities,
                ),
                ("Observed share per cocktail", self.observed),
                ("Variance components", self.model.variance_components),
            ],
            notes=self.notes,
        )

    def __repr__(self) -> str:
        effects = ", ".join(
            f"{r.ingredient} OR {r.odds_ratio:.3g}" for r in self.ingredient_effects.itertuples()
        )
        return (
            f"<SeverityResults {self.event or 'any event'}: {effects}; {self.model.nobs} "
            f"sessions, {self.model.method}>"
        )


@dataclass(frozen=True, eq=False, repr=False)
class GlobalAssessmentResults(FrozenRecord, SummaryDisplay):
    """Cocktail effects on the global photographic assessment (from
    :func:`fit_global_assessment`).

    Attributes
    ----------
    study : Study
    visit : int or str
        The visit analysed, or ``"all"`` (every post-baseline visit with a score).
    model : CLMMResults
        Cumulative-logit model of ``gpa_score`` (a random intercept per subject when several
        visits are used; none for one visit).
    data : DataFrame
        The rows fitted: ``gpa`` (ordered categorical, the model's grades), ``gpa_score``
        (as recorded), ``cocktail`` (the cocktail last injected on or before the visit),
        ``visit``, the subject columns.
    formula : str
    levels : tuple of str
        The model's grades, lowest first (grades never observed merged with a neighbour).
    control : str
        The reference cocktail of ``cocktail_effects``.
    subject : str
    cocktail_effects : DataFrame
        ``cocktail, odds_ratio, ci_lower, ci_upper, p_value, p_adjusted``: cumulative odds
        ratios of a better (higher) score vs ``control``, 95 % Wald CI, z test, Holm-adjusted.
    probabilities : DataFrame
        One row per cocktail, one column per grade (marginal over persons; at the last
        visit for ``visit="all"``), then ``mean_score``.
    observed : DataFrame
        Observed share per cocktail and grade, plus ``n``.
    notes : tuple of str
    excluded_rows : DataFrame
    """

    study: Study
    visit: int | str
    model: CLMMResults
    data: pd.DataFrame
    formula: str
    levels: tuple[str, ...]
    control: str
    subject: str
    cocktail_effects: pd.DataFrame
    probabilities: pd.DataFrame
    observed: pd.DataFrame
    notes: tuple[str, ...]
    excluded_rows: pd.DataFrame = field(default_factory=_empty_exclusions)

    @property
    def outcome(self) -> str:
        """``"gpa_score"``."""
        return "gpa_score"

    def summary(self) -> Summary:
        """Text / HTML summary: cumulative odds ratios vs control, probabilities, notes."""
        m = self.model
        at = "every post-baseline visit" if self.visit == "all" else f"visit {self.visit}"
        tables = [
            (f"Cocktail effects vs {self.control} (cumulative odds ratios)", self.cocktail_effects),
            ("Probability of each score per cocktail (marginal over persons)", self.probabilities),
            ("Observed share per cocktail", self.observed),
        ]
        if m.design.terms:
            tables.append(("Variance components", m.variance_components))
        return outcome_summary(
            title="Global photographic assessment: cocktail effects on gpa_score",
            lines=[
                ("Outcome", f"gpa_score (−3 … +3) at {at}"),
                *_graded_fit_lines(m, self.formula, self.levels, self.subject, "assessments"),
                ("Effect", "cumulative odds ratio of a higher score, 95 % CI, Holm-adjusted p"),
            ],
            tables=tables,
            notes=self.notes,
        )

    def __repr__(self) -> str:
        effects = ", ".join(
            f"{r.cocktail} OR {r.odds_ratio:.3g}" for r in self.cocktail_effects.itertuples()
        )
        return (
            f"<GlobalAssessmentResults visit {self.visit}: {effects} vs {self.control}; "
            f"{self.model.nobs} rows, {self.model.method}>"
        )
