"""Tests of mesostats.planning: calibration at zero effect, agreement with the closed-form power
of a t-test, reproducibility across n_jobs / backends / grid order, failure accounting
(raising and non-converging fits, workers that die), the sample-size answer, the plot and
the ``mesostats power`` subcommand.

Statistical checks use Monte Carlo tolerances: |simulated − expected| < 3 Monte Carlo SE.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.planning import (
    POWER_COLUMNS,
    FaultInjection,
    SampleSize,
    plot_power,
    power,
    sample_size,
    simulation_seed,
)
from mesostats.simulate import simulate_study

# small, fast trials: one site (no site term), random intercept and slope per subject
SMALL = {"n_sites": 1, "n_sessions": 6}
NULL_MINOXIDIL = {"ingredient_slopes": {"minoxidil": 0.0}}


def simulations(table: pd.DataFrame) -> pd.DataFrame:
    return table.trials.simulations


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


def test_simulation_seed_is_the_spawned_child_of_child() -> None:
    """The stream of trial j at size n is SeedSequence(seed).spawn(n+1)[n].spawn(j+1)[j]."""
    spawned = np.random.SeedSequence(11).spawn(41)[40].spawn(8)[7]
    direct = simulation_seed(11, 40, 7)
    assert direct.spawn_key == spawned.spawn_key == (40, 7)
    assert_allclose(direct.generate_state(8), spawned.generate_state(8), rtol=0)
    assert not np.array_equal(
        simulation_seed(11, 40, 7).generate_state(4), simulation_seed(11, 41, 7).generate_state(4)
    )


def test_rows_do_not_depend_on_grid_order_or_other_sizes() -> None:
    both = power([20, 16], n_sims=3, seed=5, **SMALL)
    alone = power(16, n_sims=3, seed=5, **SMALL)
    assert both["n_subjects"].tolist() == [20, 16]  # order as given
    sims_both = simulations(both)
    sims_alone = simulations(alone)
    pd.testing.assert_frame_equal(
        sims_both[sims_both["n_subjects"] == 16].reset_index(drop=True), sims_alone
    )
    pd.testing.assert_frame_equal(both.iloc[[1]].reset_index(drop=True), alone)


# --------------------------------------------------------------------------------------------
# Statistical checks
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_zero_effect_rejection_rate_is_alpha_within_monte_carlo_error() -> None:
    """Calibration: with no minoxidil effect the analysis model rejects 5 % of trials.

    48 subjects (12 per cocktail), 8 visits, one site. (With 6 per cocktail and 6 visits the
    model-based SE is ~15 % too small and the rate is 8–10 %: a small-sample property of
    Wald/Satterthwaite tests that the power table then reports faithfully.)
    """
    n_sims, alpha = 200, 0.05
    table = power(
        48,
        effects=NULL_MINOXIDIL,
        n_sims=n_sims,
        alpha=alpha,
        seed=2024,
        n_jobs=2,
        n_sites=1,
        n_sessions=8,
    )
    row = table.iloc[0]
    n_ok = n_sims - row["n_failed"]
    assert row["n_failed"] <= 0.02 * n_sims, table.trials.failures[:3]
    mc_se_null = math.sqrt(alpha * (1 - alpha) / n_ok)
    assert abs(row["power"] - alpha) < 3 * mc_se_null, (row["power"], mc_se_null)

    # the table's own Monte Carlo SE and exact interval, recomputed
    k = int(row["n_rejected"])
    assert row["power"] == k / n_ok
    assert_allclose(row["mc_se"], math.sqrt(row["power"] * (1 - row["power"]) / n_ok))
    exact = stats.binomtest(k, int(n_ok)).proportion_ci(0.95, method="exact")
    assert_allclose([row["ci_lower"], row["ci_upper"]], [exact.low, exact.high], rtol=1e-10)
    # estimates centre on the true effect 0 (unbiased within 3 SE of their mean)
    est = simulations(table)["estimate"].dropna()
    assert abs(est.mean()) < 3 * est.std() / math.sqrt(len(est))


def _closed_form_power(
    n_subjects: int, effect: float, *, intercept_sd: float, residual_sd: float, alpha: float
) -> tuple[float, float]:
    """Power and standard error of the t-test of week:minoxidil in the random-intercept
    model, from the design and the variance components (GLS with known variances).

    With 4 cocktails (P; A = minoxidil + biotin; B = dutasteride + biotin; C = all three) and
    4 slope parameters the arm slopes are saturated: week:minoxidil = s_C − s_B. Two
    independent sources inform the arm slopes (balanced compound-symmetry design):

    * within subjects: each arm's pooled regression slope, variance σ²/(n_arm·S) with
      S = E[Σ_j (w_ij − w̄_i)²] over the post-baseline visits;
    * between subjects: the arms share one intercept (randomised), so arm differences of the
      baseline-adjusted subject means, variance (τ² + σ²/k)/n_arm per arm, estimate the slope
      contrasts times the mean week w̄. τ² = σ_u²σ²/(σ_u² + σ²) is the random-intercept
      variance left after adjusting for the baseline (itself σ_u-plus-noise).

    For a contrast c ⊥ 1 of arm slopes the information adds:
    Var(s_C − s_B) = 2 / (n_arm·S/σ² + n_arm·w̄²/(τ² + σ²/k)). The test is a t-test with
    N − n − 4 df; power from the noncentral t. S and w̄ are averages over the design's
    jittered visit schedule, taken from a large simulated study (outcomes not used).
    """
    design = simulate_study(2000, 8, seed=99, n_sites=1, dropout=0.0, missing_rate=0.0)
    weeks = design.outcome_table("hair_density")
    post = weeks[weeks["week"] > 0]
    mean_week = post.groupby("subject_id")["week"].transform("mean")
    within_ss = float(((post["week"] - mean_week) ** 2).groupby(post["subject_id"]).sum().mean())
    w_bar = float(mean_week.mean())
    k = int(post.groupby("subject_id").size().iloc[0])
    n_arm = n_subjects / 4
    var_e, var_u = residual_sd**2, intercept_sd**2
    tau2 = var_u * var_e / (var_u + var_e)
    information = n_arm * within_ss / var_e + n_arm * w_bar**2 / (tau2 + var_e / k)
    se = math.sqrt(2.0 / information)
    df = n_subjects * k - n_subjects - 4
    crit = stats.t.ppf(1 - alpha / 2, df)
    ncp = effect / se
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)), se


@pytest.mark.slow
def test_random_intercept_power_matches_closed_form_t_test() -> None:
    n_subjects, effect, alpha, n_sims = 40, 0.35, 0.05, 200
    effects = {
        "ingredient_slopes": {"minoxidil": effect},
        "slope_sd": 0.0,
        "intercept_slope_corr": 0.0,
        "intercept_sd": 22.0,
        "residual_sd": 7.0,
    }
    expected, se = _closed_form_power(
        n_subjects, effect, intercept_sd=22.0, residual_sd=7.0, alpha=alpha
    )
    assert 0.3 < expected < 0.9  # a sensitive region of the power curve
    table = power(
        n_subjects,
        effects=effects,
        n_sims=n_sims,
        alpha=alpha,
        seed=7,
        n_jobs=2,
        n_sites=1,
        dropout=0.0,
        missing_rate=0.0,
        random_slope=False,
    )
    row = table.iloc[0]
    assert row["n_failed"] == 0, table.trials.failures[:3]
    mc_se = math.sqrt(expected * (1 - expected) / n_sims)
    assert abs(row["power"] - expected) < 3 * mc_se, (row["power"], expected, mc_se)
    sims = simulations(table)
    # the model's standard errors match the closed form (σ is estimated: a few % spread),
    # and the estimates' spread matches it within Monte Carlo error of an SD (≈ 5 % at 200)
    assert_allclose(sims["std_error"].mean(), se, rtol=0.03)
    assert_allclose(sims["estimate"].std(), se, rtol=3 / math.sqrt(2 * (n_sims - 1)))
    assert abs(sims["estimate"].mean() - effect) < 3 * se / math.sqrt(n_sims)


# --------------------------------------------------------------------------------------------
# Reproducibility across workers and backends
# --------------------------------------------------------------------------------------------

REPRO = {"n_sims": 4, "seed": 3, "chunk_size": 2, **SMALL}


@pytest.fixture(scope="module")
def in_process() -> pd.DataFrame:
    return power([16, 20], **REPRO)


def test_same_seed_same_table_for_one_and_two_joblib_workers(in_process: pd.DataFrame) -> None:
    two = power([16, 20], n_jobs=2, **REPRO)
    pd.testing.assert_frame_equal(two, in_process)
    pd.testing.assert_frame_equal(two.trials.simulations, in_process.trials.simulations)
    assert list(in_process.columns) == POWER_COLUMNS
    assert in_process["n_sims"].tolist() == [4, 4]


def test_different_seed_gives_different_trials(in_process: pd.DataFrame) -> None:
    other = power(16, **{**REPRO, "seed": 4})
    first = simulations(in_process)
    assert not np.allclose(
        simulations(other)["estimate"], first[first["n_subjects"] == 16]["estimate"]
    )


@pytest.fixture(scope="module")
def dask_client():  # type: ignore[no-untyped-def]
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_same_seed_same_table_on_dask_local_cluster(in_process: pd.DataFrame, dask_client) -> None:  # type: ignore[no-untyped-def]
    on_dask = power([16, 20], backend="dask", client=dask_client, **REPRO)
    pd.testing.assert_frame_equal(on_dask, in_process)
    pd.testing.assert_frame_equal(on_dask.trials.simulations, in_process.trials.simulations)


@pytest.mark.slow
def test_dask_worker_killed_once_is_retried_and_results_kept(
    in_process: pd.DataFrame, dask_client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "killed"
    faults = FaultInjection(kill=frozenset({(16, 2)}), kill_marker=str(marker))
    table = power([16, 20], backend="dask", client=dask_client, _faults=faults, **REPRO)
    assert marker.exists()  # a worker really died
    pd.testing.assert_frame_equal(table, in_process)
    assert table.trials.failures == []


@pytest.mark.slow
def test_joblib_worker_killed_once_is_retried_and_results_kept(
    in_process: pd.DataFrame, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "killed"
    faults = FaultInjection(kill=frozenset({(20, 1)}), kill_marker=str(marker))
    table = power([16, 20], n_jobs=2, _faults=faults, **REPRO)
    assert marker.exists()
    pd.testing.assert_frame_equal(table, in_process)


@pytest.mark.slow
def test_dask_chunk_that_always_kills_its_worker_counts_as_failed(
    in_process: pd.DataFrame, dask_client
) -> None:  # type: ignore[no-untyped-def]
    faults = FaultInjection(kill=frozenset({(16, 2)}))  # chunk (16: trials 2, 3) dies always
    # allowed-failures=1: two deaths in the crowd, then retries=1: one more death alone
    table = power([16, 20], backend="dask", client=dask_client, retries=1, _faults=faults, **REPRO)
    assert table["n_failed"].tolist() == [2, 0]
    failures = table.trials.failures
    assert [(f["n_subjects"], f["simulation"]) for f in failures] == [(16, 2), (16, 3)]
    assert all("worker process died" in f["reason"] for f in failures)
    # the other chunks are kept exactly
    pd.testing.assert_frame_equal(table.iloc[[1]], in_process.iloc[[1]])
    ok = simulations(table).iloc[:2]
    # the same trials: estimates agree to the optimiser's precision (a dask worker's BLAS may
    # round the last digit differently, which a near-singular 16-person fit can carry to ~1e-6)
    np.testing.assert_allclose(
        ok["estimate"].to_numpy(),
        simulations(in_process)["estimate"].iloc[:2].to_numpy(),
        rtol=1e-5,
    )
    assert table["power"].iloc[0] == simulations(in_process)["rejected"][:2].sum() / 2


# --------------------------------------------------------------------------------------------
# Failure accounting
# --------------------------------------------------------------------------------------------


def test_failing_analyses_are_counted_with_their_reasons(in_process: pd.DataFrame) -> None:
    faults = FaultInjection(fail=frozenset({(16, 0), (16, 3)}))
    table = power([16, 20], _faults=faults, **REPRO)
    assert table["n_failed"].tolist() == [2, 0]
    assert table["n_sims"].tolist() == [4, 4]
    reasons = table.trials.failures
    assert [(f["n_subjects"], f["simulation"]) for f in reasons] == [(16, 0), (16, 3)]
    assert all("RuntimeError: injected analysis failure" in f["reason"] for f in reasons)
    clean = simulations(in_process)
    kept = clean[(clean["n_subjects"] == 16) & clean["simulation"].isin([1, 2])]
    assert table["n_rejected"].iloc[0] == int(kept["rejected"].sum())
    assert table["power"].iloc[0] == kept["rejected"].mean()  # denominator: 2 fits that worked
    assert_allclose(
        table["mc_se"].iloc[0],
        math.sqrt(kept["rejected"].mean() * (1 - kept["rejected"].mean()) / 2),
    )


def test_fits_that_do_not_converge_are_counted_as_failed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    power_module = importlib.import_module("mesostats.planning.trials")

    real = power_module._tested_effect
    calls = {"n": 0}

    def every_other_unconverged(study, plan):  # type: ignore[no-untyped-def]
        effect = real(study, plan)
        calls["n"] += 1
        if calls["n"] % 2 == 0:  # the probe is call 1; then trials 1 and 3 of 0..3
            return power_module._TestedEffect(
                effect.estimate, effect.std_error, effect.p_value, False, False, ("theta stuck",)
            )
        return effect

    monkeypatch.setattr(power_module, "_tested_effect", every_other_unconverged)
    table = power(16, n_sims=4, seed=3, **SMALL)
    assert table["n_failed"].tolist() == [2]
    reasons = [f["reason"] for f in table.trials.failures]
    assert reasons == ["not converged: theta stuck"] * 2


def test_all_trials_failing_gives_missing_power_not_zero() -> None:
    faults = FaultInjection(fail=frozenset({(16, 0), (16, 1)}))
    table = power(16, n_sims=2, seed=3, _faults=faults, **SMALL)
    row = table.iloc[0]
    assert row["n_failed"] == 2
    assert np.isnan(row["power"]) and np.isnan(row["ci_lower"]) and np.isnan(row["mc_se"])


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_subjects": 3}, r"n_subjects must be ≥ 4 .* got \[3\]"),
        ({"n_subjects": [40, 2, 1]}, r"got \[2, 1\]"),
        ({"n_subjects": []}, "n_subjects is empty"),
        ({"n_subjects": [40, 40]}, r"lists \[40\] more than once"),
        ({"n_subjects": 40.5}, "whole numbers"),
        ({"alpha": 0.0}, r"alpha must lie strictly between 0 and 1 .* got 0.0"),
        ({"alpha": 1.5}, r"alpha must lie strictly between 0 and 1 .* got 1.5"),
        ({"n_sims": 0}, "n_sims must be a whole number ≥ 1, got 0"),
        ({"seed": -1}, "seed must be a whole number ≥ 0"),
        ({"n_jobs": 0}, "n_jobs must be ≥ 1, or -1"),
        ({"backend": "spark"}, r"backend must be one of \['loky', 'dask'\], got 'spark'"),
        ({"chunk_size": 0}, "chunk_size must be a whole number ≥ 1"),
        ({"conf_level": 95}, "conf_level must lie strictly between 0 and 1"),
    ],
)
def test_bad_options_raise_model_spec_error(kwargs: dict, match: str) -> None:
    args = {"n_subjects": 40, **kwargs}
    with pytest.raises(ModelSpecError, match=match):
        power(args.pop("n_subjects"), n_sims=args.pop("n_sims", 2), **args)


def test_unknown_test_ingredient_lists_the_available_ones() -> None:
    with pytest.raises(
        ModelSpecError,
        match=r"test='retinol' is not an active ingredient .* available: biotin, dutasteride, "
        r"minoxidil",
    ):
        power(16, n_sims=2, test="retinol", **SMALL)


def test_unknown_effects_key_and_outcome_raise_before_any_trial() -> None:
    with pytest.raises(ModelSpecError, match="effects has an unknown key 'slope_mean'"):
        power(16, n_sims=2, effects={"slope_mean": 1.0}, **SMALL)
    with pytest.raises(ModelSpecError, match="outcome 'hair_length' is not an outcome column"):
        power(16, n_sims=2, outcome="hair_length", **SMALL)


def test_aliased_ingredients_in_the_plan_raise_before_any_trial() -> None:
    cocktails = {
        "P": {"saline": (0.9, "%")},
        "A": {"minoxidil": (0.5, "%"), "biotin": (5.0, "mg/mL")},
    }
    with pytest.raises(
        ModelSpecError,
        match=r"(?s)probe trial of the planned design \(n_subjects=16, .*\) cannot be analysed: .*"
        r"biotin and minoxidil always come together",
    ):
        power(16, n_sims=2, cocktails=cocktails, **SMALL)


def test_kill_hook_refused_in_process() -> None:
    with pytest.raises(ModelSpecError, match=r"needs worker processes \(n_jobs ≥ 2\)"):
        power(16, n_sims=2, _faults=FaultInjection(kill=frozenset({(16, 0)})), **SMALL)


def test_dask_backend_without_distributed_says_how_to_install(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'mesostats\[distributed\]'"):
        power(16, n_sims=1, backend="dask", **SMALL)


def test_dask_client_of_wrong_type_is_refused() -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ModelSpecError, match=r"client must be a dask\.distributed\.Client"):
        power(16, n_sims=1, backend="dask", client=42, **SMALL)


# --------------------------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------------------------


def test_side_effect_power_tests_the_log_odds_ratio() -> None:
    effects = {"event_log_or": {"minoxidil": 2.0}}
    table = power(40, n_sims=3, seed=1, outcome="side_effect", effects=effects, n_sites=1)
    sims = simulations(table)
    assert table["n_failed"].iloc[0] == 0, table.trials.failures
    # estimates are log odds ratios near the true 2.0 (each within 4 of its SEs)
    assert (np.abs(sims["estimate"] - 2.0) < 4 * sims["std_error"]).all()
    settings = table.trials.settings
    assert settings["outcome"] == "side_effect" and settings["seed"] == 1
    assert settings["effects"] == effects and settings["effects"] is not effects  # a copy


# --------------------------------------------------------------------------------------------
# Sample size and plot
# --------------------------------------------------------------------------------------------


def _grid_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n_subjects": [80, 40, 120, 160],
            "power": [0.78, 0.45, 0.86, 0.95],
            "ci_lower": [0.72, 0.38, 0.81, 0.91],
            "ci_upper": [0.83, 0.52, 0.90, 0.97],
        }
    )


def test_sample_size_is_smallest_grid_size_reaching_target_with_mc_range() -> None:
    answer = sample_size(_grid_table(), target=0.8)
    assert isinstance(answer, SampleSize)
    assert answer.n_subjects == 120
    assert (answer.power, answer.ci_lower, answer.ci_upper) == (0.86, 0.81, 0.90)
    assert answer.n_subjects_possible == 80  # its interval reaches 0.8
    assert answer.n_subjects_sure == 120
    assert "120 subjects reach power 0.860" in str(answer)
    assert "between 80 and 120" in str(answer)


def test_sample_size_when_the_grid_never_reaches_target() -> None:
    answer = sample_size(_grid_table(), target=0.99)
    assert answer.n_subjects is None and np.isnan(answer.power)
    assert str(answer) == (
        "No sample size in the grid reaches power 0.99 (largest 160); extend the grid upwards."
    )


def test_sample_size_bad_input() -> None:
    with pytest.raises(ModelSpecError, match="target power must lie strictly between 0 and 1"):
        sample_size(_grid_table(), target=80)
    with pytest.raises(ModelSpecError, match=r"table lacks columns \['ci_lower', 'ci_upper'\]"):
        sample_size(_grid_table()[["n_subjects", "power"]])


def test_plot_power_draws_curve_interval_and_target() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _grid_table()
    fig, ax = plt.subplots()
    out = plot_power(table, target=0.8, ax=ax)
    assert out is ax
    curve = ax.lines[0]
    assert_allclose(curve.get_xdata(), [40, 80, 120, 160])
    assert_allclose(curve.get_ydata(), [0.45, 0.78, 0.86, 0.95])
    target_line = ax.lines[1]
    assert_allclose(target_line.get_ydata(), [0.8, 0.8])
    assert_allclose(ax.lines[2].get_xdata(), [120, 120])  # the sample-size marker
    assert ax.get_xlabel() == "subjects randomised"
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Progress bar and CLI
# --------------------------------------------------------------------------------------------


def test_progress_bar_on_request_and_off_when_not_a_terminal(capsys) -> None:  # type: ignore[no-untyped-def]
    power(16, n_sims=2, seed=3, progress=True, **SMALL)
    assert "power: 100%" in capsys.readouterr().err
    power(16, n_sims=2, seed=3, progress=None, **SMALL)
    assert capsys.readouterr().err == ""


def _cli(argv: list[str]) -> int:
    from mesostats.cli.power import add_power as add_power_subcommand

    parser = argparse.ArgumentParser(prog="mesostats")
    sub = parser.add_subparsers(dest="command", required=True)
    add_power_subcommand(sub)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_cli_power_json_matches_the_function(capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["power", "--subjects", "16", "20", "--sims", "3", "--seed", "2", "--jobs", "1"]
    argv += ["--sites", "1", "--sessions", "6", "--effect", "0.5", "--json"]
    assert _cli(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    direct = power(
        [16, 20],
        n_sims=3,
        seed=2,
        effects={"ingredient_slopes": {"minoxidil": 0.5}},
        **SMALL,
    )
    got = pd.DataFrame(payload["power"])
    assert got["n_subjects"].tolist() == [16, 20]
    assert_allclose(got["power"], direct["power"])
    assert got["n_failed"].tolist() == direct["n_failed"].tolist()
    assert payload["settings"]["seed"] == 2
    assert payload["sample_size"]["target"] == 0.8


def test_cli_power_text_output(capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["power", "--subjects", "16", "--sims", "2", "--sites", "1", "--sessions", "6"]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Power to detect the minoxidil effect on hair_density change per week")
    assert "n_subjects" in out and "mc_se" in out


@pytest.fixture
def cli_with_power():  # type: ignore[no-untyped-def]
    """mesostats.cli, whose COMMANDS include the power subcommand."""
    from mesostats import cli

    assert "power" in dict(cli.COMMANDS)
    return cli


def test_cli_main_power_unknown_ingredient_is_a_usage_error(cli_with_power, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["power", "--subjects", "16", "--sims", "2", "--sites", "1", "--test", "retinol"]
    assert cli_with_power.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mesostats: error: test='retinol' is not an active ingredient")
    assert "available: biotin, dutasteride, minoxidil" in err


def test_cli_main_power_runs_and_prints_the_sample_size(cli_with_power, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["power", "--subjects", "16", "--sims", "2", "--sites", "1", "--sessions", "6"]
    assert cli_with_power.main([*argv, "--target", "0.3"]) == 0
    out = capsys.readouterr().out.splitlines()
    expected = sample_size(power(16, n_sims=2, **SMALL), target=0.3)
    assert out[-1] == str(expected)


def test_cli_power_rejects_too_few_subjects(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit, match=r"^2$"):  # argparse: exit code 2 for a usage error
        _cli(["power", "--subjects", "3"])
    assert "expected a number ≥ 4, got 3" in capsys.readouterr().err


def test_ms_power_is_callable_whatever_was_imported_first(in_process: pd.DataFrame) -> None:
    """``mesostats.power`` is also a submodule; after importing it, ms.power still runs."""
    table = ms.power([16, 20], **REPRO)
    pd.testing.assert_frame_equal(table, in_process)


def test_a_programming_error_in_the_analysis_is_raised_not_counted(monkeypatch) -> None:
    """A TypeError/KeyError is a bug: it surfaces as a traceback, not as 'all trials failed'."""
    trials = importlib.import_module("mesostats.planning.trials")

    def broken(study, plan):  # type: ignore[no-untyped-def]
        raise KeyError("no_such_column")

    monkeypatch.setattr(trials, "_tested_effect", broken)
    with pytest.raises(KeyError, match="no_such_column"):
        power(16, n_sims=2, seed=3, **SMALL)


def test_a_programming_error_in_a_trial_is_raised_not_counted(monkeypatch) -> None:
    """The probe passes; a later trial's TypeError still propagates out of power()."""
    trials = importlib.import_module("mesostats.planning.trials")
    real = trials._tested_effect
    calls = {"n": 0}

    def breaks_after_probe(study, plan):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 1:
            raise TypeError("unsupported operand (test)")
        return real(study, plan)

    monkeypatch.setattr(trials, "_tested_effect", breaks_after_probe)
    with pytest.raises(TypeError, match="unsupported operand"):
        power(16, n_sims=2, seed=3, **SMALL)
