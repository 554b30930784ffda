"""Tests of mesostats.mixed.profile: profile-likelihood and parametric-bootstrap CIs.

Reference values: ``reference/ref_profile.json``, produced by ``reference/ref_profile.R``
(lme4 1.1-31). lme4's ``confint(fit, method = "profile")`` profiles the ML deviance even for
a REML fit, so the comparisons use ``criterion="ML"``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import optimize, stats

import mesostats as ms
from mesostats.exceptions import ConvergenceWarning, ModelSpecError, SingularFitWarning
from mesostats.mixed import profile as profile_module
from mesostats.mixed.lmm import ProfiledDeviance
from mesostats.mixed.profile import (
    CONFINT_COLUMNS,
    _undefined_correlations,
    bootstrap_variance_components,
    profile_variance_components,
    sdcor_from_theta,
    theta_from_sdcor,
    variance_parameters,
)
from mesostats.mixed.profile import likelihood as profile_likelihood

REF = Path(__file__).parent / "reference"
Z975 = float(stats.norm.ppf(0.975))


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((REF / "ref_profile.json").read_text())


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(REF / "sleepstudy.csv", dtype={"Subject": str})


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy: pd.DataFrame) -> ms.MixedResults:
    return ms.fit_lmm("Reaction ~ Days + (Days | Subject)", sleepstudy)


@pytest.fixture(scope="module")
def sleep_intercept_fit(sleepstudy: pd.DataFrame) -> ms.MixedResults:
    return ms.fit_lmm("Reaction ~ Days + (1 | Subject)", sleepstudy)


@pytest.fixture(scope="module")
def cbpp_fit() -> ms.MixedResults:
    cbpp = pd.read_csv(REF / "cbpp.csv", dtype={"herd": str, "period": str})
    return ms.fit_glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)


@pytest.fixture(scope="module")
def sleep_ml_profile(sleep_fit: ms.MixedResults):
    return profile_variance_components(sleep_fit, criterion="ML")


def _bounds(prof_confint: pd.DataFrame) -> dict[str, list[float]]:
    return {
        r.parameter: [r.ci_lower, r.ci_upper]
        for r in prof_confint[["parameter", "ci_lower", "ci_upper"]].itertuples()
    }


# ------------------------------------------------------------------------------ lme4
def test_sleepstudy_ml_profile_matches_lme4_confint(sleep_ml_profile, ref):
    """R: fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy);
    confint(profile(fm, which = "theta_", delta.cutoff = 1/64)) — ML profile (lme4 refits
    REML fits by ML before profiling)."""
    prof = sleep_ml_profile
    ours = _bounds(prof.confint)
    for name, (lo, hi) in ref["sleepstudy"]["fine"].items():
        assert_allclose(ours[name], [lo, hi], rtol=1e-4, err_msg=name)
    est = prof.confint.set_index("parameter")["estimate"]
    for name, value in ref["sleepstudy"]["ml_estimates"].items():
        assert_allclose(est[name], value, rtol=1e-4, err_msg=name)
    assert prof.criterion == "ML"
    assert list(prof.confint.columns) == CONFINT_COLUMNS
    assert (prof.confint["method"] == "profile (ML)").all()


def test_sleepstudy_profile_matches_lme4_default_grid(sleep_ml_profile, ref):
    """R: confint(fm, method = "profile") at lme4's default grid (spline interpolation)."""
    ours = _bounds(sleep_ml_profile.confint)
    for name, (lo, hi) in ref["sleepstudy"]["default"].items():
        assert_allclose(ours[name], [lo, hi], rtol=1e-3, err_msg=name)


def test_sleepstudy_uncorrelated_ml_profile_matches_lme4(sleepstudy, ref):
    """R: fu <- lmer(Reaction ~ Days + (Days || Subject), sleepstudy);
    confint(profile(fu, which = "theta_", delta.cutoff = 1/64)) — two scalar terms."""
    fit = ms.fit_lmm("Reaction ~ Days + (Days || Subject)", sleepstudy)
    ours = _bounds(profile_variance_components(fit, criterion="ML").confint)
    for name, (lo, hi) in ref["sleepstudy_uncorrelated"]["fine"].items():
        assert_allclose(ours[name], [lo, hi], rtol=1e-4, err_msg=name)


def test_cbpp_laplace_profile_matches_lme4_confint(cbpp_fit, ref):
    """R: gm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
    family = binomial); confint(profile(gm, which = "theta_", delta.cutoff = 1/64)).
    glmer stops slightly short of the Laplace optimum (SD 0.64207 vs 0.64226), hence 1e-3."""
    prof = profile_variance_components(cbpp_fit)
    assert prof.criterion == "Laplace"
    lo, hi = ref["cbpp"]["fine"][".sig01"]
    row = prof.confint.iloc[0]
    assert_allclose([row["ci_lower"], row["ci_upper"]], [lo, hi], rtol=1e-3)
    assert_allclose(row["estimate"], ref["cbpp"]["estimate"][".sig01"], rtol=1e-3)


def test_dyestuff2_sd_lower_bound_is_zero_as_lme4(ref):
    """R: fd <- lmer(Yield ~ 1 + (1 | Batch), Dyestuff2); confint(fd, method = "profile"):
    SD(Batch) is estimated at 0 and its deviance at 0 is within the χ²₁ cutoff → lower 0."""
    data = pd.DataFrame(ref["dyestuff2"]["data"])
    with pytest.warns(SingularFitWarning, match="Batch"):
        fit = ms.fit_lmm("Yield ~ 1 + (1 | Batch)", data)
    prof = profile_variance_components(fit, criterion="ML")
    ours = _bounds(prof.confint)
    assert ours[".sig01"][0] == 0.0
    assert_allclose(ours[".sig01"][1], ref["dyestuff2"]["fine"][".sig01"][1], rtol=1e-4)
    assert_allclose(ours[".sigma"], ref["dyestuff2"]["fine"][".sigma"], rtol=1e-4)


# ------------------------------------------------------------------------------ REML profile
def test_reml_theta_profile_bounds_sit_at_the_chi2_cutoff(sleep_intercept_fit):
    """One θ, σ profiled out: the REML deviance at each bound is exactly min + 1.96²."""
    fit = sleep_intercept_fit
    prof = profile_variance_components(fit, scale="theta")
    row = prof.confint.iloc[0]
    problem = ProfiledDeviance(fit.design, reml=True)
    d_min = problem(np.asarray(fit.theta))
    for bound in (row["ci_lower"], row["ci_upper"]):
        assert_allclose(problem(np.array([bound])) - d_min, Z975**2, rtol=1e-6)
    assert row["ci_lower"] < fit.theta[0] < row["ci_upper"]


def test_reml_sd_profile_agrees_with_brute_force_minimisation(sleep_intercept_fit):
    """SD(Subject) held at its REML-profile bound, σ minimised by a 1-D search of
    D(θ = sd/σ, σ) = log|L|² + log|RX|² + (n−p)·log(2πσ²) + r²/σ²: the excess is 1.96²."""
    fit = sleep_intercept_fit
    prof = profile_variance_components(fit)
    problem = ProfiledDeviance(fit.design, reml=True)
    m = problem.dof

    def deviance(sd: float, sigma: float) -> float:
        st = problem.state(np.array([sd / sigma]))
        return st.logdet_L + st.logdet_RX + m * math.log(2 * math.pi * sigma**2) + st.r2 / sigma**2

    d_min = problem(np.asarray(fit.theta))
    sd_row = prof.confint.set_index("parameter").loc[".sig01"]
    for bound in (sd_row["ci_lower"], sd_row["ci_upper"]):
        best = optimize.minimize_scalar(
            lambda s, b=bound: deviance(b, s),
            bounds=(20.0, 45.0),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert_allclose(best.fun - d_min, Z975**2, rtol=1e-5)
    assert_allclose(sd_row["estimate"], fit.variance_components["sdcor"].iloc[0], rtol=1e-5)


def test_profile_curve_zeta_is_monotone_and_zero_at_estimate(sleep_fit):
    prof = profile_variance_components(sleep_fit, which=["sd(Days | Subject)"])
    curve = prof.curve
    assert set(curve["parameter"]) == {".sig03"}
    assert np.all(np.diff(curve["zeta"].to_numpy()) > 0)
    at_est = curve.loc[curve["value"].sub(prof.confint["estimate"].iloc[0]).abs().idxmin()]
    assert abs(at_est["zeta"]) < 1e-6
    assert curve["zeta"].min() <= -Z975 and curve["zeta"].max() >= Z975


# ------------------------------------------------------------------------------ parametrisation
def test_sdcor_theta_round_trip_matches_variance_components(sleep_fit):
    design = sleep_fit.design
    phi = sdcor_from_theta(design, sleep_fit.theta, sleep_fit.sigma, "gaussian")
    vc = sleep_fit.variance_components
    assert_allclose(phi, vc["sdcor"].to_numpy()[[0, 2, 1, 3]], rtol=1e-10)
    back = theta_from_sdcor(design, phi, "gaussian")
    assert back is not None
    assert_allclose(back[0], sleep_fit.theta, rtol=1e-10)
    assert_allclose(back[1], sleep_fit.sigma)
    names = [p.name for p in variance_parameters(design, "gaussian")]
    assert names == [".sig01", ".sig02", ".sig03", ".sigma"]


def test_theta_from_sdcor_rejects_correlation_outside_unit_interval(sleep_fit):
    phi = sdcor_from_theta(sleep_fit.design, sleep_fit.theta, sleep_fit.sigma, "gaussian")
    phi[1] = 1.5
    assert theta_from_sdcor(sleep_fit.design, phi, "gaussian") is None


def test_correlation_with_a_zero_sd_is_reported_undefined(sleep_fit):
    params = variance_parameters(sleep_fit.design, "gaussian")
    table = pd.DataFrame(
        {
            "parameter": [".sig01", ".sig02", ".sig03"],
            "estimate": [20.0, 0.0, 0.0],
            "ci_lower": [10.0, -0.2, 0.0],
            "ci_upper": [30.0, 0.3, 2.0],
        }
    )
    out = _undefined_correlations(table, params, np.array([20.0, 0.0, 0.0, 25.0]))
    assert math.isnan(out.loc[1, "estimate"])
    assert out.loc[1, ["ci_lower", "ci_upper"]].tolist() == [-1.0, 1.0]
    assert out.loc[0, "estimate"] == 20.0


# ------------------------------------------------------------------------------ bootstrap
def test_bootstrap_same_seed_identical_for_any_chunking(sleep_fit):
    """Replicate i always uses child i of SeedSequence(seed): n_jobs=1 and 2 (threads) agree."""
    one = bootstrap_variance_components(sleep_fit, n_boot=12, seed=7, n_jobs=1)
    with joblib.parallel_config(backend="threading"):
        two = bootstrap_variance_components(sleep_fit, n_boot=12, seed=7, n_jobs=2)
    assert_allclose(one.theta, two.theta, rtol=0, atol=0)
    pd.testing.assert_frame_equal(one.confint, two.confint)
    other = bootstrap_variance_components(sleep_fit, n_boot=12, seed=8, n_jobs=1)
    assert not np.allclose(one.theta, other.theta)


@pytest.mark.slow
def test_bootstrap_same_seed_identical_with_process_workers(sleep_fit):
    one = bootstrap_variance_components(sleep_fit, n_boot=8, seed=3, n_jobs=1)
    two = bootstrap_variance_components(sleep_fit, n_boot=8, seed=3, n_jobs=2)
    pd.testing.assert_frame_equal(one.confint, two.confint)
    assert_allclose(one.beta, two.beta, rtol=0, atol=0)


def test_bootstrap_percentiles_are_quantiles_of_replicates(cbpp_fit):
    boot = bootstrap_variance_components(cbpp_fit, n_boot=40, seed=1)
    assert boot.n_failed == 0
    sd = boot.replicates[".sig01"].to_numpy()
    assert_allclose(sd, np.abs(boot.theta[:, 0]))
    lo, hi = np.quantile(sd, [0.025, 0.975])
    row = boot.confint.iloc[0]
    assert_allclose([row["ci_lower"], row["ci_upper"]], [lo, hi])
    assert row["ci_lower"] < row["estimate"] < row["ci_upper"]
    assert "parametric bootstrap" in row["method"]


def test_bootstrap_lmm_replicates_centre_near_the_estimates(sleep_intercept_fit):
    """Loose check of the simulation: the replicate σ and SD average near the fitted values."""
    boot = bootstrap_variance_components(sleep_intercept_fit, n_boot=60, seed=2)
    means = boot.replicates[[".sig01", ".sigma"]].mean().to_numpy()
    est = boot.confint["estimate"].to_numpy()
    assert_allclose(means, est, rtol=0.15)
    assert_allclose(boot.beta.mean(axis=0), sleep_intercept_fit.params.to_numpy(), rtol=0.05)


@pytest.mark.slow
def test_profile_and_bootstrap_coverage_of_true_sd_in_simulation():
    """Random-intercept model with τ = 1, σ = 1 (30 groups × 5): loose coverage check."""
    rng = np.random.default_rng(2024)
    hits_prof = hits_boot = 0
    n_rep = 30
    for _ in range(n_rep):
        g = np.repeat(np.arange(30), 5)
        y = 2.0 + rng.normal(size=30)[g] + rng.normal(size=g.size)
        data = pd.DataFrame({"y": y, "g": g.astype(str)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ms.fit_lmm("y ~ 1 + (1 | g)", data)
        lo, hi = profile_variance_components(fit, which=[".sig01"]).confint.iloc[0][
            ["ci_lower", "ci_upper"]
        ]
        hits_prof += lo <= 1.0 <= hi
        row = bootstrap_variance_components(fit, n_boot=40, seed=1).confint.iloc[0]
        hits_boot += row["ci_lower"] <= 1.0 <= row["ci_upper"]
    assert hits_prof / n_rep >= 0.8
    assert hits_boot / n_rep >= 0.7


# ------------------------------------------------------------------------------ errors
def test_unknown_parameter_name_raises(sleep_fit):
    with pytest.raises(ModelSpecError, match=r"Unknown variance parameter '\.sig09'.*\.sig01"):
        profile_variance_components(sleep_fit, which=[".sig09"])


def test_bad_level_raises(sleep_fit):
    with pytest.raises(ModelSpecError, match="level must be a number between 0 and 1"):
        profile_variance_components(sleep_fit, level=95)


def test_bad_criterion_raises(sleep_fit):
    with pytest.raises(ModelSpecError, match="criterion must be 'REML' or 'ML'"):
        profile_variance_components(sleep_fit, criterion="Laplace")


def test_criterion_for_glmm_raises(cbpp_fit):
    with pytest.raises(ModelSpecError, match=r"linear mixed models only.*Laplace deviance"):
        profile_variance_components(cbpp_fit, criterion="ML")


def test_theta_scale_for_glmm_raises(cbpp_fit):
    with pytest.raises(ModelSpecError, match="scale='theta' is available for linear"):
        profile_variance_components(cbpp_fit, scale="theta")


def test_bad_scale_raises(sleep_fit):
    with pytest.raises(ModelSpecError, match="scale must be 'sdcor' or 'theta'"):
        profile_variance_components(sleep_fit, scale="var")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_boot": 1}, "n_boot must be an integer ≥ 2"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"n_jobs": 0}, "n_jobs must be a positive integer"),
        ({"level": 1.5}, "level must be a number between 0 and 1"),
    ],
)
def test_bad_bootstrap_arguments_raise(sleep_fit, kwargs, message):
    with pytest.raises(ModelSpecError, match=message):
        bootstrap_variance_components(sleep_fit, **kwargs)


def test_lower_deviance_message_only_beyond_the_tolerance():
    """Gains at or below PROFILE_GAIN_TOL (1e-4; optimiser noise) give no message; above it,
    the message states both deviances, the gain and the parameter that moved."""
    names = ("sd_a", "sigma")
    x_hat = np.array([1.0, 2.0])
    x_low = np.array([1.01, 2.0])
    tol = profile_module.PROFILE_GAIN_TOL
    quiet = profile_module._lower_deviance_messages
    assert quiet(names, x_hat, 100.0, 100.0 - 1e-6, x_low) == []
    assert quiet(names, x_hat, 100.0, 100.0 - 0.99 * tol, x_low) == []
    (msg,) = quiet(names, x_hat, 100.0, 100.0 - 2e-3, x_low)
    assert "deviance of 99.998, 0.002 below the optimum used (100; tolerance 0.0001)" in msg
    assert "sd_a 1 → 1.01" in msg and "sigma" not in msg


def test_profile_with_an_optimum_too_high_warns_with_values(sleep_intercept_fit, monkeypatch):
    """The optimum handed to the profiler is made 0.5 deviance units too high: profiling
    then finds lower points, a ConvergenceWarning with the numbers (kept in messages)."""
    real = profile_likelihood._minimise

    def optimum_too_high(obj, x0, fixed=None, value=None):
        x, d = real(obj, x0, fixed, value)
        return (x, d + 0.5) if fixed is None else (x, d)

    monkeypatch.setattr(profile_likelihood, "_minimise", optimum_too_high)
    with pytest.warns(ConvergenceWarning, match=r"Profiling found a deviance of .* below the"):
        prof = profile_variance_components(sleep_intercept_fit)
    assert len(prof.messages) == 1
    assert "had not fully converged" in prof.messages[0]


def test_profile_of_a_converged_fit_has_no_lower_deviance_message(sleep_fit):
    prof = profile_variance_components(sleep_fit)  # filterwarnings=error: no warning
    assert prof.messages == ()
