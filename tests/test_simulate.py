"""Tests of mesostats.simulate: reproducibility, the truth layout, realised moments against
the true values, design (randomisation, schedule, dropout), overrides and their errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial.hermite_e import hermegauss
from numpy.testing import assert_allclose

from mesostats.exceptions import ModelSpecError
from mesostats.simulate import (
    DEFAULT_COCKTAILS,
    simulate_study,
    simulate_tables,
    truth_to_json,
    write_tables,
)

TRUTH_KEYS = [
    "seed",
    "n_subjects",
    "n_sessions",
    "n_followup",
    "n_sites",
    "cocktails",
    "intercept_mean",
    "intercept_sd",
    "slope_placebo",
    "slope_sd",
    "intercept_slope_corr",
    "residual_sd",
    "ingredient_slopes",
    "event_intercept",
    "event_sd",
    "event_log_or",
    "severity_cuts",
    "dropout",
    "missing_rate",
    "unassessed_rate",
    "extra_event_prob",
    "event_terms",
    "allergy",
    "site_weight_concentration",
    "volume_ml",
    "target_area_cm2",
    "hair_count_dispersion",
    "shaft_diameter",
    "anagen",
    "terminal_share",
    "gpa",
    "pain_vas",
    "n_clipped",
    "visit_days",
    "ordinal_truth",
    "subject_effects",
]


@pytest.fixture(scope="module")
def large_clean():
    """20,000 subjects, 10 visits, no dropout, no missing values: for moment checks."""
    return simulate_tables(20_000, 10, seed=11, dropout=0.0, missing_rate=0.0)


@pytest.fixture(scope="module")
def large_default():
    """20,000 subjects with the default dropout and missingness."""
    return simulate_tables(20_000, 10, seed=12)


def _any_event_per_session(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    sessions = tables["sessions"]
    assessed = sessions.loc[sessions["reactions_assessed"], ["subject_id", "visit", "cocktail_id"]]
    with_event = tables["adverse_events"][["subject_id", "visit"]].drop_duplicates()
    with_event = with_event.assign(any_event=1)
    out = assessed.merge(with_event, on=["subject_id", "visit"], how="left")
    return out.assign(any_event=out["any_event"].fillna(0).astype(int))


# --- reproducibility ------------------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_truth():
    tables1, truth1 = simulate_tables(60, 8, seed=5)
    tables2, truth2 = simulate_tables(60, 8, seed=5)
    for name in tables1:
        pd.testing.assert_frame_equal(tables1[name], tables2[name])
    pd.testing.assert_frame_equal(truth1.pop("subject_effects"), truth2.pop("subject_effects"))
    assert truth1 == truth2


def test_different_seed_gives_different_values():
    tables1, _ = simulate_tables(60, 8, seed=5)
    tables2, _ = simulate_tables(60, 8, seed=6)
    assert not tables1["sessions"]["hair_density"].equals(tables2["sessions"]["hair_density"])


def test_seed_sequence_is_accepted_and_recorded():
    seq = np.random.SeedSequence(123).spawn(3)[2]
    tables_a, truth = simulate_tables(30, 6, seed=seq)
    tables_b, _ = simulate_tables(30, 6, seed=np.random.SeedSequence(123).spawn(3)[2])
    pd.testing.assert_frame_equal(tables_a["sessions"], tables_b["sessions"])
    assert truth["seed"] == {"entropy": 123, "spawn_key": [2]}


# --- truth layout ----------------------------------------------------------------------------


def test_truth_has_the_documented_keys_in_order():
    _, truth = simulate_tables(40, 8, seed=1)
    assert list(truth) == TRUTH_KEYS
    assert truth["seed"] == 1
    assert (truth["n_subjects"], truth["n_sessions"], truth["n_followup"]) == (40, 8, 2)
    assert truth["cocktails"] == DEFAULT_COCKTAILS
    assert truth["ingredient_slopes"] == {"biotin": 0.1, "dutasteride": 1.0, "minoxidil": 1.2}
    assert set(truth["event_log_or"]) == {"biotin", "dutasteride", "minoxidil"}
    effects = truth["subject_effects"]
    assert list(effects.columns) == [
        "subject_id",
        "site",
        "cocktail_id",
        "u0",
        "u1",
        "v",
        "slope",
        "n_visits",
    ]
    assert len(effects) == 40


def test_truth_subject_slopes_equal_placebo_plus_ingredients_plus_u1():
    tables, truth = simulate_tables(50, 8, seed=2)
    eff = truth["subject_effects"]
    x = pd.DataFrame(
        {
            ing: [float(ing in truth["cocktails"][c]) for c in eff["cocktail_id"]]
            for ing in truth["ingredient_slopes"]
        }
    )
    beta = pd.Series(truth["ingredient_slopes"])
    expected = truth["slope_placebo"] + x[beta.index].to_numpy() @ beta.to_numpy() + eff["u1"]
    assert_allclose(eff["slope"], expected, rtol=1e-12)
    per_subject_visits = tables["sessions"].groupby("subject_id").size()
    assert_allclose(per_subject_visits[eff["subject_id"]].to_numpy(), eff["n_visits"])


def test_truth_serialises_to_json_with_every_key():
    _, truth = simulate_tables(20, 6, seed=3)
    decoded = json.loads(truth_to_json(truth))
    assert list(decoded) == TRUTH_KEYS
    assert_allclose(decoded["subject_effects"]["u1"], truth["subject_effects"]["u1"])
    assert decoded["subject_effects"]["subject_id"][0] == truth["subject_effects"]["subject_id"][0]


# --- realised moments against the truth -----------------------------------------------------


def test_per_subject_ols_moments_match_true_random_effect_covariance(large_clean):
    """Per-subject OLS of hair_density on week: the between-subject (co)variances of the OLS
    intercepts and slopes, minus their average sampling (co)variance σ²(XᵀX)⁻¹, estimate the
    true intercept SD, slope SD and correlation; the pooled residual SD estimates σ."""
    tables, truth = large_clean
    s = tables["sessions"]
    w = (s["day"].to_numpy() - 1) / 7.0
    y = s["hair_density"].to_numpy()
    g = s["subject_id"].to_numpy()
    sums = pd.DataFrame({"g": g, "n": 1.0, "w": w, "ww": w * w, "y": y, "wy": w * y})
    sums = sums.groupby("g", sort=False).sum()
    sxx = sums["ww"] - sums["w"] ** 2 / sums["n"]
    slope = (sums["wy"] - sums["w"] * sums["y"] / sums["n"]) / sxx
    intercept = (sums["y"] - slope * sums["w"]) / sums["n"]
    fitted = intercept.loc[g].to_numpy() + slope.loc[g].to_numpy() * w
    rss = pd.Series((y - fitted) ** 2).groupby(g, sort=False).sum()
    sigma2 = rss.sum() / (len(y) - 2 * len(sums))
    assert_allclose(np.sqrt(sigma2), truth["residual_sd"], rtol=0.01)

    # sampling covariance of (intercept, slope) per subject: σ² (XᵀX)⁻¹
    det = sums["n"] * sums["ww"] - sums["w"] ** 2
    v_int = (sigma2 * sums["ww"] / det).mean()
    v_slope = (sigma2 * sums["n"] / det).mean()
    c_is = (-sigma2 * sums["w"] / det).mean()
    cocktail = s.groupby("subject_id", sort=False)["cocktail_id"].first().loc[sums.index]
    slope_c = slope - slope.groupby(cocktail).transform("mean")
    intercept_c = intercept - intercept.mean()
    var_u1 = slope_c.var() - v_slope
    var_u0 = intercept_c.var() - v_int
    cov = (slope_c * intercept_c).mean() - c_is
    assert_allclose(np.sqrt(var_u1), truth["slope_sd"], rtol=0.03)
    assert_allclose(np.sqrt(var_u0), truth["intercept_sd"], rtol=0.03)
    assert_allclose(cov / np.sqrt(var_u0 * var_u1), truth["intercept_slope_corr"], atol=0.03)
    assert_allclose(intercept.mean(), truth["intercept_mean"], atol=0.6)

    # mean OLS slope per cocktail = placebo slope + sum of its ingredients' slopes
    mean_slope = slope.groupby(cocktail).mean()
    for cid, recipe in truth["cocktails"].items():
        expected = truth["slope_placebo"] + sum(
            truth["ingredient_slopes"].get(ing, 0.0) for ing in recipe
        )
        assert_allclose(mean_slope[cid], expected, atol=0.04)


def test_event_rates_by_cocktail_match_logistic_normal_model(large_clean):
    """Observed share of assessed sessions with any event, per cocktail, against
    E[logistic(α + xβ + v)], v ~ N(0, σ_v²), by 60-node Gauss–Hermite quadrature."""
    tables, truth = large_clean
    per_session = _any_event_per_session(tables)
    observed = per_session.groupby("cocktail_id")["any_event"].mean()
    nodes, weights = hermegauss(60)
    weights = weights / weights.sum()
    for cid, recipe in truth["cocktails"].items():
        eta = truth["event_intercept"] + sum(truth["event_log_or"].get(i, 0.0) for i in recipe)
        expected = np.sum(weights / (1 + np.exp(-(eta + truth["event_sd"] * nodes))))
        assert_allclose(observed[cid], expected, atol=0.01)


def test_between_person_event_variance_matches_event_sd(large_clean):
    """Variance of per-subject event counts over m assessed sessions equals
    m·E[p(1−p)] + m²·Var(p) under the logistic-normal model (it would be only the first term
    without a per-person propensity)."""
    tables, truth = large_clean
    per_session = _any_event_per_session(tables)
    counts = per_session.groupby("subject_id").agg(
        m=("any_event", "size"), y=("any_event", "sum"), cocktail=("cocktail_id", "first")
    )
    m_full = truth["n_sessions"] - truth["n_followup"]
    complete = counts[counts["m"] == m_full]
    nodes, weights = hermegauss(60)
    weights = weights / weights.sum()
    for cid in ["P", "C"]:
        eta = truth["event_intercept"] + sum(
            truth["event_log_or"].get(i, 0.0) for i in truth["cocktails"][cid]
        )
        p = 1 / (1 + np.exp(-(eta + truth["event_sd"] * nodes)))
        mean_p = np.sum(weights * p)
        expected = m_full * np.sum(weights * p * (1 - p)) + m_full**2 * (
            np.sum(weights * p * p) - mean_p**2
        )
        observed = complete.loc[complete["cocktail"] == cid, "y"].var()
        assert_allclose(observed, expected, rtol=0.08)


def test_clipping_is_counted_and_values_stay_in_schema_range():
    tables, truth = simulate_tables(
        2000, 8, seed=4, effects={"intercept_mean": 15.0, "intercept_sd": 20.0}
    )
    density = tables["sessions"]["hair_density"]
    assert truth["n_clipped"]["hair_density"] > 100
    assert density.min() == 0.0
    assert int((density == 0).sum()) <= truth["n_clipped"]["hair_density"]


def test_default_parameters_essentially_never_clip(large_default):
    tables, truth = large_default
    assert truth["n_clipped"]["hair_density"] <= 1e-4 * len(tables["sessions"])


def test_outcomes_lie_in_schema_ranges_and_realistic_values(large_default):
    s = large_default[0]["sessions"]
    assert s["hair_density"].dropna().between(0, 600).all()
    assert s["shaft_diameter_um"].dropna().between(5, 200).all()
    assert s["anagen_pct"].dropna().between(0, 100).all()
    assert s["pain_vas"].dropna().between(0, 10).all()
    assert set(s["gpa_score"].dropna().unique()) <= set(range(-3, 4))
    assert s["volume_ml"].dropna().between(0, 10).all()
    baseline = s[s["visit"] == 1]
    assert_allclose(baseline["hair_density"].mean(), 120, atol=1.5)
    assert 47 <= baseline["shaft_diameter_um"].mean() <= 61
    assert_allclose(baseline["anagen_pct"].mean(), 68, atol=2)
    assert_allclose(s["terminal_density"] + s["vellus_density"], s["hair_density"], atol=0.051)


def test_hair_count_is_nb2_around_density_times_target_area(large_default):
    # counts ~ NB2(mean density × area, k = truth["hair_count_dispersion"]): the moment
    # estimate of 1/k, Σ((y − μ)² − μ) / Σ μ², within 10 % of the truth (its relative SE at
    # these ~10,000 visits is ≈ 2 %), and the mean residual within 0.5 % of the mean count
    tables, truth = large_default
    s = tables["sessions"].dropna(subset=["hair_count"])
    mu = s["hair_density"].to_numpy(float) * s["target_area_cm2"].to_numpy(float)
    y = s["hair_count"].to_numpy(float)
    assert np.all(y == np.round(y)) and np.all(y >= 0)
    assert abs(np.mean(y - mu)) < 0.005 * np.mean(mu)
    inv_k = np.sum((y - mu) ** 2 - mu) / np.sum(mu**2)
    assert_allclose(inv_k, 1 / truth["hair_count_dispersion"], rtol=0.10)
    assert set(s["target_area_cm2"].unique()) <= {0.65, 1.0}


def test_hair_count_dispersion_none_gives_rounded_density_times_area():
    tables, truth = simulate_tables(40, 6, seed=3, effects={"hair_count_dispersion": None})
    s = tables["sessions"].dropna(subset=["hair_count"])
    assert truth["hair_count_dispersion"] is None
    assert_allclose(
        s["hair_count"].astype(float), np.rint(s["hair_density"] * s["target_area_cm2"])
    )
    with pytest.raises(ModelSpecError, match="hair_count_dispersion must be a positive"):
        simulate_tables(40, 6, seed=3, effects={"hair_count_dispersion": -1.0})


def test_gpa_follows_true_change_and_pain_follows_ingredients(large_clean):
    tables, truth = large_clean
    s = tables["sessions"]
    last = s[s["visit"] == truth["n_sessions"]].set_index("subject_id")
    eff = truth["subject_effects"].set_index("subject_id")
    true_change = eff["slope"] * (last["day"] - 1) / 7
    gpa = last["gpa_score"].astype(float)
    expected = np.clip(np.rint(true_change / truth["gpa"]["hairs_per_point"]), -3, 3)
    assert np.corrcoef(gpa, true_change)[0, 1] > 0.8
    assert (gpa - expected).abs().mean() < 0.5
    pain = s.dropna(subset=["pain_vas"]).groupby("cocktail_id")["pain_vas"].mean()
    shift = truth["pain_vas"]["ingredient_shift"]
    assert_allclose(pain["A"] - pain["P"], shift["minoxidil"] + shift["biotin"], atol=0.1)
    assert_allclose(pain["B"] - pain["P"], shift["dutasteride"] + shift["biotin"], atol=0.1)


# --- design -----------------------------------------------------------------------------------


def test_dropout_is_monotone_with_geometric_survival(large_default):
    tables, truth = large_default
    s = tables["sessions"]
    visits = s.groupby("subject_id")["visit"].agg(["min", "max", "size"])
    assert (visits["min"] == 1).all()
    assert (visits["max"] == visits["size"]).all()  # no gaps: once gone, never back
    k = np.arange(1, truth["n_sessions"] + 1)
    survival = np.array([(visits["size"] >= v).mean() for v in k])
    assert_allclose(survival, (1 - truth["dropout"]) ** (k - 1), atol=0.012)


def test_schedule_days_are_irregular_increasing_and_start_at_day_one():
    tables, truth = simulate_tables(300, 10, seed=8)
    s = tables["sessions"]
    assert (s.loc[s["visit"] == 1, "day"] == 1).all()
    assert (s["day"] != 0).all()
    assert (s.groupby("subject_id")["day"].diff().dropna() > 0).all()
    assert truth["visit_days"] == [1, 8, 15, 22, 36, 50, 78, 106, 134, 225]
    nominal = np.asarray(truth["visit_days"])[s["visit"].to_numpy() - 1]
    jitter = s["day"].to_numpy() - nominal
    assert jitter.std() > 0.5  # days are jittered
    assert np.abs(jitter).max() <= 7


def test_followup_visits_have_no_injection_and_no_assessment():
    tables, truth = simulate_tables(300, 9, seed=9)
    s = tables["sessions"]
    follow = s["visit"] > truth["n_sessions"] - truth["n_followup"]
    assert truth["n_followup"] == 2
    assert s.loc[follow, "cocktail_id"].isna().all()
    assert s.loc[follow, "volume_ml"].isna().all()
    assert s.loc[follow, "pain_vas"].isna().all()
    assert not s.loc[follow, "reactions_assessed"].any()
    injected = s.loc[~follow]
    assert injected["cocktail_id"].notna().all()
    share_unassessed = 1 - injected["reactions_assessed"].mean()
    assert 0.005 < share_unassessed < 0.07
    assert s["baseline_flag"].sum() == s["subject_id"].nunique()


def test_each_subject_keeps_one_cocktail_balanced_within_site():
    tables, _ = simulate_tables(1000, 8, seed=10, n_sites=4)
    s = tables["sessions"].dropna(subset=["cocktail_id"])
    assert (s.groupby("subject_id")["cocktail_id"].nunique() == 1).all()
    subjects = tables["subjects"]
    counts = pd.crosstab(subjects["site"], subjects["arm"])
    assert counts.shape == (4, 4)
    # permuted blocks of 8 within a site: arm counts differ by at most 2
    assert ((counts.max(axis=1) - counts.min(axis=1)) <= 2).all()


def test_default_cocktails_separate_the_ingredients():
    tables, truth = simulate_tables(40, 6, seed=1)
    ingredients = sorted(truth["ingredient_slopes"])
    x = np.array(
        [
            [1.0] + [float(i in recipe) for i in ingredients]
            for recipe in truth["cocktails"].values()
        ]
    )
    assert np.linalg.matrix_rank(x) == x.shape[1]
    cocktails = tables["cocktails"].set_index(["cocktail_id", "ingredient"])
    assert cocktails.loc[("P", "saline"), "concentration"] == 0.9
    assert cocktails.loc[("A", "minoxidil"), "concentration"] == 0.5
    assert cocktails.loc[("B", "dutasteride"), "concentration"] == 0.01
    assert cocktails.loc[("C", "biotin"), "unit"] == "mg/mL"


def test_adverse_events_are_distinct_per_session_with_rare_allergy_to_minoxidil(large_default):
    tables, truth = large_default
    ae = tables["adverse_events"]
    assert not ae.duplicated(["subject_id", "visit", "event"]).any()
    per_session = ae.groupby(["subject_id", "visit"]).size()
    assert per_session.max() <= 3 and (per_session > 1).mean() > 0.1
    keys = tables["sessions"].set_index(["subject_id", "visit"])
    assert keys.loc[per_session.index, "reactions_assessed"].all()
    share = ae["event"].value_counts(normalize=True)
    assert share.index[0] == "pain"
    assert 0 < share["allergic_reaction"] < 0.02
    cocktail = keys.loc[
        pd.MultiIndex.from_frame(
            ae.loc[ae["event"] == "allergic_reaction", ["subject_id", "visit"]]
        ),
        "cocktail_id",
    ]
    assert set(cocktail) <= {c for c, r in truth["cocktails"].items() if "minoxidil" in r}
    assert set(ae["severity"]) == {"mild", "moderate", "severe"}
    assert 0 < ae["serious"].mean() < 0.02
    assert 0.9 < ae["related"].mean() < 1
    text = ae["verbatim"]
    assert text.str.contains("é").any() and text.str.contains("œ").any()
    assert text.str.contains("<").any() and text.str.contains("&").any()
    assert text.str.contains('"').any() and text.str.contains("'").any()


def test_subjects_are_plausible():
    subjects, _ = simulate_tables(3000, 6, seed=13)[0]["subjects"], None
    assert subjects["subject_id"].is_unique
    assert subjects["age"].between(18, 75).all()
    assert set(subjects["sex"]) == {"F", "M"}
    assert (subjects.loc[subjects["diagnosis"] == "FPHL", "sex"] == "F").all()
    assert (subjects.loc[subjects["diagnosis"] == "AGA", "sex"] == "M").all()
    assert subjects.loc[subjects["diagnosis"] == "TE", "stage"].isna().all()
    male_stage = subjects.loc[subjects["diagnosis"] == "AGA", "stage"]
    assert male_stage.str.startswith("NH-").all()


# --- overrides and errors ---------------------------------------------------------------------


def test_effects_override_merges_nested_keys_and_keeps_other_draws():
    tables0, truth0 = simulate_tables(200, 8, seed=21)
    tables1, truth1 = simulate_tables(
        200, 8, seed=21, effects={"ingredient_slopes": {"minoxidil": 0.0}, "event_sd": 0.5}
    )
    assert truth1["ingredient_slopes"] == {"biotin": 0.1, "dutasteride": 1.0, "minoxidil": 0.0}
    assert truth1["event_sd"] == 0.5
    # design and random effects come from separate streams: unchanged by the override
    pd.testing.assert_frame_equal(tables0["subjects"], tables1["subjects"])
    assert_allclose(truth0["subject_effects"]["u1"], truth1["subject_effects"]["u1"])
    s0, s1 = tables0["sessions"], tables1["sessions"]
    has_minoxidil = (
        s0["subject_id"]
        .map(truth0["subject_effects"].set_index("subject_id")["cocktail_id"])
        .isin(["A", "C"])
    )
    pd.testing.assert_series_equal(s0["hair_density"].isna(), s1["hair_density"].isna())
    measured = s0["hair_density"].notna()
    same = np.isclose(s0["hair_density"], s1["hair_density"])
    assert same[measured & ~has_minoxidil].all()
    assert not same[measured & has_minoxidil & (s0["visit"] > 2)].any()


def test_user_cocktails_as_table_with_unknown_ingredient_default_to_no_effect():
    recipes = pd.DataFrame(
        {
            "cocktail_id": ["PL", "Z", "Z"],
            "ingredient": ["saline", "zinc", "dexpanthenol"],
            "concentration": [0.9, 1.0, 2.0],
            "unit": ["%", "mg/mL", "%"],
        }
    )
    tables, truth = simulate_tables(200, 6, seed=3, cocktails=recipes)
    assert truth["ingredient_slopes"] == {"dexpanthenol": 0.0, "zinc": 0.0}
    assert set(tables["subjects"]["arm"]) == {"PL", "Z"}
    assert "allergic_reaction" not in set(tables["adverse_events"]["event"])
    _, truth = simulate_tables(
        20, 6, seed=3, cocktails={"X": {"zinc": (1.0, "mg/mL")}},
        effects={"ingredient_slopes": {"zinc": 0.7}},
    )  # fmt: skip
    assert truth["ingredient_slopes"] == {"zinc": 0.7}


def test_unknown_effect_key_raises_listing_valid_keys():
    with pytest.raises(ModelSpecError, match=r"unknown key 'slope_mean'.*Valid keys:.*slope_sd"):
        simulate_tables(10, 6, effects={"slope_mean": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effects": {"n_subjects": 5}}, r"n_subjects is a design setting.*n_subjects="),
        ({"effects": {"subject_effects": None}}, r"subject_effects is realised by the draw"),
        ({"effects": {"ingredient_slopes": {"zinc": 1}}}, r"no cocktail contains: zinc"),
        ({"effects": {"slope_sd": -1.0}}, r"slope_sd = -1.0 is negative"),
        ({"effects": {"intercept_slope_corr": 1.5}}, r"must lie in \[-1, 1\]"),
        ({"effects": {"residual_sd": "7"}}, r"residual_sd must be a number"),
        ({"effects": {"event_terms": {"sneezing": 1.0}}}, r"unknown coded terms \['sneezing'\]"),
        ({"effects": [1, 2]}, r"effects must be a dict"),
        ({"dropout": 1.0}, r"dropout = 1.0 must be a probability"),
        ({"missing_rate": -0.1}, r"missing_rate = -0.1 must be a probability"),
        ({"cocktails": {"A": {"minoxidil": (0.5, "percent")}}}, r"unit 'percent' is not one"),
        ({"cocktails": {"A": {"Minoxidil": (0.5, "%")}}}, r"lower-case snake_case"),
        ({"cocktails": {"A": {"minoxidil": 0.5}}}, r"expected \(concentration, unit\)"),
        ({"cocktails": {"A": {}}}, r"recipe must be a non-empty mapping"),
        ({"cocktails": {}}, r"cocktails is empty"),
        ({"cocktails": pd.DataFrame({"cocktail_id": ["A"]})}, r"cocktails table lacks"),
        ({"n_followup": 6}, r"n_followup = 6 leaves no injection"),
        ({"seed": -1}, r"seed must be an integer ≥ 0"),
        ({"n_sites": 0}, r"n_sites must be an integer ≥ 1"),
    ],
)
def test_bad_settings_raise_model_spec_error_with_reason(kwargs, message):
    with pytest.raises(ModelSpecError, match=message):
        simulate_tables(10, 6, **kwargs)


def test_zero_subjects_is_rejected():
    with pytest.raises(ModelSpecError, match=r"n_subjects must be an integer ≥ 1, got 0"):
        simulate_tables(0, 6)


# --- edge designs, writing, speed ------------------------------------------------------------


def test_single_visit_many_sites_without_dropout():
    tables, truth = simulate_tables(40, 1, seed=2, n_sites=12, dropout=0.0)
    assert truth["n_followup"] == 0
    assert len(tables["sessions"]) == 40
    assert tables["subjects"]["site"].nunique() <= 12
    assert tables["sessions"]["cocktail_id"].notna().all()


def test_write_tables_uses_lowercase_booleans_and_empty_missing(tmp_path):
    tables, _ = simulate_tables(15, 6, seed=4)
    paths = write_tables(tables, tmp_path / "out")
    assert sorted(p.name for p in paths) == [
        "adverse_events.csv",
        "cocktails.csv",
        "sessions.csv",
        "subjects.csv",
    ]
    text = (tmp_path / "out" / "sessions.csv").read_text(encoding="utf-8")
    assert ",true," in text and ",false," in text and "True" not in text
    back = pd.read_csv(tmp_path / "out" / "sessions.csv", keep_default_na=False)
    assert (back["cocktail_id"] == "").sum() == tables["sessions"]["cocktail_id"].isna().sum()
    ae_back = pd.read_csv(tmp_path / "out" / "adverse_events.csv")
    assert ae_back["verbatim"].tolist() == tables["adverse_events"]["verbatim"].tolist()


# --- simulate_study: the validated Study ------------------------------------------------------


def test_simulate_study_returns_validated_study_with_the_same_truth():
    study = simulate_study(60, 8, seed=7)
    tables, truth = simulate_tables(60, 8, seed=7)
    assert list(study.truth) == TRUTH_KEYS
    assert study.truth["ingredient_slopes"] == truth["ingredient_slopes"]
    pd.testing.assert_frame_equal(study.truth["subject_effects"], truth["subject_effects"])
    assert len(study.subjects) == 60
    assert len(study.sessions) == len(tables["sessions"])
    assert study.ingredients == ["biotin", "dutasteride", "minoxidil"]


def test_simulate_study_event_table_counts_the_drawn_events():
    study = simulate_study(300, 8, seed=8)
    tables, _ = simulate_tables(300, 8, seed=8)
    events = study.event_table()
    assert len(events) == int(tables["sessions"]["reactions_assessed"].sum())
    assert events["events"].sum() == len(tables["adverse_events"])
    with_event = tables["adverse_events"][["subject_id", "visit"]].drop_duplicates()
    assert events["any_event"].sum() == len(with_event)


def test_simulate_study_baseline_is_visit_one():
    study = simulate_study(50, 6, seed=9, missing_rate=0.2)
    table = study.outcome_table("hair_density")
    first = study.sessions[study.sessions["visit"] == 1].set_index("subject_id")["hair_density"]
    assert_allclose(
        table["baseline"].to_numpy(), first.loc[table["subject_id"]].to_numpy(), rtol=1e-12
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_subjects": 30, "n_sessions": 1},
        {"n_subjects": 30, "n_sessions": 4, "n_sites": 11, "dropout": 0.3},
        {"n_subjects": 5, "n_sessions": 12, "missing_rate": 0.5},
        {"n_subjects": 40, "n_sessions": 6, "cocktails": {"Z": {"zinc": (2.0, "mg/mL")}}},
    ],
)
def test_simulate_study_unusual_designs_pass_validation(kwargs):
    study = simulate_study(seed=3, **kwargs)
    assert len(study.subjects) == kwargs["n_subjects"]


def test_simulate_study_hundred_thousand_by_ten_with_validation_takes_seconds():
    start = time.perf_counter()
    study = simulate_study(100_000, 10, seed=1)
    elapsed = time.perf_counter() - start
    assert len(study.subjects) == 100_000
    assert elapsed < 20, f"simulate_study(100_000, 10) took {elapsed:.1f} s"


def test_effects_cocktails_are_merged_into_the_default_recipes():
    tables, truth = simulate_tables(
        100, 6, seed=5, effects={"cocktails": {"D": {"zinc": (1.0, "mg/mL")}}}
    )
    assert list(truth["cocktails"]) == ["P", "A", "B", "C", "D"]
    assert truth["cocktails"]["D"] == {"zinc": {"concentration": 1.0, "unit": "mg/mL"}}
    assert truth["ingredient_slopes"]["zinc"] == 0.0
    assert set(tables["subjects"]["arm"]) == {"P", "A", "B", "C", "D"}
