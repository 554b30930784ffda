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
  residual-vs-predicted plot look for): Pearson's χ² of the table fitted-value bin ×
  residual quartile (equal-count bins by the rank of the fitted value, about 50 rows each,
  2 to 8), against the same χ² of every simulated data set (one-sided). Statistic:
  observed / mean simulated χ².
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


def _chi_square(residuals: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Pearson χ² of (bin × residual quartile) per column of ``residuals`` (rows, n)."""
    quartile = np.minimum((residuals * 4).astype(np.intp), 3)
    cell = bins[:, None] * 4 + quartile
    n = residuals.shape[1]
    counts = np.zeros((n, n_bins * 4))
    np.add.at(counts, (np.broadcast_to(np.arange(n), cell.shape), cell), 1.0)
    expected = np.repeat(np.bincount(bins, minlength=n_bins) / 4.0, 4)[None, :]
    return np.asarray(((counts - expected) ** 2 / expected).sum(axis=1))


def trend_test(residuals: np.ndarray, sim_residuals: np.ndarray, fitted: np.ndarray) -> Row | None:
    """Residual quartile × fitted-value bin χ², observed vs simulated (None below 40 rows)."""
    rows = np.asarray(residuals).size
    if rows < 40:
        return None
    n_bins = int(np.clip(rows // 50, 2, 8))
    order = np.argsort(np.asarray(fitted, dtype=float), kind="stable")
    bins = np.empty(rows, dtype=np.intp)
    bins[order] = np.arange(rows) * n_bins // rows
    obs = float(_chi_square(np.asarray(residuals, dtype=float)[:, None], bins, n_bins)[0])
    sims = _chi_square(np.asarray(sim_residuals, dtype=float), bins, n_bins)
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
