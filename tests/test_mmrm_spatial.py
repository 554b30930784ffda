"""sp_exp on several coordinates: Σ_jk = σ² ρ^d_jk with d_jk the Euclidean distance between
the points of visits j and k (R mmrm's ``sp_exp(c1, c2 | subject)``, SAS PROC MIXED's
``type=sp(exp)(c1 c2)``).

Against R's mmrm 0.3.14 (reference/mmrm/ref_fev_spatial.json, ref_mmrm_spatial.R): the
battery of test_mmrm.py below (coefficients 1e-6, logLik 1e-6, Σ 1e-9 at mmrm's θ; the fit at
or above mmrm's logLik, SEs and df 1e-4); test_mmrm_inference.py adds SEs and df at mmrm's θ
(1e-9) and SAS PROC MIXED's two KR-linear cases of sas_kr.json (SE and df of ARMCDTRT, 1e-3).
Then the formula, the errors, the geometry (Euclidean, so invariant to rotating the plane; one
coordinate is the 1-D structure) and conditional predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
from mmrm_data import FEV_FIXED, fev_data, fev_problem, fit_fev
from numpy.testing import assert_allclose
from test_mmrm import CheckMMRM

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.mmrm.structures import distances, make_structure
from mesostats.mixed.mmrm.terms import split_mmrm_formula

SP2 = f"{FEV_FIXED} + sp_exp(VISITN, VISITN2 | USUBJID)"


# --------------------------------------------------------------------------- against mmrm
# the battery of test_mmrm.py (exact at mmrm's θ, the fit at or above mmrm's logLik) on
# ref_fev_spatial.json (ref_mmrm_spatial.R)
class TestFevSpatialExponential2D(CheckMMRM):
    """sp_exp(VISITN, VISITN2 | USUBJID): Euclidean distance between (VISITN, VISITN2) points
    (ref_fev_spatial.json); VISITN2 is continuous, so every subject is its own pattern."""

    block = se_block = inference_block = "sp_exp2_reml_satterthwaite"
    inference_df = "satterthwaite"
    reml = True


class TestFevSpatialExponential2DKenwardRoger(CheckMMRM):
    """The same model with mmrm's Kenward–Roger (second-derivative term kept)."""

    block = inference_block = "sp_exp2_reml_kenwardroger"
    se_block = "sp_exp2_reml_satterthwaite"
    reml = True


class TestFevSpatialExponential2DML(CheckMMRM):
    """By ML; mmrm stops 3.1e-7 log-likelihood units short (gradient 3.8e-3): its df move by
    1.1e-4, its SEs by 4.1e-5 (at mmrm's θ both agree to 1e-13: test_mmrm_inference.py)."""

    block = se_block = inference_block = "sp_exp2_ml_satterthwaite"
    inference_df = "satterthwaite"
    end_to_end_df_rtol = 2e-4
    reml = False


class TestFevGroupedSpatialExponential2D(CheckMMRM):
    """sp_exp(VISITN, VISITN2 | SEX / USUBJID): one (σ², ρ) per sex, KR (SEs adjusted)."""

    block = inference_block = "sp_exp2_grouped_reml_kenwardroger"
    se_block = None
    reml = True


# --------------------------------------------------------------------------- formula, errors


def test_two_coordinates_parse_as_mmrm_writes_them():
    fixed, term = split_mmrm_formula("FEV1 ~ ARMCD + sp_exp(VISITN, VISITN2 | SEX / USUBJID)")
    assert fixed == "FEV1 ~ ARMCD"
    assert term.coordinates == ("VISITN", "VISITN2")
    assert (term.time, term.subject, term.group) == ("VISITN", "USUBJID", "SEX")
    assert str(term) == "sp_exp(VISITN, VISITN2 | SEX / USUBJID)"
    assert split_mmrm_formula("y ~ x + us(AVISIT | id)")[1].coordinates == ("AVISIT",)


def test_several_coordinates_only_for_the_spatial_structure():
    with pytest.raises(ModelSpecError, match=r"`us` takes one visit factor.*sp_exp\(x, y"):
        split_mmrm_formula("FEV1 ~ ARMCD + us(AVISIT, VISITN | USUBJID)")
    with pytest.raises(ModelSpecError, match="names a coordinate twice"):
        split_mmrm_formula("FEV1 ~ ARMCD + sp_exp(VISITN, VISITN | USUBJID)")


def test_non_numeric_coordinate_is_a_model_spec_error():
    with pytest.raises(
        ModelSpecError, match=r"`sp_exp` needs numeric coordinates, but `AVISIT` has dtype"
    ):
        fit_fev("FEV1 ~ ARMCD + sp_exp(VISITN, AVISIT | USUBJID)", df="residual")


def test_two_rows_of_a_subject_at_one_point_is_a_model_spec_error():
    data = fev_data()
    data["Y"] = 1.0  # the points are then (VISITN, 1): distinct per visit
    observed = data[data["FEV1"].notna()]
    first, second = observed.index[:2]  # PT1's visits 2 and 3
    assert data.loc[first, "USUBJID"] == data.loc[second, "USUBJID"]
    data.loc[second, "VISITN"] = data.loc[first, "VISITN"]
    with pytest.raises(ModelSpecError, match=r"'PT1' has 2 rows at \(VISITN, Y\) = \(2\.0, 1\.0\)"):
        fit_fev("FEV1 ~ ARMCD + sp_exp(VISITN, Y | USUBJID)", data, df="residual")


def test_distances_are_euclidean_and_reduce_to_time_differences():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, -1.0]])
    assert_allclose(distances(points, points=True)[0, 1], 5.0)
    assert_allclose(distances(points, points=True)[1, 2], np.hypot(2.0, 5.0))
    times = np.array([0.3, 2.0, -1.5])
    assert np.array_equal(distances(times[:, None], points=True), distances(times, points=False))
    s = make_structure("sp_exp", 2)
    theta = np.array([1.1, 0.3])
    rho = 1.0 / (1.0 + np.exp(-0.3))
    assert_allclose(s.sigma(theta, points)[0, 1], np.exp(1.1) * rho**5.0, rtol=1e-14)


def test_sp_exp_derivatives_on_points_match_finite_differences():
    s = make_structure("sp_exp", 2)
    theta = np.array([0.8, -0.6])
    points = np.array([[0.0, 0.1], [0.7, -0.4], [2.1, 1.3], [5.0, 0.2]])
    eps = 1e-6
    jac, hess = s.jacobian(theta, points), s.hessian(theta, points)
    for k, e in enumerate(np.eye(2) * eps):
        fd = (s.sigma(theta + e, points) - s.sigma(theta - e, points)) / (2 * eps)
        assert_allclose(jac[k], fd, rtol=1e-6, atol=1e-9)
        fd2 = (s.jacobian(theta + e, points) - s.jacobian(theta - e, points)) / (2 * eps)
        assert_allclose(hess[k], fd2, rtol=1e-6, atol=1e-9)


def test_fit_is_invariant_to_rotating_and_shifting_the_plane():
    # Euclidean distances do not change under a rotation and a shift of the coordinates
    data = fev_data()
    angle = 0.7
    x, z = data["VISITN"].to_numpy(float), data["VISITN2"].to_numpy(float)
    data["U"] = np.cos(angle) * x - np.sin(angle) * z + 10.0
    data["V"] = np.sin(angle) * x + np.cos(angle) * z - 3.0
    a = fit_fev(SP2, df="kenward-roger")
    b = fit_fev(f"{FEV_FIXED} + sp_exp(U, V | USUBJID)", data, df="kenward-roger")
    assert_allclose(b.loglik, a.loglik, rtol=1e-12)
    assert_allclose(b.theta, a.theta, rtol=1e-7, atol=1e-9)
    assert_allclose(b.fixed_effects.to_numpy(), a.fixed_effects.to_numpy(), rtol=1e-6)


def test_one_varying_coordinate_is_the_one_dimensional_structure():
    data = fev_data()
    data["ZERO"] = 0.0
    one = fit_fev("FEV1 ~ ARMCD + sp_exp(VISITN | USUBJID)", df="satterthwaite")
    two = fit_fev("FEV1 ~ ARMCD + sp_exp(VISITN, ZERO | USUBJID)", data, df="satterthwaite")
    assert_allclose(two.loglik, one.loglik, rtol=1e-13)
    assert_allclose(two.fixed_effects.to_numpy(), one.fixed_effects.to_numpy(), rtol=1e-10)


def test_conditional_prediction_on_points_follows_the_gaussian_formula():
    fit = fit_fev(SP2, df="residual")
    data = fev_data()
    missed = data[data["FEV1"].isna()].iloc[:4]
    pred = fit.predict(missed, conditional=True).to_numpy()
    beta = fit.params.to_numpy()
    theta = np.asarray(fit.theta)
    problem = fev_problem(SP2, True)
    fitted = data.loc[problem.row_index]
    for j, (_, row) in enumerate(missed.iterrows()):
        own = fitted[fitted["USUBJID"] == row["USUBJID"]]
        pts = np.vstack([row[["VISITN", "VISITN2"]].to_numpy(float), own[["VISITN", "VISITN2"]]])
        S = make_structure("sp_exp", 2).sigma(theta, pts)
        X_own = fit.fixed_matrix(own[fit.model_frame.columns])
        x_new = fit.fixed_matrix(missed.iloc[[j]][fit.model_frame.columns])[0]
        r = own["FEV1"].to_numpy() - X_own @ beta
        expected = x_new @ beta + S[0, 1:] @ np.linalg.solve(S[1:, 1:], r)
        assert_allclose(pred[j], expected, rtol=1e-10)
    # at a point the subject has, the conditional mean is the observed value
    seen = data[data["FEV1"].notna()].iloc[:5]
    assert_allclose(fit.predict(seen, conditional=True), seen["FEV1"], rtol=1e-10)
