"""Pieces every domain fit shares: column names, excluded-row tables, the study check, Holm's
adjustment, and the wording of engine warnings and boundary estimates as plain-language notes.

Holm (1979, *Scand. J. Statist.* 6(2)) is written out here (three lines): statsmodels'
``multipletests`` runs ``gc.collect()`` on every Holm call (about 0.1 s), which would dominate
repeated fits in :func:`mesostats.power`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.data.parse import is_arrow_text
from mesostats.data.study import Study
from mesostats.domain.aliasing import absorbed_by, require_estimable
from mesostats.domain.exposure import recipe_values, resolve_ingredients
from mesostats.exceptions import (
    ConvergenceWarning,
    ExclusionWarning,
    ModelSpecError,
    SingularFitWarning,
)
from mesostats.mixed.boundary import SINGULAR_TOL
from mesostats.mixed.results import MixedResults

if TYPE_CHECKING:
    from mesostats.data.study import Study


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
_BOUNDARY_COR = 1e-6  # a correlation within this of ±1 is on the boundary
#: Zeger, Liang & Albert (1988): logit-normal attenuation constant c = 16√3/(15π).
_ATTENUATION_C2 = (16.0 * math.sqrt(3.0) / (15.0 * math.pi)) ** 2


#: Columns of ``RegrowthResults.excluded_rows`` / ``SideEffectResults.excluded_rows``.
EXCLUDED_COLUMNS = ["row", "subject_id", "visit", "reason"]


def _exclusion_frame(rows: pd.DataFrame, reasons: Sequence[str]) -> pd.DataFrame:
    """``row`` (index label in the study table), ``subject_id``, ``visit``, ``reason``."""
    return _object_frame(
        {
            "row": list(rows.index),
            "subject_id": list(rows[SUBJECT]),
            "visit": list(rows["visit"]),
            "reason": list(reasons),
        }
    )


def _object_frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    """A DataFrame of object columns (in :data:`EXCLUDED_COLUMNS` order) from lists.

    Object ndarrays are handed to pandas as they are (no per-Series inference): the same
    frame as ``pd.Series(values, dtype=object)`` per column, at a fraction of the cost.
    """
    arrays = {}
    for name in EXCLUDED_COLUMNS:
        values = columns[name]
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        arrays[name] = arr
    return pd.DataFrame(arrays, columns=EXCLUDED_COLUMNS, dtype=object, copy=False)


def _empty_exclusions() -> pd.DataFrame:
    return _EMPTY_EXCLUSIONS.copy()


_EMPTY_EXCLUSIONS = _object_frame({name: [] for name in EXCLUDED_COLUMNS})


def _engine_excluded(model: MixedResults) -> pd.DataFrame:
    """``model.excluded_rows``, read in place from the model's design where it has one (no
    copy of an empty table); not to be modified."""
    design = getattr(model, "design", None)
    return design.excluded_rows if design is not None else model.excluded_rows


def _engine_exclusions(model: MixedResults, data: pd.DataFrame) -> pd.DataFrame:
    """The rows the engine set aside (missing values in a model column), located in data."""
    ex = _engine_excluded(model)
    if not len(ex):
        return _empty_exclusions()
    return _exclusion_frame(data.loc[list(ex["row"]), [SUBJECT, "visit"]], list(ex["reason"]))


def _with_engine_exclusions(
    dropped: pd.DataFrame, model: MixedResults, data: pd.DataFrame
) -> pd.DataFrame:
    """``_stack_exclusions(dropped, _engine_exclusions(model, data))``: ``dropped`` (the
    caller's fresh frame from :func:`_exclusion_frame` or :func:`_empty_exclusions`, an empty
    one equal to the latter) as it is when the engine set no row aside, so the common case
    copies no empty table."""
    if not len(_engine_excluded(model)):
        return dropped
    return _stack_exclusions(dropped, _engine_exclusions(model, data))


def _stack_exclusions(*parts: pd.DataFrame) -> pd.DataFrame:
    kept = [p for p in parts if len(p)]
    if not kept:
        return _empty_exclusions()
    if len(kept) == 1 and kept[0] is parts[0]:  # (the caller's fresh frame, index 0…n−1)
        return kept[0]
    return pd.concat(kept, ignore_index=True)


# Shared pieces
# --------------------------------------------------------------------------------------------


def _check_study(study: Any) -> None:

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
    """Pass engine warnings on; singular fits become notes.

    Our own warnings (convergence, exclusion) are re-issued at
    the user's call (``stacklevel``), where they concern the user's analysis. Any other
    warning (numpy, scipy, pandas, …) is re-issued where it was raised
    (``warnings.warn_explicit`` with its file and line), so filters a user set by module keep
    matching it.
    """
    ours = (ConvergenceWarning, ExclusionWarning, SingularFitWarning)
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, SingularFitWarning):
            continue  # worded by _variance_notes
        if not issubclass(w.category, ours):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
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
    sigma = model.sigma if model.family == "gaussian" else 1.0
    records = _variance_records(model)
    sds = [r for r in records if pd.isna(r.var2) and r.group != "Residual"]
    for rec in sds:
        group, term, sd = str(rec.group), str(rec.var1), float(rec.sdcor)
        if sd >= SINGULAR_TOL * sigma:  # the engines' rule (lme4's isSingular)
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
    cors = [r for r in records if not pd.isna(r.var2)]
    for rec in cors:
        r = float(rec.sdcor)
        if abs(r) > 1.0 - _BOUNDARY_COR:
            text = (
                f"The correlation of {rec.var1} and {rec.var2} within {rec.group} is "
                f"estimated at {r:+.3f} (on the boundary ±1): the data cannot separate the "
                "two person-level effects; consider random_slope=False."
            )
            notes.append(text)
            if str(rec.group) in warn_for:
                warnings.warn(text, SingularFitWarning, stacklevel=stacklevel)


@dataclass(frozen=True)
class _VarianceRecord:
    """One row of ``variance_components``: group, var1, var2 (None for an SD), sdcor."""

    group: str
    var1: str | None  # (None on the residual row)
    var2: str | None  # None for an SD
    sdcor: float


def _variance_records(model: Any) -> list[_VarianceRecord]:
    """The rows of ``model.variance_components`` (group, var1, var2, sdcor), read from
    the fitted numbers without building the table when the model can
    (:class:`~mesostats.mixed.results.MixedResults`); from the table otherwise."""
    if isinstance(model, MixedResults):
        rows = [(g, v1, v2, sdcor) for g, v1, v2, _, sdcor in model._variance_component_rows()]
    else:
        vc = model.variance_components
        rows = list(vc[["group", "var1", "var2", "sdcor"]].itertuples(index=False, name=None))
    return [_VarianceRecord(str(g), _text(v1), _text(v2), float(sd)) for g, v1, v2, sd in rows]


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _used_matrix(study: Study, cocktails_used: Sequence[str], *, design: str) -> pd.DataFrame:
    """:func:`recipe_matrix` restricted to ``cocktails_used`` (in the recipes' order)."""
    ids, values = recipe_values(study.cocktails, study.ingredients, design=design)  # type: ignore[arg-type]
    wanted = set(cocktails_used)
    rows = [i for i, c in enumerate(ids) if c in wanted]
    index = pd.Index(ids[rows], dtype="str", name="cocktail_id")
    return pd.DataFrame(values[rows], index=index, columns=list(study.ingredients))


def _text_values(column: pd.Series) -> Any:
    """``column.astype(str)``'s values; a text column's own (no converted copy)."""
    if is_arrow_text(column):
        return column.array
    return column.astype(str).to_numpy(dtype=object)


def _columns(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``frame[names]``; the frame itself when those are its columns (results tables are
    handed out as copies, so no copy is needed here)."""
    return frame if list(frame.columns) == list(names) else frame[list(names)]


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


def _wald_columns(model: Any, effect_terms: dict[str, str]) -> dict[str, np.ndarray]:
    """Estimate, SE, 95 % Wald CI and p of each ingredient's term, in ingredient order: the
    numbers of ``model.fixed_effects``, read without building the table when the model can
    (:class:`~mesostats.mixed.results.MixedResults`)."""
    if isinstance(model, MixedResults):
        names = list(model.design.fixed_names)
        table = model._fixed_effect_columns()
    else:
        fe = model.fixed_effects
        names = list(fe.index)
        table = {c: fe[c].to_numpy(dtype=float) for c in fe.columns}
    missing = [t for t in effect_terms.values() if t not in names]
    if missing:  # pragma: no cover - formulaic naming changed
        raise ModelSpecError(
            f"the fitted model has no fixed effect named {missing}; terms are "
            f"{names}. Please report this."
        )
    rows = [names.index(t) for t in effect_terms.values()]
    columns = ["estimate", "std_error", "ci_lower", "ci_upper", "p_value"]
    return {c: np.asarray(table[c], dtype=float)[rows] for c in columns}


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
    chosen_design = used if list(used.columns) == chosen else used[chosen]
    require_estimable(chosen_design, design=design, intercept_meaning=intercept_meaning)
    _absorbed_notes(used, chosen, study, notes)
    return chosen
