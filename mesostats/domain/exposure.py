"""Ingredient exposure: from the cocktails people received to an ingredient design.

Effects in mesotherapy are attributed to *ingredients*, while people receive *cocktails*
(recipes of several ingredients):

* :func:`recipe_matrix`: cocktail × ingredient matrix, 0/1 indicators or concentrations
  (dose per mL injected);
* :func:`session_exposure`: each session's exposure (indicator, or concentration ×
  ``volume_ml`` for doses);
* :func:`course_exposure`: each visit's exposure to the *course* received so far — the mean
  of the session exposures over the subject's injection sessions on or before that visit
  (carried to follow-up visits without injection). For someone who keeps one cocktail this
  is that cocktail's indicator, so ``week × exposure`` is the usual ingredient-by-time term;
  for someone who switched cocktails, ``week × mean exposure`` approximates the weeks spent
  under each ingredient;
* :func:`resolve_ingredients`: which ingredients a fit estimates.

Whether the design can be estimated at all is :mod:`mesostats.domain.aliasing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from mesostats.data import derive
from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.data.study import Study


Design = Literal["indicator", "dose"]


# Designs
# --------------------------------------------------------------------------------------------


def _check_design_kind(design: str) -> None:
    if design not in ("indicator", "dose"):
        raise ModelSpecError(
            f"design must be 'indicator' (1 if the cocktail holds the ingredient) or 'dose' "
            f"(concentration × volume_ml per session), got {design!r}."
        )


def _sessions_for(study: Study, design: Design) -> tuple[pd.DataFrame, pd.Series]:
    """The sessions table and its cocktail column, after checking ``design`` (``"dose"``
    needs ``volume_ml``)."""
    _check_design_kind(design)
    sessions = study.sessions
    if design == "dose" and "volume_ml" not in sessions.columns:
        raise ModelSpecError(
            "design='dose' needs the volume_ml column of sessions (dose = concentration × "
            "volume), which this study lacks; use design='indicator'."
        )
    return sessions, _cocktail_column(sessions)


def recipe_matrix(
    cocktails: pd.DataFrame, ingredients: Sequence[str], *, design: Design = "indicator"
) -> pd.DataFrame:
    """Cocktail × ingredient matrix of the recipes.

    Parameters
    ----------
    cocktails : DataFrame
        The study's cocktails table (``cocktail_id, ingredient, concentration, unit``).
    ingredients : sequence of str
        Columns, in order.
    design : {"indicator", "dose"}
        0/1 indicators, or the concentration (the dose per mL injected).

    Returns
    -------
    DataFrame
        Index ``cocktail_id`` (every cocktail of the table, in order of appearance), one
        float column per ingredient.
    """
    _check_design_kind(design)
    ids, values = recipe_values(cocktails, ingredients, design=design)
    return pd.DataFrame(values, index=pd.Index(ids, name="cocktail_id"), columns=list(ingredients))


def recipe_values(
    cocktails: pd.DataFrame, ingredients: Sequence[str], *, design: Design = "indicator"
) -> tuple[np.ndarray, np.ndarray]:
    """The cocktail ids (object array, order of appearance) and the float matrix of
    :func:`recipe_matrix`, without the DataFrame."""
    return derive.recipe_rows(cocktails, list(ingredients), kind=design)


def ingredient_units(cocktails: pd.DataFrame, ingredients: Sequence[str]) -> dict[str, str]:
    """The concentration unit of each ingredient (needed to read dose effects).

    Raises
    ------
    ModelSpecError
        An ingredient is given in different units in different cocktails: its doses are not
        comparable (convert the recipes to one unit, or use ``design="indicator"``).
    """
    rows = cocktails[cocktails["ingredient"].astype(str).isin(list(ingredients))]
    units = rows.groupby(rows["ingredient"].astype(str), sort=False)["unit"].agg(
        lambda u: sorted({str(v) for v in u})
    )
    mixed = {ing: u for ing, u in units.items() if len(u) > 1}
    if mixed:
        listed = "; ".join(f"{ing}: {', '.join(u)}" for ing, u in mixed.items())
        raise ModelSpecError(
            f"design='dose' needs one concentration unit per ingredient, but the cocktails "
            f"use several ({listed}); doses in different units cannot share one effect. "
            "Convert the recipes to one unit per ingredient, or use design='indicator'."
        )
    return {str(ing): u[0] for ing, u in units.items()}


def session_exposure(
    study: Study, ingredients: Sequence[str], *, design: Design = "indicator"
) -> pd.DataFrame:
    """Each session's ingredient exposure (0 when nothing was injected).

    ``"indicator"``: 1 if the session's cocktail holds the ingredient. ``"dose"``:
    concentration × ``volume_ml`` (the ingredient's unit × mL). Index = the sessions index.
    """
    sessions, cocktail = _sessions_for(study, design)
    values = derive.ingredient_design(
        study.cocktails,
        cocktail,
        list(ingredients),
        kind=design,
        volume_ml=sessions["volume_ml"] if design == "dose" else None,
    )
    return values.astype(float)


def _cocktail_column(sessions: pd.DataFrame) -> pd.Series:
    if "cocktail_id" in sessions.columns:
        return sessions["cocktail_id"]
    return pd.Series(pd.NA, index=sessions.index, dtype="str")


@dataclass(frozen=True, eq=False)
class CourseExposure:
    """Exposure of each visit to the course of injections received so far.

    Attributes
    ----------
    exposure : DataFrame
        Index = the sessions index, one column per ingredient: mean session exposure over
        the subject's injection sessions on or before the visit (0 before any injection).
    cocktail : Series
        The cocktail last injected on or before the visit (missing before any injection).
    cocktails_per_subject : Series
        Number of distinct cocktails each subject received (index ``subject_id``).
    """

    exposure: pd.DataFrame
    cocktail: pd.Series
    cocktails_per_subject: pd.Series

    @property
    def switchers(self) -> list[str]:
        """Subjects who received more than one cocktail."""
        s = self.cocktails_per_subject
        return [str(v) for v in s.index[s.to_numpy() > 1]]


def course_exposure(
    study: Study, ingredients: Sequence[str], *, design: Design = "indicator"
) -> CourseExposure:
    """Exposure of each visit to the injections received so far (see the module docstring).

    Vectorised: sessions are sorted by subject and day, exposures are summed cumulatively
    and the running sums are restarted at each subject by subtracting the subject's offset.
    """
    arrays = course_arrays(study, ingredients, design=design)
    sessions = study.sessions
    return CourseExposure(
        exposure=pd.DataFrame(arrays.mean, index=sessions.index, columns=list(ingredients)),
        cocktail=pd.Series(arrays.last_cocktail, index=sessions.index, dtype="str"),
        cocktails_per_subject=pd.Series(
            arrays.n_distinct, index=pd.Index(arrays.subject_ids, name="subject_id"), name="c"
        ),
    )


@dataclass(frozen=True, eq=False)
class CourseArrays:
    """The numbers behind :class:`CourseExposure` (arrays in sessions order, no frames).

    ``mean``: sessions × ingredients; ``last_cocktail``: object array (None before any
    injection); ``subject_ids`` / ``n_distinct``: distinct cocktails per injected subject.
    """

    mean: np.ndarray
    last_cocktail: np.ndarray
    subject_ids: np.ndarray
    n_distinct: np.ndarray

    @property
    def switchers(self) -> list[str]:
        """Subjects who received more than one cocktail."""
        return [str(v) for v in self.subject_ids[self.n_distinct > 1]]


def course_arrays(
    study: Study, ingredients: Sequence[str], *, design: Design = "indicator"
) -> CourseArrays:
    """:func:`course_exposure` as arrays (what :func:`mesostats.fit_regrowth` reads)."""
    sessions, cocktail = _sessions_for(study, design)
    per_session = derive.ingredient_matrix(
        study.cocktails,
        cocktail,
        list(ingredients),
        kind=design,
        volume_ml=sessions["volume_ml"] if design == "dose" else None,
    ).astype(float)
    injected = cocktail.notna().to_numpy(dtype=bool)
    subject = sessions["subject_id"]
    subject_codes = np.asarray(pd.factorize(subject)[0], dtype=np.int64)
    day = sessions["day"].to_numpy(dtype="float64", na_value=np.nan)
    order = np.lexsort((day, subject_codes))
    codes_sorted = subject_codes[order]
    starts = np.r_[True, codes_sorted[1:] != codes_sorted[:-1]]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))

    given = np.where(injected[order, None], per_session[order], 0.0)
    running = np.cumsum(given, axis=0)
    before = np.vstack([np.zeros((1, running.shape[1])), running])[start_pos]
    summed = running - before
    count = np.cumsum(injected[order].astype(np.int64))
    count_before = np.r_[0, count][start_pos]
    n_injections = count - count_before
    mean_sorted = summed / np.maximum(n_injections, 1)[:, None]
    mean = np.empty_like(mean_sorted)
    mean[order] = mean_sorted

    # the cocktail of the subject's latest injection so far (forward fill within subject):
    # positions in sorted order are increasing, so a running maximum of the injected
    # positions finds it; one before the subject's first row means none yet
    injected_pos = np.where(injected[order], np.arange(len(order)), -1)
    latest = np.maximum.accumulate(injected_pos) if len(order) else injected_pos
    cocktails_sorted = cocktail.to_numpy(dtype=object)[order]
    last = np.where(latest >= start_pos, cocktails_sorted[np.maximum(latest, 0)], np.array(None))
    last_cocktail = np.empty(len(order), dtype=object)
    last_cocktail[order] = last
    # distinct cocktails per injected subject (sorted ids): distinct (subject, cocktail)
    # code pairs counted per subject, as groupby(...).nunique() without its overhead
    given_rows = injected & subject.notna().to_numpy(dtype=bool)
    subj_codes, subj_ids = pd.factorize(subject[given_rows], sort=True)
    coc_codes = pd.factorize(cocktail[given_rows])[0]
    width = int(coc_codes.max()) + 1 if coc_codes.size else 1
    pairs = np.unique(subj_codes.astype(np.int64) * width + coc_codes)
    n_distinct = np.bincount(pairs // width, minlength=len(subj_ids)).astype(np.int64)
    return CourseArrays(
        mean=mean,
        last_cocktail=last_cocktail,
        subject_ids=np.asarray(subj_ids, dtype=object),
        n_distinct=n_distinct,
    )


def resolve_ingredients(
    study: Study,
    ingredients: Sequence[str] | str | None,
    used: pd.DataFrame,
) -> tuple[list[str], list[str]]:
    """Check a requested ingredient list against the study and the cocktails used.

    Parameters
    ----------
    study : Study
    ingredients : sequence of str, str or None
        Requested ingredients; ``None`` = every active ingredient that some analysed cocktail
        contains.
    used : DataFrame
        :func:`recipe_matrix` restricted to the cocktails used in the analysed rows, with a
        column per active ingredient of the study.

    Returns
    -------
    chosen : list of str
        Ingredients to estimate, in the requested order (study order for ``None``).
    unused : list of str
        Active ingredients that no analysed cocktail contains (only for ``None``: they are
        left out and the caller says so).

    Raises
    ------
    ModelSpecError
        Unknown names, duplicates, saline, an empty list, or a requested ingredient that no
        analysed cocktail contains; the message lists what is available.
    """
    if list(used.columns) == list(study.ingredients):  # (as _used_matrix builds it)
        given = (used.to_numpy() != 0).any(axis=0)
    else:
        given = np.array([bool((used[ing] != 0).any()) for ing in study.ingredients])
    present = [ing for ing, yes in zip(study.ingredients, given, strict=True) if yes]
    cocktails_used = ", ".join(str(c) for c in used.index)
    if ingredients is None:
        unused = [ing for ing in study.ingredients if ing not in present]
        if not present:
            raise ModelSpecError(
                f"No active ingredient is in the cocktails used in the analysed rows "
                f"({cocktails_used or 'none'}); there is nothing to estimate. Active "
                f"ingredients of the study: {', '.join(study.ingredients) or 'none'}."
            )
        return present, unused
    requested = [ingredients] if isinstance(ingredients, str) else list(ingredients)
    if not requested:
        raise ModelSpecError(
            "ingredients=[] asks for no ingredient; give at least one of "
            f"{present} or ingredients=None for all."
        )
    bad_type = [ing for ing in requested if not isinstance(ing, str)]
    if bad_type:
        raise ModelSpecError(f"ingredients must be names (str), got {bad_type!r}.")
    duplicated = sorted({ing for ing in requested if requested.count(ing) > 1})
    if duplicated:
        raise ModelSpecError(f"ingredients lists {duplicated} more than once.")
    placebo = [ing for ing in requested if ing in derive.INACTIVE_INGREDIENTS]
    if placebo:
        raise ModelSpecError(
            f"{placebo[0]!r} is the placebo, not an active ingredient: sessions without any "
            f"active ingredient are the reference of every effect. Choose from {present}."
        )
    unknown = [ing for ing in requested if ing not in study.ingredients]
    if unknown:
        raise ModelSpecError(
            f"ingredient{'s' if len(unknown) > 1 else ''} {unknown} "
            f"{'are' if len(unknown) > 1 else 'is'} in no cocktail of this study. Available "
            f"ingredients: {study.ingredients}."
        )
    absent = [ing for ing in requested if ing not in present]
    if absent:
        raise ModelSpecError(
            f"ingredient{'s' if len(absent) > 1 else ''} {absent} "
            f"{'are' if len(absent) > 1 else 'is'} in none of the cocktails used in the "
            f"analysed rows ({cocktails_used}), so "
            f"{'their effects' if len(absent) > 1 else 'its effect'} cannot be estimated. "
            f"Ingredients given in these rows: {present}."
        )
    return requested, []
