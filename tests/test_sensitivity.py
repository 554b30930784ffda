"""ms.sensitivity and ms.tipping_point (multiple imputation of a fit_trial analysis).

Checks against the simulation truth and against exact algebra (the comparison with R's rbmi
is in ``test_sensitivity_rbmi.py``):

* MAR imputation reproduces the MMRM estimate: on a 300-person simulated trial with MAR
  dropout (about 40 % gone by the last visit), the pooled MI estimate equals the primary
  MMRM estimate within 3.5 Monte Carlo standard errors sqrt(B/M) plus 1 % of the MMRM SE
  (the complete-data ANCOVA vs REML MMRM difference, measured ≤ 0.1 % of the SE at a visit
  without missing data).
* Jump to reference: J2R − MAR per imputation (same draws) is exactly the ANCOVA coefficient
  of −Δ(β_m) on the dropouts (1e-9); the pooled J2R estimate equals the MMRM estimate moved
  by that shift with Δ̂ of the MMRM, within 3.5 Monte Carlo SEs (+1 % of the SE); and the
  shift J2R − MAR within 3 sampling SEs of the shift computed with the true Δ.
* The complete-data analysis (per-visit ANCOVA) is the unstructured MMRM on complete data:
  estimates and Kenward–Roger/Satterthwaite df (n − p) of fit_mmrm to 1e-6 relative, the
  model-based (Satterthwaite) SE to 1e-6; KR's adjusted SE within 2 % (60 people).
* Rubin's rules and Barnard–Rubin df by hand on three imputations.
* Tipping point: estimate exactly linear in δ (common random numbers), the tipping δ
  reproduces the switch when passed back to sensitivity, same seed → same numbers whatever
  n_jobs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sensitivity_trials import mar_trial

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.imputation.api import run_imputations
from mesostats.imputation.impute import draw_parameters, imputation_means, impute_once
from mesostats.imputation.pooling import ancova, rubin
from mesostats.imputation.setup import imputation_setup

M = 100
MC_SDS = 3.5


@pytest.fixture(scope="module")
def simulated():
    study, truth = mar_trial(300, seed=3, dropout=0.07)
    trial = ms.fit_trial(study)
    return trial, truth, imputation_setup(trial)


@pytest.fixture(scope="module")
def small():
    study, _ = mar_trial(60, seed=5, dropout=0.1)
    return ms.fit_trial(study)


@pytest.fixture(scope="module")
def medium():
    study, _ = mar_trial(120, seed=6, dropout=0.1)
    return ms.fit_trial(study)


def _pooled(setup, method, n=M, seed=0):
    est, var, df = run_imputations(setup, method, n, seed, np.zeros((1, 4, setup.n_visits)))
    return est[:, 0], var[:, 0], df, rubin(est[:, 0], var[:, 0], df)


def _mmrm(trial):
    vs = trial.vs_control
    shape = (len(trial.visits), len(trial.cocktails) - 1)
    return vs["estimate"].to_numpy().reshape(shape), vs["std_error"].to_numpy().reshape(shape)


def test_mar_imputation_matches_the_mmrm_within_monte_carlo_error(simulated):
    trial, _, setup = simulated
    *_, pooled = _pooled(setup, "mar")
    est, se = _mmrm(trial)
    bound = MC_SDS * np.sqrt(pooled["between"] / M) + 0.01 * se
    assert np.all(np.abs(pooled["estimate"] - est) <= bound), (pooled["estimate"] - est) / se
    # the pooled SE is the MMRM's within a few per cent (the imputation loses nothing)
    assert_allclose(pooled["std_error"], se, rtol=0.06)
    table = ms.sensitivity(trial, n_imputations=M)
    assert list(table.columns) == [
        "contrast", "visit", "estimate", "std_error", "df", "p_value", "ci_lower", "ci_upper"
    ]  # fmt: skip
    assert_array_equal(table[["contrast", "visit"]], trial.vs_control[["contrast", "visit"]])
    assert_allclose(table["estimate"].to_numpy(), pooled["estimate"].reshape(-1), rtol=1e-12)


def _dropout_coefficients(setup, v):
    """c[k, j]: ANCOVA coefficient of arm k (vs control) at visit v of the indicator of arm-j
    people missing at v (the last visit: missing there = after dropout)."""
    K = len(setup.cocktails)
    ind = np.stack(
        [((setup.arm == j) & ~setup.observed[:, v]).astype(float) for j in range(1, K)]
    )  # (K-1, n)
    grid = np.zeros((K - 1, setup.n, setup.n_visits))
    grid[:, :, v] = ind
    coef, _, _ = ancova(grid, setup.arm, setup.baseline, K)
    return coef[:, v, :].T  # (k, j)


def test_jump_to_reference_shift_is_exact_for_each_imputation(simulated):
    _, _, setup = simulated
    v = setup.n_visits - 1
    n = 10
    mar, *_ = _pooled(setup, "mar", n=n)
    j2r, *_ = _pooled(setup, "jump_to_reference", n=n)
    c = _dropout_coefficients(setup, v)
    for m, child in enumerate(np.random.SeedSequence(0).spawn(n)):
        beta, _ = draw_parameters(setup, np.random.default_rng(child))
        first = [np.flatnonzero(setup.arm == j)[0] for j in range(1, len(setup.cocktails))]
        delta = (setup.X_own[first, v] - setup.X_ref[first, v]) @ beta  # Δ_j(β_m)
        assert_allclose(j2r[m, v] - mar[m, v], -c @ delta, rtol=1e-9, atol=1e-9)


def test_jump_to_reference_moves_the_effect_by_the_expected_amount(simulated):
    trial, truth, setup = simulated
    v = setup.n_visits - 1
    *_, j2r = _pooled(setup, "jump_to_reference")
    mmrm, _ = _mmrm(trial)
    c = _dropout_coefficients(setup, v)
    expected = mmrm[v] - c @ mmrm[v]
    mc = np.sqrt(j2r["between"][v] / M)
    assert np.all(np.abs(j2r["estimate"][v] - expected) <= MC_SDS * mc + 0.01 * j2r["std_error"][v])
    # against the truth: the shift J2R − MAR is −c·Δ; with the true Δ it differs from the
    # one observed by c·(Δ̂ − Δ) (sampling error, bounded by Σ_j |c_kj| SE_j) plus MC error
    _, _, _, mar = _pooled(setup, "mar")
    true = np.array([truth["effects"][a][5] for a in setup.cocktails[1:]])
    _, se = _mmrm(trial)
    shift = j2r["estimate"][v] - mar["estimate"][v]
    bound = 3 * np.abs(c) @ se[v] + MC_SDS * np.sqrt(j2r["between"][v] / M)
    assert np.all(np.abs(shift - (-c @ true)) <= bound), (shift, -c @ true, bound)
    # towards the control: each effect is smaller than under MAR
    assert np.all(j2r["estimate"][v] < mmrm[v])


def test_complete_data_ancova_is_the_unstructured_mmrm(small):
    setup = imputation_setup(small)
    completed = impute_once(setup, "mar", np.random.default_rng(1))
    est, var, df = ancova(completed, setup.arm, setup.baseline, len(setup.cocktails))
    people = small.model.problem.subject_ids.astype(str)
    frame = pd.DataFrame(
        {
            "subject_id": np.repeat(people, setup.n_visits),
            "visit": pd.Categorical(
                np.tile([str(v) for v in setup.visits], setup.n),
                categories=[str(v) for v in setup.visits],
            ),
            "cocktail": pd.Categorical(
                np.repeat(np.asarray(setup.cocktails)[setup.arm], setup.n_visits),
                categories=list(setup.cocktails),
            ),
            "baseline": np.repeat(setup.baseline, setup.n_visits),
            "chg": completed.reshape(-1),
        }
    )
    for df_method in ("kenward-roger", "satterthwaite"):
        fit = ms.fit_mmrm(small.formula, frame, df=df_method)
        means = ms.marginal_means(fit, "cocktail", by="visit")
        vs = ms.contrasts(means, "trt.vs.ctrl", ref=setup.cocktails[0], adjust="none")
        assert_allclose(vs["estimate"].to_numpy(), est.reshape(-1), rtol=1e-6)
        assert_allclose(vs["df"].to_numpy(), df, rtol=1e-6)
        if df_method == "satterthwaite":  # the model-based SE; KR's adjusted one is ~1 % off
            assert_allclose(vs["std_error"].to_numpy(), np.sqrt(var).reshape(-1), rtol=1e-6)
        else:
            assert_allclose(vs["std_error"].to_numpy(), np.sqrt(var).reshape(-1), rtol=0.02)


def test_rubin_total_variance_and_barnard_rubin_df_by_hand():
    Q = np.array([1.0, 2.0, 4.0])
    U = np.array([0.5, 0.6, 0.7])
    out = rubin(Q, U, 20.0)
    # by hand: Q̄ = 7/3, Ū = 0.6, B = ((4/3)² + (1/3)² + (5/3)²)/2 = 7/3,
    # T = 0.6 + (4/3)(7/3) = 0.6 + 28/9, λ = (28/9)/T, ν_old = 2/λ², ν_obs = 21/23·20·(1 − λ)
    T = 0.6 + 28 / 9
    lam = (28 / 9) / T
    nu = 1 / (1 / (2 / lam**2) + 1 / (21 / 23 * 20 * (1 - lam)))
    assert_allclose(out["estimate"], 7 / 3, rtol=1e-14)
    assert_allclose(out["between"], 7 / 3, rtol=1e-14)
    assert_allclose(out["std_error"], np.sqrt(T), rtol=1e-14)
    assert_allclose(out["df"], nu, rtol=1e-14)
    assert_allclose(out["df"], 1.449054, rtol=1e-6)  # the same by a calculator
    # no between-imputation variance: ν_obs at λ = 0, (ν_com + 1)/(ν_com + 3)·ν_com (as rbmi's
    # rubin_df), the same as the limit B → 0 that rounding noise in B gives
    assert_allclose(rubin(np.ones(3), U, 20.0)["df"], 21 / 23 * 20, rtol=1e-14)
    assert_allclose(rubin(np.array([1.0, 1.0, 1.0 + 1e-15]), U, 20.0)["df"], 21 / 23 * 20)


def test_reference_methods_keep_the_control_arm_and_visits_before_dropout(simulated):
    _, _, setup = simulated
    beta = setup.problem.beta(setup.theta)
    mar = imputation_means(setup, beta, "mar")
    before = ~setup.after_dropout
    dropped = setup.after_dropout.any(axis=1)
    for method in ("jump_to_reference", "copy_increments"):
        m = imputation_means(setup, beta, method)
        assert_allclose(m[before], mar[before], rtol=1e-14)
    for method in ("jump_to_reference", "copy_reference", "copy_increments"):
        m = imputation_means(setup, beta, method)
        control = setup.arm == 0
        assert_allclose(m[control | ~dropped], mar[control | ~dropped], rtol=1e-12)


def test_tipping_point_is_linear_in_delta_and_its_delta_reproduces_the_switch(medium):
    small = medium
    table = ms.tipping_point(small, n_imputations=20)
    assert list(table.columns) == ["contrast", "delta", "estimate", "std_error", "p_value", "tips"]
    for _, part in table.groupby("contrast"):
        est = part["estimate"].to_numpy()
        assert_allclose(np.diff(est, 2), 0.0, atol=1e-9 * np.abs(est).max())
        assert part["delta"].iloc[0] == 0.0
        assert part["tips"].sum() <= 1
    point = table.groupby("contrast").cumcount()
    tipped = table[table["tips"]]
    assert len(tipped), table
    tip = tipped.iloc[0]
    g = int(point[tipped.index[0]])
    for at_point, significant in ((g, False), (g - 1, True)):
        at = table[point == at_point]
        cocktails = at["contrast"].str.split(" - ").str[0]
        refit = ms.sensitivity(
            small, n_imputations=20, delta=dict(zip(cocktails, at["delta"], strict=True))
        )
        hit = refit[
            (refit["contrast"] == tip["contrast"]) & (refit["visit"] == small.primary_visit)
        ]
        row = at[at["contrast"] == tip["contrast"]]
        assert_allclose(hit["p_value"].to_numpy(), row["p_value"].to_numpy(), rtol=1e-10)
        assert_allclose(hit["estimate"].to_numpy(), row["estimate"].to_numpy(), rtol=1e-10)
        assert bool(hit["p_value"].iloc[0] < 0.05) == significant


@pytest.mark.slow
def test_same_seed_same_numbers_whatever_n_jobs(small):
    one = ms.sensitivity(small, method="copy_increments", n_imputations=12, seed=4)
    two = ms.sensitivity(small, method="copy_increments", n_imputations=12, seed=4, n_jobs=2)
    pd.testing.assert_frame_equal(one, two)
    import distributed  # the optional extra, installed for the tests (as test_power)

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = ms.sensitivity(
            small, method="copy_increments", n_imputations=12, seed=4, client=client
        )
    pd.testing.assert_frame_equal(one, on_dask)
    other = ms.sensitivity(small, method="copy_increments", n_imputations=12, seed=5)
    assert not np.allclose(one["estimate"], other["estimate"])


def test_errors_say_what_to_pass(small):
    with pytest.raises(ModelSpecError, match="method must be one of"):
        ms.sensitivity(small, method="locf")
    with pytest.raises(ModelSpecError, match="at least 2"):
        ms.sensitivity(small, n_imputations=1)
    with pytest.raises(ModelSpecError, match="one per scheduled visit"):
        ms.sensitivity(small, delta=[1.0, 2.0], n_imputations=2)
    with pytest.raises(ModelSpecError, match="neither scheduled visits"):
        ms.sensitivity(small, delta={99: 1.0}, n_imputations=2)
    with pytest.raises(ModelSpecError, match=r"result of mesostats\.fit_trial"):
        ms.sensitivity(small.model)
