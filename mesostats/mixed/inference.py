"""Inference for mixed models: Satterthwaite df and likelihood-ratio comparison of fits.

**Satterthwaite degrees of freedom** (Kuznetsova, Brockhoff & Christensen 2017, *J. Stat.
Softw.* 82(13); the lmerTest package). For a fixed effect β_j with variance
v_j(φ) = [σ² (XᵀV₀(θ)⁻¹X)⁻¹]_jj as a function of the variance parameters φ = (θ, σ),

    df_j = 2 v_j² / (∇v_jᵀ A ∇v_j),   A = 2 H⁻¹,

where H is the Hessian of the (RE)ML deviance in φ with β profiled (lmerTest's
``devfun_vp``) and A the asymptotic covariance of φ̂ (Moore–Penrose inverse over eigenvalues
> 1e-8, as lmerTest). lmerTest differentiates numerically (numDeriv); here ∇v_j is analytic
(∂(XᵀV₀⁻¹X)/∂θ from the blocked factorisation, see ``mixed.lmm``), H's σ rows are analytic,
and its θ block comes from central differences of the analytic gradient (2·len(θ) gradient
evaluations, Richardson-extrapolated).

**compare()**: likelihood-ratio tests of nested fits on the same rows. When the larger model
adds one random effect to a grouping factor (a variance on its boundary under the null,
plus its covariances with the q effects already there), the null distribution is the
50:50 mixture of χ²_q and χ²_{q+1} (Self & Liang 1987, *JASA* 82:605; Stram & Lee 1994,
*Biometrics* 50:1171); the table says so in its ``note`` column. Other boundary tests use
the plain χ² (conservative) and say that too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.mixed.lmm import ProfiledDeviance
    from mesostats.mixed.results import MixedResults

__all__ = ["SatterthwaiteResult", "compare", "satterthwaite", "varpar_hessian"]

_EIGEN_TOL = 1e-8


@dataclass
class SatterthwaiteResult:
    """Satterthwaite df per fixed effect with the pieces they come from."""

    df: np.ndarray
    varpar_cov: np.ndarray
    hessian: np.ndarray
    jacobian: list[np.ndarray]
    messages: list[str] = field(default_factory=list)


def varpar_hessian(
    problem: ProfiledDeviance,
    theta: np.ndarray,
    sigma: float,
    profiled_hessian: np.ndarray | None = None,
) -> np.ndarray:
    """Hessian of the (RE)ML deviance in (θ, σ) with β profiled (lmerTest's ``devfun_vp``).

    dev(θ, σ) = log-determinants(θ) + m·log(2πσ²) + r²(θ)/σ², m = n (ML) or n − p (REML).
    The σ rows are analytic. The θ block is either derived from the Hessian of the
    *profiled* deviance d(θ) = min_σ dev(θ, σ) at the optimum, where σ² = r²/m gives
    ∂²dev/∂θ² = ∂²d/∂θ² + (∂r²/∂θ)(∂r²/∂θ)ᵀ/(m σ⁴) (no extra evaluations), or computed by
    Richardson-extrapolated central differences of the analytic θ-gradient.
    """
    k = problem.n_theta
    st = problem.state(theta)
    _, d_r2, _ = problem.deviance_parts_gradient(st)
    m = problem.dof
    r2 = st.r2
    H = np.zeros((k + 1, k + 1))
    if profiled_hessian is not None:
        H[:k, :k] = profiled_hessian + np.outer(d_r2, d_r2) / (m * sigma**4)
    else:
        for i in range(k):
            h = 1e-3 * max(abs(theta[i]), 0.05)

            def diff(step: float, i: int = i) -> np.ndarray:
                tp = theta.copy()
                tm = theta.copy()
                tp[i] += step
                tm[i] -= step
                return (
                    problem.varpar_theta_gradient(tp, sigma)
                    - problem.varpar_theta_gradient(tm, sigma)
                ) / (2.0 * step)

            H[:k, i] = (4.0 * diff(h / 2.0) - diff(h)) / 3.0
        H[:k, :k] = 0.5 * (H[:k, :k] + H[:k, :k].T)
    H[:k, k] = H[k, :k] = -2.0 * d_r2 / sigma**3
    H[k, k] = -2.0 * m / sigma**2 + 6.0 * r2 / sigma**4
    return H


def satterthwaite(
    problem: ProfiledDeviance,
    theta: np.ndarray,
    sigma: float,
    vcov: np.ndarray,
    *,
    profiled_hessian: np.ndarray | None = None,
) -> SatterthwaiteResult:
    """Satterthwaite denominator df of each fixed effect (lmerTest's method).

    Parameters
    ----------
    problem : ProfiledDeviance
        The fitted model's deviance.
    theta, sigma : the (RE)ML estimates.
    vcov : (p, p) covariance of β̂ at the estimates.
    profiled_hessian : optional
        Hessian of the profiled deviance at θ̂ (from the optimiser); saves evaluations.

    Returns
    -------
    SatterthwaiteResult
        ``df`` (p,), ``varpar_cov`` = 2 H⁺ (asymptotic covariance of (θ, σ)).

    References
    ----------
    Kuznetsova, A., Brockhoff, P. B., Christensen, R. H. B. (2017). lmerTest package: tests in
    linear mixed effects models. *J. Stat. Softw.* 82(13), 1–26.
    """
    theta = np.asarray(theta, dtype=float)
    H = varpar_hessian(problem, theta, sigma, profiled_hessian)
    evals, evecs = np.linalg.eigh(H)
    messages = []
    if (evals < -_EIGEN_TOL).any():
        messages.append(
            "The Hessian of the deviance in the variance parameters has negative "
            f"eigenvalue(s) {', '.join(f'{v:.2g}' for v in evals[evals < -_EIGEN_TOL])}: "
            "Satterthwaite df may be unreliable."
        )
    pos = evals > _EIGEN_TOL
    h_inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    A = 2.0 * h_inv
    jac = problem.covbeta_jacobian(theta, sigma)
    p = vcov.shape[0]
    df = np.empty(p)
    grads = np.stack([np.diag(J) for J in jac], axis=1)  # (p, k+1)
    for j in range(p):
        g = grads[j]
        denom = float(g @ A @ g)
        df[j] = 2.0 * vcov[j, j] ** 2 / denom if denom > 0 else np.inf
    return SatterthwaiteResult(df=df, varpar_cov=A, hessian=H, jacobian=jac, messages=messages)


# --------------------------------------------------------------------------- compare
def _random_structure(res: MixedResults) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for term in res.design.terms:
        out.setdefault(term.group, set()).update(term.names)
    return out


def _same_rows(a: MixedResults, b: MixedResults) -> bool:
    da, db = a.design, b.design
    if da.n != db.n or not da.row_index.equals(db.row_index):
        return False
    return bool(np.array_equal(da.y, db.y) and np.array_equal(da.prior_weights, db.prior_weights))


def _label(res: MixedResults) -> str:
    return res.formula


def _boundary_note(small: MixedResults, big: MixedResults) -> tuple[str, int | None]:
    """Describe the test and return the df of the χ̄² mixture's lower component (or None)."""
    rs, rb = _random_structure(small), _random_structure(big)
    same_fixed = small.design.fixed_names == big.design.fixed_names
    added: list[tuple[str, str]] = []
    for group, names in rb.items():
        extra = names - rs.get(group, set())
        added.extend((group, n) for n in sorted(extra))
    if not added:
        return "χ² (fixed effects differ)", None
    if not same_fixed:
        return (
            "χ² (fixed and random parts both differ: the boundary makes this p-value conservative)",
            None,
        )
    if len(added) == 1:
        group, name = added[0]
        q_before = len(rs.get(group, set()))
        delta = big.n_params - small.n_params
        if delta in (q_before + 1, 1):
            lower = delta - 1
            return (
                f"χ̄²: 50:50 mixture of χ²_{lower} and χ²_{delta} (variance of `{name}` within "
                f"`{group}` on the boundary; Self & Liang 1987)",
                lower,
            )
    return (
        "χ² (several variances on the boundary under the null: conservative p-value)",
        None,
    )


def compare(*results: MixedResults) -> pd.DataFrame:
    """Likelihood-ratio comparison of nested mixed models fitted on the same rows.

    Parameters
    ----------
    *results : MixedResults
        Two or more fits of nested models (any order; sorted by number of parameters).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model, npar, loglik, aic, bic, chisq, df, p_value, note``;
        ``chisq``/``df``/``p_value`` compare each model with the one above it. When the
        larger model adds one random effect, p uses the 50:50 χ̄² mixture (``note`` says so).

    Raises
    ------
    ModelSpecError
        Fewer than two fits, fits on different rows or families, REML and ML fits mixed, REML
        fits whose fixed effects differ (refit with ``reml=False``), or models not nested.

    References
    ----------
    Self, S. G., Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood estimators
    and likelihood ratio tests under nonstandard conditions. *JASA* 82, 605–610.
    """
    if len(results) < 2:
        raise ModelSpecError("compare() needs at least two fitted models.")
    first = results[0]
    for other in results[1:]:
        if other.family != first.family:
            raise ModelSpecError(
                f"Cannot compare a {first.family} fit with a {other.family} fit: the "
                "likelihoods are not comparable."
            )
        if not _same_rows(first, other):
            raise ModelSpecError(
                f"The fits `{_label(first)}` ({first.nobs} rows) and `{_label(other)}` "
                f"({other.nobs} rows) are not on the same rows (different missing values or "
                "data). Likelihoods of different data cannot be compared; fit both models to "
                "the same complete rows."
            )
    methods = {r.method for r in results}
    if "REML" in methods and len(methods) > 1:
        raise ModelSpecError(
            f"Cannot compare REML with non-REML fits ({', '.join(sorted(methods))}); refit all "
            "models with the same method (reml=False to compare fixed effects)."
        )
    if methods == {"REML"}:
        fixed = {r.design.fixed_names for r in results}
        if len(fixed) > 1:
            raise ModelSpecError(
                "REML fits with different fixed effects cannot be compared: the REML criterion "
                "depends on X. Refit the models with `reml=False` (maximum likelihood)."
            )
    ordered = sorted(results, key=lambda r: r.n_params)
    rows = []
    prev: MixedResults | None = None
    for res in ordered:
        row: dict[str, object] = {
            "model": _label(res),
            "npar": res.n_params,
            "loglik": res.loglik,
            "aic": res.aic,
            "bic": res.bic,
            "chisq": np.nan,
            "df": np.nan,
            "p_value": np.nan,
            "note": "",
        }
        if prev is not None:
            if res.n_params == prev.n_params:
                raise ModelSpecError(
                    f"`{_label(prev)}` and `{_label(res)}` have the same number of parameters "
                    f"({res.n_params}); they are not nested. compare() tests nested models."
                )
            small_fixed = set(prev.design.fixed_names)
            if not small_fixed <= set(res.design.fixed_names):
                raise ModelSpecError(
                    f"`{_label(prev)}` is not nested in `{_label(res)}`: fixed effects "
                    f"{sorted(small_fixed - set(res.design.fixed_names))} are missing from the "
                    "larger model."
                )
            rs, rb = _random_structure(prev), _random_structure(res)
            for group, names in rs.items():
                if not names <= rb.get(group, set()):
                    raise ModelSpecError(
                        f"`{_label(prev)}` is not nested in `{_label(res)}`: random effects "
                        f"{sorted(names - rb.get(group, set()))} within `{group}` are missing "
                        "from the larger model."
                    )
            chisq = max(2.0 * (res.loglik - prev.loglik), 0.0)
            df = res.n_params - prev.n_params
            note, lower = _boundary_note(prev, res)
            if lower is None:
                p = float(stats.chi2.sf(chisq, df))
            else:
                upper_p = float(stats.chi2.sf(chisq, df))
                lower_p = float(stats.chi2.sf(chisq, lower)) if lower > 0 else float(chisq <= 0)
                p = 0.5 * lower_p + 0.5 * upper_p
            row.update(chisq=chisq, df=df, p_value=p, note=note)
        rows.append(row)
        prev = res
    return pd.DataFrame(rows)
