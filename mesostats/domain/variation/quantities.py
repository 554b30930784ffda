"""The quantities of "varied results" and their small algebra: median odds ratio, interval
estimates, between-person variance at a week, conditional-mode tables and share-above-threshold.
Formulas and references: :mod:`mesostats.domain.variation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mesostats._display import format_estimate
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.design import lower_triangle_indices
from mesostats.mixed.results import MixedResults

_Q75 = float(stats.norm.ppf(0.75))
_LATENT_LOGISTIC_VAR = math.pi**2 / 3.0
CI_METHODS = ("profile", "bootstrap")


def median_odds_ratio(sd: float | np.ndarray) -> float | np.ndarray:
    """Median odds ratio of a logit-scale random-intercept SD (Merlo et al. 2006).

    MOR = exp(√(2σ²)·Φ⁻¹(0.75)) ≈ exp(0.954·σ).

    Parameters
    ----------
    sd : float or array
        Between-group SD on the logit scale.

    Returns
    -------
    float or array
        The MOR (1 when the SD is 0).

    References
    ----------
    Merlo J, Chaix B, Ohlsson H, et al. (2006). A brief conceptual tutorial of multilevel
    analysis in social epidemiology. *J Epidemiol Community Health* 60(4):290–297.

    Examples
    --------
    >>> round(float(median_odds_ratio(1.0)), 4)
    2.5957
    """
    value = np.exp(np.sqrt(2.0 * np.square(sd)) * _Q75)
    return float(value) if np.ndim(value) == 0 else value


@dataclass(frozen=True)
class IntervalEstimate:
    """An estimate with its confidence interval and how it was obtained.

    ``float(x)`` gives the estimate.
    """

    name: str
    estimate: float
    ci_lower: float
    ci_upper: float
    level: float
    method: str
    note: str = ""

    def __float__(self) -> float:
        return float(self.estimate)

    def describe(self) -> str:
        """``0.41 (95 % CI 0.30 to 0.52; profile likelihood)`` and the note, if any."""
        text = format_estimate(
            self.estimate, self.ci_lower, self.ci_upper, ci_label=f"{100 * self.level:g} % CI"
        )
        text = f"{text[:-1]}; {self.method})"
        return text + (f" — {self.note}" if self.note else "")

    def __repr__(self) -> str:
        return (
            f"<{self.name} {self.estimate:.4g} ({100 * self.level:g} % CI "
            f"{self.ci_lower:.4g} to {self.ci_upper:.4g}; {self.method})>"
        )


# --------------------------------------------------------------------------- helpers
def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def conditional_mode_table(model: MixedResults, level: float = 0.95) -> pd.DataFrame:
    """Every conditional mode (BLUP) with its conditional SD and Wald-type interval.

    Parameters
    ----------
    model : MixedResults
    level : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, level, term, mode, cond_sd, ci_lower, ci_upper`` (mode ± z·cond_sd, the
        conditional-variance intervals of lme4's ``ranef(condVar = TRUE)`` dotplots).
    """
    z = _z(level)
    parts = []
    for group, frame in model.ranef.items():
        sd = model.ranef_se[group]
        for term in frame.columns:
            m = frame[term].to_numpy(dtype=float)
            s = sd[term].to_numpy(dtype=float)
            parts.append(
                pd.DataFrame(
                    {
                        "group": group,
                        "level": [str(v) for v in frame.index],
                        "term": term,
                        "mode": m,
                        "cond_sd": s,
                        "ci_lower": m - z * s,
                        "ci_upper": m + z * s,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ModelSpecError(f"level must be a number between 0 and 1 (e.g. 0.95), got {level!r}.")
    return float(level)


def _check_week(week: Any) -> float:
    if isinstance(week, bool) or not isinstance(week, (int, float, np.integer, np.floating)):
        raise ModelSpecError(f"week must be a number (weeks since day 1), got {week!r}.")
    w = float(week)
    if not math.isfinite(w) or w < 0:
        raise ModelSpecError(f"week must be a finite number ≥ 0, got {week!r}.")
    return w


def _between_variance(
    model: MixedResults, zs: Sequence[np.ndarray], theta: np.ndarray, sigma: float | np.ndarray
) -> np.ndarray:
    """Σ_t z_tᵀ Σ_t(θ, σ) z_t per row: the between-group variance of a new person's response.

    ``theta`` may be one vector (n_theta,) → result (rows,), or draws (D, n_theta) with
    ``sigma`` (D,) → result (D, rows); Σ_t = σ²Λ_tΛ_tᵀ is built for every draw at once.
    """

    design = model.design
    thetas = np.atleast_2d(np.asarray(theta, dtype=float))
    sig2 = np.square(np.broadcast_to(np.asarray(sigma, dtype=float), (thetas.shape[0],)))
    n_rows = zs[0].shape[0] if zs else 0
    total = np.zeros((thetas.shape[0], n_rows))
    for z, term, sl in zip(zs, design.terms, design.theta_slices, strict=True):
        rows, cols = lower_triangle_indices(term.q)
        lam = np.zeros((thetas.shape[0], term.q, term.q))
        lam[:, rows, cols] = thetas[:, sl]
        zl = np.einsum("ca,dab->dcb", z, lam)
        total += sig2[:, None] * np.einsum("dcb,dcb->dc", zl, zl)
    return total[0] if np.ndim(theta) == 1 else total


def _term_rows(model: MixedResults, values: dict[str, float], n: int = 1) -> list[np.ndarray]:
    """Random-effect covariates of a new person: 1 for an intercept, ``values[name]`` else 0."""
    out = []
    for term in model.design.terms:
        row = np.array(
            [1.0 if name == "Intercept" else float(values.get(name, 0.0)) for name in term.names]
        )
        out.append(np.tile(row, (n, 1)))
    return out


def _logit_ci(est: float, grad: np.ndarray, cov: np.ndarray, z: float) -> tuple[float, float]:
    """Delta-method interval of a proportion on the logit scale."""
    if not 0.0 < est < 1.0:
        return math.nan, math.nan
    var = float(grad @ cov @ grad)
    if not math.isfinite(var) or var < 0:
        return math.nan, math.nan
    se = math.sqrt(var) / (est * (1.0 - est))
    centre = math.log(est / (1.0 - est))
    lo, hi = centre - z * se, centre + z * se
    return 1.0 / (1.0 + math.exp(-lo)), 1.0 / (1.0 + math.exp(-hi))


# --------------------------------------------------------------------------- main object


def _share_above(mean: np.ndarray, sd: np.ndarray, threshold: float) -> np.ndarray:
    """P(N(mean, sd²) > threshold), with a point mass when sd = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        zscore = (mean - threshold) / sd
    point = np.where(mean > threshold, 1.0, 0.0)
    return np.where(sd > 0, stats.norm.cdf(zscore), point)


def _flags(lo: np.ndarray, hi: np.ndarray, threshold: float, above: str, below: str) -> list[str]:
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    return [
        above if a > threshold else below if b < threshold else "uncertain"
        for a, b in zip(lo, hi, strict=True)
    ]
