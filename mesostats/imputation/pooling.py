"""The analysis of each completed data set and the pooling of the results.

**Analysis model.** At each visit, an ANCOVA of the change from baseline on the arm and the
baseline, by ordinary least squares (rbmi's default analysis, ``ancova``). On complete data it
is the primary analysis itself: the trial's MMRM (``cocktail * visit + baseline * visit``,
unstructured covariance) has the same regressors at every visit, so its GLS estimates are the
per-visit OLS estimates (Zellner 1962, *JASA* 57:348, seemingly unrelated regressions with
identical regressors), REML's σ_vv is the visit's residual mean square (so the SE is the
MMRM's model-based one; Kenward–Roger's small-sample adjustment of it differs by about 1 %
with 60 people), and Kenward–Roger and Satterthwaite give the residual df n − p_v for a
visit's contrast (all checked against :func:`mesostats.fit_mmrm` in the tests). So each
refit is one matrix product shared by every visit and every imputation. (With a fallback
covariance structure the complete-data MMRM would differ slightly from this unstructured one.)

**Pooling** (Rubin 1987, *Multiple Imputation for Nonresponse in Surveys*, §3.1; Barnard &
Rubin 1999, *Biometrika* 86:948). With M estimates Q_m and variances U_m:
Q̄ = mean Q_m, Ū = mean U_m, B = var(Q_m) (divisor M − 1), T = Ū + (1 + 1/M) B;
λ = (1 + 1/M) B / T; ν_old = (M − 1)/λ²; ν_obs = (ν_com + 1)/(ν_com + 3) · ν_com (1 − λ);
ν = 1/(1/ν_old + 1/ν_obs), which is ν_obs when B = 0 (ν_old infinite; as R's rbmi
``rubin_df``, so a visit without missing data gets the same df whether B is exactly 0 or
rounding noise); t-based p-value and 95 % CI.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["ancova", "rubin"]

LEVEL = 0.95


def ancova(
    completed: np.ndarray, arm: np.ndarray, baseline: np.ndarray, n_arms: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-visit ANCOVA of completed grids.

    Parameters
    ----------
    completed : ndarray (..., n, V)
    arm : ndarray (n,) of int, 0 = control
    baseline : ndarray (n,)
    n_arms : int

    Returns
    -------
    estimate, variance : ndarray (..., V, n_arms − 1)
        Each arm minus the control at each visit, and its squared standard error.
    df : float
        Residual df n − (n_arms + 1).
    """
    n = arm.size
    X = np.column_stack(
        [np.ones(n), (arm[:, None] == np.arange(1, n_arms)[None, :]).astype(float), baseline]
    )
    p = X.shape[1]
    XtX_inv = np.linalg.inv(X.T @ X)
    H = XtX_inv @ X.T  # (p, n)
    coef = np.einsum("pn,...nv->...vp", H, completed)
    fitted = np.einsum("np,...vp->...nv", X, coef)
    rss = np.sum((completed - fitted) ** 2, axis=-2)  # (..., V)
    df = float(n - p)
    sigma2 = rss / df
    arms = slice(1, n_arms)
    var = sigma2[..., None] * np.diag(XtX_inv)[arms]
    return coef[..., arms], var, df


def rubin(
    estimates: np.ndarray, variances: np.ndarray, df_complete: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Rubin's rules with Barnard–Rubin df over the first axis (the M imputations).

    Returns a dict of arrays (the shape of one estimate): ``estimate, std_error, df,
    p_value, ci_lower, ci_upper, within, between``.
    """
    Q = np.asarray(estimates, dtype=float)
    U = np.asarray(variances, dtype=float)
    M = Q.shape[0]
    qbar = Q.mean(axis=0)
    ubar = U.mean(axis=0)
    b = Q.var(axis=0, ddof=1) if M > 1 else np.zeros_like(qbar)
    total = ubar + (1.0 + 1.0 / M) * b
    nu_com = np.broadcast_to(np.asarray(df_complete, dtype=float), qbar.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (1.0 + 1.0 / M) * b / total
        nu_old = (M - 1) / lam**2
        nu_obs = (nu_com + 1.0) / (nu_com + 3.0) * nu_com * (1.0 - lam)
        nu = 1.0 / (1.0 / nu_old + 1.0 / nu_obs)
    nu = np.where(b > 0, nu, nu_obs)
    se = np.sqrt(total)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = qbar / se
    p = 2.0 * stats.t.sf(np.abs(t), nu)
    q = stats.t.ppf(0.5 + LEVEL / 2.0, nu)
    return {
        "estimate": qbar,
        "std_error": se,
        "df": nu,
        "p_value": p,
        "ci_lower": qbar - q * se,
        "ci_upper": qbar + q * se,
        "within": ubar,
        "between": b,
    }
