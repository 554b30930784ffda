"""Tests of mesostats.mixed.refit (ModelTemplate) and mesostats.mixed.compiled.

A template refit must give the numbers of the public fits (the same engines run on the same
matrices): compared with ``ms.fit_lmm`` / ``ms.fit_glmm`` on the data with the new response,
at 1e-12 relative (bit-for-bit in practice). The compiled formula pieces must give the
matrices formulaic gives (compared exactly).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from mixed_checks import load_csv
from numpy.testing import assert_allclose, assert_array_equal

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.mixed import compiled
from mesostats.mixed.design import build_design
from mesostats.mixed.refit import ModelTemplate

SLEEP = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
RTOL = 1e-12


def _same_fit(a: ms.MixedResults, b: ms.MixedResults) -> None:
    for col in ("estimate", "std_error", "df", "p_value"):
        assert_allclose(a.fixed_effects[col].to_numpy(), b.fixed_effects[col].to_numpy(), rtol=RTOL)
    assert_allclose(a.theta, b.theta, rtol=RTOL, atol=1e-14)
    assert_allclose(a.loglik, b.loglik, rtol=RTOL)
    assert_allclose(
        a.variance_components["sdcor"].to_numpy(dtype=float),
        b.variance_components["sdcor"].to_numpy(dtype=float),
        rtol=RTOL,
    )
    assert list(a.fixed_effects.index) == list(b.fixed_effects.index)


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return load_csv("sleepstudy.csv")


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    data = load_csv("cbpp.csv")
    data["period"] = data["period"].astype(str)
    return data


def test_template_fit_new_response_matches_fit_lmm(sleep: pd.DataFrame) -> None:
    template = ModelTemplate(SLEEP, sleep)
    rng = np.random.default_rng(1)
    y = sleep["Reaction"].to_numpy() + rng.normal(0.0, 20.0, len(sleep))
    ours = template.fit(y)
    direct = ms.fit_lmm(SLEEP, sleep.assign(Reaction=y))
    _same_fit(ours, direct)


def test_template_fit_new_data_matches_fit_lmm_ml(sleep: pd.DataFrame) -> None:
    template = ModelTemplate(SLEEP, sleep, reml=False)
    half = sleep[sleep["Subject"] % 2 == 0].reset_index(drop=True)
    _same_fit(template.fit(half), ms.fit_lmm(SLEEP, half, reml=False))
    assert template.fit(half).method == "ML"


def test_template_fit_new_proportions_matches_fit_glmm(cbpp: pd.DataFrame) -> None:
    template = ModelTemplate(CBPP, cbpp, family="binomial")
    rng = np.random.default_rng(2)
    herd = pd.factorize(cbpp["herd"])[0]
    logit = -1.5 + rng.normal(0.0, 1.0, herd.max() + 1)[herd]
    incidence = rng.binomial(cbpp["size"].to_numpy(), 1.0 / (1.0 + np.exp(-logit)))
    ours = template.fit(incidence / cbpp["size"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = ms.fit_glmm(CBPP, cbpp.assign(incidence=incidence))
    _same_fit(ours, direct)


def test_template_from_results_agq_matches_fit_glmm(cbpp: pd.DataFrame) -> None:
    fit = ms.fit_glmm(CBPP, cbpp, nagq=9)
    template = ModelTemplate.from_results(fit)
    assert "AGQ(9)" in repr(template)
    _same_fit(template.fit(fit.design.y), fit)


def test_template_estimates_match_full_refit(sleep: pd.DataFrame) -> None:
    """estimates() reaches the optimum of the full fit: θ to 1e-5 relative, β to 1e-6 (the
    sleepstudy tolerances of the reference README) from a different start."""
    template = ModelTemplate(SLEEP, sleep)
    y = sleep["Reaction"].to_numpy() * 1.1
    est = template.estimates(y)
    full = template.fit(y)
    assert est.converged
    assert_allclose(est.theta, full.theta, rtol=1e-5)
    assert_allclose(est.beta, full.fixed_effects["estimate"].to_numpy(), rtol=1e-6)
    assert_allclose(est.sigma, full.sigma, rtol=1e-6)


def test_template_refuses_wrong_length_and_invalid_response(
    sleep: pd.DataFrame, cbpp: pd.DataFrame
) -> None:
    template = ModelTemplate(SLEEP, sleep)
    with pytest.raises(ModelSpecError, match=r"shape \(3,\), the model has 180 fitted rows"):
        template.fit(np.ones(3))
    with pytest.raises(ModelSpecError, match="must be finite numbers; 1 value"):
        template.fit(np.r_[np.nan, np.ones(179)])
    binomial = ModelTemplate(CBPP, cbpp, family="binomial")
    with pytest.raises(ModelSpecError, match="proportion of successes"):
        binomial.fit(np.full(len(cbpp), 1.5))


def test_template_pickles(sleep: pd.DataFrame) -> None:
    template = ModelTemplate(SLEEP, sleep)
    again = pickle.loads(pickle.dumps(template))
    assert again.nobs == 180 and again.formula == SLEEP
    _same_fit(again.fit(sleep["Reaction"].to_numpy()), ms.fit_lmm(SLEEP, sleep))


def test_compiled_numeric_recipe_matches_formulaic() -> None:
    """The numeric recipe reproduces formulaic's matrix exactly; a column that turns
    categorical in later data goes through formulaic again (dummy columns)."""
    rng = np.random.default_rng(3)
    n = 40
    data = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "w": rng.integers(0, 5, n),
            "g": np.repeat(np.arange(8), 5),
        }
    )
    formula = "y ~ x * w + (1 + x | g)"
    first = build_design(formula, data)
    assert compiled._recipes.get("x * w") is not None  # learnt from formulaic's output
    other = data.assign(x=rng.normal(size=n))
    second = build_design(formula, other)
    compiled._recipes.pop("x * w")
    compiled._recipes.pop("1 + x")
    fresh = build_design(formula, other)
    assert_array_equal(second.X, fresh.X)
    assert_array_equal(second.terms[0].Z, fresh.terms[0].Z)
    assert second.fixed_names == fresh.fixed_names == first.fixed_names
    text = data.assign(w=data["w"].map(lambda v: f"level{v}"))
    coded = build_design(formula, text)
    assert coded.fixed_names[:3] == ("Intercept", "x", "w[T.level1]")
    assert coded.p == 2 + 2 * 4
