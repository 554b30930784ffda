"""Hair counts per target area in :func:`mesostats.fit_regrowth`: the negative-binomial model.

A hair count is a count of hairs in a target area (``target_area_cm2``): its variance grows
with its mean, and more than a Poisson's (people, phototrichogram reads and areas add
variation). When the study records the target area, ``fit_regrowth(study, "hair_count")``
fits a negative-binomial (NB2) GLMM with the area as exposure (Hilbe 2011, *Negative Binomial
Regression*, §6.5; glmmTMB's ``nbinom2``, Brooks et al. 2017) instead of the LMM::

    value ~ offset(log(area)) + baseline_centered + week + week:<ingredient> + …
            + (1 + week | subject_id) [+ (1 | site)]

``baseline_centered`` is the log of the person's baseline hairs per cm² (centred), the
ANCOVA adjustment on the model's (log) scale. Effects are then on the log scale: the extra
change in log hairs per cm² per week (exp(effect) = rate ratio per week). The fit is
:func:`mesostats.fit_glmm` (``family="negative_binomial"``, Laplace).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = ["AREA", "count_family_note", "count_rows", "uses_count_model"]

AREA = "target_area_cm2"
COUNT_OUTCOMES = ("hair_count",)


def uses_count_model(study: Study, outcome: str) -> bool:
    """True when ``outcome`` is a hair count and the study records the target area."""
    sessions = study.sessions
    if outcome not in COUNT_OUTCOMES or AREA not in sessions.columns:
        return False
    return bool(sessions[AREA].notna().any())


def count_rows(study: Study, data: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """The regrowth rows with ``area`` and ``baseline_centered`` (centred log baseline
    hairs per cm²), and the centre (on the log scale)."""
    area = study.sessions[AREA].reindex(data.index).to_numpy(dtype=float)
    bad = ~(area > 0)
    if bad.any():
        rows = ", ".join(repr(i) for i in data.index[bad][:5])
        raise ModelSpecError(
            f"{AREA} must be a positive area (cm²) at every analysed visit; "
            f"{int(bad.sum())} visit(s) have a missing or non-positive area (rows {rows}). "
            f"Fix {AREA}, or analyse hair_density (hairs per cm²) instead."
        )
    baseline = data["baseline"].to_numpy(dtype=float)
    if np.any(baseline <= 0):
        raise ModelSpecError(
            "A baseline hair count of 0 cannot be adjusted for on the log scale; "
            f"{int(np.sum(baseline <= 0))} visit(s) have one. Check the baseline counts."
        )
    log_rate = np.log(baseline / area)
    center = float(log_rate.mean())
    return data.assign(area=area, baseline_centered=log_rate - center), center


def count_family_note(model_k: float | None, n_visits: int, n_people: int, center: float) -> str:
    """The note that says which family was used and why (first note of the results)."""
    k = "" if model_k is None else f" (estimated dispersion k = {model_k:.3g}: Var = μ + μ²/k)"
    return (
        "Hair counts in a target area: negative-binomial GLMM (NB2, log link) with the area "
        f"as exposure (offset log(target_area_cm2)){k}, because hair counts usually vary "
        "more than a Poisson's (the fit estimates by how much; a k at its upper bound means "
        "they do not) and the area differs between people. Baseline-adjusted on the log scale: "
        f"{n_visits} post-baseline visits of {n_people} people, each with the log of their "
        f"baseline hairs per cm² as a covariate (centred at {center:.4g}, i.e. "
        f"{np.exp(center):.4g} hairs/cm²). An ingredient's effect is the extra change in log "
        "hairs per cm² per week over the common trend (exp(effect) is the rate ratio per week)."
    )
