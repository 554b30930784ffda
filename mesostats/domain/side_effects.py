"""Which ingredient drives side effects: :func:`fit_side_effects`.

Binomial GLMM (logistic-normal, Breslow & Clayton 1993, *JASA* 88(421)) of the per-session
event indicator on ingredient indicators with a random intercept per person, fitted by
Laplace or adaptive Gauss–Hermite quadrature (``nagq``) in :func:`mesostats.fit_glmm`. Observed
rates and the GEE comparison come from :mod:`mesostats.domain.rates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mesostats.domain.common import (
    SUBJECT,
    _check_study,
    _choose_ingredients,
    _columns,
    _empty_exclusions,
    _exclusion_frame,
    _fit_quietly,
    _reissue,
    _text_values,
    _used_matrix,
    _variance_notes,
    _wald_columns,
    _with_engine_exclusions,
)
from mesostats.domain.rates import _subject_sd
from mesostats.domain.results import SideEffectResults
from mesostats.exceptions import (
    ModelSpecError,
)
from mesostats.mixed.glmm import fit_glmm

if TYPE_CHECKING:
    from mesostats.data.study import Study
    from mesostats.mixed.results import MixedResults


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

    _check_study(study)
    if isinstance(nagq, (bool, np.bool_)) or not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise ModelSpecError(
            f"nagq must be an integer ≥ 1 (1 = Laplace, e.g. 25 for adaptive Gauss–Hermite "
            f"quadrature), got {nagq!r}."
        )
    notes: list[str] = []
    table, dropped, any_event = _side_effect_rows(study, event, notes)
    used, chosen, data = _session_ingredients(
        study,
        table,
        ingredients,
        "risk of an event common to every cocktail (the intercept)",
        notes,
    )
    effect_terms = {ing: ing for ing in chosen}
    formula = f"any_event ~ {' + '.join(chosen)} + (1 | {SUBJECT})"

    model, caught = _fit_quietly(fit_glmm, formula, data, family="binomial", nagq=nagq)
    _reissue(caught, notes)
    _variance_notes(model, notes, warn_for=[SUBJECT])
    wald = _wald_columns(model, effect_terms)
    in_use = (used.to_numpy() != 0).any(axis=0)  # columns: the study's ingredients
    given = tuple(ing for ing, yes in zip(study.ingredients, in_use, strict=True) if yes)
    _separation_notes(model, chosen, _cocktails_without_event(table, any_event), notes)
    what = "any event" if event is None else f"event {event!r}"
    n_with = int(any_event.sum())
    notes.insert(
        0,
        f"{model.nobs} assessed injection sessions of {model.ngroups.get(SUBJECT, 0)} people; "
        f"{n_with} ({100 * n_with / len(data):.1f} %) had {what}. Odds ratios are "
        f"subject-specific (the odds of a given person with vs without the ingredient); "
        f"people's odds vary with SD {_subject_sd(model):.3g} on the log-odds scale.",
    )
    return SideEffectResults(
        study=study,
        event=event,
        model=model,
        data=data,
        formula=formula,
        ingredients=tuple(chosen),
        subject=SUBJECT,
        effect_terms=effect_terms,
        cocktail_design=_columns(used, chosen),
        notes=tuple(notes),
        excluded_rows=_with_engine_exclusions(dropped, model, data),
        _rate_rows=table,  # (``rates``: event_rates(table, given) on first access)
        _rate_ingredients=given,
        _wald=wald,  # (``ingredient_effects``: built from these on first access)
    )


def _session_ingredients(
    study: Study,
    table: pd.DataFrame,
    ingredients: Sequence[str] | None,
    intercept_meaning: str,
    notes: list[str],
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Cocktails used × ingredients (0/1), the ingredients estimated (aliasing checked) and
    the session rows with only those ingredient columns."""
    cocktails = table["cocktail_id"]
    used = _used_matrix(study, sorted(pd.unique(_text_values(cocktails))), design="indicator")
    chosen = _choose_ingredients(
        study,
        ingredients,
        used,
        design="indicator",
        intercept_meaning=intercept_meaning,
        notes=notes,
    )
    left_out = [c for c in study.ingredients if c not in chosen]
    # (a shallow copy when nothing is dropped: the same table, at no cost; copy-on-write
    # keeps the caller's edits to it away from ``table``)
    data = table.drop(columns=left_out) if left_out else table.copy(deep=False)
    return used, chosen, data


def _side_effect_rows(
    study: Study, event: str | None, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Assessed injection sessions of ``study.event_table(event)``, with the input checks,
    the assessed sessions set aside (:data:`EXCLUDED_COLUMNS`) and the rows' ``any_event``
    column (int64 array, read once)."""
    if event is not None and not isinstance(event, str):
        raise ModelSpecError(f"event must be a coded term (str) or None, got {event!r}.")
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
    if injected.all():
        dropped = _empty_exclusions()  # (no DataFrame filtering: the common case)
    else:
        n = int((~injected).sum())
        dropped = _exclusion_frame(
            table[~injected],
            ["assessed session without an injection: nothing to attribute a side effect to"] * n,
        )
        notes.append(
            f"{n} assessed session{'s' if n > 1 else ''} without an injection (no cocktail) "
            f"{'were' if n > 1 else 'was'} not modelled: side effects of an injection need one."
        )
        table = table[injected]
    what = "any event" if event is None else f"event {event!r}"
    any_event = table["any_event"].to_numpy(dtype=np.int64)
    n_with = int(any_event.sum())
    if n_with == 0 or n_with == len(table):
        raise ModelSpecError(
            f"{what}: {n_with} of {len(table)} assessed injection sessions had it, so its "
            "odds cannot be modelled (no variation). Choose another event term or event=None."
        )
    return table, dropped, any_event


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


def _cocktails_without_event(table: pd.DataFrame, any_event: np.ndarray) -> list[str]:
    """The cocktails of ``table`` with no session with the event (``any_event``: its
    column), sorted: the cocktail rows of ``event_rates(table, …)`` (per session) with
    ``n_with_event == 0``, counted without building the rates table."""
    cocktail = np.asarray(_text_values(table["cocktail_id"]), dtype=object)
    events = cocktail[any_event != 0]
    with_event = set(pd.unique(events))
    return [str(c) for c in sorted(pd.unique(cocktail)) if c not in with_event]


def _separation_notes(
    model: MixedResults, chosen: Sequence[str], none: Sequence[str], notes: list[str]
) -> None:
    """Say when a cocktail had no event at all, or when the engine found separation.

    ``none``: the cocktails without an event among the rows modelled
    (:func:`_cocktails_without_event`; sorted by cocktail). Uses fit_glmm's structured
    ``optimizer_info["separation"]`` records (complete separation of an indicator,
    quasi-separation of a covariate) for the ingredients modelled; the engine's own warning
    text is already among the notes.
    """
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
