"""marginal_means / contrasts of fit_clmm against R's emmeans on ordinal::clmm
(``reference/ref_emmeans_clmm.R`` → ``ref_emmeans_clmm.json``; wine data).

Model: ``clmm(rating ~ temp + contact + (1 | judge), link = "logit", threshold = "flexible",
control = clmm.control(gradTol = 1e-8))``; emmeans' ``mode = "latent"``, ``"prob"`` and
``"mean.class"`` for ``~ temp`` and ``~ temp | contact``, and pairwise contrasts.

Two layers, as tests/test_marginal_means.py:

* the computation alone, fed clmm's own (α, β) and vcov (``WithCLMMReference``): estimates,
  SEs, intervals and contrasts to 1e-8 relative;
* our fit end to end: estimates within 1e-4 relative of emmeans on the gradTol = 1e-8 fit (the
  two optima differ by up to ~1e-5 in the parameters; worst measured 1.1e-5, a small grade
  probability); SEs within 1e-4 relative of emmeans on clmm refitted with its default control
  (worst measured 4.6e-5). clmm's vcov is the inverse of a finite-difference Hessian whose
  noisy inner updates under the tight control move its SEs by up to ~1 % (see
  reference/ref_clmm.R), so SEs are compared with the default-control fit's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ModelSpecError

REF_DIR = Path(__file__).parent / "reference"
REF = json.loads((REF_DIR / "ref_emmeans_clmm.json").read_text())
FORMULA = "rating ~ temp + contact + (1 | judge)"
EXACT = 1e-8
EST_RTOL = 1e-4  # our optimum vs clmm's (gradTol = 1e-8)
SE_RTOL = 1e-4  # our Hessian vs clmm's finite-difference one (default control)


def _ref(key: str, block: dict[str, Any] = REF) -> pd.DataFrame:
    # jsonlite unboxes one-row columns to scalars
    out = pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in block[key].items()})
    if "df" in out:
        out["df"] = np.inf
    return out


class WithCLMMReference:
    """A CLMM fit answering clmm's (α, β) and vcov (the CLMM results interface)."""

    def __init__(self, fit: ms.CLMMResults, block: dict[str, Any] = REF) -> None:
        names = list(fit.coefficients.index)
        r_names = block["coef_names"]
        assert [n.split("[T.")[0] for n in names[-2:]] == ["temp", "contact"]
        assert names[:-2] == r_names[:-2]  # ordinal's threshold parameter names
        self.coefficients = pd.Series([block["coefficients"][n] for n in r_names], index=names)
        v = np.asarray(block["vcov"], dtype=float)
        self.full_vcov = pd.DataFrame(v, index=names, columns=names)
        p = len(fit.params)
        self.params = self.coefficients.iloc[-p:]
        self.vcov = self.full_vcov.iloc[-p:, -p:]
        self.threshold_jacobian = fit.threshold_jacobian
        self.levels = fit.levels
        self.link = fit.link
        self.family = fit.family
        self.formula = fit.formula
        self.model_frame = fit.model_frame
        self.fixed_matrix = fit.fixed_matrix
        self.df_for = fit.df_for


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "wine.csv", dtype={"judge": str, "bottle": str})


@pytest.fixture(scope="module")
def fit(wine: pd.DataFrame) -> ms.CLMMResults:
    return ms.fit_clmm(FORMULA, wine)


@pytest.fixture(scope="module")
def at_r(fit: ms.CLMMResults) -> WithCLMMReference:
    return WithCLMMReference(fit)


def _labels(means: pd.DataFrame, ref: pd.DataFrame, columns: list[str]) -> None:
    for col in columns:
        assert list(means[col].astype(str)) == list(ref[col].astype(str)), col


def _check(means: pd.DataFrame, ref: pd.DataFrame, est: str, rtol: float, se_rtol: float):
    assert_allclose(means["estimate"], ref[est], rtol=rtol)
    assert_allclose(means["std_error"], ref["SE"], rtol=se_rtol)
    assert np.all(np.isinf(means["df"]))


# ------------------------------------------------------------------ computation at clmm's ψ, V
@pytest.mark.parametrize(
    ("by", "key"), [(None, "latent_temp"), ("contact", "latent_temp_by_contact")]
)
def test_latent_means_match_emmeans_given_clmm_coefficients(at_r, by, key):
    """Latent mean = x̄ᵀβ − mean(θ) (emmeans' mode = "latent"), z intervals."""
    means = ms.marginal_means(at_r, "temp", by=by)
    ref = _ref(key)
    _labels(means, ref, ["temp"] + ([by] if by else []))
    _check(means, ref, "emmean", EXACT, EXACT)
    assert_allclose(means["ci_lower"], ref["asymp.LCL"], rtol=EXACT)
    assert_allclose(means["ci_upper"], ref["asymp.UCL"], rtol=EXACT)
    explicit = ms.marginal_means(at_r, "temp", by=by, mode="latent")
    assert_allclose(explicit["estimate"], means["estimate"], rtol=0, atol=0)


@pytest.mark.parametrize(("by", "key"), [(None, "prob_temp"), ("contact", "prob_temp_by_contact")])
def test_grade_probabilities_match_emmeans_mode_prob_given_clmm_coefficients(at_r, by, key):
    """One row per temp (× contact) × grade, grade slowest; delta-method SEs, ± z · SE."""
    means = ms.marginal_means(at_r, "temp", by=by, mode="prob")
    ref = _ref(key)
    _labels(means, ref, ["temp", "rating"] + ([by] if by else []))
    _check(means, ref, "prob", EXACT, EXACT)
    assert_allclose(means["ci_lower"], ref["asymp.LCL"], rtol=EXACT)
    assert_allclose(means["ci_upper"], ref["asymp.UCL"], rtol=EXACT)
    groups = ["temp"] + ([by] if by else [])
    totals = means.groupby(groups, observed=True)["estimate"].sum()
    assert_allclose(totals, 1.0, rtol=1e-12)


def test_mean_class_matches_emmeans_given_clmm_coefficients(at_r):
    """Expected grade numbered 1…K (emmeans' mode = "mean.class")."""
    means = ms.marginal_means(at_r, "temp", mode="mean.class")
    ref = _ref("mean_class_temp")
    _check(means, ref, "mean.class", EXACT, EXACT)
    by = ms.marginal_means(at_r, "temp", by="contact", mode="mean.class")
    _check(by, _ref("mean_class_temp_by_contact"), "mean.class", EXACT, EXACT)


@pytest.mark.parametrize(
    ("by", "key"), [(None, "latent_temp_pairs"), ("contact", "latent_temp_by_contact_pairs")]
)
def test_latent_contrasts_match_emmeans_pairs_given_clmm_coefficients(at_r, by, key):
    """Our "warm - cold" is emmeans' "cold - warm" negated: the cumulative log odds ratio β."""
    out = ms.contrasts(ms.marginal_means(at_r, "temp", by=by), "pairwise", adjust="none")
    ref = _ref(key)
    assert list(out["contrast"]) == ["warm - cold"] * len(ref)
    assert_allclose(out["estimate"], -ref["estimate"], rtol=EXACT)
    assert_allclose(out["estimate"], at_r.params.iloc[0], rtol=EXACT)
    assert_allclose(out["std_error"], ref["SE"], rtol=EXACT)
    assert_allclose(out["statistic"], -ref["z.ratio"], rtol=EXACT)
    assert_allclose(out["p_value"], ref["p.value"], rtol=1e-7)
    assert np.all(np.isinf(out["df"]))


def test_probability_contrasts_per_grade_match_emmeans_pairs_given_clmm_coefficients(at_r):
    out = ms.contrasts(ms.marginal_means(at_r, "temp", mode="prob"), "pairwise", adjust="none")
    ref = _ref("prob_temp_pairs")
    assert list(out["rating"].astype(str)) == list(ref["rating"])
    assert_allclose(out["estimate"], -ref["estimate"], rtol=EXACT)
    assert_allclose(out["std_error"], ref["SE"], rtol=EXACT)
    assert_allclose(out["p_value"], ref["p.value"], rtol=1e-7)


# ------------------------------------------------------------------ our fit end to end
def test_fit_clmm_latent_means_match_emmeans_on_clmm(fit):
    means = ms.marginal_means(fit, "temp", by="contact")
    assert_allclose(means["estimate"], _ref("latent_temp_by_contact")["emmean"], rtol=EST_RTOL)
    assert_allclose(means["std_error"], _ref("latent_temp_by_contact_default")["SE"], rtol=SE_RTOL)


def test_fit_clmm_probabilities_and_mean_class_match_emmeans_on_clmm(fit):
    prob = ms.marginal_means(fit, "temp", by="contact", mode="prob")
    assert_allclose(prob["estimate"], _ref("prob_temp_by_contact")["prob"], rtol=EST_RTOL)
    assert_allclose(prob["std_error"], _ref("prob_temp_by_contact_default")["SE"], rtol=SE_RTOL)
    mc = ms.marginal_means(fit, "temp", mode="mean.class")
    assert_allclose(mc["estimate"], _ref("mean_class_temp")["mean.class"], rtol=EST_RTOL)
    assert_allclose(mc["std_error"], _ref("mean_class_temp_default")["SE"], rtol=SE_RTOL)


def test_probabilities_are_at_zero_random_effects_not_averaged_over_judges(fit):
    """mode="prob" is an average judge (b = 0), more extreme than predict's population mean."""
    grid = pd.DataFrame({"temp": ["cold", "warm"], "contact": ["no", "no"], "judge": "new"})
    eta = fit.predict(grid, type="linear").to_numpy()
    cuts = fit.thresholds["estimate"].to_numpy()
    cum = 1.0 / (1.0 + np.exp(-(cuts[None, :] - eta[:, None])))
    at_zero = np.diff(np.hstack([np.zeros((2, 1)), cum, np.ones((2, 1))]), axis=1)
    prob = ms.marginal_means(fit, "temp", by="contact", mode="prob")
    ours = prob[prob["contact"] == "no"].sort_values(["rating", "temp"])["estimate"]
    assert_allclose(ours.to_numpy(), at_zero.T.reshape(-1), rtol=1e-12)
    population = fit.predict(grid, type="prob").to_numpy()
    assert population[0, 0] > at_zero[0, 0] + 0.02  # judges spread mass to the extremes


# ------------------------------------------------------------------ errors
def test_unknown_mode_is_refused_with_the_modes(fit):
    with pytest.raises(ModelSpecError, match=r"mode must be one of 'latent', 'prob'"):
        ms.marginal_means(fit, "temp", mode="cum.prob")


def test_mode_on_a_non_ordinal_model_is_refused(wine):
    lmm = ms.fit_lmm("rating ~ temp + (1 | judge)", wine)
    with pytest.raises(ModelSpecError, match=r"mode='prob' applies to cumulative link"):
        ms.marginal_means(lmm, "temp", mode="prob")


def test_results_without_the_ordinal_interface_are_refused(at_r):
    class Partial:
        def __init__(self, ref: Any) -> None:
            for name in ("params", "vcov", "family", "link", "formula", "model_frame"):
                setattr(self, name, getattr(ref, name))
            self.fixed_matrix = ref.fixed_matrix
            self.df_for = ref.df_for

    with pytest.raises(ModelSpecError, match=r"need fit_clmm results; Partial lacks"):
        ms.marginal_means(Partial(at_r), "temp")


def test_structured_thresholds_enter_through_their_jacobian(wine):
    """Equidistant thresholds θ = J α: the latent mean still subtracts mean(θ)."""
    eq = ms.fit_clmm(FORMULA, wine, threshold="equidistant")
    assert eq.threshold_jacobian.shape == (4, 2)
    means = ms.marginal_means(eq, "temp")
    beta = eq.params.to_numpy()
    expected = np.array([0.5 * beta[1], beta[0] + 0.5 * beta[1]]) - eq.thresholds["estimate"].mean()
    assert_allclose(means["estimate"], expected, rtol=1e-12)
    prob = ms.marginal_means(eq, "temp", mode="prob")
    assert_allclose(prob.groupby("temp", observed=True)["estimate"].sum(), 1.0, rtol=1e-12)
    # the computation at clmm's own (α, β) and vcov: SEs go through J
    block = REF["equidistant"]
    at_r = WithCLMMReference(eq, block)
    latent = ms.marginal_means(at_r, "temp")
    _check(latent, _ref("latent_temp", block), "emmean", EXACT, EXACT)
    prob_r = ms.marginal_means(at_r, "temp", mode="prob")
    _check(prob_r, _ref("prob_temp", block), "prob", EXACT, EXACT)
