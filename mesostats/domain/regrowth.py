"""Which ingredient drives regrowth: :func:`fit_regrowth`.

Linear mixed model of an outcome over time, baseline adjusted (ANCOVA), with
ingredient-by-week effects::

    value ~ baseline_centered + week + week:<ingredient> + …
            + (1 + week | subject_id) [+ (1 | site) with ≥ 2 sites]

on the post-baseline visits (week > 0). Ingredient exposure belongs to the *course*: at each
visit, the mean exposure over the person's injection sessions so far (see
:mod:`mesostats.domain.exposure`). The ingredient effect is the extra change per week in
outcome units. Adjusting for the baseline value follows the EMA *Guideline on adjustment for
baseline covariates in clinical trials* (EMA/CHMP/295050/2013, 2015) and ICH E9 (1998); the
random-coefficients model is that of Laird & Ware (1982, *Biometrics* 38(4)). The fit itself
is :func:`mesostats.fit_lmm`; this module assembles rows, exposures, formula and notes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from mesostats.domain.common import (
    REGROWTH_EFFECT_COLUMNS,
    SITE,
    SUBJECT,
    TIME,
    _check_study,
    _choose_ingredients,
    _columns,
    _empty_exclusions,
    _exclusion_frame,
    _fit_quietly,
    _reissue,
    _used_matrix,
    _variance_notes,
    _wald_columns,
    _with_engine_exclusions,
    holm_adjusted,
)
from mesostats.domain.exposure import course_arrays, ingredient_units
from mesostats.domain.regrowth_counts import count_family_note, count_rows, uses_count_model
from mesostats.domain.results import RegrowthResults
from mesostats.exceptions import (
    ExclusionWarning,
    ModelSpecError,
)
from mesostats.mixed.glmm import fit_glmm
from mesostats.mixed.lmm import fit_lmm

if TYPE_CHECKING:
    from mesostats.data.study import Study


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
    rows, dropped = _regrowth_rows(study, outcome, design, notes)
    used = _used_matrix(study, _cocktails_received(study, rows), design=design)
    if rows.no_course:  # visits of people not (yet) injected
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
    counts = uses_count_model(study, outcome)  # NB2 for hair counts per target area
    if counts:
        data, center = count_rows(study, rows.frame(chosen))
    else:
        baseline = rows.columns["baseline"]
        center = float(baseline.mean())  # (as pandas' Series.mean: sum / n, no NaN here)
        data = rows.frame(chosen, baseline_centered=baseline - center)
    formula, effect_terms = _regrowth_formula(data, chosen, bool(random_slope))

    if counts:
        formula = formula.replace("value ~ ", "value ~ offset(log(area)) + ", 1)
        model, caught = _fit_quietly(fit_glmm, formula, data, family="negative_binomial")
    else:
        model, caught = _fit_quietly(fit_lmm, formula, data, reml=True)
    _reissue(caught, notes)
    _variance_notes(model, notes, warn_for=[SUBJECT])
    wald = _wald_columns(model, effect_terms)
    effects = pd.DataFrame({"ingredient": pd.Series(chosen, dtype="str"), **wald})
    effects = effects.rename(columns={"estimate": "effect"})
    effects["p_adjusted"] = holm_adjusted(effects["p_value"].to_numpy())
    trend = float(model.params[TIME]) if TIME in model.params.index else math.nan
    if counts:
        n_people = model.ngroups.get(SUBJECT, 0)
        first = count_family_note(model.dispersion, model.nobs, n_people, center)
        notes.extend(m for m in model.messages if "dispersion k ran to" in m)
    else:
        first = (
            f"Baseline-adjusted (ANCOVA): {model.nobs} post-baseline visits of "
            f"{model.ngroups.get(SUBJECT, 0)} people, each with their baseline {outcome} as a "
            f"covariate (centred at {center:.4g}). An ingredient's effect is the extra change "
            f"per week{' per unit of dose' if design == 'dose' else ''} over the common trend "
            f"(week: {trend:.3g} per week)."
        )
    notes.insert(0, first)
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
        cocktail_design=_columns(used, chosen),
        baseline_center=center,
        ingredient_effects=effects[REGROWTH_EFFECT_COLUMNS],
        notes=tuple(notes),
        design=design,
        units=units,
        excluded_rows=_with_engine_exclusions(dropped, model, data),
    )


@dataclass(frozen=True, eq=False)
class _RegrowthRows:
    """The analysed post-baseline visits as columns (arrays, in table order), before the
    ingredients are chosen: :meth:`frame` builds the DataFrame once, with the chosen
    exposure columns."""

    columns: dict[str, Any]  # every column of the analysed rows, in table order
    index: pd.Index
    ingredients: tuple[str, ...]  # exposure columns held in ``columns`` (the study's)
    codes: np.ndarray  # sessions-table subject code of each analysed row
    n_subjects: int  # number of subject codes
    no_course: bool  # some analysed visit has no injection before it

    def frame(self, chosen: Sequence[str], **extra: np.ndarray) -> pd.DataFrame:
        """The rows as a DataFrame: every column but the exposures not ``chosen``, then
        ``extra``."""
        left_out = set(self.ingredients) - set(chosen)
        table = {k: v for k, v in self.columns.items() if k not in left_out}
        table.update(extra)
        return pd.DataFrame(table, index=self.index, copy=False)


def _regrowth_rows(
    study: Study, outcome: str, design: str, notes: list[str]
) -> tuple[_RegrowthRows, pd.DataFrame]:
    """Post-baseline visits with course exposure and ``course_cocktail`` (see module doc),
    and the visits set aside (:data:`EXCLUDED_COLUMNS`).

    Columns (in this order): those of ``study.outcome_table(outcome)`` without its
    ingredient columns, ``course_cocktail``, then one course-exposure column per ingredient
    of the study. Built from arrays on the sessions rows, filtered once.
    """
    outcome_columns, keep = study._outcome_columns(outcome)
    visit = study._visit_columns()
    course = course_arrays(study, study.ingredients, design=design)  # type: ignore[arg-type]
    post = keep & (visit["week"] > 0)
    if not post.any():
        raise ModelSpecError(
            f"{outcome} has no post-baseline visit (week > 0) in this study: regrowth needs "
            "measurements after the first treatment."
        )
    switchers = course.switchers
    if switchers:
        n = len(switchers)
        notes.append(
            f"{n} subject{'s' if n > 1 else ''} received more than one cocktail; their "
            "exposure at a visit is the mean over the injection sessions so far, so "
            "week × exposure approximates the weeks spent under each ingredient."
        )
    analysed = _drop_incomplete(
        study, post, visit, outcome_columns, course.mean, outcome, design, notes
    )
    rows, dropped = analysed
    table: dict[str, Any] = {}
    for name, col in {**visit, **outcome_columns}.items():
        table[name] = col[rows]
    ingredients = tuple(study.ingredients)
    study._add_subject_columns(table, rows, skip=ingredients)
    table["course_cocktail"] = pd.array(course.last_cocktail[rows], dtype="str")
    exposure = course.mean[rows]
    for j, name in enumerate(ingredients):
        table[name] = exposure[:, j]
    codes, uniques = pd.factorize(study.sessions[SUBJECT])
    return (
        _RegrowthRows(
            columns=table,
            index=study.sessions.index[rows],
            ingredients=ingredients,
            codes=np.asarray(codes, dtype=np.intp)[rows],
            n_subjects=len(uniques),
            no_course=bool(pd.isna(course.last_cocktail[rows]).any()),
        ),
        dropped,
    )


def _regrowth_formula(
    data: pd.DataFrame, chosen: Sequence[str], random_slope: bool
) -> tuple[str, dict[str, str]]:
    """The regrowth formula of the module docstring and the ingredient → term map."""
    n_sites = int(data[SITE].nunique()) if SITE in data.columns else 0
    subject_term = f"(1 + {TIME} | {SUBJECT})" if random_slope else f"(1 | {SUBJECT})"
    effect_terms = {ing: f"{TIME}:{ing}" for ing in chosen}
    fixed = " + ".join(["baseline_centered", TIME, *effect_terms.values()])
    site_term = f" + (1 | {SITE})" if n_sites >= 2 else ""
    return f"value ~ {fixed} + {subject_term}{site_term}", effect_terms


def _drop_incomplete(
    study: Study,
    post: np.ndarray,
    visit: dict[str, Any],
    outcome_columns: dict[str, np.ndarray],
    exposure: np.ndarray,
    outcome: str,
    design: str,
    notes: list[str],
) -> tuple[np.ndarray, pd.DataFrame]:
    """Set aside post-baseline visits that cannot be modelled (no baseline, no dose): the
    sessions rows kept (a mask), and those set aside with the reason."""
    no_baseline = np.isnan(outcome_columns["baseline"][post])
    no_exposure = np.isnan(exposure[post]).any(axis=1)
    drop = no_baseline | no_exposure
    if not drop.any():
        return post, _empty_exclusions()
    subject = visit[SUBJECT][post]
    reasons = []
    if no_baseline.any():
        n_subj = pd.Series(subject[no_baseline]).nunique()
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
    positions = np.flatnonzero(post)
    set_aside = positions[drop]
    rows = pd.DataFrame(
        {SUBJECT: subject[drop], "visit": visit["visit"][post][drop]},
        index=study.sessions.index[set_aside],
    )
    dropped = _exclusion_frame(rows, list(reasons_per_row[drop]))
    kept = np.zeros_like(post)
    kept[positions[~drop]] = True
    return kept, dropped


def _cocktails_received(study: Study, rows: _RegrowthRows) -> list[str]:
    """Cocktails injected to the analysed people on or before their last analysed visit."""
    s = study.sessions
    if "cocktail_id" not in s.columns:
        return []
    # the last analysed day of each subject (by sessions-table subject code)
    last_day = np.full(rows.n_subjects + 1, -np.inf)  # (last slot: a missing subject id)
    np.maximum.at(last_day, rows.codes, rows.columns["day"].astype(float))
    last_day[-1] = -np.inf
    codes = np.asarray(pd.factorize(s[SUBJECT])[0], dtype=np.intp)
    limit = last_day[codes]  # code -1 reads the last slot
    cocktail = s["cocktail_id"]
    mask = cocktail.notna().to_numpy(dtype=bool) & (s["day"].to_numpy(dtype=float) <= limit)
    return sorted(str(c) for c in pd.unique(cocktail[mask].astype(str)))
