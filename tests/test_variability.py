"""Tests of mesostats.domain.variation: ICC, MOR, prediction intervals, responders, person effects.

Closed forms are recomputed here from the fitted model's public tables (fixed effects, vcov,
variance components, ranef); profile intervals are checked against lme4 in test_profile.py.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, stats

import mesostats as ms
from mesostats.domain.variation import IntervalEstimate, Variability, median_odds_ratio, variability
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.profile import profile_variance_components

REF = Path(__file__).parent / "reference"
Z = float(stats.norm.ppf(0.975))


def _quiet(func, *args, **kwargs):
    """Fit a simulated study; singular-site warnings are expected and not under test here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def study() -> ms.Study:
    return ms.simulate_study(120, 8, seed=1)


@pytest.fixture(scope="module")
def regrowth(study):
    return _quiet(ms.fit_regrowth, study)


@pytest.fixture(scope="module")
def side_effects(study):
    return _quiet(ms.fit_side_effects, study)


@pytest.fixture(scope="module")
def v_regrowth(regrowth) -> Variability:
    return variability(regrowth)


@pytest.fixture(scope="module")
def v_side(side_effects) -> Variability:
    return variability(side_effects)


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(REF / "sleepstudy.csv", dtype={"Subject": str})


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy):
    return ms.fit_lmm("Reaction ~ Days + (Days | Subject)", sleepstudy)


@pytest.fixture(scope="module")
def v_sleep(sleep_fit) -> Variability:
    return variability(sleep_fit)


@pytest.fixture(scope="module")
def sleep_intercept_fit(sleepstudy):
    return ms.fit_lmm("Reaction ~ Days + (1 | Subject)", sleepstudy)


def _vc(model, group, var1, var2=None):
    vc = model.variance_components
    mask = (vc["group"] == group) & (vc["var1"] == var1)
    mask &= vc["var2"].isna() if var2 is None else vc["var2"] == var2
    return float(vc.loc[mask, "vcov"].iloc[0])


def _between_var(model, week):
    v = (
        _vc(model, "subject_id", "Intercept")
        + 2 * week * _vc(model, "subject_id", "Intercept", "week")
        + week**2 * _vc(model, "subject_id", "week")
    )
    if "site" in model.ngroups:
        v += _vc(model, "site", "Intercept")
    return v


def _regrowth_x(results, cocktail, week):
    design = results.cocktail_design.loc[cocktail]
    values = {"Intercept": 1.0, "baseline_centered": 0.0, "week": week}
    for ing, term in results.effect_terms.items():
        values[term] = week * float(design[ing])
    return np.array([values[name] for name in results.model.design.fixed_names])


# ------------------------------------------------------------------------------ MOR and ICC
def test_median_odds_ratio_matches_hand_value():
    """Merlo et al. (2006): MOR = exp(√(2σ²)·Φ⁻¹(0.75)); σ = 1 → exp(0.6744898·√2)."""
    assert_allclose(median_odds_ratio(1.0), math.exp(0.6744897501960817 * math.sqrt(2.0)))
    assert_allclose(median_odds_ratio(1.0), 2.5957423690448698, rtol=1e-12)
    assert median_odds_ratio(0.0) == 1.0
    assert_allclose(median_odds_ratio(np.array([0.5, 1.0])), [1.6111307734150166, 2.59574237])


def test_side_effect_mor_is_transformed_sd_and_its_interval(v_side, side_effects):
    sd = math.sqrt(_vc(side_effects.model, "subject_id", "Intercept"))
    mor = v_side.median_odds_ratio
    assert isinstance(mor, IntervalEstimate)
    assert_allclose(mor.estimate, math.exp(math.sqrt(2 * sd**2) * stats.norm.ppf(0.75)))
    row = v_side.components.iloc[0]
    assert_allclose(
        [mor.ci_lower, mor.ci_upper],
        median_odds_ratio(row[["ci_lower", "ci_upper"]].to_numpy(dtype=float)),
    )
    assert mor.ci_lower < mor.estimate < mor.ci_upper
    assert float(mor) == mor.estimate
    assert v_side.icc is not None and "latent" in v_side.icc.name
    assert_allclose(v_side.icc.estimate, sd**2 / (sd**2 + math.pi**2 / 3))


def test_icc_random_intercept_equals_tau2_over_total(sleep_intercept_fit):
    fit = sleep_intercept_fit
    v = variability(fit)
    tau2 = _vc(fit, "Subject", "Intercept")
    sigma2 = fit.sigma**2
    assert_allclose(v.icc.estimate, tau2 / (tau2 + sigma2), rtol=1e-10)
    assert v.median_odds_ratio is None
    # profile CI: ICC = θ²/(1 + θ²), θ's REML profile bounds transformed
    theta_ci = profile_variance_components(fit, scale="theta").confint.iloc[0]
    lo, hi = theta_ci["ci_lower"], theta_ci["ci_upper"]
    assert_allclose([v.icc.ci_lower, v.icc.ci_upper], [lo**2 / (1 + lo**2), hi**2 / (1 + hi**2)])
    assert "profile" in v.icc.method


def test_icc_at_week_matches_closed_form(v_regrowth, regrowth):
    model = regrowth.model
    table = v_regrowth.icc_at([0.0, 12.0, 24.0])
    for w, icc in zip(table["week"], table["icc"], strict=True):
        v = _between_var(model, w)
        assert_allclose(icc, v / (v + model.sigma**2), rtol=1e-10)
    assert_allclose(v_regrowth.icc.estimate, table["icc"].iloc[0])
    assert (table["ci_lower"] < table["icc"]).all() and (table["icc"] < table["ci_upper"]).all()
    assert "depends on time" in v_regrowth.icc.note


def test_icc_at_for_bare_model_needs_the_time_variable(sleep_fit, v_sleep):
    v = v_sleep
    with pytest.raises(ModelSpecError, match="variable='Days'"):
        v.icc_at(3.0)
    table = v.icc_at(3.0, variable="Days")
    vc = sleep_fit.variance_components
    t0, t1, c01 = vc["vcov"].iloc[0], vc["vcov"].iloc[1], vc["vcov"].iloc[2]
    between = t0 + 6 * c01 + 9 * t1
    assert_allclose(table["icc"].iloc[0], between / (between + sleep_fit.sigma**2))


# ------------------------------------------------------------------------------ prediction
def test_regrowth_prediction_interval_matches_closed_form(v_regrowth, regrowth):
    model = regrowth.model
    week = v_regrowth.week
    table = v_regrowth.prediction_interval().set_index("cocktail")
    beta = model.params.to_numpy()
    V = model.vcov.to_numpy()
    for cocktail in regrowth.cocktail_design.index:
        x = _regrowth_x(regrowth, cocktail, week)
        est = x @ beta - regrowth.baseline_center
        total = x @ V @ x + _between_var(model, week)
        row = table.loc[cocktail]
        assert_allclose(row["estimate"], est, rtol=1e-10)
        assert_allclose(row["sd_total"], math.sqrt(total), rtol=1e-10)
        assert_allclose(
            row[["pi_lower", "pi_upper"]].to_numpy(dtype=float),
            [est - Z * math.sqrt(total), est + Z * math.sqrt(total)],
            rtol=1e-10,
        )
        assert_allclose(row["ci_upper"] - row["estimate"], Z * math.sqrt(x @ V @ x), rtol=1e-10)


def test_prediction_interval_with_residual_adds_sigma2(v_regrowth, regrowth):
    plain = v_regrowth.prediction_interval(week=10.0, cocktail="C")
    noisy = v_regrowth.prediction_interval(
        week=10.0, cocktail="C", include_residual=True, level=0.9
    )
    assert_allclose(noisy["sd_total"] ** 2, plain["sd_total"] ** 2 + regrowth.model.sigma**2)
    z90 = stats.norm.ppf(0.95)
    assert_allclose(noisy["pi_upper"] - noisy["estimate"], z90 * noisy["sd_total"])
    assert noisy["week"].iloc[0] == 10.0


def test_default_week_is_last_scheduled_visit(v_regrowth, regrowth):
    data = regrowth.data
    last = data["visit"].max()
    assert v_regrowth.week == round(float(data.loc[data["visit"] == last, "week"].median()), 1)
    assert f"visit {last}" in v_regrowth.week_note


def test_side_effect_prediction_interval_matches_closed_form(v_side, side_effects):
    model = side_effects.model
    tau2 = _vc(model, "subject_id", "Intercept")
    table = v_side.prediction_interval().set_index("cocktail")
    beta, V = model.params.to_numpy(), model.vcov.to_numpy()
    expit = stats.logistic.cdf
    for cocktail, design in side_effects.cocktail_design.iterrows():
        x = np.array(
            [1.0 if n == "Intercept" else float(design[n]) for n in model.design.fixed_names]
        )
        eta = x @ beta
        sd = math.sqrt(x @ V @ x + tau2)
        row = table.loc[cocktail]
        assert_allclose(row["probability"], expit(eta), rtol=1e-10)
        assert_allclose(
            [row["pi_lower"], row["pi_upper"]], expit([eta - Z * sd, eta + Z * sd]), rtol=1e-10
        )
        marginal = integrate.quad(
            lambda b, e=eta: expit(e + b) * stats.norm.pdf(b, scale=math.sqrt(tau2)), -12, 12
        )[0]
        assert_allclose(row["marginal_probability"], marginal, rtol=1e-6)


# ------------------------------------------------------------------------------ responders
def test_responders_share_is_normal_tail_of_implied_distribution(v_regrowth, regrowth):
    week = 20.0
    table = v_regrowth.responders(10.0, week=week).set_index("cocktail")
    beta = regrowth.model.params.to_numpy()
    sd = math.sqrt(_between_var(regrowth.model, week))
    for cocktail in regrowth.cocktail_design.index:
        mu = _regrowth_x(regrowth, cocktail, week) @ beta - regrowth.baseline_center
        row = table.loc[cocktail]
        assert_allclose(row["share"], stats.norm.cdf((mu - 10.0) / sd), rtol=1e-10)
        assert_allclose(row["sd_between"], sd, rtol=1e-10)
        assert row["ci_lower"] <= row["share"] <= row["ci_upper"]
    again = v_regrowth.responders(10.0, week=week).set_index("cocktail")
    pd.testing.assert_frame_equal(table, again)


def test_responders_for_side_effects_use_logit_threshold(v_side, side_effects):
    table = v_side.responders(0.2).set_index("cocktail")
    pi = v_side.prediction_interval().set_index("cocktail")
    logit = math.log(0.2 / 0.8)
    eta = np.log(pi["probability"] / (1 - pi["probability"]))
    assert_allclose(table["share"], stats.norm.cdf((eta - logit) / pi["sd_between"]), rtol=1e-8)


# ------------------------------------------------------------------------------ person effects
def test_person_effect_intervals_are_mode_plus_minus_z_cond_sd(v_regrowth, regrowth):
    table = v_regrowth.person_effects
    ranef = regrowth.model.ranef["subject_id"]
    ranef_se = regrowth.model.ranef_se["subject_id"]
    assert list(table["subject_id"]) == [str(s) for s in ranef.index]
    assert_allclose(table["intercept"], ranef["Intercept"])
    assert_allclose(table["slope_sd"], ranef_se["week"])
    assert_allclose(table["intercept_lower"], table["intercept"] - Z * table["intercept_sd"])
    assert_allclose(table["slope_upper"], table["slope"] + Z * table["slope_sd"])
    assert_allclose(table["change_lower"], table["change"] - Z * table["change_sd"])
    above = table["change_lower"] > 0
    below = table["change_upper"] < 0
    assert (table.loc[above, "flag"] == "clearly responded").all()
    assert (table.loc[below, "flag"] == "clearly did not").all()
    assert (table.loc[~above & ~below, "flag"] == "uncertain").all()
    assert (table["week"] == v_regrowth.week).all()


def test_person_predicted_change_matches_blups_by_hand(v_regrowth, regrowth):
    model = regrowth.model
    week = 12.0
    table = v_regrowth.person_effects_table(5.0, week=week).set_index("subject_id")
    subject = table.index[3]
    rows = regrowth.data[regrowth.data["subject_id"] == subject]
    last = rows.iloc[-1]
    fixed = dict(zip(model.design.fixed_names, model.params, strict=True))
    value = fixed["Intercept"] + fixed["baseline_centered"] * last["baseline_centered"]
    value += fixed["week"] * week
    for ing, term in regrowth.effect_terms.items():
        value += fixed[term] * week * last[ing]
    b = model.ranef["subject_id"].loc[subject]
    value += b["Intercept"] + b["week"] * week
    value += model.ranef["site"].loc[last["site"], "Intercept"]
    assert_allclose(table.loc[subject, "change"], value - last["baseline"], rtol=1e-10)
    assert (table["threshold"] == 5.0).all()


def test_conditional_covariance_matches_direct_formula(sleep_fit, v_sleep):
    """lme4 condVar for one factor: Var(b_i | y) = (Z_iᵀZ_i/σ² + G⁻¹)⁻¹ at the estimates."""
    v = v_sleep
    cov = v._conditional_covariances()[0]
    G = sleep_fit.covariance_blocks()[0]
    Zs = sleep_fit.design.terms[0].Z
    codes = sleep_fit.design.terms[0].codes
    for i in (0, 7):
        Zi = Zs[codes == i]
        direct = np.linalg.inv(Zi.T @ Zi / sleep_fit.sigma**2 + np.linalg.inv(G))
        assert_allclose(cov[i], direct, rtol=1e-6)
    assert_allclose(
        np.sqrt(cov[:, [0, 1], [0, 1]]), sleep_fit.ranef_se["Subject"].to_numpy(), rtol=1e-8
    )


def test_bare_model_person_table_and_components(v_sleep):
    v = v_sleep
    table = v.person_effects
    assert set(table["term"]) == {"Intercept", "Days"}
    assert_allclose(table["ci_upper"], table["mode"] + Z * table["cond_sd"])
    assert list(v.components["parameter"]) == [".sig01", ".sig02", ".sig03", ".sigma"]
    assert v.icc is not None and v.week is None
    with pytest.raises(ModelSpecError, match="needs the cocktails of a study"):
        v.prediction_interval()
    with pytest.raises(ModelSpecError, match="needs the cocktails of a study"):
        v.responders(1.0)


def test_side_effect_person_flags_compare_intercept_with_zero(v_side):
    table = v_side.person_effects
    above = table["intercept_lower"] > 0
    assert (table.loc[above, "flag"] == "clearly above").all()
    assert (table.loc[~above & (table["intercept_upper"] > 0), "flag"] == "uncertain").all()
    at = v_side.person_effects_table(0.3)
    assert ((at["probability_lower"] > 0.3) == (at["flag"] == "clearly above")).all()


# ------------------------------------------------------------------------------ bootstrap
def test_bootstrap_variability_uses_replicates_everywhere(side_effects):
    v = variability(side_effects, ci_method="bootstrap", n_boot=20, seed=4)
    assert v.bootstrap is not None and v.profile is None
    assert v.components["method"].str.contains("bootstrap").all()
    resp = v.responders(0.2)
    assert resp["uncertainty"].str.contains("bootstrap").all()
    again = variability(side_effects, ci_method="bootstrap", n_boot=20, seed=4)
    pd.testing.assert_frame_equal(v.components, again.components)


def test_bootstrap_icc_interval_from_replicates(sleep_intercept_fit):
    v = variability(sleep_intercept_fit, ci_method="bootstrap", n_boot=30, seed=0)
    boot = v.bootstrap
    iccs = boot.theta[:, 0] ** 2 / (1 + boot.theta[:, 0] ** 2)
    assert_allclose([v.icc.ci_lower, v.icc.ci_upper], np.quantile(iccs, [0.025, 0.975]))


# ------------------------------------------------------------------------------ display
def test_repr_is_one_line_and_html_escapes_cocktail_ids():
    cocktails = {
        "<b>P</b>": {"saline": {"concentration": 0.9, "unit": "%"}},
        "A&B": {"minoxidil": {"concentration": 0.5, "unit": "%"}},
    }
    small = ms.simulate_study(60, 5, seed=3, cocktails=cocktails)
    v = variability(_quiet(ms.fit_side_effects, small))
    text = v._repr_html_()
    assert "&lt;b&gt;P&lt;/b&gt;" in text and "<b>P</b>" not in text
    assert "A&amp;B" in text
    assert "<script" not in text
    assert "\n" not in repr(v) and repr(v).startswith("<Variability side_effects")
    assert "Variance components" in str(v)
    assert "Median odds ratio" in str(v)


# ------------------------------------------------------------------------------ errors
def test_variability_rejects_other_objects():
    with pytest.raises(ModelSpecError, match=r"needs a RegrowthResults.*got DataFrame"):
        variability(pd.DataFrame())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ci_method": "wald"}, "ci_method must be 'profile'"),
        ({"n_boot": 1}, "n_boot must be an integer ≥ 2"),
        ({"seed": -3}, "seed must be an integer ≥ 0"),
        ({"n_jobs": 0}, "n_jobs must be a positive integer"),
    ],
)
def test_bad_options_raise(sleep_fit, kwargs, message):
    with pytest.raises(ModelSpecError, match=message):
        variability(sleep_fit, **kwargs)


def test_unknown_cocktail_raises(v_regrowth):
    with pytest.raises(ModelSpecError, match=r"Unknown cocktail\(s\) 'Z'.*P, A, B, C"):
        v_regrowth.prediction_interval(cocktail="Z")


def test_negative_week_raises(v_regrowth):
    with pytest.raises(ModelSpecError, match="week must be a finite number ≥ 0"):
        v_regrowth.prediction_interval(week=-1)


def test_week_for_side_effects_raises(v_side):
    with pytest.raises(ModelSpecError, match="no time term"):
        v_side.prediction_interval(week=4)


def test_include_residual_for_side_effects_raises(v_side):
    with pytest.raises(ModelSpecError, match="include_residual applies to regrowth"):
        v_side.prediction_interval(include_residual=True)


def test_side_effect_threshold_outside_unit_interval_raises(v_side):
    with pytest.raises(ModelSpecError, match="strictly between 0 and 1"):
        v_side.responders(2.0)
    with pytest.raises(ModelSpecError, match="strictly between 0 and 1"):
        v_side.person_effects_table(1.5)


def test_bad_level_and_threshold_raise(v_regrowth):
    with pytest.raises(ModelSpecError, match="level must be a number between 0 and 1"):
        v_regrowth.prediction_interval(level=0)
    with pytest.raises(ModelSpecError, match="threshold must be a number"):
        v_regrowth.responders("10")
    with pytest.raises(ModelSpecError, match="n_sim must be an integer ≥ 100"):
        v_regrowth.responders(10.0, n_sim=5)


def test_icc_at_for_glmm_raises(v_side):
    with pytest.raises(ModelSpecError, match="icc_at\\(\\) applies to linear mixed models"):
        v_side.icc_at(1.0)


# --- results never change ------------------------------------------------------------------


def test_variability_refuses_assignment_and_hands_out_copies(v_regrowth) -> None:
    """Editing a table taken from a Variability leaves the Variability as it was."""
    before = v_regrowth.components
    edited = v_regrowth.components
    edited.loc[0, "estimate"] = -99.0
    pd.testing.assert_frame_equal(v_regrowth.components, before)
    with pytest.raises(AttributeError, match="Variability is immutable: cannot set 'icc'"):
        v_regrowth.icc = None
    with pytest.raises(AttributeError, match="immutable: cannot set 'components'"):
        v_regrowth.components = edited


def test_domain_results_hand_out_copies(regrowth, side_effects) -> None:
    """``fit.ingredient_effects.loc[0, "effect"] = 0`` must not change the fit."""
    for fit, column in ((regrowth, "effect"), (side_effects, "odds_ratio")):
        before = fit.ingredient_effects
        taken = fit.ingredient_effects
        taken.loc[0, column] = 0.0
        pd.testing.assert_frame_equal(fit.ingredient_effects, before)
        taken_data = fit.data
        taken_data["subject_id"] = "edited"
        assert not (fit.data["subject_id"] == "edited").any()
    gee_before = side_effects.gee.table
    gee_taken = side_effects.gee.table
    gee_taken.loc[0, "population_average_or"] = -1.0
    pd.testing.assert_frame_equal(side_effects.gee.table, gee_before)
    terms = regrowth.effect_terms
    terms.clear()
    assert regrowth.effect_terms


def test_a_model_the_profiler_refuses_is_an_error_not_a_bootstrap(regrowth, monkeypatch) -> None:
    """ModelSpecError (a ValueError) must surface; only numerical failures fall back."""
    import mesostats.domain.variation.api as api

    def refuse(model):  # type: ignore[no-untyped-def]
        raise ModelSpecError("this model cannot be profiled (test)")

    monkeypatch.setattr(api, "profile_variance_components", refuse)
    with pytest.raises(ModelSpecError, match="cannot be profiled"):
        variability(regrowth.model)


def test_a_numerical_profile_failure_falls_back_to_the_bootstrap(sleep_fit, monkeypatch) -> None:
    import mesostats.domain.variation.api as api

    def breaks(model):  # type: ignore[no-untyped-def]
        raise np.linalg.LinAlgError("not positive definite (test)")

    monkeypatch.setattr(api, "profile_variance_components", breaks)
    v = variability(sleep_fit, n_boot=3, seed=1)
    assert v.ci_method == "bootstrap"
    assert any("not positive definite (test)" in n for n in v.notes)
