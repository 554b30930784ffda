"""Scaled simulated residuals: the probability integral transform of each observation
against the responses simulated from the fitted model (Dunn & Smyth 1996, *J. Comput.
Graph. Stat.* 5:236 — randomised quantile residuals; Hartig, DHARMa R package, "PIT"
residuals, the default since DHARMa 0.3).

For row i with simulations s_i1…s_in: lower = #{s_ij < y_i}/n, upper = #{s_ij ≤ y_i}/n, and
the residual is lower when the two agree (a continuous response), else a uniform draw between
them (a discrete response: ties are broken at random). Under the fitted model the residuals
are uniform on (0, 1) whatever the family, so one set of tests and plots serves all models.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["scaled_residuals", "simulated_residuals"]


def scaled_residuals(
    observed: np.ndarray, simulated: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """PIT residuals of ``observed`` (rows,) against ``simulated`` (rows, n), in [0, 1]."""
    obs = np.asarray(observed, dtype=float)[:, None]
    sims = np.asarray(simulated, dtype=float)
    lower = (sims < obs).mean(axis=1)
    upper = (sims <= obs).mean(axis=1)
    u = rng.random(lower.shape)
    return np.where(upper > lower, lower + u * (upper - lower), lower)


def simulated_residuals(simulated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """PIT residuals of each simulated data set against the other ``n − 1``: (rows, n).

    Column j is what :func:`scaled_residuals` gives when simulation j plays the observed
    data, so a statistic of the residuals gets its distribution under the fitted model
    from the same simulations (DHARMa's ``testOutliers(type = "bootstrap")`` idea), with
    the within-person correlation and the discreteness of the data built in.
    """
    sims = np.asarray(simulated, dtype=float)
    n = sims.shape[1]
    below = stats.rankdata(sims, method="min", axis=1) - 1.0  # others strictly below
    at_most = stats.rankdata(sims, method="max", axis=1) - 1.0  # others ≤ (self excluded)
    lower, upper = below / (n - 1), at_most / (n - 1)
    u = rng.random(sims.shape)
    return np.where(upper > lower, lower + u * (upper - lower), lower)
