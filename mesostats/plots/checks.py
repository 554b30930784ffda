"""Figures of :func:`mesostats.check_model`: the four panels of a model check.

* residuals vs fitted — scaled residuals against the rank of the population-level fitted
  value (DHARMa's ``plotResiduals``: ranks spread the points evenly), with the 0.25, 0.5
  and 0.75 lines they should scatter around and the 0.25/0.5/0.75 quantile regressions of
  the residuals on the rank, quadratic as in the ``residual_trend`` test (Koenker & Bassett
  1978; statsmodels' ``QuantReg``), drawn in red when that test flags a trend;
* Q–Q of the scaled residuals against U(0, 1) (DHARMa's ``plotQQunif``);
* normal Q–Q of the person effects (standardised conditional modes; shrunken, see
  :mod:`mesostats.checks.simulation_tests`);
* influence — each person's leave-one-person-out change of the key effect, in standard
  errors, largest first.

Axes-level functions take ``ax=None`` and return the Axes; :func:`check_panel` returns a
:class:`matplotlib.figure.Figure` made without pyplot (no global state, never shown).
Inputs are read by attribute (``residuals``, ``fitted``, ``person_effects``,
``influence_scaled``, ``key_effect``), so this module needs nothing from the checks package.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from mesostats.plots.colours import _NEUTRAL, _axes

__all__ = [
    "check_panel",
    "influence_plot",
    "person_effects_qq",
    "residual_qq",
    "residuals_vs_fitted",
]

_FLAG = (0.8, 0.2, 0.2)
_QUARTILES = (0.25, 0.5, 0.75)
#: fewest rows for the quantile curves (the ``residual_trend`` test's minimum)
_MIN_ROWS_CURVES = 40


def _quantile_curves(
    rank: np.ndarray, res: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Quadratic quantile regressions of ``res`` on ``rank`` at the quartiles, on a grid."""
    if res.size < _MIN_ROWS_CURVES or np.ptp(rank) == 0:
        return None
    from statsmodels.regression.quantile_regression import QuantReg  # heavy: import on use

    centred = rank - 0.5
    design = np.column_stack([np.ones_like(centred), centred, centred**2])
    grid = np.linspace(rank.min(), rank.max(), 50)
    g = grid - 0.5
    basis = np.column_stack([np.ones_like(g), g, g**2])
    lines = []
    for q in _QUARTILES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IterationLimitWarning on ties: the curve stays
            params = QuantReg(res, design).fit(q=q).params
        lines.append(np.clip(basis @ np.asarray(params), 0.0, 1.0))
    return grid, lines


def _flagged(check: Any, test: str) -> bool:
    """Whether ``check.tests`` has a row ``test`` with verdict ``"problem"``."""
    tests = getattr(check, "tests", None)
    if tests is None or "test" not in tests:
        return False
    rows = tests[tests["test"] == test]
    return bool((rows["verdict"] == "problem").any())


def residuals_vs_fitted(check: Any, ax: Axes | None = None) -> Axes:
    """Scaled residuals against the rank-transformed fitted values."""
    ax = _axes(ax)
    res = np.asarray(check.residuals, dtype=float)
    fitted = np.asarray(check.fitted, dtype=float)
    rank = stats.rankdata(fitted) / max(len(fitted), 1)
    ax.scatter(rank, res, s=6, alpha=0.4, color=_NEUTRAL, linewidths=0)
    for q in _QUARTILES:
        ax.axhline(q, color=_FLAG if q == 0.5 else "0.6", lw=1, ls="--")
    curves = _quantile_curves(rank, res)
    if curves is not None:
        grid, lines = curves
        colour = _FLAG if _flagged(check, "residual_trend") else "0.15"
        for line in lines:
            ax.plot(grid, line, color=colour, lw=1.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("fitted value (rank)")
    ax.set_ylabel("scaled residual")
    ax.set_title("Residuals vs fitted")
    return ax


def residual_qq(check: Any, ax: Axes | None = None) -> Axes:
    """Q–Q plot of the scaled residuals against U(0, 1)."""
    ax = _axes(ax)
    res = np.sort(np.asarray(check.residuals, dtype=float))
    expected = (np.arange(1, res.size + 1) - 0.5) / max(res.size, 1)
    ax.plot([0, 1], [0, 1], color=_FLAG, lw=1)
    ax.scatter(expected, res, s=6, color=_NEUTRAL, linewidths=0)
    ax.set_xlabel("expected (uniform)")
    ax.set_ylabel("observed scaled residual")
    ax.set_title("Q–Q of scaled residuals")
    return ax


def person_effects_qq(check: Any, ax: Axes | None = None) -> Axes:
    """Normal Q–Q plot of each column of the person effects (standardised)."""
    ax = _axes(ax)
    effects = check.person_effects
    if effects is None or effects.empty:
        ax.text(0.5, 0.5, "no person effects", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    for column in effects.columns:
        values = np.sort(effects[column].to_numpy(dtype=float))
        sd = values.std()
        if values.size < 2 or sd == 0:
            continue
        z = (values - values.mean()) / sd
        theo = stats.norm.ppf((np.arange(1, values.size + 1) - 0.5) / values.size)
        ax.scatter(theo, z, s=8, label=str(column), linewidths=0)
    lim = 3.5
    ax.plot([-lim, lim], [-lim, lim], color=_FLAG, lw=1)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("standardised person effect")
    ax.set_title("Q–Q of person effects")
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    return ax


def influence_plot(check: Any, ax: Axes | None = None, *, top: int = 20) -> Axes:
    """Each person's leave-one-out change of the key effect (in SEs), the ``top`` largest."""
    ax = _axes(ax)
    key = check.key_effect
    if key is None:
        ax.text(0.5, 0.5, "no person influence", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    change = check.influence_scaled[key]
    order = change.abs().sort_values(ascending=False).index[:top]
    shown = change.loc[order]
    ax.bar(np.arange(len(shown)), shown.to_numpy(), color=_NEUTRAL)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(np.arange(len(shown)), [str(i) for i in shown.index], rotation=90, fontsize=6)
    ax.set_ylabel(f"change of {key} (SEs)")
    ax.set_title("Influence: leave one person out")
    return ax


def check_panel(check: Any) -> Figure:
    """The four panels on one :class:`~matplotlib.figure.Figure` (2 × 2)."""
    fig = Figure(figsize=(10, 8))
    axes = fig.subplots(2, 2, gridspec_kw={"hspace": 0.45, "wspace": 0.25})
    fig.subplots_adjust(left=0.07, right=0.98, top=0.92, bottom=0.1)
    residuals_vs_fitted(check, axes[0, 0])
    residual_qq(check, axes[0, 1])
    person_effects_qq(check, axes[1, 0])
    influence_plot(check, axes[1, 1])
    fig.suptitle(f"Model checks ({check.kind}, {check.n_sim} simulations, seed {check.seed})")
    return fig
