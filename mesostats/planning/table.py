"""The power table: share of significant trials per sample size with its Monte Carlo SE
(Morris, White & Crowther 2019) and an exact Clopper–Pearson (1934) interval.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mesostats._records import FrozenRecord
from mesostats.planning.trials import _AUTO_PROGRESS_TRIALS

#: Columns of the table :func:`power` returns, in order.
POWER_COLUMNS = [
    "n_subjects",
    "power",
    "mc_se",
    "ci_lower",
    "ci_upper",
    "n_sims",
    "n_failed",
    "n_rejected",
    "n_singular",
]


@dataclass(frozen=True, eq=False)
class PowerTrials(FrozenRecord):
    """The per-trial records behind a power table (``table.trials``).

    Attributes
    ----------
    simulations : DataFrame
        One row per simulated trial (:data:`TRIAL_COLUMNS`): its estimate, standard error
        and p-value, whether it rejected, converged or was singular, and ``error`` (why a
        failed trial failed; missing for trials that worked).
    timing : DataFrame
        ``seconds_simulate, seconds_fit`` per trial, in the order of ``simulations``.
    settings : dict
        The seed and every option of the run.
    """

    simulations: pd.DataFrame
    timing: pd.DataFrame
    settings: dict[str, Any]

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Each failed trial as ``{"n_subjects", "simulation", "reason"}``."""
        sims = object.__getattribute__(self, "simulations")
        failed = sims[sims["error"].notna()]
        return [
            {"n_subjects": int(n), "simulation": int(j), "reason": str(r)}
            for n, j, r in zip(
                failed["n_subjects"], failed["simulation"], failed["error"], strict=True
            )
        ]


class PowerTable(pd.DataFrame):
    """The table :func:`mesostats.power` returns: a DataFrame (one row per sample size,
    :data:`POWER_COLUMNS`) that also carries its per-trial records in the typed attribute
    ``trials`` (:class:`PowerTrials`). Frames derived from it (copies, column or row
    selections) keep the same ``trials`` by reference (pandas ``_metadata``), where
    ``DataFrame.attrs`` would deep-copy them on every derived frame.
    """

    _metadata = ["trials"]  # noqa: RUF012  (pandas declares _metadata as a plain list)
    trials: PowerTrials

    @property
    def _constructor(self) -> type[PowerTable]:  # type: ignore[override]
        return PowerTable


def settings_of(table: pd.DataFrame) -> Mapping[str, Any]:
    """The run settings of a power table (empty for a plain DataFrame)."""
    trials = getattr(table, "trials", None)
    return trials.settings if isinstance(trials, PowerTrials) else {}


def _clopper_pearson(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval (Clopper & Pearson 1934) from beta quantiles."""
    a = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(k > 0, stats.beta.ppf(a, k, n - k + 1), 0.0)
        upper = np.where(k < n, stats.beta.ppf(1.0 - a, k + 1, n - k), 1.0)
    empty = n == 0
    return np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)


def _power_table(sims: pd.DataFrame, grid: Sequence[int], level: float) -> pd.DataFrame:
    by_n = sims.groupby("n_subjects", sort=False)
    counts = pd.DataFrame(
        {
            "n_sims": by_n.size(),
            "n_failed": by_n["error"].agg(lambda e: int(e.notna().sum())),
            "n_rejected": by_n["rejected"].sum(),
            "n_singular": by_n["singular"].sum(),
        }
    ).reindex(grid)
    n_sims = counts["n_sims"].to_numpy(dtype=np.int64)
    n_failed = counts["n_failed"].to_numpy(dtype=np.int64)
    k = counts["n_rejected"].to_numpy(dtype=np.int64)
    n_ok = n_sims - n_failed
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_ok > 0, k / n_ok, np.nan)
        mc_se = np.sqrt(p * (1.0 - p) / n_ok)
    lower, upper = _clopper_pearson(k, n_ok, level)
    return pd.DataFrame(
        {
            "n_subjects": np.asarray(grid, dtype=np.int64),
            "power": p,
            "mc_se": mc_se,
            "ci_lower": lower,
            "ci_upper": upper,
            "n_sims": n_sims,
            "n_failed": n_failed,
            "n_rejected": k,
            "n_singular": counts["n_singular"].to_numpy(dtype=np.int64),
        }
    )


def _progress_bar(progress: bool | None, total: int) -> Any:
    from tqdm import tqdm  # tqdm: only when a bar is shown

    if progress is None:
        isatty = getattr(sys.stderr, "isatty", lambda: False)
        progress = total >= _AUTO_PROGRESS_TRIALS and bool(isatty())
    return tqdm(total=total, disable=not progress, unit="trial", desc="power", file=sys.stderr)
