"""The results of the domain fits: :class:`RegrowthResults` and :class:`SideEffectResults`.

Frozen records; every DataFrame they hold is read-only behind its attribute (each access
returns a copy), so editing a table never changes the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats._display import Summary, SummaryDisplay, table_from_frame
from mesostats._records import FrozenRecord
from mesostats.domain.common import SITE, _empty_exclusions, holm_adjusted
from mesostats.domain.rates import (
    PopulationAverage,
    _subject_sd,
    event_rates,
    population_average,
)
from mesostats.domain.variation.api import Variability, variability
from mesostats.domain.variation.context import (
    VariationContext,
    regrowth_context,
    side_effect_context,
)

if TYPE_CHECKING:
    from mesostats.data.study import Study
    from mesostats.mixed.results import MixedResults


@dataclass(frozen=True, eq=False, repr=False)
class RegrowthResults(FrozenRecord, SummaryDisplay):
    """Ingredient effects on regrowth (from :func:`fit_regrowth`).

    Attributes
    ----------
    study : Study
    outcome : str
        The outcome column modelled (e.g. ``"hair_density"``).
    model : MixedResults
        The fitted linear mixed model.
    data : DataFrame
        The rows fitted (post-baseline visits) with every model column: ``value``,
        ``baseline`` (raw), ``baseline_centered``, ``week``, one exposure column per
        ingredient (course exposure: 0/1, or mean dose), ``course_cocktail`` (the cocktail
        last injected on or before the visit), ``site``, the subject columns.
    formula : str
    ingredients : tuple of str
    subject, time : str
        ``"subject_id"`` and ``"week"``.
    effect_terms : dict
        Ingredient → fixed-effect name (``"week:minoxidil"``).
    cocktail_design : DataFrame
        Cocktails used in the analysed rows × ingredients (0/1, or concentration per mL for
        ``design="dose"``).
    baseline_center : float
        Mean baseline of the analysed rows (``baseline_centered = baseline − center``).
    ingredient_effects : DataFrame
        ``ingredient, effect, std_error, ci_lower, ci_upper, p_value, p_adjusted``: extra
        change per week in outcome units (per unit of dose for ``design="dose"``), 95 % Wald
        CI, Satterthwaite t test, Holm-adjusted p.
    notes : tuple of str
        Plain-language notes on the data and the fit.
    design : str
        ``"indicator"`` or ``"dose"``.
    units : dict
        Dose unit per ingredient (``design="dose"``; empty for indicators).
    excluded_rows : DataFrame
        Post-baseline visits not analysed: ``row`` (index label of
        ``study.outcome_table(outcome)``), ``subject_id``, ``visit``, ``reason`` (no baseline
        value, unknown dose, or a missing value the engine set aside).
    """

    study: Study
    outcome: str
    model: MixedResults
    data: pd.DataFrame
    formula: str
    ingredients: tuple[str, ...]
    subject: str
    time: str
    effect_terms: dict[str, str]
    cocktail_design: pd.DataFrame
    baseline_center: float
    ingredient_effects: pd.DataFrame
    notes: tuple[str, ...]
    design: str = "indicator"
    units: dict[str, str] | None = None
    excluded_rows: pd.DataFrame = field(default_factory=_empty_exclusions)

    @cached_property
    def variability(self) -> Variability:
        """ "Varied results": :func:`mesostats.variability` of this fit (computed once)."""
        return variability(self)

    def variation_context(self) -> VariationContext:
        """What the variability layer needs beyond the model (see :func:`variability`)."""
        return regrowth_context(
            model=self.model,
            data=self.data,
            subject=self.subject,
            time=self.time,
            cocktail_design=self.cocktail_design,
            baseline_center=self.baseline_center,
            outcome=self.outcome,
            study=self.study,
        )

    def summary(self) -> Summary:
        """Text / HTML summary: model, ingredient effects, variance components, notes."""
        m = self.model
        unit = "per week" if self.design == "indicator" else "per week per unit of dose"
        lines = [
            ("Outcome", f"{self.outcome} (post-baseline visits, baseline adjusted)"),
            ("Formula", self.formula),
            (
                "Rows",
                f"{m.nobs} visits of {m.ngroups.get(self.subject, 0)} subjects"
                + (f" at {m.ngroups[SITE]} sites" if SITE in m.ngroups else ""),
            ),
            fit_line(m),
            ("Effect", f"extra change in {self.outcome} {unit}, 95 % CI, Holm-adjusted p"),
        ]
        if m.family == "negative_binomial":  # hair counts per target area (NB2, log link)
            lines[3] = ("Fit", f"negative binomial (NB2, log link), {lines[3][1]}")
            lines[4] = ("Effect", f"extra change in log {self.outcome} per cm² {unit}, 95 % CI")
        return outcome_summary(
            title=f"Regrowth: ingredient effects on {self.outcome}",
            lines=lines,
            tables=[
                ("Ingredient effects", self.ingredient_effects),
                ("Variance components", m.variance_components),
            ],
            notes=self.notes,
        )

    def __repr__(self) -> str:
        effects = ", ".join(
            f"{r.ingredient} {r.effect:+.3g}/wk" for r in self.ingredient_effects.itertuples()
        )
        return (
            f"<RegrowthResults {self.outcome}: {effects}; {self.model.nobs} visits, "
            f"{self.model.ngroups.get(self.subject, 0)} subjects, {self.model.method}>"
        )


@dataclass(frozen=True, eq=False, repr=False)
class SideEffectResults(FrozenRecord, SummaryDisplay):
    """Ingredient effects on side effects (from :func:`fit_side_effects`).

    Attributes
    ----------
    study : Study
    event : str or None
        The coded event term modelled (``None``: any event).
    model : MixedResults
        The fitted binomial GLMM.
    data : DataFrame
        The assessed injection sessions fitted: ``any_event`` (0/1), ``events`` (count), one
        0/1 column per ingredient, ``cocktail_id``, the subject columns.
    formula : str
    ingredients : tuple of str
    subject : str
    effect_terms : dict
        Ingredient → fixed-effect name.
    cocktail_design : DataFrame
        Cocktails used × ingredients (0/1).
    ingredient_effects : DataFrame
        ``ingredient, odds_ratio, ci_lower, ci_upper, p_value, p_adjusted`` (subject-specific
        odds ratios, 95 % Wald CI, z test, Holm-adjusted p).
    rates : DataFrame
        Observed rates: ``level`` (``"overall"``, ``"ingredient"``, ``"cocktail"``), ``name``,
        ``per`` (``"session"``: sessions with ≥ 1 event / assessed sessions; ``"person"``:
        people with ≥ 1 event / people assessed), ``n_with_event, n_assessed, rate,
        ci_lower, ci_upper`` (exact Clopper–Pearson 95 %), ``n_events`` (event records,
        several per session possible).
    excluded_rows : DataFrame
        Assessed sessions not modelled: ``row`` (index label of ``study.event_table(event)``),
        ``subject_id``, ``visit``, ``reason`` (no injection, or a missing value the engine set
        aside).
    gee : PopulationAverage
        Population-average sensitivity analysis (computed on first access; when the GEE
        cannot be fitted its columns are NaN and its notes say why).
    notes : tuple of str
    """

    study: Study
    event: str | None
    model: MixedResults
    data: pd.DataFrame
    formula: str
    ingredients: tuple[str, ...]
    subject: str
    effect_terms: dict[str, str]
    cocktail_design: pd.DataFrame
    notes: tuple[str, ...]
    excluded_rows: pd.DataFrame = field(default_factory=_empty_exclusions)
    #: the rows ``rates`` counts (the sessions modelled, with every ingredient column) and
    #: the ingredients given in them: ``rates`` is computed from these on first access
    _rate_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    _rate_ingredients: tuple[str, ...] = ()
    #: estimate, 95 % CI and p of each ingredient's term (``_wald_columns`` of the model, in
    #: ingredient order): ``ingredient_effects`` is built from these on first access
    _wald: dict[str, np.ndarray] = field(default_factory=dict)

    @cached_property
    def ingredient_effects(self) -> pd.DataFrame:
        """Odds ratios with 95 % Wald CI, p and Holm-adjusted p (built once)."""
        wald = self._wald
        return pd.DataFrame(
            {
                "ingredient": pd.array(list(self.ingredients), dtype="str"),
                "odds_ratio": np.exp(wald["estimate"]),
                "ci_lower": np.exp(wald["ci_lower"]),
                "ci_upper": np.exp(wald["ci_upper"]),
                "p_value": wald["p_value"],
                "p_adjusted": holm_adjusted(wald["p_value"]),
            },  # the order of SIDE_EFFECT_COLUMNS
            copy=False,
        )

    @cached_property
    def rates(self) -> pd.DataFrame:
        """Observed rates (:func:`~mesostats.domain.rates.event_rates`; computed once)."""
        return event_rates(self._rate_rows, self._rate_ingredients)

    @cached_property
    def gee(self) -> PopulationAverage:
        """GEE population-average ORs beside the subject-specific ones (computed once)."""
        return population_average(
            self.data, self.ingredients, self.ingredient_effects, _subject_sd(self.model)
        )

    @cached_property
    def variability(self) -> Variability:
        """ "Varied results": :func:`mesostats.variability` of this fit (computed once)."""
        return variability(self)

    def variation_context(self) -> VariationContext:
        """What the variability layer needs beyond the model (see :func:`variability`)."""
        return side_effect_context(
            model=self.model,
            data=self.data,
            subject=self.subject,
            cocktail_design=self.cocktail_design,
            event=self.event,
            study=self.study,
        )

    def summary(self) -> Summary:
        """Text / HTML summary: odds ratios, rates, GEE comparison, notes."""
        m = self.model
        what = "any side effect" if self.event is None else self.event
        lines = [
            ("Event", f"{what} at an assessed injection session"),
            ("Formula", self.formula),
            (
                "Rows",
                f"{m.nobs} assessed sessions of {m.ngroups.get(self.subject, 0)} subjects",
            ),
            fit_line(m),
            ("Effect", "subject-specific odds ratio, 95 % CI, Holm-adjusted p"),
        ]
        tables = [
            ("Ingredient effects", self.ingredient_effects),
            ("Variance components", m.variance_components),
            ("Observed rates (exact Clopper–Pearson 95 % CI)", self.rates),
        ]
        tables.append(("Population-average (GEE) vs subject-specific ORs", self.gee.table))
        lines.append(("GEE", self.gee.explanation))
        return outcome_summary(
            title=f"Side effects: ingredient effects on {what}",
            lines=lines,
            tables=tables,
            notes=(*self.notes, *self.gee.notes),
        )

    def __repr__(self) -> str:
        effects = ", ".join(
            f"{r.ingredient} OR {r.odds_ratio:.3g}" for r in self.ingredient_effects.itertuples()
        )
        what = "any event" if self.event is None else self.event
        return (
            f"<SideEffectResults {what}: {effects}; {self.model.nobs} sessions, "
            f"{self.model.ngroups.get(self.subject, 0)} subjects, {self.model.method}>"
        )


def fit_line(model: Any) -> tuple[str, str]:
    """The ``("Fit", "method, log-likelihood, converged")`` line of a domain summary."""
    return (
        "Fit",
        f"{model.method}, log-likelihood {model.loglik:.2f}, converged: {model.converged}",
    )


def outcome_summary(
    *,
    title: str,
    lines: list[tuple[str, str]],
    tables: list[tuple[str, pd.DataFrame]],
    notes: tuple[str, ...],
) -> Summary:
    """A domain fit's :class:`~mesostats._display.Summary` (reader style: for people)."""
    return Summary(
        title=title,
        info=tuple(lines),
        tables=tuple(table_from_frame(frame, caption=caption) for caption, frame in tables),
        notes=tuple(notes),
    )
