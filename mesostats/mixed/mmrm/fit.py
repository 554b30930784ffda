"""``fit_mmrm``: fit an MMRM by (RE)ML and attach the requested inference.

The variance parameters θ (R mmrm's parameterisation) are found by Newton's method on −ℓ
with the *exact* gradient and Hessian of :mod:`mesostats.mixed.mmrm.likelihood`, from mmrm's
standard start (the empirical covariance of the OLS residuals), to a gradient below 1e-8:
plain full Newton steps while the Hessian is positive definite and each step lowers −ℓ
(the usual case, and then the steps a trust region would take too), else a trust-region
Newton method from the start (scipy's ``trust-exact``, Moré & Sorensen 1983). β is the GLS
estimate at θ̂.
BLAS runs single-threaded: the matrices are small (visits × visits, p × p) and threads
only add overhead.

Degrees of freedom and covariance of β̂ come from
:func:`mesostats.mixed.mmrm.dof.inference` (Satterthwaite, Kenward–Roger and its linear
variant, between-within, residual n − p; model-based or empirical CR0/CR2/CR3 covariance),
which returns ``(vcov (p, p), df_for)`` with ``df_for(L (m, p)) -> (m,)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize

from mesostats._parallel import single_threaded_blas
from mesostats.exceptions import ConvergenceWarning, ModelSpecError
from mesostats.mixed.mmrm.build import build_problem
from mesostats.mixed.mmrm.dof import DF_METHODS, inference
from mesostats.mixed.mmrm.likelihood import Evaluation
from mesostats.mixed.mmrm.problem import MMRMProblem
from mesostats.mixed.mmrm.results import MMRMResults

__all__ = ["DF_METHODS", "VCOV_METHODS", "fit_mmrm"]

VCOV_METHODS = (None, "empirical", "empirical-bias-reduced", "empirical-jackknife")
_GTOL = 1e-8
_ACCEPT = 1e-5


class _Cached:
    """Evaluations of the criterion at the last θ (scipy asks value, jac, hess in turn)."""

    def __init__(self, problem: MMRMProblem) -> None:
        self.problem = problem
        self.key: bytes | None = None
        self.ev: Evaluation | None = None
        self.n_eval = 0

    def at(self, theta: np.ndarray, order: int) -> Evaluation:
        key = np.asarray(theta, dtype=float).tobytes()
        ev = self.ev
        have = (
            -1
            if ev is None
            else (2 if ev.hessian is not None else 1 if ev.gradient is not None else 0)
        )
        if key != self.key or have < order or ev is None:
            # scipy asks the Hessian right after the gradient: compute both at once
            ev = self.problem.evaluate(theta, order=2 if order else 0)
            self.key, self.ev = key, ev
            self.n_eval += 1
        return ev

    def value(self, theta: np.ndarray) -> float:
        return self.at(theta, 0).value

    # scipy's trust-exact builds the model at a *proposed* point (value, gradient, Hessian)
    # before it decides; where Σ is not positive definite the value is +inf, so the step is
    # rejected, and a zero gradient and identity Hessian only keep its bookkeeping finite
    def grad(self, theta: np.ndarray) -> np.ndarray:
        ev = self.at(theta, 1)
        if ev.gradient is None or not np.isfinite(ev.value):
            return np.zeros(np.asarray(theta).shape)
        return ev.gradient

    def hess(self, theta: np.ndarray) -> np.ndarray:
        ev = self.at(theta, 2)
        if ev.hessian is None or not np.isfinite(ev.value):
            return np.eye(np.asarray(theta).size)
        return ev.hessian


def _check_options(reml: bool, df: str, vcov: str | None) -> tuple[str, str | None]:
    if not isinstance(df, str) or df.lower() not in DF_METHODS:
        raise ModelSpecError(f"df must be one of {', '.join(map(repr, DF_METHODS))}, got {df!r}.")
    if vcov not in VCOV_METHODS:
        raise ModelSpecError(
            f"vcov must be None (model-based) or one of "
            f"{', '.join(repr(v) for v in VCOV_METHODS if v)}, got {vcov!r}."
        )
    df = df.lower()
    if df.startswith("kenward-roger") and not reml:
        raise ModelSpecError(
            f"df={df!r} (Kenward–Roger) needs a REML fit, but reml=False. Use reml=True, or "
            "df='satterthwaite' for an ML fit."
        )
    if df.startswith("kenward-roger") and vcov is not None:
        raise ModelSpecError(
            f"df={df!r} comes with its own adjusted covariance; vcov={vcov!r} cannot be combined "
            "with it. Use df='satterthwaite' with an empirical covariance."
        )
    return df, vcov


_POTRF, _POTRS = linalg.get_lapack_funcs(("potrf", "potrs"), (np.zeros((1, 1)),))


def _spd_solve(A: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """A⁻¹b by Cholesky — the LAPACK calls of scipy's ``cho_solve(cho_factor(A), b)``, the
    same numbers without their ~50 µs of checks — or None when A is not positive definite
    (or not finite)."""
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        return None
    c, info = _POTRF(A, lower=False, overwrite_a=False, clean=False)
    if info != 0:
        return None
    x, info = _POTRS(c, b, lower=False, overwrite_b=False)
    return np.asarray(x) if info == 0 else None


def _start(problem: MMRMProblem) -> np.ndarray:
    """Start from the empirical covariance of the OLS residuals, per group (pairwise
    moments over the subjects having both visits, from the pattern sufficient statistics;
    weighted rows); see :meth:`~mesostats.mixed.mmrm.structures.Structure.start_from`."""
    batches = problem.criterion_batches
    XtX = sum(np.einsum("naaxy->xy", bt.XX) for bt in batches)
    Xty = sum(np.einsum("naax->x", bt.Xy) for bt in batches)
    beta = _spd_solve(XtX, Xty)  # OLS by Cholesky (LAPACK potrf/potrs, as scipy's "pos")
    if beta is None:
        beta = linalg.lstsq(XtX, Xty)[0]
    structure = problem.structure
    if structure.spatial:
        yty = sum(float(np.einsum("naa->", bt.yy)) for bt in batches)
        rss = max(yty - float(beta @ Xty), 0.0)
        sd = float(np.sqrt(rss / problem.n)) or 1.0
        return np.tile(structure.start(sd), problem.n_groups)
    m = structure.n_visits
    sums_flat = np.zeros((problem.n_groups, m * m))
    counts_flat = np.zeros((problem.n_groups, m * m))
    for bt in batches:  # Σ_i r_i r_iᵀ of each pattern, added into its visits × visits cells
        Xb_y = bt.Xy @ beta
        rr = bt.yy - Xb_y - Xb_y.transpose(0, 2, 1) + (bt.XX @ beta) @ beta
        idx = bt.coords.astype(np.intp)
        flat = (idx[:, :, None] * m + idx[:, None, :]).reshape(-1)
        sums_flat[bt.group] += np.bincount(flat, weights=rr.reshape(-1), minlength=m * m)
        n_pairs = np.broadcast_to(bt.n_subjects[:, None, None], (bt.nb, bt.d, bt.d))
        if bt.pair is not None:  # padded batch: only the visits each pattern has
            n_pairs = n_pairs * bt.pair
        counts_flat[bt.group] += np.bincount(flat, weights=n_pairs.reshape(-1), minlength=m * m)
    sums = sums_flat.reshape(problem.n_groups, m, m)
    counts = counts_flat.reshape(problem.n_groups, m, m)
    starts = []
    for g in range(problem.n_groups):
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sums[g] / counts[g]
        if not np.all(np.isfinite(np.diag(cov))) or np.any(np.diag(cov) <= 0):
            starts.append(structure.start(float(np.sqrt(np.nanmean(np.diag(cov)))) or 1.0))
            continue
        cov = np.where(np.isfinite(cov), cov, 0.0)
        starts.append(structure.start_from(cov))
    return np.concatenate(starts)


def _newton(crit: _Cached, theta: np.ndarray, max_steps: int = 12) -> tuple[np.ndarray, int] | None:
    """Plain Newton steps θ ← θ − H⁻¹g from the start, while the Hessian is positive definite
    and each full step lowers −ℓ, to a gradient below the tolerance: θ̂ and the number of
    steps, or None (then trust-exact runs from the start). Near a regular optimum this is
    what trust-exact does, without its ~1 ms of per-iteration bookkeeping on small fits."""
    for it in range(max_steps):
        ev = crit.at(theta, 2)
        if ev.gradient is None or ev.hessian is None or not np.isfinite(ev.value):
            return None
        if np.max(np.abs(ev.gradient)) <= _GTOL:
            return theta, it
        step = _spd_solve(ev.hessian, ev.gradient)
        if step is None:
            return None
        trial = theta - step
        if not crit.at(trial, 2).value <= ev.value + 1e-12 * max(1.0, abs(ev.value)):
            return None
        theta = trial
    return None


def _polish(crit: _Cached, theta: np.ndarray, max_steps: int = 20) -> np.ndarray:
    """Newton steps θ ← θ − H⁻¹g (halved until −ℓ does not rise beyond round-off) until
    the gradient is below the tolerance: trust-exact can stop early on round-off."""
    for _ in range(max_steps):
        ev = crit.at(theta, 2)
        assert ev.gradient is not None and ev.hessian is not None
        if np.max(np.abs(ev.gradient)) <= _GTOL:
            break
        step = _spd_solve(ev.hessian, ev.gradient)  # only where H is positive definite
        if step is None:
            break
        slack = 1e-12 * max(1.0, abs(ev.value))
        for _half in range(30):
            trial = theta - step
            if crit.value(trial) <= ev.value + slack:
                break
            step = step / 2.0
        else:
            break
        theta = trial
    return theta


def _optimise(
    problem: MMRMProblem,
) -> tuple[np.ndarray, dict[str, Any], list[str], Evaluation]:
    """θ̂, the optimiser's record, warnings, and the evaluation (order 2) at θ̂."""
    crit = _Cached(problem)
    theta0 = _start(problem)
    if not np.isfinite(crit.at(theta0, 2).value):  # scipy asks all three there next
        raise ModelSpecError(
            "The likelihood cannot be evaluated at the start values (a covariance matrix or "
            "XᵀV⁻¹X is singular); check the visit and subject columns."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        newton = _newton(crit, theta0)
        if newton is not None:
            theta, nit = newton
            method, message = "newton", "Newton steps converged."
        else:
            res = optimize.minimize(
                crit.value,
                theta0,
                jac=crit.grad,
                hess=crit.hess,
                method="trust-exact",
                options={"gtol": _GTOL, "maxiter": 500},
            )
            theta = _polish(crit, np.asarray(res.x, dtype=float))
            method, nit, message = "trust-exact", int(res.nit), str(res.message)
    ev = crit.at(theta, 2)
    assert ev.gradient is not None and ev.hessian is not None
    gmax = float(np.max(np.abs(ev.gradient)))
    messages: list[str] = []
    converged = bool(np.isfinite(ev.value) and gmax <= _ACCEPT)
    if not converged:
        messages.append(
            f"The optimiser stopped with a gradient of {gmax:.2g} (tolerance {_ACCEPT:g}): "
            f"{message.rstrip('.')}. Estimates may be unreliable; try a simpler "
            "covariance structure."
        )
    eig = np.linalg.eigvalsh(ev.hessian)
    if eig.min() <= 1e-10 * max(1.0, float(np.abs(eig).max())):
        messages.append(
            "The Hessian of the likelihood in θ is not positive definite at the estimate; "
            "the covariance structure may be over-parameterised for these data."
        )
        converged = False
    info = {
        "method": method,
        "iterations": nit,
        "evaluations": crit.n_eval,
        "gradient_max": gmax,
        "converged": converged,
        "message": message,
    }
    return theta, info, messages, ev


def fit_mmrm(
    formula: str,
    data: pd.DataFrame,
    *,
    reml: bool = True,
    df: str = "kenward-roger",
    vcov: str | None = None,
    weights: Any = None,
) -> MMRMResults:
    """Fit a mixed model for repeated measures (R mmrm's model and parameterisation).

    Parameters
    ----------
    formula : str
        Fixed part plus one covariance term, as in R's mmrm:
        ``"FEV1 ~ RACE + SEX + ARMCD * AVISIT + us(AVISIT | USUBJID)"``. Structures on a
        visit factor: ``us`` (unstructured), ``toep`` / ``toeph`` (Toeplitz, homogeneous /
        heterogeneous variances), ``ar1`` / ``ar1h`` (first-order autoregressive), ``ad`` /
        ``adh`` (ante-dependence), ``cs`` / ``csh`` (compound symmetry). Spatial exponential
        ``sp_exp`` (Σ_jk = σ² ρ^d_jk) on numeric coordinates: ``sp_exp(time | subject)`` with
        d the time difference, or ``sp_exp(x, y | subject)`` (any number of coordinates) with
        d the Euclidean distance between the visits' points, as mmrm's
        ``sp_exp(c1, c2 | subject)`` and SAS's ``type=sp(exp)(c1 c2)``. Any structure can be
        grouped: ``us(visit | group / subject)`` estimates one covariance matrix per level of
        ``group``.
    data : pandas.DataFrame
        One row per subject and visit. Rows with a missing value in a used column are set
        aside (``excluded_rows``); each subject uses the visits it has.
    reml : bool
        REML (default) or ML.
    df : str
        ``"kenward-roger"`` (default), ``"kenward-roger-linear"``, ``"satterthwaite"``,
        ``"between-within"`` or ``"residual"`` (n − p).
    vcov : str, optional
        ``None`` (model-based; KR-adjusted under KR), ``"empirical"`` (CR0),
        ``"empirical-bias-reduced"`` (CR2) or ``"empirical-jackknife"`` (CR3).
    weights : str or array-like, optional
        Column name or one positive weight per row: Σ_i = W_i^{-1/2} Σ W_i^{-1/2}.

    Returns
    -------
    MMRMResults

    Raises
    ------
    ModelSpecError
        Bad formula or data (see :func:`mesostats.mixed.mmrm.build.build_problem`: e.g. a
        non-numeric ``sp_exp`` coordinate, two rows of a subject at one visit or point), an
        unknown df or vcov method, Kenward–Roger with ML.
    """
    df, vcov = _check_options(reml, df, vcov)
    with single_threaded_blas():  # small matrices: threads only add overhead
        problem = build_problem(formula, data, reml=reml, weights=weights)
        theta, info, messages, ev = _optimise(problem)
        for msg in messages:
            warnings.warn(msg, ConvergenceWarning, stacklevel=2)
        assert ev.hessian is not None
        try:
            theta_cov = np.linalg.inv(ev.hessian)
        except (np.linalg.LinAlgError, ValueError):
            theta_cov = np.full((problem.n_theta, problem.n_theta), np.nan)
        beta_vcov, df_for = inference(
            problem, theta, df=df, vcov=vcov, beta=ev.beta, theta_cov=theta_cov, evaluation=ev
        )
        return MMRMResults(
            problem,
            theta=theta,
            beta=ev.beta,
            vcov=beta_vcov,
            loglik=-ev.value,
            df_for=df_for,
            df_method=df,
            vcov_method=vcov,
            converged=bool(info["converged"]),
            messages=messages,
            theta_cov=theta_cov,
            optimizer=info,
        )
