"""check_model's ``residual_trend`` test detects a wrong link; it does not flag correct models.

Constructed cases, 60 persons × 6 visits (360 rows), a random intercept per person, one
covariate x drawn per row; each wrong-link case has a correct-model twin with the same
design, fitted with the link it was drawn with:

* ``poisson_identity`` — counts whose mean is linear in a wide-ranging covariate,
  μ = (1 + 2x)·e^u, x ~ U(0, 10), u ~ N(0, 0.3²) (mean 1 to 21), fitted as a Poisson GLMM
  with the log link; twin ``poisson_log``: μ = exp(0.5 + 0.28x + u), the same range.
* ``binomial_cloglog`` — 20 trials per row (e.g. anagen hairs among 20 sampled) with a
  complementary log-log truth and a strong covariate effect, P = 1 − exp(−exp(η)),
  η = −0.5 + 2x + u, x ~ U(−1, 1), u ~ N(0, 0.5²), fitted with the logit; twin
  ``binomial_logit``: the same η through the logit.
* ``gaussian_exp`` — a mean exponential in the covariate, y = exp(1.5x) + u + e,
  x ~ U(0, 2), u ~ N(0, 1), e ~ N(0, 2²), fitted as an LMM linear in x; twin
  ``gaussian_linear``: y = 4.5x + u + e.

Measured with ``check_model(fit, n_sim=250, seed=seed)``, rejection at the 5 % level of
``residual_trend`` (the regression rank-score test of the residual quartiles on the rank of
the fitted value, :mod:`mesostats.checks.simulation_tests`), seeds 200–399 (200
replicates; the slow test below re-measures seeds 0–99):

==================  =====  ====================  =====
wrong link          power  correct twin          size
==================  =====  ====================  =====
poisson_identity    1.000  poisson_log           0.035
binomial_cloglog    0.965  binomial_logit        0.020
gaussian_exp        1.000  gaussian_linear       0.015
==================  =====  ====================  =====

The size is at or below the nominal 5 %: without refits the simulated-residual tests are
conservative (parameters fitted to the same data), as DHARMa documents. The χ² of
fitted-value bin × residual quartile that this test replaced had, on seeds 0–199, power
0.945 / 0.625 / 1.00 on the three cases at size 0.02 / 0.01 / 0.02, against 1.00 / 0.96 /
1.00 at size 0.045 / 0.03 / 0.02 for the rank-score test on the same residuals.

Every replicate is seeded, so the counts asserted are fixed numbers; the bounds say how
unlikely a failure would be for a correct implementation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from mesostats.checks import check_model
from mesostats.mixed.glmm import fit_glmm
from mesostats.mixed.lmm import fit_lmm
from mesostats.mixed.results import MixedResults

N_PERSONS, N_VISITS = 60, 6
WRONG_TO_CORRECT = {
    "poisson_identity": "poisson_log",
    "binomial_cloglog": "binomial_logit",
    "gaussian_exp": "gaussian_linear",
}


def constructed(kind: str, seed: int) -> pd.DataFrame:
    """One data set of ``kind`` (module docstring)."""
    rng = np.random.default_rng(seed)
    rows = N_PERSONS * N_VISITS
    pid = np.repeat(np.arange(N_PERSONS), N_VISITS)
    frame = {"pid": pid.astype(str)}
    if kind.startswith("poisson"):
        x = rng.uniform(0, 10, rows)
        u = rng.normal(0, 0.3, N_PERSONS)[pid]
        mu = (1 + 2 * x) * np.exp(u) if kind == "poisson_identity" else np.exp(0.5 + 0.28 * x + u)
        return pd.DataFrame({**frame, "x": x, "y": rng.poisson(mu).astype(float)})
    if kind.startswith("binomial"):
        x = rng.uniform(-1, 1, rows)
        eta = -0.5 + 2 * x + rng.normal(0, 0.5, N_PERSONS)[pid]
        if kind == "binomial_cloglog":
            p = -np.expm1(-np.exp(eta))
        else:
            p = 1 / (1 + np.exp(-eta))
        hits = rng.binomial(20, p)
        return pd.DataFrame({**frame, "x": x, "hits": hits, "misses": 20 - hits})
    x = rng.uniform(0, 2, rows)
    mean = np.exp(1.5 * x) if kind == "gaussian_exp" else 4.5 * x
    y = mean + rng.normal(0, 1, N_PERSONS)[pid] + rng.normal(0, 2, rows)
    return pd.DataFrame({**frame, "x": x, "y": y})


def fitted(kind: str, seed: int) -> MixedResults:
    """The data of ``kind`` fitted with the log, logit or identity link (linear in x)."""
    data = constructed(kind, seed)
    if kind.startswith("gaussian"):
        return fit_lmm("y ~ x + (1 | pid)", data)
    with warnings.catch_warnings():  # a replicate's person SD may reach 0: not the point here
        warnings.simplefilter("ignore")
        if kind.startswith("binomial"):
            return fit_glmm("cbind(hits, misses) ~ x + (1 | pid)", data, family="binomial")
        return fit_glmm("y ~ x + (1 | pid)", data, family="poisson")


def trend_p(kind: str, seed: int) -> float:
    tests = check_model(fitted(kind, seed), n_sim=250, seed=seed).tests.set_index("test")
    return float(tests.loc["residual_trend", "p_value"])


@pytest.mark.parametrize("kind", sorted(WRONG_TO_CORRECT))
def test_a_wrong_link_is_flagged_by_the_residual_trend_and_its_correct_twin_is_not(kind):
    """Seed 0 of each pair: measured p 0 (wrong link; beyond all 250 simulations) against
    0.26 / 0.26 / 0.57 (correct twin of poisson_identity / binomial_cloglog /
    gaussian_exp)."""
    assert trend_p(kind, 0) < 0.01
    assert trend_p(WRONG_TO_CORRECT[kind], 0) > 0.2


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(WRONG_TO_CORRECT))
def test_residual_trend_has_the_stated_power_against_a_wrong_link_at_its_nominal_size(kind):
    """100 seeded replicates (seeds 0–99) of the wrong-link case and of its correct twin.

    Measured on these seeds: power poisson_identity 1.00, binomial_cloglog 0.96,
    gaussian_exp 1.00; size of the twins 0.06, 0.03, 0.03 (about 10 s of CPU per case).
    Bounds: power ≥ 85 of 100
    (P(X ≤ 84) < 0.002 for X ~ Bin(100, 0.965 − 2 SE ≈ 0.94)); size ≤ 10 of 100
    (P(X ≥ 11) = 0.011 for X ~ Bin(100, 0.05)).
    """
    seeds = range(100)
    power = sum(trend_p(kind, s) < 0.05 for s in seeds)
    size = sum(trend_p(WRONG_TO_CORRECT[kind], s) < 0.05 for s in seeds)
    assert power >= 85, power
    assert size <= 10, size


def test_the_residual_panel_draws_the_quartile_curves_red_when_the_trend_is_flagged():
    """The residuals-vs-fitted panel carries the three quadratic quantile regressions: red
    (the flag colour) for the wrong link, where the median curve leaves 0.5 by more than 0.1
    somewhere, dark for its correct twin, where it stays within 0.1 of 0.5."""
    from matplotlib.figure import Figure

    from mesostats.plots.checks import residuals_vs_fitted

    for kind, red in (("poisson_identity", True), ("poisson_log", False)):
        check = check_model(fitted(kind, 0), n_sim=100, seed=0)
        ax = Figure().subplots()
        residuals_vs_fitted(check, ax)
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 50]
        assert len(curves) == 3
        colours = {tuple(np.round(np.asarray(to_rgb(c.get_color())), 3)) for c in curves}
        assert colours == ({(0.8, 0.2, 0.2)} if red else {(0.15, 0.15, 0.15)})
        median = np.asarray(curves[1].get_ydata())
        assert bool(np.max(np.abs(median - 0.5)) > 0.1) is red
        assert isinstance(ax.figure, Figure)
