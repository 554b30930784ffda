"""Stand-ins for the MMRM engine, marginal means and contrasts, to test how the primary
analysis is assembled (rows, fallback, tables, report, CLI) independently of the engines.

The stand-in "fit" keeps the data; its "means" are the observed cell means of ``chg`` with
their SE (n − 1 df), its "contrasts" the differences to the first cocktail with Welch-type
SEs. Numbers from these are *not* MMRM results: the real engine is tested in
test_trial.py's end-to-end tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.domain.trial import TrialEngine


@dataclass
class FakeModel:
    formula: str
    data: pd.DataFrame
    converged: bool = True
    messages: list[str] = field(default_factory=list)


def fake_fit(fails: dict[str, Any] | None = None, calls: list[str] | None = None):
    """A fit whose structure in ``fails`` does not converge (False) or raises (an error)."""

    def fit(formula: str, data: pd.DataFrame, *, df: str = "kenward-roger") -> FakeModel:
        structure = formula.rsplit("+ ", 1)[1].split("(")[0]
        if calls is not None:
            calls.append(structure)
        outcome = (fails or {}).get(structure)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is False:
            return FakeModel(formula, data, False, [f"{structure}: iteration limit reached"])
        return FakeModel(formula, data)

    return fit


def fake_means(model: FakeModel, specs: str, *, by: str) -> pd.DataFrame:
    g = model.data.groupby([by, specs], observed=True)["chg"]
    out = g.agg(estimate="mean", sd="std", n="size").reset_index()
    out["std_error"] = out["sd"] / np.sqrt(out["n"])
    out["df"] = out["n"] - 1.0
    q = stats.t.ppf(0.975, out["df"])
    out["ci_lower"] = out["estimate"] - q * out["std_error"]
    out["ci_upper"] = out["estimate"] + q * out["std_error"]
    return out[[specs, by, "estimate", "std_error", "df", "ci_lower", "ci_upper"]]


def fake_contrasts(means: pd.DataFrame, method: str, *, ref: Any, adjust: str) -> pd.DataFrame:
    rows = []
    for visit, part in means.groupby("visit", observed=True, sort=False):
        control = part[part["cocktail"].astype(str) == ref].iloc[0]
        others = part[part["cocktail"].astype(str) != ref]
        for rec in others.itertuples(index=False):
            est = rec.estimate - control["estimate"]
            se = float(np.hypot(rec.std_error, control["std_error"]))
            df = float(min(rec.df, control["df"]))
            t = est / se
            p = 2 * stats.t.sf(abs(t), df)
            if adjust == "dunnett":
                p = min(1.0, p * len(others))  # Bonferroni stands in for Dunnett
            q = stats.t.ppf(0.975, df)
            rows.append(
                (f"{rec.cocktail} - {ref}", visit, est, se, df, t, p, est - q * se, est + q * se)
            )
    cols = [
        "contrast",
        "visit",
        "estimate",
        "std_error",
        "df",
        "statistic",
        "p_value",
        "ci_lower",
        "ci_upper",
    ]
    return pd.DataFrame(rows, columns=cols)


def fake_engine(fails: dict[str, Any] | None = None, calls: list[str] | None = None) -> TrialEngine:
    return TrialEngine(fit=fake_fit(fails, calls), means=fake_means, contrasts=fake_contrasts)
