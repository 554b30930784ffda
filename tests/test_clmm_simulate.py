"""CLMMResults.simulate: simulated grade frequencies against the model's own probabilities.

Model: fit_clmm(rating ~ temp + contact + (1 | judge)) on the wine data (72 rows, 5 grades).
Per fitted row and grade, the frequency over n draws must lie within 5 binomial SDs,
5 · sqrt(p (1 − p) / n), of the probability it is drawn from (360 row × grade checks: a false
alarm has probability below 1e-4): ``predict(type="prob")`` (marginal over judges) for new
random effects, ``predict(type="prob", include_random=True)`` (each judge's conditional mode)
for ``conditional=True``, and F(θ − xᵀβ) for b = 0. Over all rows the pooled frequencies
must also pass a χ² goodness-of-fit test at p > 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import special, stats

import mesostats as ms
from mesostats.exceptions import ModelSpecError

REF_DIR = Path(__file__).parent / "reference"
N_DRAWS = 4000
SDS = 5.0


@pytest.fixture(scope="module")
def fit() -> ms.CLMMResults:
    wine = pd.read_csv(REF_DIR / "wine.csv", dtype={"judge": str, "bottle": str})
    return ms.fit_clmm("rating ~ temp + contact + (1 | judge)", wine)


def _frequencies(draws: np.ndarray, k: int) -> np.ndarray:
    return np.stack([(draws == j).mean(axis=1) for j in range(k)], axis=1)


def _check_within_bounds(freq: np.ndarray, prob: np.ndarray, n: int) -> None:
    bound = SDS * np.sqrt(prob * (1.0 - prob) / n) + 1e-12
    assert np.all(np.abs(freq - prob) <= bound), np.max(np.abs(freq - prob) / bound)
    counts = freq.sum(axis=0) * n
    expected = prob.sum(axis=0) * n
    assert stats.chisquare(counts, expected).pvalue > 1e-4


def _at_zero(fit: ms.CLMMResults) -> np.ndarray:
    eta = fit.predict(type="linear").to_numpy()
    cuts = fit.thresholds["estimate"].to_numpy()
    cum = special.expit(cuts[None, :] - eta[:, None])
    ones = np.ones((eta.size, 1))
    return np.diff(np.hstack([0 * ones, cum, ones]), axis=1)


def test_new_random_effects_give_the_marginal_probabilities(fit):
    draws = fit.simulate(N_DRAWS, seed=1)
    assert draws.shape == (fit.nobs, N_DRAWS)
    assert draws.dtype == float
    assert set(np.unique(draws)) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    prob = fit.predict(type="prob").to_numpy()
    _check_within_bounds(_frequencies(draws, 5), prob, N_DRAWS)


def test_conditional_draws_give_each_judges_conditional_probabilities(fit):
    draws = fit.simulate(N_DRAWS, seed=2, conditional=True)
    prob = fit.predict(type="prob", include_random=True).to_numpy()
    _check_within_bounds(_frequencies(draws, 5), prob, N_DRAWS)
    marginal = fit.predict(type="prob").to_numpy()
    assert np.max(np.abs(prob - marginal)) > 0.1  # the two targets differ: the test can fail


def test_zero_random_effects_give_the_average_persons_probabilities(fit):
    draws = fit.simulate(N_DRAWS, seed=3, include_random=False)
    _check_within_bounds(_frequencies(draws, 5), _at_zero(fit), N_DRAWS)


def test_grade_index_k_is_levels_k_and_matches_the_observed_grades_in_mean(fit):
    observed = fit.model_frame["rating"].astype(str).map(fit.levels.index).to_numpy()
    draws = fit.simulate(2000, seed=4, conditional=True)
    # E(grade index) per draw vs the data's mean index: same scale and direction
    assert abs(draws.mean() - observed.mean()) < 0.1


def test_seeds_reproduce_and_differ(fit):
    a = fit.simulate(5, seed=11)
    assert_array_equal(a, fit.simulate(5, seed=11))
    assert_array_equal(a, fit.simulate(5, seed=np.random.default_rng(11)))
    assert not np.array_equal(a, fit.simulate(5, seed=12))
    assert_allclose(fit.simulate(1, seed=0), fit.simulate(1))


def test_bad_arguments_are_refused(fit):
    with pytest.raises(ModelSpecError, match="choose one"):
        fit.simulate(2, include_random=False, conditional=True)
    with pytest.raises(ModelSpecError, match=r"n \(number of simulated responses\)"):
        fit.simulate(0)
    with pytest.raises(ModelSpecError, match="seed must be a whole number"):
        fit.simulate(2, seed=-1)


def test_links_without_a_drawer_are_refused():
    wine = pd.read_csv(REF_DIR / "wine.csv", dtype={"judge": str, "bottle": str})
    cloglog = ms.fit_clmm("rating ~ temp + contact + (1 | judge)", wine, link="cloglog")
    with pytest.raises(ModelSpecError, match="link is 'cloglog'"):
        cloglog.simulate(2)
