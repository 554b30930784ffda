"""fit_lmm: formula and data in, MixedResults out (singular-fit messages, modes, logLik)."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd

from mesostats.exceptions import ConvergenceWarning, ModelSpecError, SingularFitWarning
from mesostats.mixed.boundary import boundary_messages
from mesostats.mixed.contrast_df import VarianceGradientDF
from mesostats.mixed.design import MixedDesign, build_design, single_threaded_blas
from mesostats.mixed.linalg import tri_solve
from mesostats.mixed.lmm.deviance import _State
from mesostats.mixed.lmm.gradient import ProfiledDeviance
from mesostats.mixed.lmm.kenward_roger import lmm_kenward_roger
from mesostats.mixed.lmm.optimise import optimise_theta, screen_start
from mesostats.mixed.optsummary import OptSummary
from mesostats.mixed.results import MixedResults
from mesostats.mixed.satterthwaite import satterthwaite

__all__ = ["fit_lmm"]

#: OptSummary.factorisation for each way the further factors are held (mixed.lmm.rest)
_FACTORISATION = {
    "none": "block-diagonal",
    "dense": "dense Schur",
    "pairs": "pairs Schur",
    "sparse": "sparse Schur",
}


# --------------------------------------------------------------------------- singularity


# --------------------------------------------------------------------------- fit
_DF_METHODS = ("satterthwaite", "kenward-roger")


def fit_lmm(
    formula: str, data: pd.DataFrame, *, reml: bool = True, df: str = "satterthwaite"
) -> MixedResults:
    """Fit a linear mixed model by REML or maximum likelihood, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"hair_density ~ week * minoxidil + (1 + week | subject_id)"``;
        crossed ``(1 | g1) + (1 | g2)``, nested ``(1 | g1/g2)``, uncorrelated ``(x || g)``,
        ``offset(expr)``.
    data : pandas.DataFrame
        Any table with the columns the formula uses. Rows with a missing value in a used
        column are set aside (``results.excluded_rows``, :class:`ExclusionWarning`).
    reml : bool, default True
        REML criterion (lme4's default) or maximum likelihood (use ML to compare models that
        differ in their fixed effects).
    df : {"satterthwaite", "kenward-roger"}, default "satterthwaite"
        Denominator df of the t tests: Satterthwaite (lmerTest), or Kenward–Roger (pbkrtest;
        REML only), which also replaces ``vcov`` and the SEs by the KR-adjusted covariance.
        ``results.df_for(L)`` gives the df of any linear functions Lβ under the same method.

    Returns
    -------
    MixedResults
        Fixed effects with Satterthwaite or Kenward–Roger df, variance components, conditional
        modes with conditional SDs, log-likelihood, AIC/BIC, predictions.

    Raises
    ------
    ModelSpecError
        The formula cannot be fitted to the data (the message says why and what to try).

    Warns
    -----
    SingularFitWarning
        A variance component is on its boundary (SD 0 or correlation ±1); names which.
    ConvergenceWarning
        An optimality check failed; says which, with values.

    Notes
    -----
    Profiled deviance of Bates, Mächler, Bolker & Walker (2015), *J. Stat. Softw.* 67(1),
    with an analytic gradient (see :mod:`mesostats.mixed.lmm`). Satterthwaite df follow
    Kuznetsova, Brockhoff & Christensen (2017), *J. Stat. Softw.* 82(13); Kenward–Roger
    Kenward & Roger (1997), *Biometrics* 53:983, as pbkrtest (Halekoh & Højsgaard 2014).

    Examples
    --------
    >>> import mesostats as ms
    >>> fit = ms.fit_lmm("Reaction ~ Days + (Days | Subject)", sleepstudy)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    df_method = str(df).lower()
    if df_method not in _DF_METHODS:
        raise ModelSpecError(
            f"df must be one of {', '.join(repr(m) for m in _DF_METHODS)}, got {df!r}."
        )
    if df_method == "kenward-roger" and not reml:
        raise ModelSpecError(
            "Kenward-Roger df are defined for REML fits only (reml=False was given). "
            "Use reml=True, or df='satterthwaite' for a maximum-likelihood fit."
        )
    design = build_design(formula, data, family="gaussian")
    with single_threaded_blas():
        return _fit(design, reml=bool(reml), t0=t0, df_method=df_method)


def _fit(design: MixedDesign, *, reml: bool, t0: float, df_method: str) -> MixedResults:
    problem = ProfiledDeviance(design, reml=reml)
    start = problem.moment_start()
    opt = optimise_theta(problem, start)
    n_evaluations = opt.n_evaluations
    on_boundary = (opt.theta <= design.theta_lower + 1e-10) & design.theta_is_diagonal
    floored = problem.start_floored
    agreed = floored is not None and bool(floored[on_boundary].all())
    if on_boundary.any() and not agreed and not np.array_equal(start, design.theta_start()):
        # a boundary optimum may be a local one: also try lme4's start and keep the better
        # (screened by a plain L-BFGS-B run: the full run only when that ends lower); not
        # when the several-factor moment start already put those variances at zero
        screened, n_screen = screen_start(problem, design.theta_start())
        n_evaluations += n_screen
        if screened < opt.deviance - 1e-9:
            other = optimise_theta(problem, design.theta_start())
            n_evaluations += other.n_evaluations
            if other.deviance < opt.deviance - 1e-9:
                opt = other
    theta = opt.theta
    st = problem.state(theta)
    # residual sum of squares recomputed from the residual vector (exact r² for logLik)
    u0, ur = problem.spherical_modes(st)
    r2 = _explicit_r2(problem, st, u0, ur)
    dof = problem.dof
    sigma = math.sqrt(r2 / dof)
    dev = st.logdet_L + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof))
    if problem.reml:
        dev += st.logdet_RX
    beta = problem.beta_ols + st.delta
    RXinv = tri_solve(st.RX, np.eye(problem.p), lower=True)
    vcov = sigma**2 * (RXinv.T @ RXinv)
    modes, mode_sds, mode_covs = _conditional_modes(problem, st, u0, ur, sigma)

    singular_msgs = boundary_messages(design, theta, sigma, family="gaussian")
    singular = bool(singular_msgs)
    sat = satterthwaite(problem, theta, sigma, vcov, profiled_hessian=opt.hessian)
    # a boundary fit has an indefinite Hessian by nature; the singular-fit warning says more
    convergence_msgs = list(opt.messages) + ([] if singular else sat.messages)
    for msg in convergence_msgs:
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    for msg in singular_msgs:
        warnings.warn(msg, SingularFitWarning, stacklevel=3)
    messages = convergence_msgs + singular_msgs
    if df_method == "kenward-roger":
        vcov, df_function = lmm_kenward_roger(design, theta, sigma)
        df_coef = df_function(np.eye(design.p))
    else:
        df_function = VarianceGradientDF(vcov, np.stack(sat.jacobian), sat.varpar_cov)
        df_coef = sat.df
    return MixedResults(
        design,
        family="gaussian",
        method="REML" if problem.reml else "ML",
        beta=beta,
        vcov=vcov,
        theta=theta,
        sigma=sigma,
        loglik=-dev / 2.0,
        df=df_coef,
        df_function=df_function,
        df_method=df_method,
        ranef=modes,
        ranef_sd=mode_sds,
        converged=opt.converged,
        singular=singular,
        messages=messages,
        variance_parameter_cov=sat.varpar_cov,
        ranef_cov=mode_covs,
        optimizer=OptSummary(
            method=opt.method,
            n_evaluations=n_evaluations,
            gradient=opt.gradient,
            newton_decrement=opt.newton_decrement,
            factorisation=_FACTORISATION[problem.rest_mode],
            seconds=time.perf_counter() - t0,
        ).as_dict(),
    )


def _explicit_r2(
    problem: ProfiledDeviance, st: _State, u0: np.ndarray, ur: np.ndarray | None
) -> float:
    """‖y − Xβ − ZΛu‖² + ‖u‖² from the residual vector (no cancellation)."""
    design = problem.design
    resid = problem.y_shifted - design.X @ st.delta
    f0 = problem.factors[0]
    b0 = st.lams[0] @ u0  # (q0, G0)
    resid -= np.einsum("ij,ji->i", f0.Z, b0[:, f0.codes])
    pen = float(np.einsum("ig,ig->", u0, u0))
    if problem.Qr:
        assert ur is not None and st.lam_r is not None
        br = st.lam_r @ ur
        for f, off in zip(problem.rest, problem.rest_offsets, strict=True):
            bf = br[off : off + f.n_levels * f.q].reshape(f.n_levels, f.q)
            resid -= np.einsum("ij,ij->i", f.Z, bf[f.codes])
        pen += float(ur @ ur)
    return float(resid @ resid) + pen


def _conditional_modes(
    problem: ProfiledDeviance,
    st: _State,
    u0: np.ndarray,
    ur: np.ndarray | None,
    sigma: float,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
    """Conditional modes b = Λu, conditional SDs and covariance blocks (lme4 condVar).

    The conditional covariance of level g's effects is σ²·Λ (LLᵀ)⁻¹_gg Λᵀ (Bates et al.
    2015, section 5.1; it ignores the uncertainty of β̂ and θ̂, as lme4's ``condVar``).
    """
    design = problem.design
    blocks = problem.conditional_covariance_diag(st)
    modes: list[np.ndarray] = [np.zeros((t.n_levels, t.q)) for t in design.terms]
    sds: list[np.ndarray] = [np.zeros((t.n_levels, t.q)) for t in design.terms]
    covs: dict[str, np.ndarray] = {}
    for k, f in enumerate(problem.factors):
        lam = st.lams[k]
        if k == 0:
            u = u0
        else:
            assert ur is not None
            off = problem.rest_offsets[k - 1]
            u = ur[off : off + f.n_levels * f.q].reshape(f.n_levels, f.q).T
        b = lam @ u  # (q, G)
        cov = sigma**2 * np.einsum("ia,abg,jb->gij", lam, blocks[k], lam)
        sd = np.sqrt(np.clip(np.einsum("gii->ig", cov), 0.0, None))
        covs[f.group] = cov
        for t_id, cols in zip(f.term_ids, f.term_cols, strict=True):
            modes[t_id] = b[cols].T.copy()
            sds[t_id] = sd[cols].T.copy()
    return modes, sds, covs
