"""A power trial reuses what is fixed across the trials of one plan, and gives exactly the
analysis of the plain path.

What a worker builds once and reuses (per process): the cocktails table of the plan's recipes
(``mesostats.simulate.tables``), the estimability check of the cocktails used
(``mesostats.domain.aliasing.find_aliasing``), the compiled formula pieces
(``mesostats.mixed.compiled``); the trusted simulation takes the adverse events' session rows
from the draw. The reference is the plain public path: ``simulate_study`` (validated tables)
then ``fit_regrowth`` / ``fit_side_effects``, run with those caches emptied. The estimate,
standard error and p-value of the tested ingredient must be equal bit for bit (rtol 0).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import mesostats as ms
from mesostats.domain import aliasing
from mesostats.planning.trials import SIDE_EFFECT, _run_trial, _TrialPlan, simulation_seed
from mesostats.simulate import tables
from mesostats.simulate.parameters import DEFAULT_DROPOUT, DEFAULT_MISSING_RATE

DESIGN = {
    "n_sites": 3,
    "cocktails": None,
    "dropout": DEFAULT_DROPOUT,
    "missing_rate": DEFAULT_MISSING_RATE,
    "n_followup": None,
}


def _plan(outcome: str) -> _TrialPlan:
    return _TrialPlan(
        seed=11,
        n_sessions=6,
        effects=None,
        design=DESIGN,
        outcome=outcome,
        test="minoxidil",
        event=None,
        random_slope=True,
        nagq=1,
        alpha=0.05,
    )


def _plain(outcome: str, n_subjects: int, simulation: int) -> tuple[float, float, float]:
    """The tested effect by the public path, with every per-process cache emptied first."""
    aliasing._ALIASING_CACHE.clear()
    tables._COCKTAIL_TABLES.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = ms.simulate_study(
            n_subjects, 6, seed=simulation_seed(11, n_subjects, simulation), **DESIGN
        )
        if outcome == SIDE_EFFECT:
            fit: Any = ms.fit_side_effects(study)
        else:
            fit = ms.fit_regrowth(study, outcome)
    row = fit.model.fixed_effects.loc[fit.effect_terms["minoxidil"]]
    return float(row["estimate"]), float(row["std_error"]), float(row["p_value"])


@pytest.mark.parametrize("outcome", ["hair_density", SIDE_EFFECT])
def test_trial_with_reused_pieces_equals_the_plain_path(outcome: str) -> None:
    plan = _plan(outcome)
    n = 40
    trials = [_run_trial(plan, n, j) for j in range(4)]  # caches warm after the first
    again = _run_trial(plan, n, 1)  # a trial rerun after others: the same numbers
    for j, trial in enumerate(trials):
        assert trial[8] is None, trial[8]  # no error
        np.testing.assert_allclose(trial[2:5], _plain(outcome, n, j), rtol=0, atol=0)
    np.testing.assert_allclose(again[2:5], trials[1][2:5], rtol=0, atol=0)


def test_cocktail_table_of_the_plan_is_built_once_and_handed_out_as_copies() -> None:
    tables._COCKTAIL_TABLES.clear()
    recipes = {"P": {"saline": {"concentration": 0.9, "unit": "%"}}}
    first = tables._cocktails_table(recipes)
    second = tables._cocktails_table(recipes)
    assert len(tables._COCKTAIL_TABLES) == 1
    assert first is not second
    first.loc[0, "concentration"] = 5.0  # a caller's edit does not reach the next draw
    assert tables._cocktails_table(recipes).loc[0, "concentration"] == 0.9
