"""Global photographic assessment by cocktail: :func:`fit_global_assessment`.

The investigator's 7-point ``gpa_score`` (−3 much worse … +3 much better) is an ordered
outcome: a cumulative-logit (proportional odds) model of the score on the cocktail
(treatment coding against the control cocktail; McCullagh 1980, *JRSS B* 42(2)). At one visit
each person has one score, so the model has no random effect (ordinal::clm's model, by
:func:`mesostats.fit_clmm` with a formula without random terms). With ``visit="all"`` every
visit with a score is used, with visit as a factor and a random intercept per person
(Hedeker & Gibbons 1994, *Biometrics* 50(4)). Grades never observed are merged with their
neighbour (a note says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from mesostats.domain.common import (
    SUBJECT,
    _check_study,
    _exclusion_frame,
    _reissue,
    _stack_exclusions,
    _variance_notes,
)
from mesostats.domain.exposure import course_exposure, recipe_matrix
from mesostats.domain.grades import (
    fit_clmm_quietly,
    grade_probabilities,
    merge_empty_grades,
    observed_shares,
    odds_ratio_table,
)
from mesostats.domain.ordinal_results import GlobalAssessmentResults
from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["GPA_GRADES", "fit_global_assessment"]

#: The GPA scale, lowest first.
GPA_GRADES = ("-3", "-2", "-1", "0", "+1", "+2", "+3")
_NO_COCKTAIL = "no cocktail injected on or before this visit: nothing to compare"


def _control(study: Study, cocktails: list[str]) -> str:
    """The cocktail with no active ingredient (saline / placebo), else the first one."""
    recipes = recipe_matrix(study.cocktails, study.ingredients).loc[cocktails]
    inactive = [c for c in cocktails if not bool((recipes.loc[c] != 0).any())]
    return inactive[0] if inactive else cocktails[0]


def _rows(study: Study, visit: int | str | None, notes: list[str]) -> tuple[pd.DataFrame, int]:
    if "gpa_score" not in study.sessions.columns:
        raise ModelSpecError(
            "The study has no gpa_score column in its sessions table: the global photographic "
            "assessment (−3 … +3) is not recorded."
        )
    s = study.sessions
    course = course_exposure(study, study.ingredients)
    table = pd.DataFrame(
        {
            SUBJECT: s[SUBJECT].astype(str),
            "visit": s["visit"],
            "gpa_score": s["gpa_score"],
            "cocktail": course.cocktail.where(course.cocktail != "nan"),
        },
        index=s.index,
    )
    scored = table[table["gpa_score"].notna()]
    if scored.empty:
        raise ModelSpecError("No session has a gpa_score: there is nothing to model.")
    visits = sorted(int(v) for v in pd.unique(scored["visit"]))
    last = visits[-1]
    if visit is None:
        visit = last
    if visit != "all":
        if (
            isinstance(visit, bool)
            or not isinstance(visit, (int, np.integer))
            or (int(visit) not in visits)
        ):
            raise ModelSpecError(
                f"visit must be a visit with gpa scores ({', '.join(map(str, visits))}), "
                f'"all" or None (the last, {last}); got {visit!r}.'
            )
        scored = scored[scored["visit"] == int(visit)]
    return scored, last


def fit_global_assessment(
    study: Study, *, visit: int | str | None = None
) -> GlobalAssessmentResults:
    """Cocktail effects on the global photographic assessment (``gpa_score``, −3 … +3).

    Parameters
    ----------
    study : Study
    visit : int, "all" or None
        The visit analysed (default the last visit with scores), or ``"all"``: every visit
        with a score, visit as a factor and a random intercept per person.

    Returns
    -------
    GlobalAssessmentResults

    Raises
    ------
    ModelSpecError
        No ``gpa_score``; an unknown visit; fewer than 2 cocktails or 3 grades observed.

    Notes
    -----
    Model (one visit)::

        gpa ~ cocktail                                    (logit link, flexible thresholds)

    and (``visit="all"``) ``gpa ~ cocktail + factor(visit) + (1 | subject_id)``. The cocktail
    is the one last injected on or before the visit. exp(β) is the cumulative odds ratio of a
    higher (better) score with the cocktail vs the control (the cocktail without an active
    ingredient), the same at every cut of the scale. ``probabilities``: per cocktail, the
    probability of each score (at the last visit for ``"all"``), marginal over persons.
    """
    _check_study(study)
    notes: list[str] = []
    scored, last = _rows(study, visit, notes)
    missing = scored["cocktail"].isna().to_numpy()
    dropped = _exclusion_frame(scored[missing], [_NO_COCKTAIL] * int(missing.sum()))
    scored = scored[~missing]
    cocktails = [
        c
        for c in pd.unique(study.cocktails["cocktail_id"].astype(str))
        if c in set(scored["cocktail"])
    ]
    if len(cocktails) < 2:
        raise ModelSpecError(
            f"Only {len(cocktails)} cocktail among the scored rows: nothing to compare."
        )
    control = _control(study, cocktails)
    order = [control, *[c for c in cocktails if c != control]]
    score = scored["gpa_score"].to_numpy(dtype=float)
    labels = pd.Series(
        np.asarray(GPA_GRADES, dtype=object)[np.clip(score.astype(int) + 3, 0, 6)],
        index=scored.index,
    )
    response, levels = merge_empty_grades(labels, GPA_GRADES, "gpa_score", notes)
    data = scored.copy()
    data["gpa"] = response
    data["cocktail"] = pd.Categorical(data["cocktail"].astype(str), categories=order)
    several = visit == "all"
    if several:
        data["visit_f"] = pd.Categorical(data["visit"].astype(int))
        formula = f"gpa ~ cocktail + visit_f + (1 | {SUBJECT})"
    else:
        formula = "gpa ~ cocktail"
    model, caught = fit_clmm_quietly(formula, data)
    _reissue(caught, notes)
    if several:
        _variance_notes(cast(Any, model), notes, warn_for=[SUBJECT])  # duck-typed
    effect_terms = {c: f"cocktail[T.{c}]" for c in order[1:]}
    effects = odds_ratio_table(model, effect_terms, "cocktail")
    rows = pd.DataFrame({"cocktail": pd.Categorical(order, categories=order)})
    if several:
        rows["visit_f"] = pd.Categorical(
            [last] * len(order), categories=data["visit_f"].cat.categories
        )
    scores = [float(np.mean([int(g) for g in lab.split("/")])) for lab in levels]
    probabilities = grade_probabilities(model, rows, "cocktail", "mean_score", scores)
    at = "every visit with a score" if several else f"visit {scored['visit'].iloc[0]}"
    notes.insert(
        0,
        f"{model.nobs} gpa scores of {data[SUBJECT].nunique()} people at {at}; the cocktail "
        f"is the one last injected. Odds ratios are cumulative: the odds of a higher (better) "
        f"score with the cocktail vs {control}, at any cut of the scale.",
    )
    return GlobalAssessmentResults(
        study=study,
        visit="all" if several else int(scored["visit"].iloc[0]),
        model=model,
        data=data,
        formula=formula,
        levels=tuple(levels),
        control=control,
        subject=SUBJECT,
        cocktail_effects=effects,
        probabilities=probabilities,
        observed=observed_shares(data, "cocktail", "gpa", order),
        notes=tuple(notes),
        excluded_rows=_stack_exclusions(dropped),
    )
