"""The analytic Hessian of the profiled deviance (mixed.lmm.hessian) and the Newton optimiser.

Compared against: the blocked factorisation's deviance and analytic gradient
(ProfiledDeviance.value_and_gradient; agreement to rounding, rtol 1e-9), central differences of
that gradient for the Hessian (rtol 1e-6: the differences' own error is ~1e-8), and the
L-BFGS-B path the optimiser takes without the dense Hessian (same optimum: logLik not lower
by more than 1e-9, θ within 1e-5, β and SEs within rtol 1e-6, Satterthwaite df within rtol
1e-4 — the former finite-difference Hessian's own error).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from mixed_checks import load_csv
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.mixed.design import build_design
from mesostats.mixed.finite_diff import hessian_from_gradient, relative_steps
from mesostats.mixed.lmm import gradient as gradient_module
from mesostats.mixed.lmm.block_hessian import BlockHessian
from mesostats.mixed.lmm.gradient import ProfiledDeviance
from mesostats.mixed.lmm.hessian import DenseHessian


def _sleepstudy() -> pd.DataFrame:
    data = load_csv("sleepstudy.csv")
    data["Subject"] = data["Subject"].astype(str)
    return data


def _penicillin() -> pd.DataFrame:
    data = load_csv("penicillin.csv")
    for col in ("plate", "sample"):
        data[col] = data[col].astype(str)
    return data


def _nested() -> pd.DataFrame:
    """60 people in 4 sites, 6 visits: (1 + week | person) + (1 | site)."""
    rng = np.random.default_rng(7)
    person = np.repeat(np.arange(60), 6)
    site = person % 4
    week = np.tile(np.arange(6.0), 60)
    b0 = rng.normal(0, 2.0, 60)[person]
    b1 = rng.normal(0, 0.5, 60)[person]
    s0 = rng.normal(0, 1.0, 4)[site]
    y = 10 + 0.3 * week + b0 + b1 * week + s0 + rng.normal(0, 1.0, len(person))
    return pd.DataFrame(
        {"y": y, "week": week, "person": person.astype(str), "site": site.astype(str)}
    )


def _three_slopes() -> pd.DataFrame:
    """30 people × 8 visits, three random effects per person, crossed 3-site and 5-batch factors."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 8)
    t = np.tile(np.arange(8.0), 30)
    x = rng.normal(size=g.size)
    y = (
        1.0
        + t
        + rng.normal(0, 2, 30)[g]
        + rng.normal(0, 0.5, 30)[g] * t
        + rng.normal(0, 0.3, 30)[g] * x
        + rng.normal(0, 1, 3)[g % 3]
        + rng.normal(size=g.size)
    )
    return pd.DataFrame(
        {
            "y": y,
            "t": t,
            "x": x,
            "g": g.astype(str),
            "s": (g % 3).astype(str),
            "b": (g % 5).astype(str),
        }
    )


CASES = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", _sleepstudy),
    "sleepstudy_uncorrelated": ("Reaction ~ Days + (Days || Subject)", _sleepstudy),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", _penicillin),
    "nested": ("y ~ week + (1 + week | person) + (1 | site)", _nested),
}


#: designs for the block Hessian only (its twin, the dense Hessian, is checked above on CASES)
BLOCK_CASES = {
    **CASES,
    "three_slopes": ("y ~ t + x + (1 + t + x | g)", _three_slopes),
    "split_and_crossed": ("y ~ t + x + (1 + t || g) + (1 + t | s) + (1 | b)", _three_slopes),
}


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
def test_block_hessian_matches_dense_hessian_and_blocked_deviance(case: str, reml: bool) -> None:
    """O(levels) Hessian (block_hessian) against the O(Q³) dense one: the same numbers to
    rounding (rtol 1e-9); its deviance against the blocked factorisation's (rtol 1e-11)."""
    formula, data = BLOCK_CASES[case]
    design = build_design(formula, data(), family="gaussian")
    problem = ProfiledDeviance(design, reml=reml)
    dense = DenseHessian(design, problem.y_shifted, reml=reml)
    block = BlockHessian(problem)
    rng = np.random.default_rng(5)
    for _ in range(3):
        theta = np.maximum(
            0.7 * design.theta_start() + 0.2 * rng.standard_normal(design.n_theta),
            design.theta_lower,
        )
        dev, grad, hess = block.evaluate(theta)
        _, grad_ref, hess_ref = dense.evaluate(theta)
        assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-9 * np.abs(grad_ref).max())
        assert_allclose(hess, hess_ref, rtol=1e-9, atol=1e-9 * np.abs(hess_ref).max())
        assert_allclose(dev, problem.value_and_gradient(theta)[0], rtol=1e-11)
        assert block.is_cached(theta) and block.evaluate(theta)[0] == dev


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_hessian_matches_blocked_gradient_and_central_differences(
    case: str, reml: bool
) -> None:
    formula, data = CASES[case]
    design = build_design(formula, data(), family="gaussian")
    problem = ProfiledDeviance(design, reml=reml)
    dense = DenseHessian(design, problem.y_shifted, reml=reml)
    rng = np.random.default_rng(3)
    for _ in range(3):
        theta = np.maximum(
            0.7 * design.theta_start() + 0.2 * rng.standard_normal(design.n_theta),
            design.theta_lower,
        )
        dev, grad, hess = dense.evaluate(theta)
        dev_ref, grad_ref = problem.value_and_gradient(theta)
        assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-9 * np.abs(grad_ref).max())
        other = theta + 1e-3
        # the dense deviance omits the constant: compare differences
        assert_allclose(
            dense.evaluate(other)[0] - dev,
            problem.value_and_gradient(other)[0] - dev_ref,
            rtol=1e-7,
            atol=1e-9,
        )
        hess_fd = hessian_from_gradient(
            lambda t: problem.value_and_gradient(t)[1], theta, relative_steps(theta, 1e-4, 0.1)
        )
        assert_allclose(hess, hess_fd, rtol=1e-6, atol=1e-6 * np.abs(hess_fd).max())
        assert_allclose(hess, hess.T, rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_newton_path_reaches_the_lbfgsb_optimum(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    formula, data = CASES[case]
    frame = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        newton = ms.fit_lmm(formula, frame)
        monkeypatch.setattr(gradient_module, "MAX_DENSE_Q", 0)
        monkeypatch.setattr(gradient_module, "MAX_BLOCK_REST", -1)
        lbfgs = ms.fit_lmm(formula, frame)
    assert newton.loglik >= lbfgs.loglik - 1e-9
    assert_allclose(newton.theta, lbfgs.theta, rtol=1e-5, atol=1e-5)
    fe_new, fe_old = newton.fixed_effects, lbfgs.fixed_effects
    assert_allclose(fe_new["estimate"], fe_old["estimate"], rtol=1e-6, atol=1e-9)
    assert_allclose(fe_new["std_error"], fe_old["std_error"], rtol=1e-6)
    assert_allclose(fe_new["df"], fe_old["df"], rtol=1e-4)
    assert newton.converged and lbfgs.converged
    assert newton.optimizer_info["method"].startswith("Newton")
    assert lbfgs.optimizer_info["method"].startswith("L-BFGS-B")


def test_convergence_warning_when_the_analytic_hessian_is_not_positive_definite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mesostats.mixed.lmm.optimise as lmm

    original = lmm.optimize.minimize

    def one_step(*args: object, **kwargs: dict[str, object]) -> object:
        kwargs["options"] = {"maxiter": 1}  # type: ignore[assignment]
        return original(*args, **kwargs)

    real = BlockHessian.evaluate

    def negative(self: BlockHessian, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        dev, grad, _ = real(self, theta)
        return dev, grad, -np.eye(theta.size)

    monkeypatch.setattr(lmm.optimize, "minimize", one_step)
    monkeypatch.setattr(BlockHessian, "evaluate", negative)
    with pytest.warns(
        ms.exceptions.ConvergenceWarning,
        match="not positive definite|Satterthwaite df may be unreliable",
    ) as record:
        fit = ms.fit_lmm("Reaction ~ Days + (Days | Subject)", _sleepstudy())
    texts = [str(w.message) for w in record]
    assert any("not positive definite (smallest eigenvalue -1" in t for t in texts)
    assert any("Satterthwaite df may be unreliable" in t for t in texts)
    assert not fit.converged


def test_crossed_moment_start_is_near_the_penicillin_optimum() -> None:
    """Several grouping factors: the least-squares moment start (random effects as fixed ones)
    lands within 1 % of the REML θ on Penicillin (24 plates × 6 samples, crossed), where lme4's
    identity start [1, 1] is 35 % and 72 % away; the fit then needs few evaluations."""
    formula, data = CASES["penicillin"]
    frame = data()
    problem = ProfiledDeviance(build_design(formula, frame, family="gaussian"), reml=True)
    start = problem.moment_start()
    fit = ms.fit_lmm(formula, frame)
    assert_allclose(start, fit.theta, rtol=1e-2)
    assert fit.converged and fit.optimizer_info["n_evaluations"] <= 6


def test_nested_moment_start_reaches_the_same_optimum_in_fewer_evaluations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """People within sites, 360 rows × 126 columns of [X Z] (the least-squares start's SVD
    would cost more than it saves): the one-way ANOVA moment start of the site intercept
    (:meth:`_nested_moment_start`) lands near the REML θ (site 12 % away, the person
    block's diagonal 3 %) where lme4's identity start is 2× away, and the fit from it reaches
    the same optimum as from lme4's start (logLik to 1e-9, θ rtol 1e-5, β rtol 1e-7, SEs and
    df rtol 1e-5) in fewer evaluations (6 against 11)."""
    formula, data = CASES["nested"]
    frame = data()
    design = build_design(formula, frame, family="gaussian")
    problem = ProfiledDeviance(design, reml=True)
    start = problem.moment_start()
    fit = ms.fit_lmm(formula, frame)
    assert not np.array_equal(start, design.theta_start())
    assert_allclose(start[[0, 2]], fit.theta[[0, 2]], rtol=0.05)
    assert_allclose(start[3], fit.theta[3], rtol=0.15)
    monkeypatch.setattr(ProfiledDeviance, "moment_start", lambda self: design.theta_start())
    identity = ms.fit_lmm(formula, frame)
    assert fit.converged and identity.converged
    assert_allclose(fit.loglik, identity.loglik, rtol=0, atol=1e-9)
    assert_allclose(fit.theta, identity.theta, rtol=1e-5)
    ours, theirs = fit.fixed_effects, identity.fixed_effects
    assert_allclose(ours["estimate"], theirs["estimate"], rtol=1e-7)
    assert_allclose(ours["std_error"], theirs["std_error"], rtol=1e-5)
    assert_allclose(ours["df"], theirs["df"], rtol=1e-5)
    assert fit.optimizer_info["n_evaluations"] < identity.optimizer_info["n_evaluations"]


def test_fit_survives_a_hessian_that_loses_positive_definiteness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Far from the optimum the Woodbury products of the analytic Hessian can lose positive
    definiteness to rounding (LinAlgError): the Newton path then hands over to L-BFGS-B and
    the polish to differences of the gradient, reaching the same optimum (logLik to 1e-9,
    β rtol 1e-6, SEs rtol 1e-5)."""
    formula, data = CASES["sleepstudy"]
    frame = data()
    reference = ms.fit_lmm(formula, frame)

    def broken(self: BlockHessian, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        raise np.linalg.LinAlgError("2-th leading minor of the array is not positive definite")

    monkeypatch.setattr(BlockHessian, "_evaluate", broken)
    fit = ms.fit_lmm(formula, frame)
    assert fit.converged
    assert fit.optimizer_info["method"].startswith("Newton (analytic Hessian) + L-BFGS-B")
    assert_allclose(fit.loglik, reference.loglik, rtol=0, atol=1e-9)
    fe, ref = fit.fixed_effects, reference.fixed_effects
    assert_allclose(fe["estimate"], ref["estimate"], rtol=1e-6)
    assert_allclose(fe["std_error"], ref["std_error"], rtol=1e-5)


def test_moment_start_leaves_out_groups_fitted_exactly() -> None:
    """One sleepstudy subject cut to days 0 and 1 (2 rows for 2 effects: its b̂ fits them
    exactly, with a slope SD ~10× the others'): the moment start's Σ̂_b leaves it out and
    stays within 2 % of the REML θ on the diagonal (with it: the slope 86 % low, 9
    evaluations instead of 5)."""
    frame = load_csv("sleepstudy.csv")
    frame = frame[(frame["Subject"] != 308) | frame["Days"].isin([0, 1])]
    formula = "Reaction ~ Days + (Days | Subject)"
    start = ProfiledDeviance(build_design(formula, frame), reml=True).moment_start()
    fit = ms.fit_lmm(formula, frame)
    assert_allclose(start[[0, 2]], fit.theta[[0, 2]], rtol=0.02)
    assert fit.converged and fit.optimizer_info["n_evaluations"] <= 5
