"""How bad the side effects get, by ingredient: :func:`fit_severity`.

Cumulative-logit mixed model (proportional odds with a random intercept per person;
Hedeker & Gibbons 1994, *Biometrics* 50(4); Agresti 2010, *Analysis of Ordinal Categorical
Data*, ch. 10) of the worst severity recorded at each assessed injection session
(none < mild < moderate < severe) on ingredient indicators, fitted by
:func:`mesostats.fit_clmm` (Laplace, or adaptive Gauss–Hermite quadrature with ``nagq``).
Rows, aliasing checks and notes are those of :func:`mesostats.fit_side_effects`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from mesostats.domain.common import (
    SUBJECT,
    _check_study,
    _reissue,
    _variance_notes,
)
from mesostats.domain.grades import (
    fit_clmm_quietly,
    grade_probabilities,
    merge_empty_grades,
    observed_shares,
    odds_ratio_table,
)
from mesostats.domain.ordinal_results import SeverityResults
from mesostats.domain.rates import _subject_sd
from mesostats.domain.side_effects import _session_ingredients, _side_effect_rows

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["SEVERITY_GRADES", "fit_severity", "worst_grade"]

#: The severity scale, mildest first ("none": assessed, no event).
SEVERITY_GRADES = ("none", "mild", "moderate", "severe")


def worst_grade(study: Study, event: str | None = None) -> pd.Series:
    """Worst severity per session (index = the sessions' row labels): a grade of
    :data:`SEVERITY_GRADES` (missing where an event's grade is not on the scale)."""
    sessions = study.sessions
    ae = study.adverse_events
    pos = np.asarray(study._event_session_rows(), dtype=np.int64)
    keep = pos >= 0
    if event is not None:
        keep &= (ae["event"] == event).to_numpy(dtype=bool, na_value=False)
    grade = ae["severity"].astype("string").str.strip().str.lower()
    rank = grade.map({g: k for k, g in enumerate(SEVERITY_GRADES)}).to_numpy(
        dtype=float, na_value=np.nan
    )
    n = len(sessions)
    worst = np.zeros(n, dtype=np.int64)
    unknown = np.zeros(n, dtype=bool)
    graded = keep & np.isfinite(rank)
    np.maximum.at(worst, pos[graded], rank[graded].astype(np.int64))
    unknown[pos[keep & ~np.isfinite(rank)]] = True
    labels = np.asarray(SEVERITY_GRADES, dtype=object)[worst]
    labels[unknown] = None
    return pd.Series(labels, index=sessions.index, name="worst_grade", dtype=object)


def fit_severity(
    study: Study,
    *,
    event: str | None = None,
    ingredients: Sequence[str] | None = None,
    nagq: int = 1,
) -> SeverityResults:
    """Ingredient effects on the worst side-effect severity at an injection session.

    Parameters
    ----------
    study : Study
    event : str, optional
        A coded event term (e.g. ``"erythema"``); ``None`` grades the worst of any event.
    ingredients : sequence of str, optional
        Ingredients to estimate; default every active ingredient given at an assessed
        session. Aliased ingredients raise :class:`ModelSpecError` naming them.
    nagq : int, default 1
        1 = Laplace; > 1 adaptive Gauss–Hermite quadrature with that many nodes.

    Returns
    -------
    SeverityResults

    Raises
    ------
    ModelSpecError
        Everything :func:`fit_side_effects` refuses (unknown event, no assessed session, no
        variation, aliased ingredients), and fewer than 3 grades once empty ones are merged.

    Notes
    -----
    Rows: assessed injection sessions (``study.event_table(event)``); response: the worst
    grade of the events recorded there, ``none`` without an event. Model::

        severity ~ ing_1 + … + ing_K + (1 | subject_id),   logit link, flexible thresholds

    P(severity ≤ j) = logistic(θ_j − xᵀβ − b): exp(β) is the cumulative odds ratio of a
    worse grade (the same at every cut of the scale, proportional odds), for the same person
    with vs without the ingredient. A grade never observed is merged with its neighbour (a
    note says so). (The table contract requires a severity for every event.)
    """
    _check_study(study)
    notes: list[str] = []
    table, dropped, _ = _side_effect_rows(study, event, notes)
    worst = worst_grade(study, event).loc[table.index]
    what = "any event" if event is None else f"event {event!r}"
    response, levels = merge_empty_grades(worst, SEVERITY_GRADES, f"Severity of {what}", notes)
    used, chosen, data = _session_ingredients(
        study,
        table,
        ingredients,
        "severity common to every cocktail (the thresholds)",
        notes,
    )
    data["worst_grade"] = worst
    data["severity"] = response
    formula = f"severity ~ {' + '.join(chosen)} + (1 | {SUBJECT})"
    model, caught = fit_clmm_quietly(formula, data, nagq=nagq)
    _reissue(caught, notes)
    _variance_notes(cast(Any, model), notes, warn_for=[SUBJECT])  # duck-typed
    effect_terms = {ing: ing for ing in chosen}
    effects = odds_ratio_table(model, effect_terms, "ingredient")
    design = used[chosen].copy()
    rows = design.reset_index()
    probabilities = grade_probabilities(
        model, rows, "cocktail_id", "mean_grade", range(len(levels))
    )
    counts = data["severity"].value_counts().reindex(levels)
    shares = ", ".join(f"{g} {c}" for g, c in counts.items())
    notes.insert(
        0,
        f"{model.nobs} assessed injection sessions of {model.ngroups.get(SUBJECT, 0)} people "
        f"graded by the worst grade of {what} ({shares}). Odds ratios are cumulative and "
        f"subject-specific: the odds of a worse grade (at any cut of the scale) for a given "
        f"person with vs without the ingredient; people's log-odds vary with SD "
        f"{_subject_sd(cast(Any, model)):.3g}.",
    )
    return SeverityResults(
        study=study,
        event=event,
        model=model,
        data=data,
        formula=formula,
        levels=tuple(levels),
        ingredients=tuple(chosen),
        subject=SUBJECT,
        effect_terms=effect_terms,
        cocktail_design=design,
        ingredient_effects=effects,
        probabilities=probabilities,
        observed=observed_shares(data, "cocktail_id", "severity", list(design.index)),
        notes=tuple(notes),
        excluded_rows=dropped,
    )
