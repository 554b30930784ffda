"""The GLMM optimiser's preconditioner on a badly scaled start (mixed/glmm/core.py).

A bounded coordinate (θ) may only be scaled by the preconditioner, never mixed with β, so the
inverse Cholesky factor must be exactly upper triangular.
"""

from __future__ import annotations

import warnings

import numpy as np

import mesostats as ms
from mesostats.mixed.glmm.core import _upper_inverse


def test_upper_inverse_is_exactly_upper_triangular_and_inverts_the_factor():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5)) * np.array([1e4, 5e4, 1.0, 4e4, 0.25])
    chol = np.linalg.cholesky(a @ a.T + 1e-3 * np.eye(5))
    t = _upper_inverse(chol)
    assert np.all(np.tril(t, -1) == 0.0)
    np.testing.assert_allclose(chol.T @ t, np.eye(5), atol=1e-8)


def test_badly_scaled_preconditioner_stays_upper_triangular_and_the_fit_runs():
    """4 events in 222 sessions, separated by minoxidil: the GLM start's SEs are ~1e4, and
    the inverse Cholesky factor of the preconditioner had ~1e-12 entries below its diagonal,
    which tied θ (bounded) to β and made ``maximise`` raise ValueError. Now the fit runs and
    reports the separation."""
    study = ms.simulate_study(60, 6, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ms.fit_side_effects(study, "haematoma")
    assert any("(quasi-)separated by these ingredients" in n for n in fit.notes)
    assert list(fit.ingredient_effects["ingredient"]) == ["biotin", "dutasteride", "minoxidil"]
