"""Tests of mesostats.domain (regrowth, side effects): fit_regrowth and fit_side_effects.

Truth recovery compares estimates with the values ``simulate_study`` drew from
(``study.truth``); rates are checked against counts and Clopper–Pearson bounds computed by
hand (beta quantiles from scipy); Holm p-values against statsmodels' ``multipletests``.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from statsmodels.stats.multitest import multipletests

import mesostats as ms
from mesostats.domain import (
    GEE_COLUMNS,
    RATE_COLUMNS,
    RegrowthResults,
    SideEffectResults,
    event_rates,
    holm_adjusted,
)
from mesostats.domain.common import _variance_notes
from mesostats.exceptions import ExclusionWarning, ModelSpecError, SingularFitWarning
from mesostats.simulate import simulate_tables

SEEDS = range(5)
#: Small simulated studies (120 people, 6 visits) often put the correlation of the person-level
#: intercept and slope on its boundary (after baseline adjustment the true correlation is
#: near 0); tests that are not about that let the SingularFitWarning pass.
IGNORE_SINGULAR = "ignore::mesostats.exceptions.SingularFitWarning"
N_SUBJECTS = 300

#: Placebo + three cocktails in which vitamin_d and zinc always come together.
TOGETHER = {
    "P": {"saline": (0.9, "%")},
    "A": {"minoxidil": (0.5, "%"), "vitamin_d": (100.0, "IU/mL"), "zinc": (1.0, "mg/mL")},
    "B": {"dutasteride": (0.01, "%"), "vitamin_d": (100.0, "IU/mL"), "zinc": (1.0, "mg/mL")},
    "C": {"minoxidil": (0.5, "%"), "dutasteride": (0.01, "%")},
}


@pytest.fixture(scope="module")
def fits():
    """Regrowth and side-effect fits of 5 simulated studies (300 subjects each)."""
    out = []
    with warnings.catch_warnings():
        # sites do not differ in the simulator: the site SD is often 0 (a note, no warning)
        warnings.simplefilter("error")
        for seed in SEEDS:
            study = ms.simulate_study(N_SUBJECTS, 8, seed=seed)
            out.append((study, ms.fit_regrowth(study), ms.fit_side_effects(study)))
    return out


@pytest.fixture(scope="module")
def example_fits():
    study = ms.simulate_study(150, 8, seed=11)
    return study, ms.fit_regrowth(study), ms.fit_side_effects(study)


@pytest.fixture
def small_study(valid_tables):
    return ms.load_study(valid_tables)


# --------------------------------------------------------------------------- truth recovery


def test_regrowth_ingredient_slopes_within_3_se_of_simulated_truth(fits):
    for study, reg, _ in fits:
        eff = reg.ingredient_effects.set_index("ingredient")
        for ing, true in study.truth["ingredient_slopes"].items():
            z = (eff.loc[ing, "effect"] - true) / eff.loc[ing, "std_error"]
            assert abs(z) < 3, (study.truth["seed"], ing, z)


def test_side_effect_log_odds_ratios_within_3_se_of_simulated_truth(fits):
    for study, side, _ in [(s, se, r) for s, r, se in fits]:
        fe = side.model.fixed_effects
        for ing, true in study.truth["event_log_or"].items():
            z = (fe.loc[ing, "estimate"] - true) / fe.loc[ing, "std_error"]
            assert abs(z) < 3, (study.truth["seed"], ing, z)
        assert_allclose(
            side.ingredient_effects.set_index("ingredient")["odds_ratio"],
            np.exp(fe.loc[list(side.ingredients), "estimate"]),
        )


def test_between_person_sds_close_to_simulated_truth(fits):
    truth = fits[0][0].truth
    slope_sd, resid_sd, icpt_sd, event_sd = [], [], [], []
    for _, reg, side in fits:
        vc = reg.model.variance_components
        sds = vc[vc["var2"].isna()].set_index(["group", "var1"], drop=False)["sdcor"]
        slope_sd.append(sds[("subject_id", "week")])
        icpt_sd.append(sds[("subject_id", "Intercept")])
        resid_sd.append(vc.loc[vc["group"] == "Residual", "sdcor"].iloc[0])
        event_sd.append(side.model.variance_components["sdcor"].iloc[0])
    assert abs(np.mean(slope_sd) - truth["slope_sd"]) < 0.12
    assert abs(np.mean(resid_sd) - truth["residual_sd"]) < 0.4
    # conditional on the baseline (ANCOVA) the person-level intercept SD that remains is
    # sd0·σ/√(sd0² + σ²) (the baseline measurement absorbs the rest)
    sd0, sigma = truth["intercept_sd"], truth["residual_sd"]
    assert abs(np.mean(icpt_sd) - sd0 * sigma / math.hypot(sd0, sigma)) < 1.0
    # Laplace shrinks a binary random-intercept SD a little (truth 1.0)
    assert abs(np.mean(event_sd) - truth["event_sd"]) < 0.2


def test_ci_coverage_pooled_over_seeds_and_ingredients_is_near_95_percent(fits):
    covered = []
    for study, reg, side in fits:
        eff = reg.ingredient_effects.set_index("ingredient")
        for ing, true in study.truth["ingredient_slopes"].items():
            covered.append(eff.loc[ing, "ci_lower"] <= true <= eff.loc[ing, "ci_upper"])
        odds = side.ingredient_effects.set_index("ingredient")
        for ing, true in study.truth["event_log_or"].items():
            covered.append(odds.loc[ing, "ci_lower"] <= math.exp(true) <= odds.loc[ing, "ci_upper"])
    # 30 intervals: P(≤ 24 covered | 95 %) ≈ 0.016; with half-width SEs (68 %) ≈ 0.98
    assert len(covered) == 30
    assert sum(covered) >= 25, sum(covered)


# --------------------------------------------------------------------------- result tables


def test_ingredient_effects_columns_are_exactly_those_of_api(example_fits):
    _, reg, side = example_fits
    assert list(reg.ingredient_effects.columns) == [
        "ingredient",
        "effect",
        "std_error",
        "ci_lower",
        "ci_upper",
        "p_value",
        "p_adjusted",
    ]
    assert list(side.ingredient_effects.columns) == [
        "ingredient",
        "odds_ratio",
        "ci_lower",
        "ci_upper",
        "p_value",
        "p_adjusted",
    ]
    assert list(side.rates.columns) == RATE_COLUMNS
    assert list(side.gee.table.columns) == GEE_COLUMNS


def test_holm_adjustment_equals_multipletests(example_fits):
    _, reg, side = example_fits
    for table in (reg.ingredient_effects, side.ingredient_effects):
        expected = multipletests(table["p_value"].to_numpy(), method="holm")[1]
        assert_allclose(table["p_adjusted"].to_numpy(), expected, rtol=1e-12)


def test_holm_step_down_equals_multipletests_on_many_vectors():
    rng = np.random.default_rng(3)
    vectors = [rng.uniform(size=m) ** 3 for m in (1, 2, 3, 7, 20)]
    vectors += [np.array([0.01, 0.01, 0.04, 0.5]), np.array([0.2, 0.9, 0.9]), np.zeros(3)]
    for p in vectors:
        expected = multipletests(p, method="holm")[1]
        assert_allclose(holm_adjusted(p), expected, rtol=1e-14, atol=0)
    # NaN entries are left out of the family and stay NaN
    got = holm_adjusted(np.array([0.01, np.nan, 0.04]))
    assert_allclose(got, [0.02, np.nan, 0.04])


def test_regrowth_effects_are_the_week_by_ingredient_fixed_effects(example_fits):
    _, reg, _ = example_fits
    fe = reg.model.fixed_effects
    assert reg.effect_terms == {
        "biotin": "week:biotin",
        "dutasteride": "week:dutasteride",
        "minoxidil": "week:minoxidil",
    }
    eff = reg.ingredient_effects.set_index("ingredient")
    for ing, term in reg.effect_terms.items():
        assert_allclose(
            eff.loc[ing, ["effect", "std_error", "p_value"]].to_numpy(dtype=float),
            fe.loc[term, ["estimate", "std_error", "p_value"]].to_numpy(dtype=float),
        )
    assert reg.formula == (
        "value ~ baseline_centered + week + week:biotin + week:dutasteride + week:minoxidil"
        " + (1 + week | subject_id) + (1 | site)"
    )


def test_regrowth_rows_are_post_baseline_visits_with_centred_baseline(example_fits):
    study, reg, _ = example_fits
    table = study.outcome_table("hair_density")
    post = table[table["week"] > 0]
    assert len(reg.data) == len(post) == reg.model.nobs
    assert (reg.data["week"] > 0).all()
    assert_allclose(reg.baseline_center, post["baseline"].mean())
    assert_allclose(reg.data["baseline_centered"] + reg.baseline_center, reg.data["baseline"])
    # follow-up visits (no injection) keep the course's ingredients
    follow_up = reg.data["cocktail_id"].isna()
    assert follow_up.any()
    course = reg.cocktail_design.loc[reg.data.loc[follow_up, "course_cocktail"]]
    assert_allclose(reg.data.loc[follow_up, list(reg.ingredients)].to_numpy(), course.to_numpy())


def test_random_slope_false_gives_a_random_intercept_only(example_fits):
    study, _, _ = example_fits
    reg = ms.fit_regrowth(study, random_slope=False, ingredients=["minoxidil"])
    assert "(1 | subject_id)" in reg.formula and "week |" not in reg.formula
    assert reg.ingredients == ("minoxidil",)
    assert any("biotin is given in cocktails A, B, C but left out" in n for n in reg.notes)


def test_dose_design_effect_is_per_unit_of_dose(example_fits):
    study, reg, _ = example_fits
    dose = ms.fit_regrowth(study, design="dose")
    assert dose.units == {"biotin": "mg/mL", "dutasteride": "%", "minoxidil": "%"}
    assert_allclose(dose.cocktail_design.loc["C"].to_numpy(), [5.0, 0.01, 0.5])
    # a dose of 1 mL of cocktail C scales the per-indicator effect by the concentration:
    # minoxidil effect per %·mL × 0.5 % × ~1 mL ≈ indicator effect (volumes average 1 mL)
    per_dose = dose.ingredient_effects.set_index("ingredient")["effect"]
    per_ind = reg.ingredient_effects.set_index("ingredient")["effect"]
    assert_allclose(per_dose["minoxidil"] * 0.5, per_ind["minoxidil"], rtol=0.15)
    assert any("Dose = concentration × volume_ml" in n for n in dose.notes)


def test_site_sd_at_zero_is_a_plain_note_not_a_warning(fits):
    notes = [n for _, reg, _ in fits for n in reg.notes]
    # the simulator has no site effect: some fits put the site SD at its boundary
    assert any(
        "Sites did not differ beyond what people vary: site SD estimated at 0; the site term "
        "could be dropped." == n
        for n in notes
    )


def boundary_model(slope_sd: float, corr: float, site_sd: float) -> SimpleNamespace:
    """Stand-in for a MixedResults with chosen variance components (VarCorr layout)."""
    vc = pd.DataFrame(
        {
            "group": ["subject_id", "subject_id", "subject_id", "site", "Residual"],
            "var1": ["Intercept", "week", "Intercept", "Intercept", None],
            "var2": [None, None, "week", None, None],
            "vcov": [36.0, slope_sd**2, corr * 6.0 * slope_sd, site_sd**2, 49.0],
            "sdcor": [6.0, slope_sd, corr, site_sd, 7.0],
        }
    )
    return SimpleNamespace(variance_components=vc, sigma=7.0, family="gaussian")


def test_person_slope_sd_at_zero_warns_and_notes():
    notes: list[str] = []
    with pytest.warns(SingularFitWarning, match="between-person SD of week within subject_id"):
        _variance_notes(boundary_model(0.0, 0.3, 1.0), notes, warn_for=["subject_id"])
    assert notes[0].startswith("People did not differ detectably in their response per week")


def test_person_correlation_at_one_warns_and_notes():
    notes: list[str] = []
    with pytest.warns(SingularFitWarning, match="correlation of Intercept and week within"):
        _variance_notes(boundary_model(0.5, -1.0, 1.0), notes, warn_for=["subject_id"])
    assert "estimated at -1.000 (on the boundary ±1)" in notes[0]


def test_site_sd_at_zero_is_only_a_note():
    notes: list[str] = []
    _variance_notes(boundary_model(0.5, 0.1, 0.0), notes, warn_for=["subject_id"])  # no warning
    assert notes == [
        "Sites did not differ beyond what people vary: site SD estimated at 0; the site term "
        "could be dropped."
    ]


def test_single_site_study_has_no_site_term():
    study = ms.simulate_study(80, 8, seed=2, n_sites=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        reg = ms.fit_regrowth(study, ingredients=["minoxidil", "dutasteride"])
    assert "site" not in reg.formula
    assert set(reg.model.ngroups) == {"subject_id"}


@pytest.mark.filterwarnings(IGNORE_SINGULAR)
def test_missing_baseline_visits_are_set_aside_with_a_warning():
    tables, _ = simulate_tables(120, 6, seed=4)
    sessions = tables["sessions"]
    lost = sessions["subject_id"].isin(["LYO-001", "LYO-002"]) & (sessions["visit"] == 1)
    sessions.loc[lost, "hair_density"] = np.nan
    study = ms.load_study(tables)
    n_post = int(
        (
            sessions["subject_id"].isin(["LYO-001", "LYO-002"])
            & (sessions["visit"] > 1)
            & sessions["hair_density"].notna()
        ).sum()
    )
    with pytest.warns(ExclusionWarning, match=rf"{n_post} post-baseline visits were not analysed"):
        reg = ms.fit_regrowth(study)
    assert not reg.data["subject_id"].isin(["LYO-001", "LYO-002"]).any()
    ex = reg.excluded_rows
    assert list(ex.columns) == ["row", "subject_id", "visit", "reason"]
    assert len(ex) == n_post
    assert set(ex["subject_id"]) == {"LYO-001", "LYO-002"}
    assert (ex["visit"].astype(int) > 1).all()
    assert (ex["reason"] == "no baseline hair_density: the baseline-adjusted model needs it").all()
    table = study.outcome_table("hair_density")
    excluded = table.loc[list(ex["row"])]
    assert excluded["baseline"].isna().all()
    assert excluded["subject_id"].tolist() == ex["subject_id"].tolist()


def test_excluded_rows_of_a_complete_study_are_empty_with_the_columns(example_fits):
    _, reg, side = example_fits
    for fit in (reg, side):
        assert list(fit.excluded_rows.columns) == ["row", "subject_id", "visit", "reason"]
    assert len(reg.excluded_rows) == 0


def test_side_effect_excluded_rows_are_assessed_sessions_without_injection(example_fits):
    study, _, side = example_fits
    events = study.event_table(None)
    none = events[events["cocktail_id"].isna().to_numpy(dtype=bool)]
    ex = side.excluded_rows
    assert ex["row"].tolist() == list(none.index)
    assert ex["subject_id"].tolist() == none["subject_id"].tolist()
    assert ex["visit"].tolist() == none["visit"].tolist()
    assert len(ex) + side.model.nobs == len(events)


# --------------------------------------------------------------------------- side effects


def test_rates_match_hand_counts_and_clopper_pearson_on_the_small_study(small_study):
    table = small_study.event_table()
    rates = event_rates(table, ["biotin", "dutasteride", "minoxidil"]).set_index(
        ["level", "name", "per"]
    )
    # assessed sessions: visits 2 and 3 of S01–S04. Events: S01 v2 (erythema + pain),
    # S02 v3 (erythema), S04 v3 (oedema). S01, S04: MB; S02: DB; S03: PLA.
    expected = {
        ("overall", "all", "session"): (3, 8, 4),
        ("overall", "all", "person"): (3, 4, 4),
        ("ingredient", "biotin", "session"): (3, 6, 4),
        ("ingredient", "biotin", "person"): (3, 3, 4),
        ("ingredient", "minoxidil", "session"): (2, 4, 3),
        ("ingredient", "minoxidil", "person"): (2, 2, 3),
        ("ingredient", "dutasteride", "session"): (1, 2, 1),
        ("cocktail", "PLA", "session"): (0, 2, 0),
        ("cocktail", "PLA", "person"): (0, 1, 0),
        ("cocktail", "MB", "session"): (2, 4, 3),
    }
    for key, (k, n, events) in expected.items():
        row = rates.loc[key]
        assert (row["n_with_event"], row["n_assessed"], row["n_events"]) == (k, n, events), key
        lower = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
        upper = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
        assert_allclose([row["rate"], row["ci_lower"], row["ci_upper"]], [k / n, lower, upper])
    # 0 of 2: the exact upper bound is 1 − 0.025^(1/2)
    assert_allclose(rates.loc[("cocktail", "PLA", "session"), "ci_upper"], 1 - 0.025**0.5)
    assert len(rates) == 2 * (1 + 3 + 3)


def test_fitted_rates_count_the_modelled_sessions(example_fits):
    study, _, side = example_fits
    overall = side.rates.set_index(["level", "name", "per"]).loc[("overall", "all", "session")]
    table = study.event_table()
    assert overall["n_assessed"] == len(side.data) == len(table) == side.model.nobs
    assert overall["n_with_event"] == table["any_event"].sum()
    assert overall["n_events"] == table["events"].sum()


def test_gee_odds_ratios_are_attenuated_when_people_differ_a_lot():
    study = ms.simulate_study(
        400,
        8,
        seed=5,
        effects={"event_sd": 2.5, "event_log_or": {"minoxidil": 1.5, "dutasteride": 1.2}},
    )
    side = ms.fit_side_effects(study)
    table = side.gee.table.set_index("ingredient").loc[["minoxidil", "dutasteride"]]
    ss = np.log(table["subject_specific_or"])
    pa = np.log(table["population_average_or"])
    assert (pa.abs() < ss.abs()).all()
    # the ratio of log ORs matches the Zeger–Liang–Albert factor 1/√(1 + c²σ²) (≈ 0.6 here)
    assert side.gee.attenuation < 0.7
    assert_allclose((pa / ss).to_numpy(), side.gee.attenuation, atol=0.15)
    assert "attenuated towards 0 (ORs towards 1)" in side.gee.explanation


def test_separation_note_names_exactly_the_terms_the_engine_flagged():
    """minoxidil sessions never have the event: fit_glmm records complete separation of
    `minoxidil` (optimizer_info["separation"]); the plain note names it and nothing else."""
    study = ms.simulate_study(120, 6, seed=3, effects={"event_log_or": {"minoxidil": -30.0}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        side = ms.fit_side_effects(study)
    assert any("Separation" in str(w.message) for w in caught)
    records = side.model.optimizer_info["separation"]
    assert [r["term"] for r in records] == ["minoxidil"]
    (note,) = [n for n in side.notes if "(quasi-)separated" in n]
    assert note.startswith("The odds ratio of minoxidil is extreme")


def test_no_separation_note_without_engine_record(example_fits):
    _, _, side = example_fits
    assert side.model.optimizer_info["separation"] == []
    assert not any("(quasi-)separated" in n for n in side.notes)


def test_single_event_term_and_quadrature(example_fits):
    study, _, _ = example_fits
    side = ms.fit_side_effects(study, "pain", nagq=9)
    assert side.model.method == "AGQ(9)"
    assert side.event == "pain"
    counts = study.event_table("pain")
    assert side.data["any_event"].sum() == counts["any_event"].sum()
    assert "any_event ~ biotin + dutasteride + minoxidil + (1 | subject_id)" == side.formula


# --------------------------------------------------------------------------- bad input


def test_unknown_outcome_lists_the_available_ones(small_study):
    with pytest.raises(ModelSpecError, match=r"'shaft_diameter_um'.*available: hair_density"):
        ms.fit_regrowth(small_study, "shaft_diameter_um")


def test_outcome_without_any_baseline_points_to_fit_lmm(example_fits):
    study, _, _ = example_fits
    assert study.outcome_table("gpa_score")["baseline"].isna().all()  # rated after baseline
    with pytest.raises(ModelSpecError, match=r"gpa_score has no baseline value.*fit_lmm"):
        ms.fit_regrowth(study, "gpa_score")


def test_event_never_recorded_lists_recorded_events(small_study):
    with pytest.raises(
        ModelSpecError,
        match=r"'headache' is a coded term but was never recorded.*erythema \(2\), pain \(1\)",
    ):
        ms.fit_side_effects(small_study, "headache")
    with pytest.raises(ModelSpecError, match="'sneezing' is not a coded event term"):
        ms.fit_side_effects(small_study, "sneezing")


def test_unknown_ingredient_lists_the_available_ones(small_study):
    with pytest.raises(
        ModelSpecError,
        match=r"\['finasteride'\] is in no cocktail of this study\. Available ingredients: "
        r"\['biotin', 'dutasteride', 'minoxidil'\]",
    ):
        ms.fit_regrowth(small_study, ingredients=["finasteride"])


def test_no_assessed_session_says_rates_need_a_denominator(valid_tables):
    valid_tables["sessions"]["reactions_assessed"] = False
    study = ms.load_study(valid_tables)
    with pytest.raises(ModelSpecError, match="no denominator: per-session"):
        ms.fit_side_effects(study)


def test_bad_options_are_refused(small_study):
    with pytest.raises(ModelSpecError, match="nagq must be an integer ≥ 1"):
        ms.fit_side_effects(small_study, nagq=0)
    with pytest.raises(ModelSpecError, match="design must be 'indicator'"):
        ms.fit_regrowth(small_study, design="doses")  # type: ignore[arg-type]
    with pytest.raises(ModelSpecError, match="random_slope must be True or False"):
        ms.fit_regrowth(small_study, random_slope="yes")  # type: ignore[arg-type]
    with pytest.raises(ModelSpecError, match="study must be a mesostats Study"):
        ms.fit_regrowth(pd.DataFrame())  # type: ignore[arg-type]


def test_small_study_aliasing_names_the_relation_and_estimable_subsets(small_study):
    pattern = (
        r"(?s)cannot separate the effects of biotin, dutasteride, minoxidil.*"
        r"biotin = dutasteride \+ minoxidil \(cocktails MB, DB\).*"
        r"Estimable: ingredients=\['biotin', 'dutasteride'\] or \['biotin', 'minoxidil'\] or "
        r"\['dutasteride', 'minoxidil'\]"
    )
    with pytest.raises(ModelSpecError, match=pattern):
        ms.fit_regrowth(small_study)
    with pytest.raises(ModelSpecError, match=pattern):
        ms.fit_side_effects(small_study)


def test_small_study_dose_aliasing_has_concentration_ratios(small_study):
    with pytest.raises(ModelSpecError, match=r"biotin = 500·dutasteride \+ 10·minoxidil"):
        ms.fit_regrowth(small_study, design="dose")


@pytest.mark.filterwarnings(IGNORE_SINGULAR)
def test_ingredients_always_together_in_simulated_study_are_never_estimated():
    study = ms.simulate_study(150, 6, seed=2, cocktails=TOGETHER)
    expected = (
        r"(?s)vitamin_d and zinc always come together \(cocktails A, B\): zinc = vitamin_d.*"
        r"Estimable: ingredients=\['dutasteride', 'minoxidil', 'vitamin_d'\] or "
        r"\['dutasteride', 'minoxidil', 'zinc'\]"
    )
    with pytest.raises(ModelSpecError, match=expected):
        ms.fit_regrowth(study)
    with pytest.raises(ModelSpecError, match=expected):
        ms.fit_side_effects(study)
    with pytest.raises(ModelSpecError, match="zinc = vitamin_d"):
        ms.fit_regrowth(study, ingredients=["minoxidil", "vitamin_d", "zinc"])
    reg = ms.fit_regrowth(study, ingredients=["dutasteride", "minoxidil", "vitamin_d"])
    assert any(
        n.startswith(
            "zinc is not in the model but is given in cocktails A, B; since zinc = vitamin_d"
        )
        for n in reg.notes
    )


def test_ingredient_in_every_cocktail_without_placebo_is_refused():
    no_placebo = {k: v for k, v in TOGETHER.items() if k != "P"}
    no_placebo["C"] = {**no_placebo["C"], "zinc": (1.0, "mg/mL")}
    study = ms.simulate_study(90, 6, seed=3, cocktails=no_placebo)
    with pytest.raises(ModelSpecError, match=r"zinc is in every cocktail used \(A, B, C\)"):
        ms.fit_regrowth(study, ingredients=["dutasteride", "minoxidil", "zinc"])


# --------------------------------------------------------------------------- display


def test_repr_is_one_line_and_str_has_every_section(example_fits):
    _, reg, side = example_fits
    for res in (reg, side):
        assert "\n" not in repr(res)
        text = str(res)
        assert "Ingredient effects" in text and "Variance components" in text
        assert "Notes" in text
    assert repr(reg).startswith("<RegrowthResults hair_density: biotin ")
    assert "Observed rates" in str(side) and "Population-average" in str(side)


@pytest.mark.filterwarnings(IGNORE_SINGULAR)
def test_html_escapes_cocktail_ids_and_is_static():
    cocktails = {
        "<P>": {"saline": (0.9, "%")},
        "A&B": {"minoxidil": (0.5, "%"), "biotin": (5.0, "mg/mL")},
        "<C>": {"dutasteride": (0.01, "%"), "biotin": (5.0, "mg/mL")},
        "D": {"minoxidil": (0.5, "%"), "dutasteride": (0.01, "%")},
    }
    study = ms.simulate_study(120, 6, seed=1, cocktails=cocktails)
    reg = ms.fit_regrowth(study, ingredients=["minoxidil", "dutasteride"])
    side = ms.fit_side_effects(study)
    for res, needle in ((reg, "A&amp;B, &lt;C&gt;"), (side, "&lt;P&gt;")):
        page = res._repr_html_()
        assert needle in page
        assert "<C>" not in page and "<P>" not in page and "A&B" not in page
        assert "<script" not in page
    assert "<table>" in side.gee._repr_html_()


def test_results_are_frozen(example_fits):
    _, reg, side = example_fits
    assert isinstance(reg, RegrowthResults) and isinstance(side, SideEffectResults)
    with pytest.raises(AttributeError, match="cannot assign to field 'outcome'"):
        reg.outcome = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot assign to field 'event'"):
        side.event = "x"  # type: ignore[misc]


def test_a_library_warning_keeps_its_origin(monkeypatch, small_study) -> None:
    """A third-party warning inside the engine is passed on from where it was raised (so
    module-based filters still match), not re-attributed to the user's call."""
    import mesostats.domain.regrowth as regrowth_module

    real = regrowth_module.fit_lmm

    def noisy_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        warnings.warn("a library's own warning (test)", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(regrowth_module, "fit_lmm", noisy_fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ms.fit_regrowth(small_study, ingredients=["minoxidil", "dutasteride"], random_slope=False)
    library = [w for w in caught if "a library's own warning" in str(w.message)]
    assert len(library) == 1
    assert library[0].category is RuntimeWarning
    assert library[0].filename == __file__
    assert library[0].lineno == noisy_fit.__code__.co_firstlineno + 1  # the warn() line
