"""The MMRM optimiser: plain Newton steps first, scipy's trust-exact from the start when a
Newton step fails. Both must reach the same optimum on fev_data (R mmrm's example data),
at 1e-10 relative (θ, β and their covariances; both stop at a gradient below 1e-8)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mmrm_data import fev_data
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ExclusionWarning
from mesostats.mixed.mmrm import fit as mmrm_fit

FORMULAS = [
    "FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)",
    "FEV1 ~ ARMCD * AVISIT + FEV1_BL + toeph(AVISIT | USUBJID)",
]


def _fit(formula: str) -> ms.MMRMResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)
        return ms.fit_mmrm(formula, fev_data(), df="satterthwaite")


@pytest.mark.parametrize("formula", FORMULAS)
def test_newton_and_trust_exact_reach_the_same_optimum(
    formula: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    newton = _fit(formula)
    assert newton.optimizer_info["method"] == "newton"
    assert newton.optimizer_info["gradient_max"] <= 1e-8
    monkeypatch.setattr(mmrm_fit, "_newton", lambda crit, theta: None)
    trust = _fit(formula)
    assert trust.optimizer_info["method"] == "trust-exact"
    assert_allclose(newton.theta, trust.theta, rtol=1e-10, atol=0)
    assert_allclose(newton.params.to_numpy(), trust.params.to_numpy(), rtol=1e-10, atol=0)
    scale = np.abs(trust.vcov.to_numpy()).max()
    assert_allclose(newton.vcov.to_numpy(), trust.vcov.to_numpy(), rtol=0, atol=1e-10 * scale)
    assert newton.loglik == pytest.approx(trust.loglik, rel=1e-13)


def test_newton_gives_way_far_from_the_optimum() -> None:
    """From a start far off (a Hessian not positive definite, or a full step that raises
    −ℓ), Newton returns None and trust-exact takes over; from mmrm's start it converges."""
    problem = mmrm_fit.build_problem(FORMULAS[0], fev_data().dropna())
    crit = mmrm_fit._Cached(problem)
    start = mmrm_fit._start(problem)
    assert mmrm_fit._newton(crit, start + 3.0) is None
    theta, steps = mmrm_fit._newton(crit, start) or (None, 0)
    assert theta is not None and 1 <= steps <= 12
