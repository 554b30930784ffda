"""Ingredient-level models on a Study: which ingredient drives regrowth, which side effects.

:func:`fit_regrowth` — linear mixed model of an outcome over time, baseline adjusted
(ANCOVA), with ingredient-by-week effects::

    value ~ baseline_centered + week + week:<ingredient> + …
            + (1 + week | subject_id) [+ (1 | site) with ≥ 2 sites]

on the post-baseline visits (week > 0). Ingredient exposure belongs to the *course*: at each
visit, the mean exposure over the person's injection sessions so far (for someone who keeps
one cocktail: that cocktail's 0/1 indicators, also at follow-up visits without injection;
see :mod:`mesostats.ingredients`). The ingredient effect is the extra change per week in
outcome units. Adjusting for the baseline value follows the EMA *Guideline on adjustment for
baseline covariates in clinical trials* (EMA/CHMP/295050/2013, 2015) and ICH E9 (1998); the
random-coefficients model is that of Laird & Ware (1982, *Biometrics* 38(4)).

:func:`fit_side_effects` — binomial GLMM (logistic-normal, Breslow & Clayton 1993, *JASA*
88(421)) of the per-session event indicator on ingredient indicators with a random intercept
per person, fitted by Laplace or adaptive Gauss–Hermite quadrature (``nagq``). Beside it:
observed rates with exact Clopper–Pearson intervals (Clopper & Pearson 1934, *Biometrika*
26(4); ``statsmodels`` ``proportion_confint(method="beta")``) per ingredient, per cocktail,
per session and per person; and a population-average sensitivity analysis by GEE (Liang &
Zeger 1986, *Biometrika* 73(1); ``statsmodels`` GEE, exchangeable working correlation),
whose odds ratios are attenuated towards 1 relative to the subject-specific ones by about
``1/√(1 + c²σ²)`` on the log scale, c = 16√3/(15π) (Zeger, Liang & Albert 1988, *Biometrics*
44(4)).

Multiplicity across ingredients: Holm (1979, *Scand. J. Statist.* 6(2)), equal to
``statsmodels.stats.multitest.multipletests(method="holm")``.

Hand-written here: the assembly (rows, exposures, formula, notes, tables) and the three-line
Holm step-down (statsmodels' ``multipletests`` runs ``gc.collect()`` on every Holm call, about
0.1 s, which would dominate repeated fits in :func:`mesostats.power`). The fitting is done by
the engines (:func:`mesostats.fit_lmm`, :func:`mesostats.fit_glmm`) and statsmodels (GEE,
Clopper–Pearson).
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.exceptions import (
    ConvergenceWarning,
    ExclusionWarning,
    ModelSpecError,
    SingularFitWarning,
)
from mesostats.ingredients import (
    absorbed_by,
    course_exposure,
    ingredient_units,
    recipe_matrix,
    require_estimable,
    resolve_ingredients,
)

if TYPE_CHECKING:
    from mesostats.data.study import Study
    from mesostats.mixed.results import MixedResults
    from mesostats.variability import Variability

__all__ = [
    "GEE_COLUMNS",
    "RATE_COLUMNS",
    "REGROWTH_EFFECT_COLUMNS",
    "SIDE_EFFECT_COLUMNS",
    "PopulationAverage",
    "RegrowthResults",
    "SideEffectResults",
    "event_rates",
    "fit_regrowth",
    "fit_side_effects",
    "holm_adjusted",
    "population_average",
]

REGROWTH_EFFECT_COLUMNS = [
    "ingredient",
    "effect",
    "std_error",
    "ci_lower",
    "ci_upper",
    "p_value",
    "p_adjusted",
]
SIDE_EFFECT_COLUMNS = ["ingredient", "odds_ratio", "ci_lower", "ci_upper", "p_value", "p_adjusted"]
RATE_COLUMNS = [
    "level",
    "name",
    "per",
    "n_with_event",
    "n_assessed",
    "rate",
    "ci_lower",
    "ci_upper",
    "n_events",
]
GEE_COLUMNS = [
    "ingredient",
    "subject_specific_or",
    "ss_ci_lower",
    "ss_ci_upper",
    "population_average_or",
    "pa_ci_lower",
    "pa_ci_upper",
    "pa_p_value",
    "expected_population_average_or",
]

SUBJECT = "subject_id"
TIME = "week"
SITE = "site"
_ZERO_SD = 1e-3  # an SD below this fraction of the residual SD (LMM) or 1 (GLMM) counts as 0
#: Zeger, Liang & Albert (1988): logit-normal attenuation constant c = 16√3/(15π).
_ATTENUATION_C2 = (16.0 * math.sqrt(3.0) / (15.0 * math.pi)) ** 2


#: Columns of ``RegrowthResults.excluded_rows`` / ``SideEffectResults.excluded_rows``.
EXCLUDED_COLUMNS = ["row", "subject_id", "visit", "reason"]


def _exclusion_frame(rows: pd.DataFrame, reasons: Sequence[str]) -> pd.DataFrame:
    """``row`` (index label in the study table), ``subject_id``, ``visit``, ``reason``."""
    return pd.DataFrame(
        {
            "row": pd.Series(list(rows.index), dtype=object),
            "subject_id": pd.Series(list(rows[SUBJECT]), dtype=object),
            "visit": pd.Series(list(rows["visit"]), dtype=object),
            "reason": pd.Series(list(reasons), dtype=object),
        },
        columns=EXCLUDED_COLUMNS,
    )


def _empty_exclusions() -> pd.DataFrame:
    return _exclusion_frame(pd.DataFrame(columns=[SUBJECT, "visit"]), [])


def _engine_exclusions(model: MixedResults, data: pd.DataFrame) -> pd.DataFrame:
    """The rows the engine set aside (missing values in a model column), located in data."""
    ex = model.excluded_rows
    return _exclusion_frame(data.loc[list(ex["row"]), [SUBJECT, "visit"]], list(ex["reason"]))


def _stack_exclusions(*parts: pd.DataFrame) -> pd.DataFrame:
    kept = [p for p in parts if len(p)]
    if not kept:
        return _empty_exclusions()
    return pd.concat(kept, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


class _SummaryDisplay:
    """``str()`` and Jupyter display from one ``summary()`` (as linearmodels' results)."""

    def summary(self) -> OutcomeSummary:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()


@dataclass(frozen=True, eq=False, repr=False)
class RegrowthResults(_SummaryDisplay):
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
        """ "Varied results": :func:`mesostats.variability.variability` of this fit."""
        from mesostats.variability import variability

        return variability(self)

    def summary(self) -> OutcomeSummary:
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
            ("Fit", f"{m.method}, log-likelihood {m.loglik:.2f}, converged: {m.converged}"),
            ("Effect", f"extra change in {self.outcome} {unit}, 95 % CI, Holm-adjusted p"),
        ]
        return OutcomeSummary(
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
class PopulationAverage:
    """GEE population-average odds ratios beside the GLMM subject-specific ones.

    Attributes
    ----------
    table : DataFrame
        ``ingredient, subject_specific_or, ss_ci_lower, ss_ci_upper, population_average_or,
        pa_ci_lower, pa_ci_upper, pa_p_value, expected_population_average_or`` (the last is
        the subject-specific OR attenuated by Zeger, Liang & Albert's factor).
    explanation : str
        One sentence on why the two kinds of odds ratio differ.
    working_correlation : float
        Estimated exchangeable within-person correlation.
    attenuation : float
        The factor 1/√(1 + c²σ²) applied to log ORs (σ = between-person SD of the GLMM).
    notes : tuple of str
        Warnings from the GEE fit, if any.
    """

    table: pd.DataFrame
    explanation: str
    working_correlation: float
    attenuation: float
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"<PopulationAverage GEE (exchangeable, ρ = {self.working_correlation:.3f}); "
            f"{len(self.table)} ingredients, attenuation factor {self.attenuation:.3f}>"
        )

    def _repr_html_(self) -> str:
        return OutcomeSummary(
            title="Population-average (GEE) vs subject-specific (GLMM) odds ratios",
            lines=[("Why they differ", self.explanation)],
            tables=[("Odds ratios", self.table)],
            notes=self.notes,
        ).as_html()


@dataclass(frozen=True, eq=False, repr=False)
class SideEffectResults(_SummaryDisplay):
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
    ingredient_effects: pd.DataFrame
    rates: pd.DataFrame
    notes: tuple[str, ...]
    excluded_rows: pd.DataFrame = field(default_factory=_empty_exclusions)

    @cached_property
    def gee(self) -> PopulationAverage:
        """GEE population-average ORs beside the subject-specific ones (computed once)."""
        return population_average(
            self.data, self.ingredients, self.ingredient_effects, _subject_sd(self.model)
        )

    @cached_property
    def variability(self) -> Variability:
        """ "Varied results": :func:`mesostats.variability.variability` of this fit."""
        from mesostats.variability import variability

        return variability(self)

    def summary(self) -> OutcomeSummary:
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
            ("Fit", f"{m.method}, log-likelihood {m.loglik:.2f}, converged: {m.converged}"),
            ("Effect", "subject-specific odds ratio, 95 % CI, Holm-adjusted p"),
        ]
        tables = [
            ("Ingredient effects", self.ingredient_effects),
            ("Variance components", m.variance_components),
            ("Observed rates (exact Clopper–Pearson 95 % CI)", self.rates),
        ]
        tables.append(("Population-average (GEE) vs subject-specific ORs", self.gee.table))
        lines.append(("GEE", self.gee.explanation))
        return OutcomeSummary(
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


class OutcomeSummary:
    """A printable summary: title, key–value lines, tables and notes (text and static HTML).

    Every string is HTML-escaped in :meth:`as_html` (ids and ingredient names are user data).
    """

    def __init__(
        self,
        title: str,
        lines: Sequence[tuple[str, str]],
        tables: Sequence[tuple[str, pd.DataFrame]],
        notes: Sequence[str],
    ) -> None:
        self.title = title
        self.lines = list(lines)
        self.tables = list(tables)
        self.notes = list(notes)

    def as_text(self) -> str:
        """Plain-text rendering."""
        out = [self.title, "=" * len(self.title)]
        width = max((len(k) for k, _ in self.lines), default=0)
        out += [f"{k.ljust(width)}  {v}" for k, v in self.lines]
        for caption, table in self.tables:
            out += ["", caption, "-" * len(caption), _text_table(table)]
        if self.notes:
            out += ["", "Notes", "-----"]
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)

    def as_html(self) -> str:
        """Static HTML (no scripts); every string escaped."""
        esc = html.escape
        parts = [f'<div class="mesostats-outcome"><h4>{esc(self.title)}</h4><table>']
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self.lines]
        parts.append("</table>")
        for caption, table in self.tables:
            parts.append(_html_table(table, caption))
        if self.notes:
            parts.append("<p><strong>Notes</strong></p><ul>")
            parts += [f"<li>{esc(n)}</li>" for n in self.notes]
            parts.append("</ul>")
        parts.append("</div>")
        return "".join(parts)

    def __str__(self) -> str:
        return self.as_text()


def _format_cell(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if column.startswith("p_") or column.endswith("p_value"):
            return "<0.001" if v < 0.001 else f"{v:.3f}"
        return f"{v:.4g}"
    return str(value)


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in table.columns]
    rows = [
        [_format_cell(v, c) for v, c in zip(rec, header, strict=True)]
        for rec in table.itertuples(index=False)
    ]
    return header, rows


def _text_table(table: pd.DataFrame) -> str:
    header, rows = _cells(table)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _html_table(table: pd.DataFrame, caption: str) -> str:
    esc = html.escape
    header, rows = _cells(table)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def _check_study(study: Any) -> None:
    from mesostats.data.study import Study

    if not isinstance(study, Study):
        raise ModelSpecError(
            f"study must be a mesostats Study (from load_study, example_study or "
            f"simulate_study), got {type(study).__name__}."
        )


def holm_adjusted(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries are kept out and stay NaN.

    ``p_(i)`` sorted ascending gets ``max_{j ≤ i} min(1, (m − j + 1) · p_(j))``. Equal to
    ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]`` (tested); written out
    because that function calls ``gc.collect()`` on every Holm call (≈ 0.1 s), which would
    dominate repeated fits such as :func:`mesostats.power`.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        stepped = np.maximum.accumulate(p[order] * np.arange(m, 0, -1))
        out[order] = np.minimum(stepped, 1.0)
    return out


def _fit_quietly(
    fit: Any, *args: Any, **kwargs: Any
) -> tuple[MixedResults, list[warnings.WarningMessage]]:
    """Run an engine, keeping its warnings so the domain layer can word them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit(*args, **kwargs)
    return model, list(caught)


def _reissue(caught: list[warnings.WarningMessage], notes: list[str]) -> None:
    """Pass engine warnings on (stacklevel → the user's call); singular fits become notes."""
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, SingularFitWarning):
            continue  # worded by _variance_notes
        if issubclass(w.category, (ConvergenceWarning, ExclusionWarning)):
            notes.append(text)
        warnings.warn(text, w.category, stacklevel=3)


def _variance_notes(
    model: MixedResults, notes: list[str], *, warn_for: Sequence[str], stacklevel: int = 3
) -> None:
    """Plain-language notes on variance components at the boundary.

    A site SD at 0 is a note only (the site term is added by us); a subject-level SD at 0 or
    a correlation at ±1 is a note and a :class:`SingularFitWarning` (the person-level
    variability the user asked for is on its boundary).
    """
    vc = model.variance_components
    sigma = model.sigma if model.family == "gaussian" else 1.0
    sds = vc[vc["var2"].isna() & (vc["group"] != "Residual")]
    for rec in sds.itertuples(index=False):
        group, term, sd = str(rec.group), str(rec.var1), float(rec.sdcor)
        if sd >= _ZERO_SD * sigma:
            continue
        if group == SITE:
            notes.append(
                "Sites did not differ beyond what people vary: site SD estimated at 0; the "
                "site term could be dropped."
            )
            continue
        what = "baseline level" if term == "Intercept" else f"response per {term}"
        text = (
            f"People did not differ detectably in their {what}: the between-person SD of "
            f"{term} within {group} is estimated at 0 (on the boundary). Person-level "
            f"variability of this term cannot be reported; consider a model without it "
            f"(e.g. random_slope=False) or more visits per person."
        )
        notes.append(text)
        if group in warn_for:
            warnings.warn(text, SingularFitWarning, stacklevel=stacklevel)
    cors = vc[vc["var2"].notna()]
    for rec in cors.itertuples(index=False):
        r = float(rec.sdcor)
        if abs(r) > 1.0 - 1e-6:
            text = (
                f"The correlation of {rec.var1} and {rec.var2} within {rec.group} is "
                f"estimated at {r:+.3f} (on the boundary ±1): the data cannot separate the "
                "two person-level effects; consider random_slope=False."
            )
            notes.append(text)
            if str(rec.group) in warn_for:
                warnings.warn(text, SingularFitWarning, stacklevel=stacklevel)


def _used_matrix(study: Study, cocktails_used: Sequence[str], *, design: str) -> pd.DataFrame:
    full = recipe_matrix(study.cocktails, study.ingredients, design=design)  # type: ignore[arg-type]
    keep = [c for c in full.index if c in set(cocktails_used)]
    return full.loc[keep]


def _absorbed_notes(
    used: pd.DataFrame, chosen: Sequence[str], study: Study, notes: list[str]
) -> None:
    left_out = [
        ing for ing in study.ingredients if ing not in chosen and bool((used[ing] != 0).any())
    ]
    if not left_out:
        return
    relations = absorbed_by(used, chosen, left_out)
    carried = {r.ingredient for r in relations}
    for r in relations:
        notes.append(
            f"{r.ingredient} is not in the model but is given in cocktails "
            f"{', '.join(r.cocktails)}; since {r.equation} in every cocktail used, its effect "
            f"is carried by the terms on the right-hand side."
        )
    for ing in left_out:
        if ing not in carried:
            where = ", ".join(str(c) for c in used.index[used[ing].to_numpy() != 0])
            notes.append(
                f"{ing} is given in cocktails {where} but left out of the model; any effect it "
                "has is not separated from the ingredients modelled."
            )


# --------------------------------------------------------------------------------------------
# Regrowth
# --------------------------------------------------------------------------------------------


def fit_regrowth(
    study: Study,
    outcome: str = "hair_density",
    *,
    ingredients: Sequence[str] | None = None,
    random_slope: bool = True,
    design: Literal["indicator", "dose"] = "indicator",
) -> RegrowthResults:
    """Ingredient effects on the change of an outcome over time (baseline-adjusted LMM).

    Parameters
    ----------
    study : Study
    outcome : str, default "hair_density"
        An outcome column of the sessions table.
    ingredients : sequence of str, optional
        Ingredients to estimate; default every active ingredient given in the analysed rows.
        Ingredients the cocktails cannot separate raise :class:`ModelSpecError` (never
        estimated silently); the message says which subsets can be estimated.
    random_slope : bool, default True
        ``(1 + week | subject_id)``; False gives ``(1 | subject_id)``.
    design : {"indicator", "dose"}
        Ingredient exposure as 0/1 indicators, or dose = concentration × ``volume_ml`` per
        session (effects are then per unit of dose; ``results.units``).

    Returns
    -------
    RegrowthResults

    Raises
    ------
    ModelSpecError
        Unknown outcome or ingredient (the message lists what is available), aliased
        ingredients, no post-baseline visit with a baseline.

    Warns
    -----
    ExclusionWarning
        Post-baseline visits set aside (no baseline value, or missing dose).
    SingularFitWarning
        A person-level SD estimated at 0 or a correlation at ±1.
    ConvergenceWarning
        Passed on from the engine.

    Notes
    -----
    Rows: the post-baseline visits (week > 0) of ``study.outcome_table(outcome)``. Model::

        value ~ baseline_centered + week + week:ing_1 + … + week:ing_K
                + (1 + week | subject_id) [+ (1 | site) when the study has ≥ 2 sites]

    fitted by REML (:func:`mesostats.fit_lmm`; Bates et al. 2015) with Satterthwaite df.
    ``week:ing_k`` is the extra change per week with ingredient k, over the common
    ``week`` trend (the placebo slope). Baseline adjustment (ANCOVA) follows EMA (2015) and
    ICH E9; the baseline is centred at its mean so that the intercept is the mean value of a
    person with an average baseline at week 0.

    Examples
    --------
    >>> import mesostats as ms
    >>> fit = ms.fit_regrowth(ms.simulate_study(120, seed=1))  # doctest: +SKIP
    >>> fit.ingredient_effects  # doctest: +SKIP
    """
    from mesostats.mixed.lmm import fit_lmm

    _check_study(study)
    if not isinstance(outcome, str):
        raise ModelSpecError(f"outcome must be a column name (str), got {outcome!r}.")
    if not isinstance(random_slope, (bool, np.bool_)):
        raise ModelSpecError(f"random_slope must be True or False, got {random_slope!r}.")
    if design not in ("indicator", "dose"):
        raise ModelSpecError(
            f"design must be 'indicator' (1 if the cocktail holds the ingredient) or 'dose' "
            f"(concentration × volume_ml per session), got {design!r}."
        )
    notes: list[str] = []
    post, dropped = _regrowth_rows(study, outcome, design, notes)
    used = _used_matrix(study, _cocktails_received(study, post), design=design)
    if post["course_cocktail"].isna().any():  # visits of people not (yet) injected
        used = pd.concat(
            [used, pd.DataFrame(0.0, index=pd.Index(["(none)"]), columns=used.columns)]
        )
    chosen = _choose_ingredients(
        study,
        ingredients,
        used,
        design=design,
        intercept_meaning="change over time common to every cocktail (the week term)",
        notes=notes,
    )
    units = ingredient_units(study.cocktails, chosen) if design == "dose" else {}
    data = post.drop(columns=[c for c in study.ingredients if c not in chosen])
    center = float(data["baseline"].mean())
    data = data.assign(baseline_centered=data["baseline"].to_numpy(dtype=float) - center)
    formula, effect_terms = _regrowth_formula(data, chosen, bool(random_slope))

    model, caught = _fit_quietly(fit_lmm, formula, data, reml=True)
    _reissue(caught, notes)
    _variance_notes(model, notes, warn_for=[SUBJECT])
    wald = _wald_columns(model.fixed_effects, effect_terms)
    effects = pd.DataFrame({"ingredient": pd.Series(chosen, dtype="str"), **wald})
    effects = effects.rename(columns={"estimate": "effect"})
    effects["p_adjusted"] = holm_adjusted(effects["p_value"].to_numpy())
    trend = float(model.params[TIME]) if TIME in model.params.index else math.nan
    notes.insert(
        0,
        f"Baseline-adjusted (ANCOVA): {model.nobs} post-baseline visits of "
        f"{model.ngroups.get(SUBJECT, 0)} people, each with their baseline {outcome} as a "
        f"covariate (centred at {center:.4g}). An ingredient's effect is the extra change "
        f"per week{' per unit of dose' if design == 'dose' else ''} over the common trend "
        f"(week: {trend:.3g} per week).",
    )
    if design == "dose":
        notes.append(
            "Dose = concentration × volume_ml per session, averaged over the sessions so far; "
            "units: " + ", ".join(f"{ing}: {u}·mL" for ing, u in units.items()) + "."
        )
    return RegrowthResults(
        study=study,
        outcome=outcome,
        model=model,
        data=data,
        formula=formula,
        ingredients=tuple(chosen),
        subject=SUBJECT,
        time=TIME,
        effect_terms=effect_terms,
        cocktail_design=used[chosen].copy(),
        baseline_center=center,
        ingredient_effects=effects[REGROWTH_EFFECT_COLUMNS],
        notes=tuple(notes),
        design=design,
        units=units,
        excluded_rows=_stack_exclusions(dropped, _engine_exclusions(model, data)),
    )


def _regrowth_rows(
    study: Study, outcome: str, design: str, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Post-baseline visits with course exposure and ``course_cocktail`` (see module doc),
    and the visits set aside (:data:`EXCLUDED_COLUMNS`)."""
    table = study.outcome_table(outcome)
    course = course_exposure(study, study.ingredients, design=design)  # type: ignore[arg-type]
    position = study.sessions.index.get_indexer(table.index)
    exposure = course.exposure.iloc[position].set_axis(table.index)
    table = table.drop(columns=list(study.ingredients)).assign(
        course_cocktail=course.cocktail.iloc[position].to_numpy(dtype=object)
    )
    table = pd.concat([table, exposure], axis=1)
    post = table[table[TIME].to_numpy(dtype=float) > 0]
    if post.empty:
        raise ModelSpecError(
            f"{outcome} has no post-baseline visit (week > 0) in this study: regrowth needs "
            "measurements after the first treatment."
        )
    if course.switchers:
        n = len(course.switchers)
        notes.append(
            f"{n} subject{'s' if n > 1 else ''} received more than one cocktail; their "
            "exposure at a visit is the mean over the injection sessions so far, so "
            "week × exposure approximates the weeks spent under each ingredient."
        )
    return _drop_incomplete(post, outcome, design, list(study.ingredients), notes)


def _regrowth_formula(
    data: pd.DataFrame, chosen: Sequence[str], random_slope: bool
) -> tuple[str, dict[str, str]]:
    """The formula of DOMAIN_INTERFACE.md and the ingredient → term map."""
    n_sites = int(data[SITE].nunique()) if SITE in data.columns else 0
    subject_term = f"(1 + {TIME} | {SUBJECT})" if random_slope else f"(1 | {SUBJECT})"
    effect_terms = {ing: f"{TIME}:{ing}" for ing in chosen}
    fixed = " + ".join(["baseline_centered", TIME, *effect_terms.values()])
    site_term = f" + (1 | {SITE})" if n_sites >= 2 else ""
    return f"value ~ {fixed} + {subject_term}{site_term}", effect_terms


def _wald_columns(fe: pd.DataFrame, effect_terms: dict[str, str]) -> dict[str, np.ndarray]:
    """Estimate, SE, 95 % Wald CI and p of each ingredient's term, in ingredient order."""
    missing = [t for t in effect_terms.values() if t not in fe.index]
    if missing:  # pragma: no cover - formulaic naming changed
        raise ModelSpecError(
            f"the fitted model has no fixed effect named {missing}; terms are "
            f"{list(fe.index)}. Please report this."
        )
    rows = fe.loc[list(effect_terms.values())]
    columns = ["estimate", "std_error", "ci_lower", "ci_upper", "p_value"]
    return {c: rows[c].to_numpy(dtype=float) for c in columns}


def _choose_ingredients(
    study: Study,
    ingredients: Sequence[str] | None,
    used: pd.DataFrame,
    *,
    design: str,
    intercept_meaning: str,
    notes: list[str],
) -> list[str]:
    """Resolve the requested ingredients, refuse aliased ones, note what is left out."""
    chosen, unused = resolve_ingredients(study, ingredients, used)
    if unused:
        notes.append(
            f"{', '.join(unused)}: in none of the cocktails analysed "
            f"({', '.join(str(c) for c in used.index)}); not modelled."
        )
    require_estimable(used[chosen], design=design, intercept_meaning=intercept_meaning)
    _absorbed_notes(used, chosen, study, notes)
    return chosen


def _drop_incomplete(
    post: pd.DataFrame, outcome: str, design: str, ingredients: list[str], notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set aside post-baseline visits that cannot be modelled (no baseline, no dose): the
    rows kept, and those set aside with the reason."""
    no_baseline = post["baseline"].isna().to_numpy(dtype=bool)
    no_exposure = post[ingredients].isna().any(axis=1).to_numpy(dtype=bool)
    drop = no_baseline | no_exposure
    if not drop.any():
        return post, _empty_exclusions()
    reasons = []
    if no_baseline.any():
        n_subj = post.loc[no_baseline, SUBJECT].nunique()
        reasons.append(
            f"{int(no_baseline.sum())} visits of {n_subj} subject{'s' if n_subj > 1 else ''} "
            f"without a baseline {outcome} (ANCOVA needs it)"
        )
    if (no_exposure & ~no_baseline).any():
        reasons.append(
            f"{int((no_exposure & ~no_baseline).sum())} with an unknown {design} (missing "
            "volume_ml)"
        )
    text = f"{int(drop.sum())} post-baseline visits were not analysed: " + "; ".join(reasons) + "."
    if no_baseline.all():
        raise ModelSpecError(
            f"{outcome} has no baseline value (on or before day 1) for any subject, and "
            "fit_regrowth adjusts each post-baseline visit for the baseline (ANCOVA). An "
            "outcome recorded only after treatment starts (e.g. a global rating of change) "
            "can be modelled with fit_lmm directly, e.g. fit_lmm('value ~ week + "
            "week:minoxidil + (1 + week | subject_id)', study.outcome_table"
            f"({outcome!r}))."
        )
    if drop.all():
        raise ModelSpecError(
            text + f" No visit is left to model; check the baseline {outcome} values."
        )
    notes.append(text)
    warnings.warn(text, ExclusionWarning, stacklevel=3)
    reasons_per_row = np.where(
        no_baseline,
        f"no baseline {outcome}: the baseline-adjusted model needs it",
        f"unknown {design} (missing volume_ml)",
    )
    dropped = _exclusion_frame(post[drop], list(reasons_per_row[drop]))
    return post[~drop], dropped


def _cocktails_received(study: Study, post: pd.DataFrame) -> list[str]:
    """Cocktails injected to the analysed people on or before their last analysed visit."""
    s = study.sessions
    if "cocktail_id" not in s.columns:
        return []
    last_day = post.groupby(SUBJECT, sort=False)["day"].max()
    day_limit = pd.Index(last_day.index).get_indexer(pd.Index(s[SUBJECT]))
    limit = np.where(day_limit >= 0, last_day.to_numpy(dtype=float)[day_limit], -np.inf)
    mask = s["cocktail_id"].notna().to_numpy(dtype=bool) & (s["day"].to_numpy(dtype=float) <= limit)
    return sorted(str(c) for c in pd.unique(s.loc[mask, "cocktail_id"].astype(str)))


# --------------------------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------------------------


def fit_side_effects(
    study: Study,
    event: str | None = None,
    *,
    ingredients: Sequence[str] | None = None,
    nagq: int = 1,
) -> SideEffectResults:
    """Ingredient effects on the chance of a side effect at an injection session.

    Parameters
    ----------
    study : Study
    event : str, optional
        A coded event term (e.g. ``"erythema"``); ``None`` models any event.
    ingredients : sequence of str, optional
        Ingredients to estimate; default every active ingredient given at an assessed
        session. Aliased ingredients raise :class:`ModelSpecError`.
    nagq : int, default 1
        1 = Laplace; > 1 adaptive Gauss–Hermite quadrature with that many nodes (the
        recommended method for binary outcomes).

    Returns
    -------
    SideEffectResults

    Raises
    ------
    ModelSpecError
        Unknown or never-recorded event term, unknown ingredient, no assessed session (no
        denominator), no (or only) sessions with the event, aliased ingredients.

    Notes
    -----
    Rows: ``study.event_table(event)`` — sessions whose solicited reactions were assessed —
    restricted to sessions where a cocktail was injected. Model (Breslow & Clayton 1993)::

        any_event ~ ing_1 + … + ing_K + (1 | subject_id)

    fitted by :func:`mesostats.fit_glmm` (binomial, logit). Odds ratios are subject-specific
    (the same person with vs without the ingredient). ``rates`` are observed proportions
    with exact Clopper–Pearson intervals. ``gee`` refits the same mean model by GEE
    (exchangeable working correlation, robust SEs; Liang & Zeger 1986) for
    population-average ORs, attenuated towards 1 by ≈ 1/√(1 + c²σ²) on the log scale
    (Zeger, Liang & Albert 1988).
    """
    from mesostats.mixed.glmm import fit_glmm

    _check_study(study)
    if isinstance(nagq, (bool, np.bool_)) or not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise ModelSpecError(
            f"nagq must be an integer ≥ 1 (1 = Laplace, e.g. 25 for adaptive Gauss–Hermite "
            f"quadrature), got {nagq!r}."
        )
    if event is not None and not isinstance(event, str):
        raise ModelSpecError(f"event must be a coded term (str) or None, got {event!r}.")
    notes: list[str] = []
    table, dropped = _side_effect_rows(study, event, notes)
    used = _used_matrix(
        study, sorted(pd.unique(table["cocktail_id"].astype(str))), design="indicator"
    )
    chosen = _choose_ingredients(
        study,
        ingredients,
        used,
        design="indicator",
        intercept_meaning="risk of an event common to every cocktail (the intercept)",
        notes=notes,
    )
    data = table.drop(columns=[c for c in study.ingredients if c not in chosen])
    effect_terms = {ing: ing for ing in chosen}
    formula = f"any_event ~ {' + '.join(chosen)} + (1 | {SUBJECT})"

    model, caught = _fit_quietly(fit_glmm, formula, data, family="binomial", nagq=nagq)
    _reissue(caught, notes)
    _variance_notes(model, notes, warn_for=[SUBJECT])
    wald = _wald_columns(model.fixed_effects, effect_terms)
    effects = pd.DataFrame(
        {
            "ingredient": pd.Series(chosen, dtype="str"),
            "odds_ratio": np.exp(wald["estimate"]),
            "ci_lower": np.exp(wald["ci_lower"]),
            "ci_upper": np.exp(wald["ci_upper"]),
            "p_value": wald["p_value"],
        }
    )
    effects["p_adjusted"] = holm_adjusted(effects["p_value"].to_numpy())
    _separation_notes(model, chosen, data, notes)
    what = "any event" if event is None else f"event {event!r}"
    n_with = int(data["any_event"].sum())
    notes.insert(
        0,
        f"{model.nobs} assessed injection sessions of {model.ngroups.get(SUBJECT, 0)} people; "
        f"{n_with} ({100 * n_with / len(data):.1f} %) had {what}. Odds ratios are "
        f"subject-specific (the odds of a given person with vs without the ingredient); "
        f"people's odds vary with SD {_subject_sd(model):.3g} on the log-odds scale.",
    )
    given = [ing for ing in study.ingredients if bool((used[ing] != 0).any())]
    return SideEffectResults(
        study=study,
        event=event,
        model=model,
        data=data,
        formula=formula,
        ingredients=tuple(chosen),
        subject=SUBJECT,
        effect_terms=effect_terms,
        cocktail_design=used[chosen].copy(),
        ingredient_effects=effects[SIDE_EFFECT_COLUMNS],
        rates=event_rates(table, given),
        notes=tuple(notes),
        excluded_rows=_stack_exclusions(dropped, _engine_exclusions(model, data)),
    )


def _side_effect_rows(
    study: Study, event: str | None, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assessed injection sessions of ``study.event_table(event)``, with the input checks,
    and the assessed sessions set aside (:data:`EXCLUDED_COLUMNS`)."""
    _check_event_recorded(study, event)
    table = study.event_table(event)
    if table.empty:
        raise ModelSpecError(
            "No session has reactions_assessed = true, so there is no denominator: per-session "
            "side-effect rates (and the model) need the sessions at which solicited reactions "
            "were recorded. Set reactions_assessed for those sessions in the sessions table."
        )
    injected = table["cocktail_id"].notna().to_numpy(dtype=bool)
    if not injected.any():
        raise ModelSpecError(
            "No assessed session had a cocktail injected: there is nothing to attribute "
            "side effects to. Check the cocktail_id and reactions_assessed columns."
        )
    dropped = _exclusion_frame(
        table[~injected],
        ["assessed session without an injection: nothing to attribute a side effect to"]
        * int((~injected).sum()),
    )
    if not injected.all():
        n = int((~injected).sum())
        notes.append(
            f"{n} assessed session{'s' if n > 1 else ''} without an injection (no cocktail) "
            f"{'were' if n > 1 else 'was'} not modelled: side effects of an injection need one."
        )
        table = table[injected]
    what = "any event" if event is None else f"event {event!r}"
    n_with = int(table["any_event"].sum())
    if n_with == 0 or n_with == len(table):
        raise ModelSpecError(
            f"{what}: {n_with} of {len(table)} assessed injection sessions had it, so its "
            "odds cannot be modelled (no variation). Choose another event term or event=None."
        )
    return table, dropped


def _check_event_recorded(study: Study, event: str | None) -> None:
    if event is None:
        return
    ae = study.adverse_events
    counts = ae["event"].dropna().astype(str).value_counts()
    if event in counts.index:
        return
    study.event_table(event)  # an uncoded term raises the Study's message
    recorded = ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"
    raise ModelSpecError(
        f"event {event!r} is a coded term but was never recorded in this study, so its odds "
        f"cannot be modelled. Recorded events (count): {recorded}; or use event=None for any "
        "event."
    )


def _subject_sd(model: MixedResults) -> float:
    vc = model.variance_components
    row = vc[(vc["group"] == SUBJECT) & (vc["var1"] == "Intercept") & vc["var2"].isna()]
    return float(row["sdcor"].iloc[0]) if len(row) else 0.0


def _separation_notes(
    model: MixedResults, chosen: Sequence[str], data: pd.DataFrame, notes: list[str]
) -> None:
    """Say when a cocktail had no event at all, or when the engine found separation.

    Uses fit_glmm's structured ``optimizer_info["separation"]`` records (complete separation
    of an indicator, quasi-separation of a covariate) for the ingredients modelled; the
    engine's own warning text is already among the notes.
    """
    by_cocktail = data.groupby("cocktail_id", sort=True)["any_event"].agg(["sum", "size"])
    none = [str(c) for c, r in by_cocktail.iterrows() if r["sum"] == 0]
    if none:
        notes.append(
            f"Cocktail{'s' if len(none) > 1 else ''} {', '.join(none)} had no session with the "
            "event; odds ratios involving them rest on few events and may be unstable."
        )
    records = model.optimizer_info.get("separation", [])
    wild = [r["term"] for r in records if r["kind"] != "group" and r["term"] in chosen]
    if wild:
        notes.append(
            f"The odds ratio of {', '.join(wild)} is extreme or has a huge standard error: the "
            "events are (quasi-)separated by these ingredients (e.g. the event never occurs "
            "without them). Report the observed rates instead of the odds ratio."
        )


def event_rates(data: pd.DataFrame, ingredients: Sequence[str]) -> pd.DataFrame:
    """Observed side-effect rates with exact Clopper–Pearson 95 % intervals.

    Per session: sessions with ≥ 1 event / assessed sessions. Per person: people with ≥ 1
    event at such a session / people assessed at one. For all sessions (``level =
    "overall"``), per ingredient (sessions whose cocktail holds it) and per cocktail.
    Intervals by ``statsmodels.stats.proportion.proportion_confint(method="beta")``
    (Clopper & Pearson 1934).
    """
    from statsmodels.stats.proportion import proportion_confint

    any_event = data["any_event"].to_numpy(dtype=np.int64)
    count = data["events"].to_numpy(dtype=np.int64)
    subject, people = pd.factorize(data[SUBJECT])
    groups: list[tuple[str, str, np.ndarray]] = [("overall", "all", np.ones(len(data), dtype=bool))]
    groups += [("ingredient", ing, data[ing].to_numpy() != 0) for ing in ingredients]
    cocktail = data["cocktail_id"].astype(str).to_numpy(dtype=object)
    groups += [("cocktail", str(c), cocktail == c) for c in sorted(pd.unique(cocktail))]
    records = []
    for level, name, mask in groups:  # a few groups (ingredients, cocktails), vectorised inside
        events_in = int(count[mask].sum())
        assessed = np.bincount(subject[mask], minlength=len(people)) > 0
        with_event = np.bincount(subject[mask], weights=any_event[mask], minlength=len(people))
        records.append(
            (level, name, "session", int(any_event[mask].sum()), int(mask.sum()), events_in)
        )
        records.append(
            (level, name, "person", int((with_event > 0).sum()), int(assessed.sum()), events_in)
        )
    out = pd.DataFrame(
        records, columns=["level", "name", "per", "n_with_event", "n_assessed", "n_events"]
    )
    k = out["n_with_event"].to_numpy(dtype=float)
    n = out["n_assessed"].to_numpy(dtype=float)
    lower, upper = proportion_confint(k, n, alpha=0.05, method="beta")
    out["rate"] = k / n
    out["ci_lower"] = np.asarray(lower, dtype=float)
    out["ci_upper"] = np.asarray(upper, dtype=float)
    out = out.astype({"level": "str", "name": "str", "per": "str"})
    return out[RATE_COLUMNS]


def population_average(
    data: pd.DataFrame,
    ingredients: Sequence[str],
    subject_specific: pd.DataFrame,
    subject_sd: float,
) -> PopulationAverage:
    """GEE (binomial, logit, exchangeable, robust SEs) ORs beside the GLMM ORs.

    Method: Liang & Zeger (1986) via ``statsmodels`` ``GEE``; expected attenuation of a
    subject-specific log OR β to β/√(1 + c²σ²), c = 16√3/(15π) (Zeger, Liang & Albert 1988).
    When the GEE cannot be fitted, its columns are NaN and ``notes`` says why.

    Parameters
    ----------
    data : DataFrame
        Rows fitted: ``any_event``, ``subject_id`` and the ingredient columns.
    ingredients : sequence of str
    subject_specific : DataFrame
        The GLMM's ``ingredient_effects`` (same ingredient order).
    subject_sd : float
        Between-person SD of the GLMM (log-odds scale).
    """
    import statsmodels.api as sm

    y = data["any_event"].to_numpy(dtype=float)
    X = np.column_stack([np.ones(len(data)), data[list(ingredients)].to_numpy(dtype=float)])
    groups = pd.factorize(data[SUBJECT])[0]
    k = len(ingredients)
    params, bse, rho = np.full(k, np.nan), np.full(k, np.nan), math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GEE(
                y,
                X,
                groups=groups,
                family=sm.families.Binomial(),
                cov_struct=sm.cov_struct.Exchangeable(),
            ).fit()
            params = np.asarray(res.params, dtype=float)[1:]
            bse = np.asarray(res.bse, dtype=float)[1:]
            rho = float(np.asarray(res.cov_struct.dep_params).ravel()[0])
            failure = ""
        except (np.linalg.LinAlgError, ValueError) as err:
            failure = f"The GEE sensitivity analysis could not be fitted: {err}."
    notes = tuple(f"GEE: {w.message}" for w in caught) + ((failure,) if failure else ())
    z = stats.norm.ppf(0.975)
    attenuation = 1.0 / math.sqrt(1.0 + _ATTENUATION_C2 * subject_sd**2)
    ss_log = np.log(subject_specific["odds_ratio"].to_numpy(dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        pa_p = 2.0 * stats.norm.sf(np.abs(params / bse))
    table = pd.DataFrame(
        {
            "ingredient": pd.Series(list(ingredients), dtype="str"),
            "subject_specific_or": subject_specific["odds_ratio"].to_numpy(dtype=float),
            "ss_ci_lower": subject_specific["ci_lower"].to_numpy(dtype=float),
            "ss_ci_upper": subject_specific["ci_upper"].to_numpy(dtype=float),
            "population_average_or": np.exp(params),
            "pa_ci_lower": np.exp(params - z * bse),
            "pa_ci_upper": np.exp(params + z * bse),
            "pa_p_value": pa_p,
            "expected_population_average_or": np.exp(ss_log * attenuation),
        }
    )
    if subject_sd < _ZERO_SD:
        why = "people hardly differ here (between-person SD ≈ 0), so the two agree"
    else:
        why = (
            f"because people differ (between-person SD {subject_sd:.2f} on the log-odds "
            f"scale), population-average log odds ratios are attenuated towards 0 (ORs towards "
            f"1) by a factor of about {attenuation:.2f} (Zeger, Liang & Albert 1988)"
        )
    explanation = (
        "Population-average odds ratios (GEE) compare everyone given an ingredient with "
        "everyone not given it, whereas subject-specific odds ratios (GLMM) compare a given "
        f"person with and without it; {why}."
    )
    return PopulationAverage(
        table=table[GEE_COLUMNS],
        explanation=explanation,
        working_correlation=rho,
        attenuation=attenuation,
        notes=notes,
    )
