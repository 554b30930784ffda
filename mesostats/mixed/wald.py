"""Wald tests and intervals of estimates: the fixed-effects table shared by every results class.

For an estimate b with standard error s = √V_ii, the Wald statistic is b / s, the two-sided
p-value 2·P(T > |b/s|) and the interval b ± q·s, with T and q from Student's t at the given
denominator df (Satterthwaite or Kenward–Roger for linear models; Kenward & Roger 1997,
*Biometrics* 53:983) or from the standard normal where df is not finite (z tests of GLMMs and
CLMMs; Pinheiro & Bates 2000, *Mixed-Effects Models in S*, §2.4). Intervals thus agree with
the p-values. The distribution functions are scipy.special's ``stdtr``/``stdtrit`` and
``ndtr``/``ndtri``, the functions ``scipy.stats.t`` and ``scipy.stats.norm`` evaluate (the same
values without their ~0.2 ms of argument handling per call, which a small MMRM fit noticed).
:class:`~mesostats.mixed.results.MixedResults`,
:class:`~mesostats.mixed.mmrm.results.MMRMResults` and
:class:`~mesostats.mixed.clmm.results.CLMMResults` all build their tables here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special

__all__ = ["two_sided_p", "wald_columns", "wald_quantile", "wald_table"]


def _t_where(df: np.ndarray) -> np.ndarray:
    return np.isfinite(df) & (df > 0)


def two_sided_p(stat: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-values of ``stat``: Student's t at finite ``df``, the normal elsewhere."""
    stat = np.asarray(stat, dtype=float)
    df = np.broadcast_to(np.asarray(df, dtype=float), stat.shape)
    t = _t_where(df)
    with np.errstate(invalid="ignore"):
        p_t = 2.0 * special.stdtr(np.where(t, df, 1.0), -np.abs(stat))
    p = np.where(t, p_t, 2.0 * special.ndtr(-np.abs(stat)))
    return np.where(np.isfinite(df) & ~t, np.nan, p)


def wald_quantile(prob: float | np.ndarray, df: np.ndarray) -> np.ndarray:
    """Quantile ``prob`` of Student's t at finite ``df``, of the normal elsewhere."""
    df = np.asarray(df, dtype=float)
    prob_arr = np.broadcast_to(np.asarray(prob, dtype=float), df.shape)
    t = _t_where(df)
    q = np.where(t, special.stdtrit(np.where(t, df, 1.0), prob_arr), special.ndtri(prob_arr))
    return np.where(np.isfinite(df) & ~t, np.nan, q)


def wald_table(
    names: Sequence[str],
    estimate: np.ndarray,
    cov: np.ndarray,
    df: np.ndarray | float = np.inf,
    level: float = 0.95,
    index: str = "term",
) -> pd.DataFrame:
    """Estimate, std_error, statistic, df, p_value, ci_lower, ci_upper per name.

    ``cov`` is the covariance matrix of ``estimate`` (only its diagonal is used; negative
    rounding noise is clipped to 0); ``df`` one value or one per estimate (``inf`` = z test).
    """
    return pd.DataFrame(
        wald_columns(estimate, cov, df, level), index=pd.Index(list(names), name=index)
    )


def wald_columns(
    estimate: np.ndarray, cov: np.ndarray, df: np.ndarray | float = np.inf, level: float = 0.95
) -> dict[str, np.ndarray]:
    """The columns of :func:`wald_table` as arrays (for callers that need no table)."""
    est = np.asarray(estimate, dtype=float)
    se = np.sqrt(np.clip(np.diag(np.asarray(cov, dtype=float)), 0.0, None))
    dfs = np.broadcast_to(np.asarray(df, dtype=float), est.shape).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    q = wald_quantile(0.5 + level / 2.0, dfs)
    return {
        "estimate": est,
        "std_error": se,
        "statistic": stat,
        "df": dfs,
        "p_value": two_sided_p(stat, dfs),
        "ci_lower": est - q * se,
        "ci_upper": est + q * se,
    }
