"""Reading a power table: the smallest sample size that reaches a target power
(:func:`sample_size`) and the power curve (:func:`plot_power`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.planning.table import settings_of
from mesostats.planning.trials import SIDE_EFFECT

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class SampleSize:
    """The smallest sample size in a power grid that reaches a target power.

    Attributes
    ----------
    target : float
        The power aimed at.
    n_subjects : int or None
        Smallest ``n_subjects`` whose estimated power ≥ target (None: none in the grid).
    power, ci_lower, ci_upper : float
        Estimated power at that size and its Clopper–Pearson interval (NaN when None).
    n_subjects_sure : int or None
        Smallest size whose interval's *lower* bound ≥ target: enough even allowing for
        Monte Carlo error.
    n_subjects_possible : int or None
        Smallest size whose interval's *upper* bound ≥ target: smaller sizes are too small
        even allowing for Monte Carlo error.
    """

    target: float
    n_subjects: int | None
    power: float
    ci_lower: float
    ci_upper: float
    n_subjects_sure: int | None
    n_subjects_possible: int | None
    largest: int

    def __str__(self) -> str:
        if self.n_subjects is None:
            return (
                f"No sample size in the grid reaches power {self.target:g} (largest "
                f"{self.largest}); extend the grid upwards."
            )
        sure = (
            f"{self.n_subjects_sure}"
            if self.n_subjects_sure is not None
            else f"more than {self.largest}"
        )
        return (
            f"{self.n_subjects} subjects reach power {self.power:.3f} "
            f"(95% CI {self.ci_lower:.3f}–{self.ci_upper:.3f}) ≥ {self.target:g}; allowing "
            f"for Monte Carlo error the answer lies between {self.n_subjects_possible} and "
            f"{sure}."
        )


def sample_size(table: pd.DataFrame, target: float = 0.8) -> SampleSize:
    """Smallest sample size of a :func:`power` table that reaches the target power.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`power` (columns ``n_subjects, power, ci_lower, ci_upper``).
    target : float, default 0.8
        Power aimed at, in (0, 1).

    Returns
    -------
    SampleSize
        The smallest grid size with estimated power ≥ target, with its interval, and the
        range the answer spans under Monte Carlo error (smallest size whose interval's upper
        bound, resp. lower bound, reaches the target). ``str()`` says it in words.

    Raises
    ------
    ModelSpecError
        ``target`` outside (0, 1) or a table without the columns of :func:`power`.

    Notes
    -----
    Only sizes in the grid are answers: refine the grid around the answer to narrow it.
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ModelSpecError(f"target power must lie strictly between 0 and 1, got {target!r}.")
    needed = ["n_subjects", "power", "ci_lower", "ci_upper"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ModelSpecError(
            f"table lacks columns {missing}; pass the DataFrame that mesostats.power returns."
        )
    ordered = table.sort_values("n_subjects")
    n = ordered["n_subjects"].to_numpy(dtype=np.int64)

    def first(mask: np.ndarray) -> int | None:
        hits = np.flatnonzero(mask)
        return int(n[hits[0]]) if hits.size else None

    with np.errstate(invalid="ignore"):
        reached = ordered["power"].to_numpy(dtype=float) >= target
        sure = ordered["ci_lower"].to_numpy(dtype=float) >= target
        possible = ordered["ci_upper"].to_numpy(dtype=float) >= target
    best = first(reached)
    row = ordered[n == best].iloc[0] if best is not None else None
    return SampleSize(
        target=float(target),
        n_subjects=best,
        power=float(row["power"]) if row is not None else math.nan,
        ci_lower=float(row["ci_lower"]) if row is not None else math.nan,
        ci_upper=float(row["ci_upper"]) if row is not None else math.nan,
        n_subjects_sure=first(sure),
        n_subjects_possible=first(possible),
        largest=int(n.max()) if n.size else 0,
    )


def plot_power(table: pd.DataFrame, *, target: float = 0.8, ax: Axes | None = None) -> Axes:
    """Power curve: estimated power against sample size with Clopper–Pearson intervals.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`power`.
    target : float, default 0.8
        Drawn as a dashed line; the sample size of :func:`sample_size` is marked.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; default a new figure's.

    Returns
    -------
    matplotlib.axes.Axes
        The axes (the figure is not shown).
    """
    import matplotlib.pyplot as plt  # matplotlib: only when plotting

    answer = sample_size(table, target)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.0))
    ordered = table.sort_values("n_subjects")
    n = ordered["n_subjects"].to_numpy(dtype=float)
    p = ordered["power"].to_numpy(dtype=float)
    settings = settings_of(table)
    label = settings.get("test", "power")
    ax.fill_between(
        n, ordered["ci_lower"], ordered["ci_upper"], alpha=0.25, color="C0", linewidth=0
    )
    ax.plot(n, p, marker="o", color="C0", label=f"{label}: power ({_conf_label(settings)} CI)")
    ax.axhline(target, linestyle="--", color="0.4", linewidth=1, label=f"target {target:g}")
    if answer.n_subjects is not None:
        ax.axvline(answer.n_subjects, linestyle=":", color="C3", linewidth=1)
        ax.annotate(
            f"n = {answer.n_subjects}",
            (answer.n_subjects, target),
            textcoords="offset points",
            xytext=(-6, -14),
            ha="right",
            color="C3",
        )
    ax.set_ylim(0, 1.02)
    ax.margins(x=0.05)
    ax.set_xlabel("subjects randomised")
    outcome = settings.get("outcome", "")
    what = "odds of side effects" if outcome == SIDE_EFFECT else f"change in {outcome} per week"
    ax.set_ylabel("power")
    alpha = settings.get("alpha")
    ax.set_title(
        f"Power to detect the {label} effect on {what}"
        + (f" (α = {alpha:g})" if alpha is not None else "")
    )
    ax.legend(loc="lower right", frameon=False)
    return ax


def _conf_label(settings: Mapping[str, Any]) -> str:
    """The interval level of a power table's settings as text, e.g. ``"95%"``."""
    level = settings.get("conf_level", 0.95)
    return f"{100 * level:g}%"
