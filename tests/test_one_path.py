"""The one simulation path (mesostats.mixed.simulation) is what the parametric bootstrap and
the study simulator draw with, and rewiring them kept every seed's draws.

Frozen values: ``simulate_tables(30, 6, seed=1)`` as drawn by the simulator's own sampler
before it used the shared primitives (main at 86930eb); they must stay bit-for-bit (compared
at rtol 1e-15: the same floating-point operations in the same order).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mesostats as ms
from mesostats.mixed.profile import bootstrap_variance_components
from mesostats.mixed.refit import ModelTemplate
from mesostats.mixed.simulation import draw_random_effects, simulate_mixed
from mesostats.simulate import simulate_tables

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def cbpp_fit() -> ms.MixedResults:
    cbpp = pd.read_csv(REF / "cbpp.csv", dtype={"herd": str, "period": str})
    return ms.fit_glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)


@pytest.fixture(scope="module")
def sleep_fit() -> ms.MixedResults:
    sleep = pd.read_csv(REF / "sleepstudy.csv", dtype={"Subject": str})
    return ms.fit_lmm("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.mark.parametrize("which", ["cbpp_fit", "sleep_fit"])
def test_bootstrap_replicate_is_a_refit_of_one_simulate_mixed_draw(which, request):
    """Replicate j = refit of simulate_mixed(n=1) from child j of SeedSequence(seed)."""
    fit = request.getfixturevalue(which)
    boot = bootstrap_variance_components(fit, n_boot=3, seed=5)
    template = ModelTemplate.from_design(
        fit.design, family=fit.family, reml=fit.method == "REML", nagq=1
    )
    for j, child in enumerate(np.random.SeedSequence(5).spawn(3)):
        y = simulate_mixed(
            fit.design,
            family=fit.family,
            beta=fit.params.to_numpy(),
            theta=fit.theta,
            sigma=fit.sigma,
            n=1,
            rng=np.random.default_rng(child),
        )[:, 0]
        est = template.estimates(y, start=fit.theta if fit.family == "gaussian" else None)
        assert_array_equal(boot.theta[j], est.theta)
        assert_array_equal(boot.beta[j], est.beta)


def test_simulator_person_effects_are_draw_random_effects_of_their_streams():
    """u0, u1 come first from the regrowth stream (child 1), v after the (n, k) assessment
    uniforms from the side-effect stream (child 2)."""
    n, k = 30, 6
    _, truth = simulate_tables(n, k, seed=1)
    effects = truth["subject_effects"]
    rho = truth["intercept_slope_corr"]
    children = np.random.SeedSequence(1).spawn(4)
    corr_factor = np.array([[1.0, 0.0], [rho, math.sqrt(1.0 - rho * rho)]])
    (b,) = draw_random_effects([corr_factor], [n], 1, np.random.default_rng(children[1]))
    assert_array_equal(effects["u0"], truth["intercept_sd"] * b[:, 0, 0])
    assert_array_equal(effects["u1"], truth["slope_sd"] * b[:, 1, 0])
    rng = np.random.default_rng(children[2])
    rng.random((n, k))
    (v,) = draw_random_effects([np.array([[truth["event_sd"]]])], [n], 1, rng)
    assert_array_equal(effects["v"], v[:, 0, 0])


def test_seeded_study_is_unchanged_by_the_shared_path():
    tables, truth = simulate_tables(30, 6, seed=1)
    effects = truth["subject_effects"]
    assert_allclose(
        effects["u0"].to_numpy()[:3],
        [54.68496462014995, -27.62640049325728, 21.020545694737393],
        rtol=1e-15,
    )
    assert_allclose(
        effects["u1"].to_numpy()[:3],
        [0.46917090556014884, 0.5689494051612154, -0.8716069365343504],
        rtol=1e-15,
    )
    assert_allclose(
        effects["v"].to_numpy()[:3],
        [-1.2217176831497594, 0.04048846395799938, -1.6552125595265244],
        rtol=1e-15,
    )
    density = tables["sessions"]["hair_density"]
    assert_allclose(density.to_numpy()[:6], [180.8, 176.8, 182.8, 171.3, 182.1, 184.8], rtol=0)
    assert_allclose(density.sum(), 20661.6, rtol=1e-12)  # one-decimal values: exact to rounding
    events = tables["adverse_events"]
    assert len(events) == 21
    assert events["event"].head(3).tolist() == ["pain", "oedema", "erythema"]
