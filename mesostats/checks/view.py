"""What the model checks need from a fitted model, read the same way for every family.

:func:`model_view` turns a :class:`~mesostats.mixed.results.MixedResults` (LMM, GLMM), a
:class:`~mesostats.mixed.mmrm.results.MMRMResults`, a
:class:`~mesostats.mixed.clmm.results.CLMMResults` (grades as indices 0…K−1, the coding of
its ``simulate``; fitted = the expected index, marginal over persons) or a domain result
holding one in ``.model`` (``fit_regrowth``, ``fit_side_effects``) into a
:class:`ModelView`: the observed response and the simulated responses on the *count* scale
(successes for a ``cbind`` binomial, so that ties and zeros are those of the data), the
population-level fitted mean on that scale (DHARMa's ``fittedPredictedResponse``, R's
``predict(re.form = ~0)``), the person effects and the fixed effects whose influence is
shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.clmm.results import CLMMResults
from mesostats.mixed.mmrm.results import MMRMResults
from mesostats.mixed.results import MixedResults

__all__ = ["ModelView", "model_view"]


@dataclass(frozen=True, eq=False)
class ModelView:
    """The pieces of a fitted model the checks read (see module docstring).

    Attributes
    ----------
    model : MixedResults, MMRMResults or CLMMResults
    kind : str
        ``"LMM"``, ``"GLMM binomial"``, ``"GLMM poisson"``, ``"MMRM"``, ``"CLMM"``.
    observed : ndarray (rows,)
        Response on the count scale (a CLMM: the grade index 0…K−1).
    trials : ndarray (rows,)
        Binomial trials per row (1 for 0/1 rows and for other families).
    fitted : ndarray (rows,)
        Population-level mean on the count scale (a CLMM: the expected grade index under
        ``predict(type="prob")``, marginal over persons).
    integer : bool
        Discrete response (binomial, Poisson): residuals are randomised PIT values.
    aggregated : bool
        Counts (Poisson) or binomial rows with more than one trial: the zero-inflation test
        applies.
    person_effects : DataFrame or None
        Conditional modes of the grouping factor with the most levels (None for an MMRM).
    person_group : str or None
    key_terms : tuple of str
        Fixed effects whose influence is computed (a domain result's ingredient effects,
        else every effect except the intercept).
    """

    model: MixedResults | MMRMResults | CLMMResults
    kind: str
    observed: np.ndarray
    trials: np.ndarray
    fitted: np.ndarray
    integer: bool
    aggregated: bool
    person_effects: pd.DataFrame | None
    person_group: str | None
    key_terms: tuple[str, ...]

    def simulate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` simulated responses (rows, n) on the count scale (the model's ``simulate``)."""
        sims = np.asarray(self.model.simulate(n, seed=rng))
        if self.integer:
            return np.rint(sims * self.trials[:, None])
        return sims


def _key_terms(names: list[str], wanted: Any) -> tuple[str, ...]:
    if isinstance(wanted, dict) and wanted:
        chosen = [str(v) for v in wanted.values() if str(v) in names]
        if chosen:
            return tuple(chosen)
    rest = [n for n in names if n not in ("Intercept", "(Intercept)")]
    return tuple(rest or names)


def _clmm_view(model: CLMMResults, effect_terms: Any) -> ModelView:
    """A CLMM: grades as indices 0…K−1, drawn by ``simulate`` (discrete: randomised PIT)."""
    design = model.design
    observed = np.asarray(design.y, dtype=float)
    prob = np.asarray(model.predict(type="prob").to_numpy(), dtype=float)
    fitted = prob @ np.arange(prob.shape[1], dtype=float)
    person_group = design.terms[0].group if design.terms else None
    person = model.ranef[person_group] if person_group is not None else None
    return ModelView(
        model=model,
        kind="CLMM",
        observed=observed,
        trials=np.ones_like(observed),
        fitted=fitted,
        integer=True,
        aggregated=False,
        person_effects=person,
        person_group=person_group,
        key_terms=_key_terms(list(design.fixed_names), effect_terms),
    )


def model_view(results: Any) -> ModelView:
    """A :class:`ModelView` of ``results`` (ModelSpecError for anything else)."""
    effect_terms = getattr(results, "effect_terms", None)
    model = results
    if not isinstance(results, (MixedResults, MMRMResults, CLMMResults)):
        model = getattr(results, "model", None)
    if isinstance(model, CLMMResults):
        return _clmm_view(model, effect_terms)
    if isinstance(model, MMRMResults):
        y = np.asarray(model.problem.y, dtype=float)
        names = list(model.problem.fixed_names)
        return ModelView(
            model=model,
            kind="MMRM",
            observed=y,
            trials=np.ones_like(y),
            fitted=np.asarray(model.fitted.to_numpy(), dtype=float),
            integer=False,
            aggregated=False,
            person_effects=None,
            person_group=None,
            key_terms=_key_terms(names, effect_terms),
        )
    if not isinstance(model, MixedResults):
        raise ModelSpecError(
            f"check_model needs a fitted model (fit_lmm, fit_glmm, fit_mmrm, fit_clmm, "
            f"fit_regrowth, fit_side_effects, ...), got {type(results).__name__}."
        )
    design = model.design
    family = model.family
    trials = (
        np.asarray(design.prior_weights, dtype=float) if family == "binomial" else np.ones(design.n)
    )
    integer = family != "gaussian"
    observed = np.asarray(design.y, dtype=float)
    fitted = np.asarray(model.predict(include_random=False).to_numpy(), dtype=float)
    if integer:
        observed = np.rint(observed * trials)
        fitted = fitted * trials
    person_group = design.terms[0].group if design.terms else None
    person = model.ranef[person_group] if person_group is not None else None
    kind = "LMM" if family == "gaussian" else f"GLMM {family}"
    return ModelView(
        model=model,
        kind=kind,
        observed=observed,
        trials=trials,
        fitted=fitted,
        integer=integer,
        aggregated=family == "poisson" or (family == "binomial" and bool(np.any(trials > 1))),
        person_effects=person,
        person_group=person_group,
        key_terms=_key_terms(list(design.fixed_names), effect_terms),
    )
