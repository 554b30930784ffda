"""check_model on fit_clmm results: simulated-residual tests (DHARMa) on the grade indices.

The grades are drawn by ``CLMMResults.simulate`` (indices 0…K−1, the coding of the observed
grades) and get randomised PIT residuals (discrete response). Calibration: 12 data sets
simulated from the wine fit and refitted; at the 5 % level no test may reject more than 3 of
12 (binomial(12, 0.05) exceeds 3 with probability 0.002). Person influence and the
person-effect normality test are not computed for a CLMM (they need a linearisation of the
ordinal likelihood), which the results say.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.checks.residuals import scaled_residuals
from mesostats.checks.simulation_tests import uniformity_test
from mesostats.checks.view import model_view

REF_DIR = Path(__file__).parent / "reference"
FORMULA = "rating ~ temp + contact + (1 | judge)"


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "wine.csv", dtype={"judge": str, "bottle": str})


@pytest.fixture(scope="module")
def fit(wine) -> ms.CLMMResults:
    return ms.fit_clmm(FORMULA, wine)


def test_check_model_runs_the_simulated_residual_tests_on_a_clmm(fit):
    check = ms.check_model(fit, n_sim=200, seed=3)
    assert check.kind == "CLMM"
    assert list(check.tests["test"]) == ["uniformity", "dispersion", "outliers", "residual_trend"]
    assert check.residuals.between(0, 1).all() and len(check.residuals) == fit.nobs
    assert check.influence.empty and check.key_effect is None
    assert "person influence and the person-effect" in str(check.summary())
    assert_allclose(ms.check_model(fit, n_sim=200, seed=3).residuals, check.residuals)
    view = model_view(fit)
    prob = fit.predict(type="prob").to_numpy()
    assert_allclose(view.fitted, prob @ np.arange(5.0), rtol=1e-12)
    assert ms.check_model(fit, n_sim=50, conditional=True).tests.shape[0] == 4


def test_observed_and_simulated_grades_share_their_coding(fit):
    """Off-by-one observed grades would make the PIT residuals far from uniform."""
    view = model_view(fit)
    rng = np.random.default_rng(0)
    sims = view.simulate(200, rng)
    ok = uniformity_test(scaled_residuals(view.observed, sims, rng))
    shifted = uniformity_test(scaled_residuals(view.observed + 1, sims, rng))
    assert ok[2] > 0.05 and shifted[2] < 1e-6


def test_no_test_rejects_more_than_3_of_12_clmms_fitted_to_their_own_simulations(fit, wine):
    sims = fit.simulate(12, seed=20)
    rejections = pd.Series(0, index=["uniformity", "dispersion", "outliers", "residual_trend"])
    refitted = 0
    for j in range(sims.shape[1]):
        data = wine.copy()
        data["rating"] = np.asarray(fit.levels)[sims[:, j].astype(int)].astype(int)
        if data["rating"].nunique() < 5:
            continue  # a grade not drawn: the flexible model cannot be refitted
        refit = ms.fit_clmm(FORMULA, data)
        refitted += 1
        tests = ms.check_model(refit, n_sim=100, seed=j).tests.set_index("test")
        rejections = rejections.add((tests["p_value"] < 0.05).astype(int), fill_value=0)
    assert refitted >= 10
    assert rejections.max() <= 3, rejections
