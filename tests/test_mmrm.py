"""fit_mmrm against R's mmrm 0.3.14 on fev_data (reference/mmrm/ref_fev.json, ref_mmrm.R).

Tolerances (reference/README.md): coefficients 1e-6 relative, model-based SEs 1e-4 relative,
logLik within 1e-6 absolute or higher. mmrm stops its optimiser short of the optimum (its
gradient at the reported θ is up to 1e-2; one Newton step from its θ gains up to 2.5e-6 in
logLik and lands on ours), so the exact checks are made *at mmrm's θ* — where β̂(θ), the SEs,
the logLik and Σ(θ) are functions of θ alone — and the fit itself is checked to reach a
logLik at least mmrm's, a stationary point (|gradient| < 1e-6), mmrm's θ plus one Newton
step, coefficients within 1e-3 standard errors of mmrm's and SEs within 1e-4 relative.

In mmrm the "Residual" method uses the empirical covariance by default, so model-based SEs
come from the Satterthwaite block of the same structure and criterion.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from mmrm_data import FEV_FIXED, STRUCTURES, fev_data, fev_reference
from numpy.testing import assert_allclose

from mesostats.exceptions import ExclusionWarning, ModelSpecError
from mesostats.mixed.mmrm import MMRMResults, fit_mmrm
from mesostats.mixed.mmrm.build import build_problem

COEF_RTOL = 1e-6
SE_RTOL = 1e-4
LOGLIK_ATOL = 1e-6


def _fit(formula: str, data: pd.DataFrame | None = None, **kw: object) -> MMRMResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)  # fev_data has missing FEV1
        return fit_mmrm(formula, fev_data() if data is None else data, **kw)  # type: ignore[arg-type]


def _problem(formula: str, reml: bool, data: pd.DataFrame | None = None, **kw: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)
        return build_problem(formula, fev_data() if data is None else data, reml=reml, **kw)  # type: ignore[arg-type]


def _r_name(name: str) -> str:
    """R's coefficient name of a formulaic column name (``RACE[T.White]`` -> ``RACEWhite``)."""
    if name == "Intercept":
        return "(Intercept)"
    return ":".join(re.sub(r"^(.*)\[T\.(.*)\]$", r"\1\2", part) for part in name.split(":"))


def _values(d: dict) -> np.ndarray:
    return np.array(list(d.values()), dtype=float)


class CheckMMRM:
    """Every check for one structure × criterion; subclasses set the reference blocks."""

    block: str  # coefficients, logLik, θ, covariance
    se_block: str | None  # model-based SEs (None when the block's SEs are adjusted)
    reml: bool
    inference_block: str | None = None  # end-to-end df/SE block (default: the KR block)

    @pytest.fixture(scope="class")
    @classmethod
    def ref(cls) -> dict:
        return fev_reference(cls.block)

    @pytest.fixture(scope="class")
    @classmethod
    def fit(cls, ref: dict) -> MMRMResults:
        return _fit(ref["formula"], reml=cls.reml, df="residual")

    @pytest.fixture(scope="class")
    @classmethod
    def at_ref(cls, ref: dict):
        problem = _problem(ref["formula"], cls.reml)
        return problem, problem.evaluate(np.array(ref["theta"]), order=2)

    # --------------------------------------------------------------- exact, at mmrm's θ
    def test_coefficients_at_mmrm_theta_match_mmrm(self, ref, at_ref):
        problem, ev = at_ref
        assert [_r_name(n) for n in problem.fixed_names] == list(ref["coef"])
        assert_allclose(ev.beta, _values(ref["coef"]), rtol=COEF_RTOL)

    def test_loglik_at_mmrm_theta_matches_mmrm(self, ref, at_ref):
        assert abs(-at_ref[1].value - ref["logLik"]) < LOGLIK_ATOL

    def test_model_se_at_mmrm_theta_matches_mmrm(self, at_ref):
        if self.se_block is None:
            return  # adjusted (KR) SEs: checked by the inference tests
        ref_se = _values(fev_reference(self.se_block)["se"])
        se = np.sqrt(np.diag(at_ref[1].beta_cov))
        if self.se_block != self.block:
            # the SE block's θ may differ by mmrm's stopping error; evaluate at its own θ
            problem = at_ref[0]
            th = np.array(fev_reference(self.se_block)["theta"])
            se = np.sqrt(np.diag(problem.beta_cov(th)))
        assert_allclose(se, ref_se, rtol=SE_RTOL)

    def test_covariance_at_mmrm_theta_matches_mmrm(self, ref, at_ref):
        problem = at_ref[0]
        theta = np.array(ref["theta"])
        cov = ref["covariance"]
        mats = cov if isinstance(cov, list) and np.ndim(cov) == 3 else [cov]
        for g, mat in enumerate(mats):
            assert_allclose(problem.group_sigma(theta, g), np.array(mat), rtol=1e-9)

    # --------------------------------------------------------------- the fit itself
    def test_loglik_at_least_mmrm(self, ref, fit):
        assert fit.loglik >= ref["logLik"] - LOGLIK_ATOL
        assert fit.loglik - ref["logLik"] < 1e-4  # the same optimum, not another one

    def test_fit_is_stationary(self, fit):
        assert fit.converged
        assert fit.optimizer_info["gradient_max"] < 1e-6

    def test_one_newton_step_from_mmrm_theta_lands_on_fit(self, fit, at_ref):
        ev = at_ref[1]
        theta = np.array(fev_reference(self.block)["theta"])
        step = np.linalg.solve(ev.hessian, ev.gradient)
        assert_allclose(theta - step, fit.theta, atol=1e-6)

    def test_fitted_coefficients_within_mmrm_convergence(self, ref, fit):
        fe = fit.fixed_effects
        diff = np.abs(fe["estimate"].to_numpy() - _values(ref["coef"]))
        assert np.all(diff <= 1e-3 * fe["std_error"].to_numpy())

    def test_fitted_model_se_matches_mmrm(self, fit):
        if self.se_block is None:
            return
        ref_se = _values(fev_reference(self.se_block)["se"])
        assert_allclose(fit.fixed_effects["std_error"], ref_se, rtol=SE_RTOL)

    def test_fitted_covariance_close_to_mmrm(self, ref, fit):
        cov = fit.covariance
        frames = list(cov.values()) if isinstance(cov, dict) else [cov]
        mats = ref["covariance"] if np.ndim(ref["covariance"]) == 3 else [ref["covariance"]]
        for frame, mat in zip(frames, mats, strict=True):
            assert_allclose(frame.to_numpy(), np.array(mat), rtol=1e-2, atol=1e-2)

    def test_residual_df_is_n_minus_p(self, ref, fit):
        assert_allclose(fit.fixed_effects["df"], fit.nobs - len(ref["coef"]))

    def test_default_inference_end_to_end_matches_mmrm(self):
        # fit_mmrm's default df (KR for REML, Satterthwaite for ML) through the whole pipeline;
        # 1e-4 covers mmrm's own stopping error (see the module docstring)
        block = self.inference_block or self.block.replace("_residual", "_kenwardroger")
        ref = fev_reference(block)
        df = "satterthwaite" if "satterthwaite" in block else "kenward-roger"
        fe = _fit(ref["formula"], reml=self.reml, df=df).fixed_effects
        assert_allclose(fe["std_error"], _values(ref["se"]), rtol=SE_RTOL)
        # df move with θ more than SEs do: us ML, whose θ mmrm leaves 1.9e-4 short, differs by
        # 1.1e-4 (at mmrm's own θ the df agree to 1e-9: test_mmrm_inference.py)
        assert_allclose(fe["df"], _values(ref["df"]), rtol=2e-4)

    def test_theta_cov_is_inverse_hessian(self, fit):
        hess = fit.problem.evaluate(fit.theta, order=2).hessian
        assert_allclose(fit.theta_cov.to_numpy() @ hess, np.eye(fit.n_theta), atol=1e-8)


def _battery(structure: str, reml: bool) -> type:
    if reml:
        attrs = {
            "block": f"{structure}_reml_residual",
            "se_block": f"{structure}_reml_satterthwaite",
            "reml": True,
        }
    else:
        attrs = {
            "block": f"{structure}_ml_satterthwaite",
            "se_block": f"{structure}_ml_satterthwaite",
            "reml": False,
            "inference_block": f"{structure}_ml_satterthwaite",
        }
    return type(f"TestFev_{structure}_{'reml' if reml else 'ml'}", (CheckMMRM,), attrs)


for _s in STRUCTURES:
    for _reml in (True, False):
        _cls = _battery(_s, _reml)
        globals()[_cls.__name__] = _cls


class TestFevGroupedUS(CheckMMRM):
    """us(AVISIT | ARMCD / USUBJID): one unstructured matrix per arm (SEs there are KR)."""

    block = "us_grouped_reml_kr"
    se_block = None
    reml = True


class TestFevSpatialExponential(CheckMMRM):
    """sp_exp(VISITN | USUBJID) on the numeric visit."""

    block = "sp_exp_reml_satterthwaite"
    se_block = "sp_exp_reml_satterthwaite"
    reml = True
    inference_block = "sp_exp_reml_satterthwaite"


# --------------------------------------------------------------------------- independent
def _dense_minus_loglik(problem, theta: np.ndarray) -> float:
    """−ℓ from the full block-diagonal V (no patterns, no sufficient statistics)."""
    n, p = problem.X.shape
    V = np.zeros((n, n))
    for rows, S in zip(problem.subject_rows, problem.subject_sigma(theta), strict=True):
        V[np.ix_(rows, rows)] = S
    Vinv = np.linalg.inv(V)
    XtVX = problem.X.T @ Vinv @ problem.X
    beta = np.linalg.solve(XtVX, problem.X.T @ Vinv @ problem.y)
    r = problem.y - problem.X @ beta
    m2l = np.linalg.slogdet(V)[1] + r @ Vinv @ r
    if problem.reml:
        m2l += np.linalg.slogdet(XtVX)[1] + (n - p) * np.log(2 * np.pi)
    else:
        m2l += n * np.log(2 * np.pi)
    return 0.5 * m2l


@pytest.mark.parametrize(
    ("cov", "reml", "weighted"),
    [
        ("us(AVISIT | USUBJID)", True, True),
        ("adh(AVISIT | USUBJID)", False, True),
        ("csh(AVISIT | USUBJID)", True, False),
        ("toeph(AVISIT | USUBJID)", False, False),
        ("us(AVISIT | ARMCD / USUBJID)", True, True),
        ("sp_exp(VISITN2 | USUBJID)", False, True),
    ],
)
def test_pattern_likelihood_equals_dense_likelihood(cov, reml, weighted):
    # fev_data has intermittent missing visits: 15 patterns for us; VISITN2 is a continuous
    # time, so every subject of sp_exp is its own pattern
    data = fev_data()
    data["w"] = np.random.default_rng(3).uniform(0.5, 2.0, len(data))
    kw = {"weights": "w"} if weighted else {}
    problem = _problem(f"{FEV_FIXED} + {cov}", reml, data, **kw)
    assert len(problem.blocks) > 10
    theta = np.random.default_rng(4).normal(scale=0.2, size=problem.n_theta)
    for g in range(problem.n_groups):
        theta[problem.theta_slice(g)][: problem.structure.n_sd] += 1.5
    assert_allclose(problem.evaluate(theta).value, _dense_minus_loglik(problem, theta), rtol=1e-12)


@pytest.mark.parametrize(
    ("formula", "reml"),
    [
        (f"{FEV_FIXED} + us(AVISIT | USUBJID)", True),
        (f"{FEV_FIXED} + ad(AVISIT | USUBJID)", False),
        ("FEV1 ~ ARMCD + us(AVISIT | ARMCD / USUBJID)", True),
        ("FEV1 ~ ARMCD + sp_exp(VISITN | USUBJID)", False),
        (f"{FEV_FIXED} + ar1h(AVISIT | USUBJID)", True),
        (f"{FEV_FIXED} + toep(AVISIT | USUBJID)", True),
    ],
)
def test_analytic_gradient_and_hessian_match_finite_differences(formula, reml):
    problem = _problem(formula, reml)
    rng = np.random.default_rng(5)
    theta = rng.normal(scale=0.2, size=problem.n_theta) + np.tile(
        problem.structure.start(6.0), problem.n_groups
    )
    ev = problem.evaluate(theta, order=2)
    eps = 1e-5
    eye = np.eye(problem.n_theta)
    grad = [
        (problem.evaluate(theta + eps * e).value - problem.evaluate(theta - eps * e).value)
        / (2 * eps)
        for e in eye
    ]
    hess = [
        (
            problem.evaluate(theta + eps * e, 1).gradient
            - problem.evaluate(theta - eps * e, 1).gradient
        )
        / (2 * eps)
        for e in eye
    ]
    assert_allclose(ev.gradient, grad, rtol=1e-5, atol=1e-5)
    assert_allclose(ev.hessian, np.array(hess), rtol=1e-5, atol=1e-5)


def test_subject_sigma_derivatives_match_finite_differences():
    data = fev_data()
    data["w"] = np.linspace(0.5, 2.0, len(data))
    problem = _problem(f"{FEV_FIXED} + adh(AVISIT | USUBJID)", True, data, weights="w")
    theta = np.random.default_rng(6).normal(scale=0.3, size=problem.n_theta)
    J = problem.subject_sigma_jacobian(theta)
    H = problem.subject_sigma_hessian(theta)
    eps = 1e-6
    for k in (0, 5, problem.n_theta - 1):
        e = np.eye(problem.n_theta)[k] * eps
        up, down = problem.subject_sigma(theta + e), problem.subject_sigma(theta - e)
        jup, jdown = (
            problem.subject_sigma_jacobian(theta + e),
            problem.subject_sigma_jacobian(theta - e),
        )
        for i in (0, 7, 50):
            assert_allclose(J[i][k], (up[i] - down[i]) / (2 * eps), rtol=1e-6, atol=1e-8)
            assert_allclose(H[i][k], (jup[i] - jdown[i]) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_uniform_weights_scale_the_covariance_only():
    data = fev_data()
    plain = _fit(f"{FEV_FIXED} + us(AVISIT | USUBJID)", data, df="residual")
    data["w"] = 4.0
    weighted = _fit(f"{FEV_FIXED} + us(AVISIT | USUBJID)", data, df="residual", weights="w")
    assert_allclose(weighted.params, plain.params, rtol=1e-8)
    assert_allclose(weighted.covariance.to_numpy(), 4.0 * plain.covariance.to_numpy(), rtol=1e-7)
    # Σ_i = W^{-1/2} Σ W^{-1/2} is the same matrix at both optima: the same likelihood
    assert_allclose(weighted.loglik, plain.loglik, rtol=1e-10)


# --------------------------------------------------------------------------- results object
@pytest.fixture(scope="module")
def us_fit() -> MMRMResults:
    return _fit(f"{FEV_FIXED} + us(AVISIT | USUBJID)", df="residual")


def test_results_tables_and_criteria(us_fit):
    fe = us_fit.fixed_effects
    assert list(fe.columns) == [
        "estimate",
        "std_error",
        "statistic",
        "df",
        "p_value",
        "ci_lower",
        "ci_upper",
    ]
    assert fe.index.name == "term"
    assert us_fit.method == "REML" and us_fit.df_method == "residual"
    assert us_fit.vcov_method is None and us_fit.family == "gaussian" and us_fit.link == "identity"
    assert us_fit.nobs == 537 and us_fit.n_subjects == 197
    assert_allclose(us_fit.deviance, -2 * us_fit.loglik)
    # mmrm: AIC = deviance + 2·n_theta; BIC = deviance + n_theta·log(n_subjects)
    assert_allclose(us_fit.aic, us_fit.deviance + 2 * 10)
    assert_allclose(us_fit.bic, us_fit.deviance + 10 * np.log(197))
    assert len(us_fit.excluded_rows) == 800 - 537
    assert set(us_fit.excluded_rows["columns"]) == {"FEV1"}
    assert_allclose(us_fit.vcov.to_numpy(), us_fit.problem.beta_cov(us_fit.theta))
    assert "Fixed effects" in str(us_fit) and "Covariance" in us_fit._repr_html_()


def test_covariance_and_correlation_frames(us_fit):
    cov, cor = us_fit.covariance, us_fit.correlation
    assert list(cov.index) == ["VIS1", "VIS2", "VIS3", "VIS4"] == list(cor.columns)
    assert_allclose(np.diag(cor), 1.0)
    sd = np.sqrt(np.diag(cov))
    assert_allclose(cor.to_numpy(), cov.to_numpy() / np.outer(sd, sd))


def test_grouped_covariance_is_a_dict_by_group():
    fit = _fit("FEV1 ~ ARMCD + us(AVISIT | ARMCD / USUBJID)", df="residual")
    assert set(fit.covariance) == {"PBO", "TRT"}
    assert fit.n_theta == 20


def test_predict_and_fixed_matrix_rebuild_the_fit(us_fit):
    frame = us_fit.model_frame
    assert list(frame["SEX"].cat.categories) == ["Male", "Female"]
    assert_allclose(us_fit.fixed_matrix(frame), us_fit.problem.X)
    assert_allclose(us_fit.predict(frame), us_fit.predict())
    new = fev_data().iloc[:8]
    pred = us_fit.predict(new)
    assert pred.index.equals(new.index) and np.isfinite(pred).all()


def test_df_for_gives_residual_df_per_row(us_fit):
    L = np.zeros((2, us_fit.problem.p))
    L[0, 4] = 1.0
    L[1, 8:] = 1.0
    assert_allclose(us_fit.df_for(L), [526.0, 526.0])


def test_results_are_immutable(us_fit):
    with pytest.raises(AttributeError):
        us_fit.loglik = 0.0  # type: ignore[misc]
    frame = us_fit.fixed_effects
    frame.loc[:, "estimate"] = 0.0
    assert (us_fit.fixed_effects["estimate"] != 0.0).any()
    with pytest.raises(ValueError, match="read-only"):
        us_fit.theta[0] = 1.0


def test_missing_rows_are_reported_with_an_exclusion_warning():
    with pytest.warns(ExclusionWarning, match="FEV1"):
        fit_mmrm(f"{FEV_FIXED} + ar1(AVISIT | USUBJID)", fev_data(), df="residual")


def test_fit_is_fast_for_many_subjects():
    rng = np.random.default_rng(0)
    n, m = 1000, 10
    A = rng.normal(size=(m, m))
    chol = np.linalg.cholesky(A @ A.T / m + np.eye(m))
    arm = np.repeat(rng.integers(0, 2, n), m)
    visit = np.tile(np.arange(m), n)
    y = 0.5 * arm * visit / m + (rng.normal(size=(n, m)) @ chol.T).ravel()
    data = pd.DataFrame(
        {
            "y": y,
            "subject": np.repeat(np.arange(n), m),
            "visit": pd.Categorical([f"V{v:02d}" for v in visit]),
            "arm": pd.Categorical(np.where(arm == 1, "T", "P")),
        }
    )
    import time

    start = time.perf_counter()
    fit = fit_mmrm("y ~ arm * visit + us(visit | subject)", data, df="residual")
    elapsed = time.perf_counter() - start
    assert fit.converged and fit.n_theta == 55
    assert_allclose(fit.covariance.to_numpy(), A @ A.T / m + np.eye(m), rtol=0.3, atol=0.15)
    assert elapsed < 5.0  # ~0.15 s on one idle core; generous for a loaded CI machine


def test_conditional_prediction_fills_missed_visits_by_the_gaussian_formula(us_fit):
    data = fev_data()
    missed = data[data["FEV1"].isna()].iloc[:5]
    pred = us_fit.predict(missed, conditional=True)
    pop = us_fit.predict(missed)
    Sigma = us_fit.covariance.to_numpy()
    beta = us_fit.params.to_numpy()
    fitted = data.loc[us_fit.problem.row_index]
    for idx, row in missed.iterrows():
        own = fitted[fitted["USUBJID"] == row["USUBJID"]]
        if own.empty:
            assert_allclose(pred[idx], pop[idx])
            continue
        o = [int(v[3:]) - 1 for v in own["AVISIT"].astype(str)]
        n = int(str(row["AVISIT"])[3:]) - 1
        r = own["FEV1"].to_numpy() - us_fit.fixed_matrix(own[us_fit.model_frame.columns]) @ beta
        expected = pop[idx] + Sigma[n, o] @ np.linalg.solve(Sigma[np.ix_(o, o)], r)
        assert_allclose(pred[idx], expected, rtol=1e-10)
    assert not np.allclose(pred, pop)


def test_conditional_prediction_at_observed_visits_returns_the_data(us_fit):
    data = fev_data().dropna(subset=["FEV1"]).iloc[:20]
    assert_allclose(us_fit.predict(data, conditional=True), data["FEV1"], rtol=1e-10)
    assert_allclose(us_fit.predict(conditional=True), us_fit.problem.y)


def test_conditional_prediction_of_a_new_subject_is_the_population_mean(us_fit):
    data = fev_data().iloc[:4].copy()
    data["USUBJID"] = "NEW"
    assert_allclose(us_fit.predict(data, conditional=True), us_fit.predict(data))
    data["AVISIT"] = "VIS9"
    with pytest.raises(ModelSpecError, match=r"`AVISIT` has level\(s\) \['VIS9'\] not seen"):
        us_fit.predict(data, conditional=True)
