"""The tests of :func:`mesostats.check_model`, after Hartig's DHARMa (R package, 0.4–0.5).

Each returns a row ``(test, statistic, p_value)``; all p-values are two-sided.

* ``uniformity`` — Kolmogorov–Smirnov test of the scaled residuals against U(0, 1)
  (DHARMa's ``testUniformity``); statistic: the KS distance D.
* ``dispersion`` — DHARMa's default ``testDispersion(type = "DHARMa")`` for models simulated
  without refitting: the variance of the raw residuals y − μ̂ (μ̂ the population-level fitted
  mean) compared with the same variance in every simulated data set; statistic: observed /
  mean simulated (> 1 overdispersion, < 1 underdispersion); p = 2·min(share of simulated
  values ≥ observed, share ≤ observed) (DHARMa's ``getP``).
* ``zero_inflation`` — DHARMa's ``testZeroInflation``: the number of zeros against the
  simulated numbers, same ratio and p-value (counts and multi-trial binomial rows only; for
  0/1 rows the share of zeros is the mean, which the model fits by construction).
* ``outliers`` — the share of residuals outside every simulation (exactly 0 or 1),
  against the same share in each simulated data set scored against the other simulations
  (:func:`~mesostats.checks.residuals.simulated_residuals`; DHARMa's
  ``testOutliers(type = "bootstrap")`` idea — its binomial variant, with expected share
  2/(n + 1), rejects too often for discrete data: measured here 10 % at the 5 % level on a
  correct Poisson GLMM). Statistic: observed / mean simulated share.
* ``residual_trend`` — whether the residuals depend on the fitted value (a missing term, a
  wrong link, a variance that grows with the mean: what DHARMa's ``testQuantiles`` and its
  residual-vs-predicted plot look for). DHARMa fits quantile regressions (qgam splines) of
  the residuals on the rank of the predicted value at the 0.25, 0.5 and 0.75 quantiles and
  asks whether each line is flat at its expected level. Here the same question is asked with
  the regression rank-score test (Gutenbrunner, Jurečková, Koenker & Portnoy 1993,
  *J. Nonparametric Stat.* 2:307; Koenker 2005, *Quantile Regression*, §3.5): under the
  model the q-quantile of the residuals is q everywhere, so the score of the quantile
  regression on Z — centred, orthonormal linear and quadratic polynomials in the rank of the
  fitted value — is S_q = Zᵀ(1{r ≤ q} − q), and T = Σ_q ‖S_q‖² / (q(1 − q)) over
  q = 0.25, 0.5, 0.75. The linear term catches a monotone drift (a variance that grows with
  the mean moves the outer quartiles), the quadratic one the bow of a wrong link or a
  missing curvature. T is compared (one-sided) with its value in every simulated data set
  rather than with χ²₆: the rows of one person are correlated, which the simulations carry
  and the χ² theory does not. Statistic: observed / mean simulated T. Against a wrong link
  (``tests/test_check_wrong_link.py``, 60 persons × 6 visits) it has more power than the
  χ² of fitted-value bin × residual quartile it replaced: 0.96 against 0.63 for a cloglog
  truth fitted with the logit, 1.00 against 0.945 for a Poisson mean linear in the
  covariate fitted with the log link (200 seeds), at sizes 0.02–0.045.
* ``person_effects_normality`` — Shapiro–Wilk's W (1965) of each column of the person
  effects, against the W of the person effects of every simulated data set, computed by
  the same linear map (one penalised-IRLS step at the fitted parameters,
  :mod:`mesostats.checks.linearised`); one-sided (small W), Bonferroni over the columns;
  statistic: the observed W of the column with the smallest p. The modes are shrunken
  towards 0, the more so for persons with few rows, and for binary data they bunch at a few
  values: the raw Shapiro–Wilk p of the modes rejected 15 % of correct Poisson GLMMs at the
  5 % level here, which is why W is compared with simulated W rather than with its normal
  theory (Verbeke & Lesaffre 1996, *JASA* 91:217, on shrinkage). A small p still says "look
  at the Q–Q plot", not that the person effects are certainly not normal.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "TREND_QUANTILES",
    "dispersion_test",
    "outlier_test",
    "person_effects_test",
    "simulation_p",
    "trend_test",
    "uniformity_test",
    "zero_inflation_test",
]

Row = tuple[str, float, float]


def simulation_p(observed: float, simulated: np.ndarray) -> float:
    """Two-sided p of ``observed`` against the ``simulated`` values (DHARMa's getP)."""
    sims = np.asarray(simulated, dtype=float)
    return float(min(1.0, 2.0 * min(np.mean(sims <= observed), np.mean(sims >= observed))))


def _ratio(observed: float, simulated: np.ndarray) -> float:
    mean = float(np.mean(simulated))
    return observed / mean if mean > 0 else (np.nan if observed == 0 else np.inf)


def uniformity_test(residuals: np.ndarray) -> Row:
    """KS test of the scaled residuals against U(0, 1)."""
    res = stats.kstest(np.asarray(residuals, dtype=float), "uniform")
    return ("uniformity", float(res.statistic), float(res.pvalue))


def dispersion_test(observed: np.ndarray, simulated: np.ndarray, fitted: np.ndarray) -> Row:
    """Variance of y − μ̂ observed vs simulated (DHARMa's default dispersion test)."""
    obs = float(np.var(observed - fitted, ddof=1))
    sims = np.var(simulated - fitted[:, None], axis=0, ddof=1)
    return ("dispersion", _ratio(obs, sims), simulation_p(obs, sims))


def zero_inflation_test(observed: np.ndarray, simulated: np.ndarray) -> Row:
    """Number of zeros observed vs simulated (DHARMa's testZeroInflation)."""
    obs = float(np.sum(observed == 0))
    sims = np.sum(simulated == 0, axis=0).astype(float)
    return ("zero_inflation", _ratio(obs, sims), simulation_p(obs, sims))


def _outside(residuals: np.ndarray) -> np.ndarray:
    """Share of residuals at exactly 0 or 1 (outside every simulation), per column."""
    return np.asarray(np.mean((residuals <= 0.0) | (residuals >= 1.0), axis=0))


def outlier_test(residuals: np.ndarray, sim_residuals: np.ndarray) -> Row:
    """Share of residuals outside every simulation, observed vs simulated data sets."""
    obs = float(_outside(np.asarray(residuals, dtype=float)))
    sims = _outside(np.asarray(sim_residuals, dtype=float))
    return ("outliers", _ratio(obs, sims), simulation_p(obs, sims))


#: Quantiles whose regression on the fitted value :func:`trend_test` tests (DHARMa's).
TREND_QUANTILES = (0.25, 0.5, 0.75)


def _trend_basis(fitted: np.ndarray) -> np.ndarray | None:
    """Centred orthonormal linear and quadratic polynomials in the rank of ``fitted``
    (rows, 1 or 2); None when the fitted value does not vary."""
    t = stats.rankdata(fitted) / (fitted.size + 1.0) - 0.5
    Z = np.column_stack([t, t**2])
    Z -= Z.mean(axis=0)
    u, d, _ = np.linalg.svd(Z, full_matrices=False)
    keep = d > 1e-8 * max(float(d[0]), 1e-300)
    if d[0] <= 1e-12 or not keep.any():
        return None
    return np.asarray(u[:, keep])


def _rank_score(residuals: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """T = Σ_q ‖Zᵀ(1{r ≤ q} − q)‖² / (q(1 − q)) per column of ``residuals`` (rows, n)."""
    total = np.zeros(residuals.shape[1])
    for q in TREND_QUANTILES:
        score = basis.T @ ((residuals <= q) - q)
        total += (score**2).sum(axis=0) / (q * (1.0 - q))
    return total


def trend_test(residuals: np.ndarray, sim_residuals: np.ndarray, fitted: np.ndarray) -> Row | None:
    """Rank-score test of the residual quartiles on the fitted value (linear + quadratic in
    its rank), observed vs simulated; None below 40 rows or when the fitted value is
    constant."""
    rows = np.asarray(residuals).size
    if rows < 40:
        return None
    basis = _trend_basis(np.asarray(fitted, dtype=float))
    if basis is None:
        return None
    obs = float(_rank_score(np.asarray(residuals, dtype=float)[:, None], basis)[0])
    sims = _rank_score(np.asarray(sim_residuals, dtype=float), basis)
    return ("residual_trend", _ratio(obs, sims), float(np.mean(sims >= obs)))


def _shapiro(values: np.ndarray) -> float:
    if values.size > 5000:  # Shapiro–Wilk's p is approximate beyond 5000; W is still fine
        values = values[:5000]
    return float(stats.shapiro(values).statistic)


def person_effects_test(observed: np.ndarray, simulated: np.ndarray) -> Row | None:
    """Normality of the person effects (persons, q) against simulated ones (persons, q, n):
    None when no column varies (e.g. every mode is 0 at a singular fit) or < 3 persons."""
    best: tuple[float, float] | None = None
    if observed.shape[0] < 3:
        return None
    columns = [c for c in range(observed.shape[1]) if np.ptp(observed[:, c]) > 0]
    for c in columns:
        w_obs = _shapiro(observed[:, c])
        sims = simulated[:, c, :]
        varies = np.ptp(sims, axis=0) > 0
        w_sim = np.array([_shapiro(sims[:, j]) for j in np.flatnonzero(varies)])
        if w_sim.size == 0:
            continue
        p = min(1.0, float(np.mean(w_sim <= w_obs)) * len(columns))
        if best is None or p < best[1]:
            best = (w_obs, p)
    if best is None:
        return None
    return ("person_effects_normality", best[0], best[1])
