"""fit_trial end to end with the real engines (fit_mmrm, marginal_means, contrasts).

* The example study against R: ``tests/reference/trial/ref_trial.R`` derives the analysis data
  from the example's CSV files independently of mesostats and fits the same MMRM with R's
  mmrm 0.3.14 and emmeans 1.8.4 (frozen in ``ref_trial_example.json``; R is not needed
  here). Tolerances (shared/reference/README.md, MMRM): LS means and contrasts 1e-5
  relative; SEs and df 1e-4 relative; Dunnett-adjusted p within 2e-3 absolute (emmeans
  computes it by mvtnorm's randomised quadrature, whose error bound is 1e-3).
* A simulated trial with a known truth: each cocktail's true difference to placebo at a
  visit is (sum of its ingredients' slopes) × the visit's nominal week.
* The report section and ``mesostats fit --trial`` with the real fit.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms

REFERENCE = Path(__file__).parent / "reference" / "trial" / "ref_trial_example.json"
RTOL_ESTIMATE = 1e-5
RTOL_SE_DF = 1e-4
ATOL_DUNNETT = 2e-3


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example():
    return ms.example_study()


def _r_lsmeans(block):
    t = pd.DataFrame(block["lsmeans"])
    t["visit"] = t["visit"].astype(int)
    return t.set_index(["cocktail", "visit"])


def _r_contrasts(block):
    t = pd.DataFrame(block["contrasts"])
    t["visit"] = t["visit"].astype(int)
    t["dunnett"] = block["dunnett_p"]
    return t.set_index(["contrast", "visit"])


def _compare_with_r(trial, block):
    assert len(trial.data) == block["nobs"]
    assert trial.data["subject_id"].nunique() == block["n_subjects"]
    ours = trial.lsmeans.set_index(["cocktail", "visit"])
    r = _r_lsmeans(block).reindex(ours.index)
    assert_allclose(ours["estimate"], r["emmean"], rtol=RTOL_ESTIMATE)
    assert_allclose(ours["std_error"], r["SE"], rtol=RTOL_SE_DF)
    assert_allclose(ours["df"], r["df"], rtol=RTOL_SE_DF)
    assert_allclose(ours["ci_lower"], r["lower.CL"], rtol=RTOL_SE_DF)
    assert_allclose(ours["ci_upper"], r["upper.CL"], rtol=RTOL_SE_DF)
    vs = trial.vs_control.set_index(["contrast", "visit"])
    rc = _r_contrasts(block).reindex(vs.index)
    assert_allclose(vs["estimate"], rc["estimate"], rtol=RTOL_ESTIMATE)
    assert_allclose(vs["std_error"], rc["SE"], rtol=RTOL_SE_DF)
    assert_allclose(vs["df"], rc["df"], rtol=RTOL_SE_DF)
    assert_allclose(vs["statistic"], rc["t.ratio"], rtol=RTOL_SE_DF)
    assert_allclose(vs["p_value"], rc["p.value"], rtol=1e-3, atol=1e-12)
    assert_allclose(vs["ci_lower"], rc["lower.CL"], rtol=RTOL_SE_DF)
    assert_allclose(vs["ci_upper"], rc["upper.CL"], rtol=RTOL_SE_DF)
    primary = vs.index.get_level_values("visit") == trial.primary_visit
    assert_allclose(vs["p_adjusted"][primary], rc["dunnett"][primary], rtol=0, atol=ATOL_DUNNETT)
    assert vs["p_adjusted"][~primary].isna().all()


@pytest.fixture(scope="module")
def trial(example):
    return ms.fit_trial(example)


@pytest.mark.slow
def test_example_us_kenward_roger_matches_r_mmrm_and_emmeans(trial, reference):
    assert trial.covariance == "us" and not trial.fell_back
    assert trial.model.converged
    assert trial.model.loglik >= reference["us_kr"]["logLik"] - 1e-6
    _compare_with_r(trial, reference["us_kr"])


@pytest.mark.slow
def test_example_toeph_kenward_roger_matches_r_mmrm_and_emmeans(example, reference):
    fit = ms.fit_trial(example, covariance="toeph")
    assert fit.covariance == "toeph"
    _compare_with_r(fit, reference["toeph_kr"])


@pytest.mark.slow
def test_example_cs_satterthwaite_matches_r_mmrm_and_emmeans(example, reference):
    fit = ms.fit_trial(example, covariance="cs", df="satterthwaite")
    assert fit.covariance == "cs" and fit.df_method == "satterthwaite"
    _compare_with_r(fit, reference["cs_satterthwaite"])


@pytest.mark.slow
def test_example_primary_result(trial):
    """The numbers quoted in the notebook and the report."""
    primary = trial.primary.set_index("contrast")
    assert list(primary.index) == ["A - P", "B - P", "C - P"]
    assert (primary["p_adjusted"] >= primary["p_value"]).all()
    assert (primary.loc[["A - P", "C - P"], "p_adjusted"] < 0.001).all()


@pytest.mark.slow
def test_simulated_trial_recovers_the_true_differences():
    study = ms.simulate_study(160, 6, seed=11)
    truth = study.truth
    slopes = truth["ingredient_slopes"]
    recipes = truth["cocktails"]
    nominal_week = {i + 1: (d - 1) / 7.0 for i, d in enumerate(truth["visit_days"])}
    fit = ms.fit_trial(study)
    assert fit.control == "P" and fit.covariance == "us"
    vs = fit.vs_control
    cocktail = vs["contrast"].str.split(" - ").str[0]
    per_week = cocktail.map(lambda c: sum(slopes.get(i, 0.0) for i in recipes[c]))
    true = per_week * vs["visit"].map(nominal_week)
    z = (vs["estimate"] - true) / vs["std_error"]
    assert np.abs(z).max() < 3.5, vs.assign(true=true, z=z)
    primary = vs["visit"] == fit.primary_visit
    covered = (vs["ci_lower"] <= true) & (true <= vs["ci_upper"])
    assert covered[primary].all(), vs[primary].assign(true=true[primary])


def run_cli(*args: str) -> tuple[int, str, str]:
    from mesostats.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_cli_trial_json_is_the_fit(tmp_path):
    folder = tmp_path / "study"
    code, _, err = run_cli(
        "simulate", "--subjects", "60", "--sessions", "5", "--seed", "2", "-o", str(folder)
    )
    assert code == 0, err
    code, out, err = run_cli("fit", str(folder), "--trial", "--json")
    assert code == 0, err
    payload = json.loads(out)
    fit = ms.fit_trial(ms.load_study(folder))
    assert_allclose(
        [r["estimate"] for r in payload["primary"]], fit.primary["estimate"], rtol=1e-12
    )
    assert payload["covariance"] == fit.covariance


@pytest.mark.slow
def test_report_has_the_primary_analysis_section_with_the_fit():
    from mesostats.reporting.build import SECTION_TITLES, build_report

    study = ms.simulate_study(60, 5, seed=2)
    built = build_report(study)
    html = built.html
    start = html.index('<section id="primary">')
    section = html[start : html.index("</section>", start)]
    assert SECTION_TITLES["primary"] in section
    assert "could not be computed" not in section and "Not included" not in section
    fit = ms.fit_trial(study)
    for rec in fit.primary.itertuples(index=False):
        assert f'<td class="text">{rec.contrast}</td>' in section
    assert "<dt>Covariance</dt><dd>unstructured (us)</dd>" in section
    assert "<dt>Degrees of freedom</dt><dd>kenward-roger</dd>" in section
    assert 'src="data:image/png;base64,' in section
    assert not [m for m in built.messages if m.source == "Primary analysis"]


@pytest.mark.slow
def test_small_trial_falls_back_along_the_prespecified_order():
    """16 people, 7 post-baseline visits: an unstructured covariance has 28 parameters, more
    than the data can estimate; the fit moves along us → toeph → ar1h → cs and says so."""
    study = ms.simulate_study(16, 8, seed=2, n_sites=1)
    fit = ms.fit_trial(study)
    attempts = fit.attempts
    order = ("us", "toeph", "ar1h", "cs")
    assert tuple(attempts["covariance"]) == order[: len(attempts)]
    assert fit.fell_back and fit.covariance == attempts["covariance"].iloc[-1]
    assert list(attempts["converged"]) == [False] * (len(attempts) - 1) + [True]
    assert fit.model.converged
    assert fit.messages[0].startswith("Covariance fallback: unstructured (us) did not converge")
    assert fit.formula.endswith(f"{fit.covariance}(visit | subject_id)")
