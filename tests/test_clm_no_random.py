"""fit_clmm without random terms (a cumulative link model) against ordinal::clm on wine.

References: ``reference/ref_clmm.R`` (block ``clm_no_random``; ordinal 2022.11.16, clm with
gradTol 1e-10) beside ``ref_clmm.json``::

    clm(rating ~ temp + contact, wine)                               # logit, flexible
    clm(rating ~ temp + contact, wine, threshold = "equidistant")
    clm(rating ~ temp + contact, wine, link = "probit")

Tolerances (absolute): coefficients and thresholds 1e-6, log-likelihood 1e-8, AIC/BIC 1e-7,
standard errors 1e-5 (both sides use the exact Hessian at a gradient below 1e-10).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.clmm.fixed import _FixedOrdinal
from mesostats.mixed.clmm.links import get_link
from mesostats.mixed.clmm.thresholds import threshold_structure

REF_DIR = Path(__file__).parent / "reference"
REF = json.loads((REF_DIR / "ref_clmm.json").read_text())["clm_no_random"]
FORMULA = "rating ~ temp + contact"
CASES: dict[str, dict[str, Any]] = {
    "logit_flexible": {},
    "logit_equidistant": {"threshold": "equidistant"},
    "probit_flexible": {"link": "probit"},
}


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "wine.csv", dtype={"judge": str, "bottle": str})


@pytest.fixture(scope="module")
def fits(wine: pd.DataFrame) -> dict[str, ms.CLMMResults]:
    return {key: ms.fit_clmm(FORMULA, wine, **kw) for key, kw in CASES.items()}


def _values(d: dict[str, float]) -> np.ndarray:
    return np.array(list(d.values()), dtype=float)


@pytest.mark.parametrize("key", list(CASES))
def test_wine_no_random_estimates_match_clm(fits: dict[str, ms.CLMMResults], key: str) -> None:
    fit, ref = fits[key], REF[key]
    assert_allclose(fit.coefficients.to_numpy(), _values(ref["coefficients"]), atol=1e-6, rtol=0)
    assert_allclose(fit.thresholds["estimate"], ref["thresholds"], atol=1e-6, rtol=0)
    assert fit.converged and fit.nobs == ref["nobs"] == 72
    assert fit.method == "ML (no random effects)"
    assert fit.variance_components.empty and fit.ranef == {}


@pytest.mark.parametrize("key", list(CASES))
def test_wine_no_random_loglik_matches_clm(fits: dict[str, ms.CLMMResults], key: str) -> None:
    fit, ref = fits[key], REF[key]
    assert_allclose(fit.loglik, ref["loglik"], atol=1e-8, rtol=0)
    assert_allclose([fit.aic, fit.bic], [ref["aic"], ref["bic"]], atol=1e-7, rtol=0)


@pytest.mark.parametrize("key", list(CASES))
def test_wine_no_random_standard_errors_match_clm(
    fits: dict[str, ms.CLMMResults], key: str
) -> None:
    fit, ref = fits[key], REF[key]
    se = _values(ref["std_errors"])
    assert_allclose(np.sqrt(np.diag(fit.full_vcov)), se, atol=1e-5, rtol=0)
    assert_allclose(fit.thresholds["std_error"], ref["threshold_se"], atol=1e-5, rtol=0)


def test_no_random_hessian_equals_differences_of_its_gradient(wine: pd.DataFrame) -> None:
    """The exact Hessian of the fixed engine agrees with central differences of its exact
    gradient (5e-6 relative), for the equidistant structure (J ≠ I) off the optimum."""
    y = wine["rating"].to_numpy() - 1
    X = np.column_stack([wine.temp == "warm", wine.contact == "yes"]).astype(float)
    structure = threshold_structure("equidistant", ["1", "2", "3", "4", "5"])
    model = _FixedOrdinal(get_link("logit"), y, X, structure.jacobian)
    x = np.array([-0.8, 1.9, 2.0, 1.2])
    _, _, H = model._evaluate(x, 2)
    h = 1e-5
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        cols.append((model._evaluate(x + e, 2)[1] - model._evaluate(x - e, 2)[1]) / (2 * h))
    assert_allclose(H, np.column_stack(cols), rtol=5e-6, atol=1e-7)


def test_no_random_predictions_are_the_clm_probabilities(
    fits: dict[str, ms.CLMMResults], wine: pd.DataFrame
) -> None:
    """Without random effects predict() is F(θ_j − xᵀβ) differences (to 1e-12)."""
    fit = fits["logit_flexible"]
    probs = fit.predict(wine).to_numpy()
    eta = fit.predict(wine, type="linear").to_numpy()
    cum = 1.0 / (1.0 + np.exp(-(fit.thresholds["estimate"].to_numpy()[None, :] - eta[:, None])))
    expected = np.diff(np.column_stack([np.zeros(72), cum, np.ones(72)]), axis=1)
    assert_allclose(probs, expected, atol=1e-12, rtol=0)
    y = wine["rating"].to_numpy() - 1
    assert_allclose(np.log(probs[np.arange(72), y]).sum(), fit.loglik, atol=1e-10, rtol=0)


def test_no_random_quadrature_is_refused(wine: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match=r"nagq = 10 needs a random effect"):
        ms.fit_clmm(FORMULA, wine, nagq=10)
