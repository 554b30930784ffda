"""Shared pieces of the marginal-means tests: reference data, and results carrying R's β and V.

``WithReference`` wraps a mesostats fit but answers ``params``/``vcov`` with R's values (names
mapped from R's ``trtA:sitesouth`` to formulaic's ``trt[T.A]:site[T.south]``) and a constant
df. It checks the marginal-means machinery (grid, weights, back-transformation, contrasts,
adjustments) against emmeans to ~1e-9, apart from how closely our fits match R's; the same
quantities from our own fits are checked at the fit's tolerance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REF_DIR = Path(__file__).parent / "reference"
REF = json.loads((REF_DIR / "ref_emmeans.json").read_text())
LMM_FORMULA = "y ~ trt * site + sex + x + (1 | subj)"
CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def as_df(value: Any) -> float:
    """R's df as a float (jsonlite writes Inf as null or "Inf")."""
    return np.inf if value is None or value == "Inf" else float(value)


def frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(records)
    if "df" in out:
        out["df"] = [as_df(v) for v in out["df"]]
    return out


def r_name(name: str) -> str:
    """formulaic column name → R's (``trt[T.A]:site[T.south]`` → ``trtA:sitesouth``)."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"([A-Za-z_.][A-Za-z0-9_.]*)\[T\.([^\]]+)\]", r"\1\2", name)


def lmm_data() -> pd.DataFrame:
    data = pd.read_csv(REF_DIR / "emm_lmm.csv")
    data["trt"] = pd.Categorical(data["trt"], categories=["P", "A", "B"])
    data["site"] = pd.Categorical(data["site"], categories=["north", "south"])
    data["sex"] = pd.Categorical(data["sex"], categories=["F", "M"])
    return data


def cbpp_data() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "cbpp.csv", dtype={"herd": str, "period": str})


class WithReference:
    """A fit's design with R's β and V and a constant df (the generic results interface)."""

    def __init__(
        self,
        fit: Any,
        beta: dict[str, float],
        vcov: list[list[float]],
        vcov_names: list[str],
        df: float,
    ) -> None:
        self.fit = fit
        names = list(fit.params.index)
        order = [vcov_names.index(r_name(n)) for n in names]
        self.params = pd.Series([beta[r_name(n)] for n in names], index=names)
        v = np.asarray(vcov, dtype=float)[np.ix_(order, order)]
        self.vcov = pd.DataFrame(v, index=names, columns=names)
        self.model_frame = fit.design.model_frame
        self.fixed_matrix = fit.design.fixed_matrix
        self.formula = fit.formula
        self.family = fit.family
        self.link = fit.link
        self._df = df

    def df_for(self, L: np.ndarray) -> np.ndarray:
        return np.full(np.atleast_2d(L).shape[0], self._df)


def linfct(block: dict[str, Any], names: list[str]) -> np.ndarray:
    """emmeans' L with columns in our coefficient order."""
    cols = [block["colnames"].index(r_name(n)) for n in names]
    return np.asarray(block["rows"], dtype=float)[:, cols]
