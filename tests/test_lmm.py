"""Tests of the LMM engine (mesostats/mixed/lmm.py) against lme4, statsmodels and known truth.

Frozen lme4/lmerTest values come from tests/reference/ref_values.R (sleepstudy) and
ref_more.R (Penicillin, Pastes):

    lmerTest::lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = TRUE / FALSE)
    lmerTest::lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin, control = tight)
    lmerTest::lmer(strength ~ 1 + (1 | batch/cask), Pastes, control = tight)
"""

from __future__ import annotations

import re
import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from mixed_checks import (
    CheckMixedFit,
    frozen_blups,
    load_csv,
    normalise_sleepstudy,
    normalise_varcorr,
)
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ConvergenceWarning, SingularFitWarning
from mesostats.mixed.design import build_design
from mesostats.mixed.lmm import (
    ProfiledDeviance,
    batched_backward,
    batched_cholesky,
    batched_forward,
)
from mesostats.mixed.lmm import gradient as gradient_module

SLEEP = "Reaction ~ Days + (Days | Subject)"


# --------------------------------------------------------------------------- lme4 battery
class TestSleepstudyREMLMatchesLme4(CheckMixedFit):
    ref = normalise_sleepstudy("REML")

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm(SLEEP, load_csv("sleepstudy.csv"), reml=True)

    def test_theta_matches_tight_lme4(self) -> None:
        tight = [0.966732893590541, 0.0151690675460488, 0.230909592018104]
        assert_allclose(self.res1.theta, tight, rtol=1e-4, atol=1e-6)

    def test_vcov_matches_lme4(self) -> None:
        ref = pd.DataFrame(self.ref["vcov"])
        assert_allclose(self.res1.vcov.loc[ref.index, ref.columns], ref, rtol=2e-4)

    def test_conditional_covariance_of_first_subject(self) -> None:
        # lme4 postVar: SDs 12.0708569505143, 2.30483902090028; covariance -21.4445035979414
        sd = self.res1.ranef_se["Subject"].iloc[0]
        assert_allclose(sd.to_numpy(), [12.0708569505143, 2.30483902090028], rtol=1e-4)
        cov = self.res1.ranef_cov["Subject"]
        assert cov.shape == (18, 2, 2)
        assert_allclose(cov[0, 0, 1], -21.4445035979414, rtol=1e-3)
        assert_allclose(np.sqrt(np.diagonal(cov, axis1=1, axis2=2)), self.res1.ranef_se["Subject"])


class TestSleepstudyMLMatchesLme4(CheckMixedFit):
    ref = normalise_sleepstudy("ML")

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm(SLEEP, load_csv("sleepstudy.csv"), reml=False)

    def test_method_and_counts(self) -> None:
        assert self.res1.method == "ML"
        assert self.res1.nobs == 180
        assert self.res1.n_params == 6


class TestPenicillinCrossedREMLMatchesLme4(CheckMixedFit):
    ref = normalise_varcorr("ref_penicillin.json", "REML")

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm(
            "diameter ~ 1 + (1 | plate) + (1 | sample)", load_csv("penicillin.csv"), reml=True
        )


class TestPenicillinCrossedMLMatchesLme4(CheckMixedFit):
    ref = normalise_varcorr("ref_penicillin.json", "ML")

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm(
            "diameter ~ 1 + (1 | plate) + (1 | sample)", load_csv("penicillin.csv"), reml=False
        )


class TestPastesNestedREMLMatchesLme4(CheckMixedFit):
    ref = normalise_varcorr("ref_pastes.json", "REML")

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm("strength ~ 1 + (1 | batch/cask)", load_csv("pastes.csv"))

    def test_inner_group_named_like_lme4(self) -> None:
        assert list(self.res1.ngroups) == ["cask:batch", "batch"]
        assert "a:A" in self.res1.ranef["cask:batch"].index


class TestPastesNestedMLMatchesLme4(CheckMixedFit):
    ref = normalise_varcorr("ref_pastes.json", "ML")

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm("strength ~ 1 + (1 | batch/cask)", load_csv("pastes.csv"), reml=False)


def crossed_slopes_data(seed: int = 21, n_subj: int = 40, n_item: int = 12) -> pd.DataFrame:
    """Crossed subjects × items with a random slope per item (written to CSV for R)."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = np.round(rng.normal(size=subj.size), 3)
    bs = rng.normal(0, 1.5, (n_subj, 1))
    bi = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], n_item)
    y = 2.0 + 0.7 * x + bs[subj, 0] + bi[item, 0] + bi[item, 1] * x + rng.normal(0, 0.8, subj.size)
    return pd.DataFrame(
        {"y": np.round(y, 6), "x": x, "subj": subj, "item": [f"i{k:02d}" for k in item]}
    )


def _crossed_slopes_reference(
    loglik: float,
    fixef: list[float],
    se: list[float],
    df: list[float],
    sd: list[float],
    block: str,
) -> dict[str, object]:
    return {
        "fixef": dict(zip(["Intercept", "x"], fixef, strict=True)),
        "se": dict(zip(["Intercept", "x"], se, strict=True)),
        "varcorr": [
            ("subj", "Intercept", None, sd[0]),
            ("item", "Intercept", None, sd[1]),
            ("item", "x", None, sd[2]),
            ("item", "Intercept", "x", sd[3]),
            ("Residual", None, None, sd[4]),
        ],
        "loglik": loglik,
        "df": dict(zip(["Intercept", "x"], df, strict=True)),
        "p": {},
        "ngroups": {"subj": 40, "item": 12},
        "blups": frozen_blups(f"crossed_{block}", "", "ref_blups_simulated.json"),
    }


class TestCrossedRandomSlopesREMLMatchesLme4(CheckMixedFit):
    """R 4.2.2, lme4 1.1-31, lmerTest 3.1-3 on ``crossed_slopes_data()`` written to CSV::

        d$subj <- factor(d$subj); d$item <- factor(d$item)
        f <- lmerTest::lmer(y ~ x + (1 | subj) + (1 + x | item), d, control = tight)

    BLUPs: ``tests/reference/ref_blups_simulated.R`` (``ranef(f, condVar = TRUE)``).

    (tight = nloptwrap with xtol/ftol 1e-14/1e-15). Exercises the Schur-complement path with
    a two-column term in the dense block.
    """

    ref = _crossed_slopes_reference(
        -687.837684624786,
        [1.954328728654791, 0.578697795767545],
        [0.341942832309884, 0.221921540223415],
        [26.1345767719781, 11.0490808989189],
        [
            1.344851307730973,
            0.918733575870786,
            0.754546047598201,
            0.312615370009069,
            0.802136125595400,
        ],
        "REML",
    )

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm("y ~ x + (1 | subj) + (1 + x | item)", crossed_slopes_data())

    def test_theta_matches_lme4(self) -> None:
        lme4 = [1.676587383136163, 1.145358682341901, 0.294068156678149, 0.893524209070008]
        assert_allclose(self.res1.theta, lme4, rtol=1e-5)


class TestCrossedRandomSlopesMLMatchesLme4(CheckMixedFit):
    """As above with ``REML = FALSE``."""

    ref = _crossed_slopes_reference(
        -687.037050328345,
        [1.954399929663184, 0.578556298778941],
        [0.335534848450640, 0.212502937102177],
        [28.4649270407573, 12.0581849563180],
        [
            1.337251115553568,
            0.893360143135642,
            0.721279680584426,
            0.308342901704917,
            0.802147732028196,
        ],
        "ML",
    )

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm(
            "y ~ x + (1 | subj) + (1 + x | item)", crossed_slopes_data(), reml=False
        )


def three_effects_data(seed: int = 31, n_groups: int = 25, n_obs: int = 8) -> pd.DataFrame:
    """One grouping factor with three correlated random effects (written to CSV for R)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_obs)
    t = np.tile(np.arange(n_obs, dtype=float), n_groups)
    z = np.round(rng.normal(size=g.size), 3)
    cov = np.array([[4.0, 0.5, 0.3], [0.5, 0.5, 0.1], [0.3, 0.1, 1.0]])
    b = rng.multivariate_normal(np.zeros(3), cov, n_groups)
    y = 5 + 0.8 * t - 0.5 * z + b[g, 0] + b[g, 1] * t + b[g, 2] * z + rng.normal(0, 1.0, g.size)
    return pd.DataFrame({"y": np.round(y, 6), "t": t, "z": z, "g": g})


class TestThreeRandomEffectsREMLMatchesLme4(CheckMixedFit):
    """R 4.2.2, lme4 1.1-31, lmerTest 3.1-3 on ``three_effects_data()`` written to CSV::

    d$g <- factor(d$g)
    f <- lmerTest::lmer(y ~ t + z + (1 + t + z | g), d, control = tight)
    """

    ref: ClassVar[dict[str, Any]] = {
        "fixef": {"Intercept": 5.056054542804541, "t": 0.588479165938015, "z": -0.844068862382936},
        "se": {"Intercept": 0.417398999445108, "t": 0.120627198302856, "z": 0.201383863978465},
        "varcorr": [
            ("g", "Intercept", None, 1.9561443701691921),
            ("g", "t", None, 0.5776681183404012),
            ("g", "z", None, 0.8691203488670709),
            ("g", "Intercept", "t", 0.3013880268706678),
            ("g", "Intercept", "z", -0.0903677538906672),
            ("g", "t", "z", -0.1433937423516629),
            ("Residual", None, None, 1.0640358674538890),
        ],
        "loglik": -389.204082367366,
        "df": {"Intercept": 23.8604754971862, "t": 23.9860925601982, "z": 22.2355087380619},
        "p": {},
        "ngroups": {"g": 25},
        "blups": frozen_blups("three_REML", "", "ref_blups_simulated.json"),
    }

    @classmethod
    def setup_class(cls) -> None:
        cls.res1 = ms.fit_lmm("y ~ t + z + (1 + t + z | g)", three_effects_data())

    def test_theta_matches_lme4(self) -> None:
        lme4 = [
            1.8384195777629304,
            0.1636244225387917,
            -0.0738137277042439,
            0.5176587356150189,
            -0.0995064650344881,
            0.8073639669390263,
        ]
        assert_allclose(self.res1.theta, lme4, rtol=1e-5, atol=1e-7)

    def test_ml_loglik_matches_lme4(self) -> None:
        ml = ms.fit_lmm("y ~ t + z + (1 + t + z | g)", three_effects_data(), reml=False)
        assert abs(ml.loglik - (-387.311338868394)) <= 1e-6
        assert_allclose(
            ml.fixed_effects["df"],
            [24.8428092217104, 24.9836730234076, 23.0630868939769],
            rtol=1e-3,
        )


# --------------------------------------------------------------------------- kernels
def test_batched_kernels_match_numpy_linalg() -> None:
    rng = np.random.default_rng(1)
    q, G = 3, 50
    A = rng.normal(size=(G, q, q))
    M = A @ np.swapaxes(A, 1, 2) + np.eye(q)  # (G, q, q) SPD
    L = batched_cholesky(np.ascontiguousarray(M.transpose(1, 2, 0)))
    assert_allclose(L.transpose(2, 0, 1), np.linalg.cholesky(M), rtol=1e-12)
    B = rng.normal(size=(q, 4, G))
    X = batched_forward(L, B)
    Lg = L.transpose(2, 0, 1)
    assert_allclose(Lg @ X.transpose(2, 0, 1), B.transpose(2, 0, 1), atol=1e-12)
    Y = batched_backward(L, B)
    assert_allclose(np.swapaxes(Lg, 1, 2) @ Y.transpose(2, 0, 1), B.transpose(2, 0, 1), atol=1e-12)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    ("formula", "data", "theta"),
    [
        (SLEEP, "sleepstudy.csv", [1.3, -0.4, 0.7]),
        ("Reaction ~ Days + (Days || Subject)", "sleepstudy.csv", [0.8, 0.3]),
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv", [1.2, 2.5]),
        ("strength ~ 1 + (1 | batch/cask)", "pastes.csv", [2.0, 0.7]),
        ("y ~ x + (1 | subj) + (1 + x | item)", "crossed", [1.5, 1.1, -0.4, 0.7]),
    ],
)
def test_analytic_gradient_matches_finite_differences(
    formula: str, data: str, theta: list[float], reml: bool
) -> None:
    frame = crossed_slopes_data() if data == "crossed" else load_csv(data)
    problem = ProfiledDeviance(build_design(formula, frame), reml=reml)
    th = np.asarray(theta)
    _, grad = problem.value_and_gradient(th)
    h = 1e-6
    fd = [
        (problem(th + h * np.eye(th.size)[i]) - problem(th - h * np.eye(th.size)[i])) / (2 * h)
        for i in range(th.size)
    ]
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def test_deviance_matches_lme4_at_lme4_theta() -> None:
    """lme4's REML criterion at its own θ (REML_criterion = 1743.62827195995)."""
    problem = ProfiledDeviance(build_design(SLEEP, load_csv("sleepstudy.csv")), reml=True)
    theta = [0.966741773967412, 0.0151690588960361, 0.230909953207795]
    assert_allclose(problem(np.asarray(theta)), 1743.62827195995, rtol=1e-12)


# --------------------------------------------------------------------------- simulations
def _crossed(seed: int, n_subj: int = 120, n_item: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = rng.normal(size=subj.size)
    y = (
        3.0
        + 0.5 * x
        + rng.normal(0, 2.0, n_subj)[subj]
        + rng.normal(0, 1.0, n_item)[item]
        + rng.normal(0, 0.7, subj.size)
    )
    return pd.DataFrame({"y": y, "x": x, "subj": subj, "item": [f"i{k}" for k in item]})


def test_crossed_simulation_recovers_truth() -> None:
    fit = ms.fit_lmm("y ~ x + (1 | subj) + (1 | item)", _crossed(3))
    vc = fit.variance_components.set_index("group")["sdcor"]
    assert_allclose(vc["subj"], 2.0, rtol=0.15)
    assert_allclose(vc["item"], 1.0, rtol=0.3)
    assert_allclose(vc["Residual"], 0.7, rtol=0.05)
    fe = fit.fixed_effects
    assert abs(fe.loc["x", "estimate"] - 0.5) < 3 * fe.loc["x", "std_error"]
    assert fit.converged


def test_nested_simulation_recovers_truth() -> None:
    rng = np.random.default_rng(11)
    n_site, n_per, n_obs = 15, 40, 6
    site = np.repeat(np.arange(n_site), n_per * n_obs)
    subj = np.repeat(np.arange(n_per * n_site), n_obs) % n_per  # subject ids reused per site
    week = np.tile(np.arange(n_obs, dtype=float), n_site * n_per)
    b_site = rng.normal(0, 3.0, n_site)[site]
    b_subj = rng.normal(0, 5.0, n_site * n_per)[np.repeat(np.arange(n_site * n_per), n_obs)]
    y = 50 + 2.0 * week + b_site + b_subj + rng.normal(0, 1.5, site.size)
    data = pd.DataFrame({"y": y, "week": week, "site": site, "subj": subj})
    fit = ms.fit_lmm("y ~ week + (1 | site/subj)", data)
    assert fit.ngroups == {"subj:site": n_site * n_per, "site": n_site}
    vc = fit.variance_components.set_index("group")["sdcor"]
    assert_allclose(vc["subj:site"], 5.0, rtol=0.12)
    assert_allclose(vc["site"], 3.0, rtol=0.4)
    assert_allclose(vc["Residual"], 1.5, rtol=0.05)


def test_zero_variance_second_factor_reproduces_one_factor_fit() -> None:
    data = _crossed(5, n_subj=60, n_item=10)
    # make every item mean identical: the item variance estimate is then exactly 0
    data["y"] = data["y"] - data.groupby("item")["y"].transform("mean") + data["y"].mean()
    with pytest.warns(SingularFitWarning, match=r"Random-intercept SD within `item` is 0"):
        two = ms.fit_lmm("y ~ 1 + (1 | subj) + (1 | item)", data)
    one = ms.fit_lmm("y ~ 1 + (1 | subj)", data)
    assert two.singular and not one.singular
    assert_allclose(two.loglik, one.loglik, atol=1e-8)
    assert_allclose(two.fixed_effects["estimate"], one.fixed_effects["estimate"], rtol=1e-9)
    assert_allclose(two.fixed_effects["std_error"], one.fixed_effects["std_error"], rtol=1e-6)
    sd_two = two.variance_components.set_index("group")["sdcor"]
    sd_one = one.variance_components.set_index("group")["sdcor"]
    assert sd_two["item"] == 0.0
    assert_allclose(sd_two["subj"], sd_one["subj"], rtol=1e-6)
    assert_allclose(sd_two["Residual"], sd_one["Residual"], rtol=1e-8)


def test_two_factor_deviance_at_zero_equals_one_factor_deviance() -> None:
    data = _crossed(8, n_subj=40, n_item=8)
    for reml in (True, False):
        two = ProfiledDeviance(build_design("y ~ x + (1 | subj) + (1 | item)", data), reml=reml)
        one = ProfiledDeviance(build_design("y ~ x + (1 | subj)", data), reml=reml)
        assert_allclose(two(np.array([0.9, 0.0])), one(np.array([0.9])), rtol=1e-12)


@pytest.mark.parametrize("reml", [True, False])
def test_random_intercept_matches_statsmodels_mixedlm(reml: bool) -> None:
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(25), 6)
    x = rng.normal(size=g.size)
    y = 1.0 + 0.8 * x + rng.normal(0, 1.2, 25)[g] + rng.normal(0, 1.0, g.size)
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    ours = ms.fit_lmm("y ~ x + (1 | g)", data, reml=reml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("y ~ x", data, groups=data["g"]).fit(reml=reml, method="lbfgs")
    assert_allclose(ours.loglik, sm.llf, atol=1e-5)
    assert_allclose(ours.fixed_effects["estimate"].to_numpy(), sm.fe_params.to_numpy(), rtol=1e-5)
    assert_allclose(
        ours.variance_components["vcov"].iloc[0], float(sm.cov_re.iloc[0, 0]), rtol=1e-3
    )


def _no_slope_variance(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 8)
    t = np.tile(np.arange(8.0), 30)
    y = 10 + 0.5 * t + rng.normal(0, 2.0, 30)[g] + rng.normal(0, 1.0, g.size)
    return pd.DataFrame({"y": y, "t": t, "g": g})


def test_singular_fit_warning_names_slope_sd_and_remedy() -> None:
    with pytest.warns(SingularFitWarning, match="Random-slope SD for `t`") as record:
        fit = ms.fit_lmm("y ~ t + (t || g)", _no_slope_variance(0))
    assert len(record) == 1
    text = str(record[0].message)
    assert text.startswith("Random-slope SD for `t` within `g` is 0 (on the boundary)")
    assert "Refit with `(1 | g)`" in text
    assert fit.singular and fit.theta[1] == 0.0
    assert fit.messages == [text]
    # lmerTest on the same data (boundary fit): df 35.3768319906, 209.0000000863
    assert_allclose(fit.fixed_effects["df"], [35.3768319906, 209.0000000863], rtol=1e-3)


def test_singular_fit_warning_names_correlation_at_boundary() -> None:
    """lme4 (tight) on the same data: theta = (1.93473227, -0.07929339, 0),
    logLik = -394.888241464328 (correlation -1)."""
    with pytest.warns(
        SingularFitWarning, match=r"Correlation of `Intercept` and `t` within `g` is -1\.0000"
    ) as record:
        fit = ms.fit_lmm("y ~ t + (1 + t | g)", _no_slope_variance(0))
    assert "`(1 + t || g)`" in str(record[0].message)
    assert fit.singular
    assert_allclose(fit.loglik, -394.888241464328, atol=1e-6)
    # lmerTest: SE 0.3806934229324, 0.0323815477988; df 29.1127526598, 61.5331991724
    assert_allclose(fit.fixed_effects["std_error"], [0.3806934229324, 0.0323815477988], rtol=1e-4)
    assert_allclose(fit.fixed_effects["df"], [29.1127526598, 61.5331991724], rtol=1e-3)


def test_interior_optimum_found_where_identity_start_stalls() -> None:
    """lme4 (tight) on seed 4: theta = (2.26659047, 0.01006551, 0.05940283),
    logLik = -394.523993371058 (an interior optimum, not a singular fit)."""
    fit = ms.fit_lmm("y ~ t + (1 + t | g)", _no_slope_variance(4))
    assert not fit.singular
    assert_allclose(fit.loglik, -394.523993371058, atol=1e-6)
    assert_allclose(fit.theta, [2.26659047, 0.01006551, 0.05940283], rtol=1e-4)


def test_uncorrelated_terms_match_lme4() -> None:
    """Values from R 4.2.2, lme4 1.1-31, lmerTest 3.1-3 (tight nloptwrap tolerances)::

    f <- lmerTest::lmer(Reaction ~ Days + (Days || Subject), sleepstudy, control = tight)
    logLik(f)  # -871.834646790656;  getME(f, "theta")  # 0.979896308954831 0.234230577960151
    summary(f)$coefficients  # SE 6.88538133867645 1.55956594198971, df 18.156203740594
    """
    fit = ms.fit_lmm("Reaction ~ Days + (Days || Subject)", load_csv("sleepstudy.csv"))
    vc = fit.variance_components
    assert list(vc["var1"].iloc[:2]) == ["Intercept", "Days"]
    assert vc["var2"].isna().all()
    assert set(fit.ranef["Subject"].columns) == {"Intercept", "Days"}
    assert_allclose(fit.loglik, -871.834646790656, atol=1e-6)
    assert_allclose(fit.theta, [0.979896308954831, 0.234230577960151], rtol=1e-4)
    fe = fit.fixed_effects
    assert_allclose(fe["std_error"], [6.88538133867645, 1.55956594198971], rtol=1e-4)
    assert_allclose(fe["df"], [18.156203740594, 18.1562041062815], rtol=1e-3)
    assert_allclose(vc["sdcor"], [25.0513287408694, 5.98817156062383, 25.5652853388022], rtol=1e-3)


def test_missing_rows_are_excluded_with_warning() -> None:
    data = load_csv("sleepstudy.csv")
    data.loc[[3, 10], "Reaction"] = np.nan
    with pytest.warns(ms.ExclusionWarning, match="2 of 180 rows were not fitted"):
        fit = ms.fit_lmm(SLEEP, data)
    assert fit.nobs == 178
    assert list(fit.excluded_rows["row"]) == [3, 10]


def test_convergence_warning_when_optimiser_budget_is_tiny(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mesostats.mixed.lmm.optimise as lmm

    original = lmm.optimize.minimize

    def one_step(*args: object, **kwargs: dict[str, object]) -> object:
        kwargs["options"] = {"maxiter": 1}  # type: ignore[assignment]
        return original(*args, **kwargs)

    monkeypatch.setattr(lmm.optimize, "minimize", one_step)
    monkeypatch.setattr(lmm, "_fd_hessian", lambda fun, theta: -np.eye(theta.size))
    # the finite-difference path (the dense analytic Hessian's twin: test_lmm_hessian.py)
    monkeypatch.setattr(gradient_module, "MAX_DENSE_Q", 0)
    monkeypatch.setattr(gradient_module, "MAX_BLOCK_REST", -1)
    with pytest.warns(
        ConvergenceWarning, match="not positive definite|Satterthwaite df may be unreliable"
    ) as record:
        fit = ms.fit_lmm(SLEEP, load_csv("sleepstudy.csv"))
    texts = [str(w.message) for w in record]
    assert any("not positive definite (smallest eigenvalue -1" in t for t in texts)
    assert any("Satterthwaite df may be unreliable" in t for t in texts)
    assert not fit.converged
    assert fit.messages == texts


def _random_slope_data(seed: int, n_groups: int = 40, n_obs: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_obs)
    t = np.tile(np.arange(n_obs, dtype=float), n_groups)
    trt = np.repeat(rng.integers(0, 2, n_groups), n_obs)
    b0 = rng.normal(0, 3.0, n_groups)[g]
    b1 = rng.normal(0, 0.8, n_groups)[g]
    y = 20 + 1.0 * t + 2.0 * trt + 0.5 * trt * t + b0 + b1 * t + rng.normal(0, 1.5, g.size)
    return pd.DataFrame({"y": y, "t": t, "trt": trt, "g": g})


@pytest.mark.slow
def test_wald_intervals_cover_truth_about_95_percent() -> None:
    truth = {"Intercept": 20.0, "t": 1.0, "trt": 2.0, "t:trt": 0.5}
    hits = []
    for seed in range(400):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)
            fe = ms.fit_lmm("y ~ t * trt + (1 + t | g)", _random_slope_data(seed)).fixed_effects
        for name, value in truth.items():
            hits.append(fe.loc[name, "ci_lower"] <= value <= fe.loc[name, "ci_upper"])
    coverage = float(np.mean(hits))
    assert 0.93 <= coverage <= 0.97, coverage


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(
    ("formula", "data"),
    [
        ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv"),
        ("strength ~ 1 + (1 | batch/cask)", "pastes.csv"),
        ("y ~ x + (1 | subj) + (1 + x | item)", "crossed"),
    ],
)
@pytest.mark.parametrize(
    ("mode", "limit", "grad_tol", "df_rtol"),
    [
        # the sparse-Cholesky path (beyond 5,000 further random effects, once refused): its
        # gradient comes from central differences
        ("sparse", "_MAX_REST_DENSE", (1e-6, 1e-6), 1e-4),
        # the co-occurrence-pairs path (when the dense blocks would be too large)
        ("pairs", "_MAX_REST_ELEMENTS", (1e-9, 1e-10), 1e-5),
    ],
)
def test_further_factor_paths_equal_dense_schur_path(
    formula: str,
    data: str,
    reml: bool,
    mode: str,
    limit: str,
    grad_tol: tuple[float, float],
    df_rtol: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sparse and the pairs Schur paths give the dense path's deviance, gradient, fit,
    df, conditional SDs and BLUPs."""
    import mesostats.mixed.lmm.rest as lmm

    frame = crossed_slopes_data() if data == "crossed" else load_csv(data)
    dense_fit = ms.fit_lmm(formula, frame, reml=reml)
    dense = ProfiledDeviance(build_design(formula, frame), reml=reml)
    monkeypatch.setattr(lmm, limit, 0)
    other = ProfiledDeviance(build_design(formula, frame), reml=reml)
    assert dense.rest_mode == "dense" and other.rest_mode == mode
    theta = dense_fit.theta * 1.1 + 0.05
    v_dense, g_dense = dense.value_and_gradient(theta)
    v_other, g_other = other.value_and_gradient(theta)
    assert_allclose(v_other, v_dense, rtol=1e-13)
    assert_allclose(g_other, g_dense, rtol=grad_tol[0], atol=grad_tol[1])
    other_fit = ms.fit_lmm(formula, frame, reml=reml)
    assert_allclose(other_fit.loglik, dense_fit.loglik, atol=1e-9)
    assert_allclose(other_fit.fixed_effects["df"], dense_fit.fixed_effects["df"], rtol=df_rtol)
    for group, sd in dense_fit.ranef_se.items():
        assert_allclose(other_fit.ranef_se[group], sd, rtol=1e-6)
        assert_allclose(other_fit.ranef[group], dense_fit.ranef[group], rtol=1e-5, atol=1e-8)


def _large_crossed(seed: int = 1, n_a: int = 6000, n_b: int = 5200, n_c: int = 8) -> pd.DataFrame:
    """Three crossed factors; 5,000+ random effects outside the largest (once refused).

    Each level of ``a`` (3 rows) meets nearby levels of ``b``, so the Schur complement of
    ``b`` and ``c`` is large but sparse; ``c`` crosses everything.
    """
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_a), 3)
    b = (a * n_b // n_a + rng.integers(0, 4, a.size)) % n_b
    c = rng.integers(0, n_c, a.size)
    x = rng.normal(size=a.size)
    y = (
        1.0
        + 0.5 * x
        + rng.normal(0, 0.8, n_a)[a]
        + rng.normal(0, 0.6, n_b)[b]
        + rng.normal(0, 0.3, n_c)[c]
        + rng.normal(size=a.size)
    )
    return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str), "c": c})


def _reml_criterion_woodbury(frame: pd.DataFrame, groups: list[str], theta: np.ndarray) -> float:
    """−2 REML log-likelihood of ``y ~ x + (1|g) ...`` from the marginal form, independently.

    V₀ = I + ZΛΛᵀZᵀ with the full sparse Z (all factors at once, natural order, SuperLU with
    partial pivoting): log|V₀| = log|S|, S = ΛᵀZᵀZΛ + I, and V₀⁻¹ = I − ZΛS⁻¹ΛᵀZᵀ
    (Woodbury); then d = log|S| + log|XᵀV₀⁻¹X| + (n−p)(1 + log(2π r²/(n−p))), with
    r² = (y − Xβ̂)ᵀV₀⁻¹(y − Xβ̂) (Bates et al. 2015, eq. 41 in its marginal form).
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    y = frame["y"].to_numpy()
    n = y.size
    X = np.column_stack([np.ones(n), frame["x"].to_numpy()])
    blocks, scales = [], []
    for g, t in zip(groups, theta, strict=True):
        codes, levels = pd.factorize(frame[g])
        blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(levels))))
        scales.append(np.full(len(levels), t))
    ZL = (sp.hstack(blocks) @ sp.diags(np.concatenate(scales))).tocsc()
    S = (ZL.T @ ZL + sp.identity(ZL.shape[1])).tocsc()
    lu = spla.splu(S, permc_spec="NATURAL")
    logdet_S = float(np.log(np.abs(lu.U.diagonal())).sum())

    def v_inv(M: np.ndarray) -> np.ndarray:
        return M - ZL @ lu.solve(np.asarray(ZL.T @ M))

    Vy, VX = v_inv(y[:, None])[:, 0], v_inv(X)
    XVX = X.T @ VX
    beta = np.linalg.solve(XVX, X.T @ Vy)
    resid = y - X @ beta
    r2 = float(resid @ (Vy - VX @ beta))
    m = n - X.shape[1]
    return logdet_S + float(np.linalg.slogdet(XVX)[1]) + m * (1 + np.log(2 * np.pi * r2 / m))


def test_large_crossed_design_fits_on_the_sparse_path() -> None:
    """6,000 × 5,200 × 8 crossed levels (5,208 random effects outside the largest factor,
    where the engine used to raise ModelSpecError): the fit reaches the REML optimum of an
    independent marginal-form evaluation, and that optimum is a minimum."""
    import mesostats.mixed.lmm.rest as lmm

    frame = _large_crossed()
    formula = "y ~ x + (1 | a) + (1 | b) + (1 | c)"
    problem = ProfiledDeviance(build_design(formula, frame), reml=True)
    assert problem.rest_mode == "sparse" and problem.Qr > lmm._MAX_REST_DENSE
    fit = ms.fit_lmm(formula, frame)
    assert fit.converged
    assert fit.optimizer_info["factorisation"] == "sparse Schur"
    assert fit.optimizer_info["newton_decrement"] < 1e-6
    groups = ["a", "b", "c"]
    criterion = _reml_criterion_woodbury(frame, groups, fit.theta)
    assert_allclose(-2.0 * fit.loglik, criterion, rtol=0, atol=1e-6)
    for j in range(fit.theta.size):
        for step in (-1e-3, 1e-3):
            moved = fit.theta.copy()
            moved[j] += step * max(fit.theta[j], 0.1)
            assert _reml_criterion_woodbury(frame, groups, moved) > criterion


def test_offset_shifts_fixed_effect_and_keeps_likelihood() -> None:
    sleep = load_csv("sleepstudy.csv")
    plain = ms.fit_lmm(SLEEP, sleep)
    shifted = ms.fit_lmm("Reaction ~ Days + offset(2 * Days) + (Days | Subject)", sleep)
    assert_allclose(
        shifted.fixed_effects.loc["Days", "estimate"],
        plain.fixed_effects.loc["Days", "estimate"] - 2.0,
        rtol=1e-9,
    )
    assert_allclose(shifted.loglik, plain.loglik, atol=1e-8)
    assert_allclose(shifted.fitted, plain.fitted, rtol=1e-9)


def test_random_slope_without_intercept_matches_lme4() -> None:
    """lme4 1.1-31: lmer(Reaction ~ Days + (0 + Days | Subject), sleepstudy, control = tight)
    gives logLik -883.262513742784 and theta 0.250192706358862."""
    fit = ms.fit_lmm("Reaction ~ Days + (0 + Days | Subject)", load_csv("sleepstudy.csv"))
    assert fit.ranef["Subject"].columns.tolist() == ["Days"]
    assert fit.converged and not fit.singular
    assert abs(fit.loglik - (-883.262513742784)) <= 1e-6
    assert_allclose(fit.theta, [0.250192706358862], rtol=1e-5)


def test_categorical_interaction_on_unbalanced_rows_matches_lme4() -> None:
    """R 4.2.2, lme4 1.1-31, lmerTest 3.1-3::

    d <- sleepstudy; s <- as.integer(as.character(d$Subject)) %% 3
    d$arm <- factor(ifelse(s == 0, "ctrl", ifelse(s == 1, "low", "high")),
                    levels = c("ctrl", "high", "low"))
    d <- d[-seq(5, 180, by = 7), ]
    f <- lmerTest::lmer(Reaction ~ Days * arm + (Days | Subject), d, control = tight)
    """
    data = load_csv("sleepstudy.csv")
    s = data["Subject"] % 3
    data["arm"] = np.where(s == 0, "ctrl", np.where(s == 1, "low", "high"))
    data = data.drop(index=np.arange(4, 180, 7))
    fit = ms.fit_lmm("Reaction ~ Days * arm + (Days | Subject)", data)
    fe = fit.fixed_effects
    assert list(fe.index) == [
        "Intercept",
        "Days",
        "arm[T.high]",
        "arm[T.low]",
        "Days:arm[T.high]",
        "Days:arm[T.low]",
    ]
    assert abs(fit.loglik - (-738.96074475562)) <= 1e-6
    assert_allclose(
        fe["estimate"],
        [
            259.261063727374,
            6.86918526009611,
            -12.6719506070032,
            -8.32092790697897,
            4.96808296500913,
            4.86804479883039,
        ],
        rtol=1e-6,
    )
    assert_allclose(
        fe["std_error"],
        [
            13.3443941215967,
            2.67083723891212,
            19.5900946448138,
            18.0921704302512,
            3.9154350784198,
            3.62037743263257,
        ],
        rtol=1e-4,
    )
    assert_allclose(
        fe["df"],
        [
            15.1823658288473,
            15.4901629968381,
            14.5743967338064,
            14.8636979242946,
            14.7964909981376,
            15.1619462478911,
        ],
        rtol=1e-3,
    )


def test_nan_deviance_is_not_declared_converged():
    """A profiled deviance that is NaN everywhere: every comparison in the optimality checks
    is False, so before the fix optimise_theta returned converged=True with no message."""
    from types import SimpleNamespace

    from mesostats.mixed.lmm import optimise_theta

    class NanDeviance:
        design = SimpleNamespace(
            theta_lower=np.array([0.0, -np.inf]), theta_names=("g[Intercept]", "g[x,Intercept]")
        )

        def value_and_gradient(self, theta):
            return float("nan"), np.full(2, np.nan)

    result = optimise_theta(NanDeviance(), np.array([1.0, 0.0]))  # type: ignore[arg-type]
    assert not result.converged
    (message,) = result.messages
    assert message.startswith("The deviance (nan) or its gradient/Hessian is not finite")


def _saddle_boundary_data() -> pd.DataFrame:
    """``ms.simulate_study(24, 6, seed=18, n_sites=1)`` as ``ms.fit_regrowth`` fits it (frozen
    here so that changes to the simulator cannot move it): 23 subjects, 103 visits, week =
    days / 7, treatment flags (biotin, dutasteride, minoxidil) as the bits of ``ingredients``."""
    visits = [5, 5, 5, 5, 4, 1, 5, 5, 5, 5, 5, 2, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 5]
    days = [6, 13, 20, 47, 140, 6, 13, 21, 52, 136, 8, 15, 21, 49, 147, 7, 14, 22, 51, 137,
            6, 15, 46, 144, 6, 7, 13, 20, 48, 145, 8, 14, 20, 51, 140, 7, 14, 22, 50, 136,
            6, 13, 22, 49, 133, 8, 15, 22, 49, 147, 6, 15, 6, 13, 21, 52, 144, 6, 14, 21,
            52, 135, 8, 14, 21, 50, 143, 8, 15, 20, 50, 142, 6, 15, 20, 51, 135, 8, 15, 20,
            51, 141, 8, 14, 20, 51, 147, 6, 13, 20, 52, 140, 8, 13, 22, 51, 136, 8, 6, 13,
            22, 50, 137]  # fmt: skip
    value = [123.9, 110.1, 124.5, 134.0, 185.2, 81.2, 93.6, 88.8, 105.9, 126.4, 115.3,
             126.7, 119.6, 119.7, 145.7, 99.9, 86.1, 88.3, 92.3, 100.7, 117.4, 106.6, 118.5,
             131.6, 106.7, 141.3, 144.9, 148.1, 149.3, 199.8, 150.4, 137.1, 150.5, 151.3,
             151.2, 147.4, 144.8, 141.9, 156.1, 176.3, 108.3, 114.1, 121.9, 112.9, 125.5,
             77.0, 64.9, 65.2, 59.9, 24.3, 149.9, 153.0, 151.1, 148.3, 163.0, 158.1, 187.8,
             121.3, 130.1, 128.6, 136.2, 169.1, 84.5, 110.1, 86.0, 112.9, 113.6, 134.5,
             119.2, 123.0, 136.8, 156.7, 114.0, 118.0, 111.0, 121.8, 138.8, 102.4, 109.1,
             105.7, 111.4, 154.3, 146.9, 130.1, 138.6, 144.4, 152.6, 122.9, 134.8, 130.0,
             136.1, 162.5, 105.4, 101.6, 110.6, 132.9, 148.2, 127.6, 54.5, 68.9, 72.1, 69.9,
             92.0]  # fmt: skip
    baseline = [115.8, 87.7, 113.9, 101.5, 108.7, 101.6, 138.7, 151.6, 137.8, 113.7, 78.7,
                144.6, 157.4, 121.1, 100.3, 133.6, 112.5, 98.3, 140.8, 120.8, 96.8, 139.5,
                45.2]  # fmt: skip
    ingredients = [7, 6, 5, 5, 0, 6, 7, 6, 7, 5, 0, 0, 6, 7, 5, 6, 6, 7, 5, 5, 7, 0, 0]
    subject = np.repeat(np.arange(len(visits)), visits)
    bits = np.asarray(ingredients)[subject]
    base = np.asarray(baseline)[subject]
    return pd.DataFrame(
        {
            "subject_id": [f"S{i:02d}" for i in subject],
            "week": np.asarray(days) / 7.0,
            "value": value,
            "baseline_centered": base - base.mean(),
            "biotin": (bits >> 2) & 1,
            "dutasteride": (bits >> 1) & 1,
            "minoxidil": bits & 1,
        }
    )


def test_saddle_on_boundary_is_escaped_to_lme4_interior_optimum() -> None:
    """The last diagonal of Λ is a saddle at 0 here (the deviance is even in it, so its
    gradient there is exactly 0): L-BFGS-B from the moment start *and* from lme4's start
    projected onto it and stayed, reporting a correlation of 1 with REML criterion
    730.8430139 (0.015 worse). lme4 1.1 on the same data (tight nloptwrap tolerances)::

        f <- lmer(value ~ baseline_centered + week + week:biotin + week:dutasteride +
                  week:minoxidil + (1 + week | subject_id), d, REML = TRUE,
                  control = lmerControl(optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12)))
        REMLcrit(f)  # 730.82783749;  getME(f, "theta")  # 0.63661676 0.13029756 0.04104715
    """
    from scipy import optimize

    formula = (
        "value ~ baseline_centered + week + week:biotin + week:dutasteride + week:minoxidil"
        " + (1 + week | subject_id)"
    )
    data = _saddle_boundary_data()
    fit = ms.fit_lmm(formula, data)
    assert not fit.singular and fit.converged
    problem = ProfiledDeviance(build_design(formula, data, family="gaussian"), reml=True)
    ours = problem(fit.theta)
    # independent optimum: Nelder-Mead on the unconstrained Cholesky factor, interior start
    nm = optimize.minimize(
        problem, [0.5, 0.0, 0.5], method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 20_000},
    )  # fmt: skip
    assert ours <= nm.fun + 1e-6
    assert_allclose(-2.0 * fit.loglik, 730.82783749, atol=1e-6)
    assert_allclose(ours, 730.82783749, atol=1e-6)
    # lme4's θ is good to ~1e-4 along the flat direction (its criterion is 1.3e-7 above ours)
    assert_allclose(fit.theta, [0.63661676, 0.13029756, 0.04104715], rtol=2e-3)
    # the boundary point the old optimiser returned: a saddle (zero gradient along θ₃), worse
    old_dev, old_grad = problem.value_and_gradient(np.array([0.62098276, 0.1355878, 0.0]))
    assert_allclose(old_dev, 730.8430139389, atol=1e-6)
    assert old_grad[2] == 0.0


def test_convergence_warning_when_restarts_cannot_leave_a_saddle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An optimiser that always returns the saddle on the boundary (deviance 730.8430139 on
    the data above; 0.0041 above the best probe, 0.0152 above the optimum) must not be
    declared converged."""
    import mesostats.mixed.lmm.optimise as lmm

    saddle = np.array([0.62098276, 0.1355878, 0.0])

    def stuck(problem: ProfiledDeviance, theta0: np.ndarray) -> Any:
        dev, grad = problem.value_and_gradient(saddle)
        return lmm._OptimResult(saddle.copy(), dev, grad, True, [], 1, np.eye(3))

    monkeypatch.setattr(lmm, "_optimise_from", stuck)
    formula = (
        "value ~ baseline_centered + week + week:biotin + week:dutasteride + week:minoxidil"
        " + (1 + week | subject_id)"
    )
    problem = ProfiledDeviance(
        build_design(formula, _saddle_boundary_data(), family="gaussian"), reml=True
    )
    result = lmm.optimise_theta(problem, saddle)
    assert not result.converged
    (message,) = result.messages
    assert re.match(
        r"Optimiser stopped on a boundary \(a zero diagonal of Λ\) although the deviance is "
        r"0\.0041 lower at a nearby interior point \(a saddle, not a minimum\)",
        message,
    )
