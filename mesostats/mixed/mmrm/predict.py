"""Predictions of a fitted MMRM: population means Xβ and means conditional on a subject's data.

The conditional mean of subject i at visits n given its fitted rows o is the Gaussian
conditional expectation (as R mmrm's ``predict(conditional = TRUE)``)

    E[y_n | y_o] = X_n β + Σ_no Σ_oo⁻¹ (y_o − X_o β),

with Σ_oo the subject's fitted covariance (weights applied) and Σ_no the covariance of new
rows (weight 1) with the fitted ones. At a visit the subject has, it returns the observed
value (unit weights). Subjects not in the fit get the population mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = ["conditional_mean", "population_mean"]


def _needed(newdata: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in newdata.columns]
    if missing:
        raise ModelSpecError(
            "newdata lacks column(s) "
            + ", ".join(f"`{c}`" for c in missing)
            + f" that the {what} needs."
        )


def population_mean(problem: MMRMProblem, beta: np.ndarray, newdata: pd.DataFrame) -> np.ndarray:
    """Xβ for the rows of ``newdata`` (NaN where a fixed-part variable is missing)."""
    if not isinstance(newdata, pd.DataFrame):
        raise ModelSpecError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}.")
    ref_frame = problem.model_frame
    cols = list(ref_frame.columns)
    _needed(newdata, cols, "prediction")
    complete = ~newdata[cols].isna().any(axis=1).to_numpy() if cols else np.ones(len(newdata), bool)
    out = np.full(len(newdata), np.nan)
    if not complete.any():
        return out
    frame = newdata.loc[complete, cols].copy()
    for c in cols:
        ref = ref_frame[c]
        if isinstance(ref.dtype, pd.CategoricalDtype):
            levels = list(map(str, ref.cat.categories))
            unknown = set(frame[c].astype(str)) - set(levels)
            if unknown:
                raise ModelSpecError(
                    f"newdata column `{c}` has level(s) {sorted(unknown)} not seen in the fit "
                    f"(levels: {levels})."
                )
            frame[c] = pd.Categorical(frame[c].astype(str), categories=levels)
    out[complete] = problem.fixed_matrix(frame) @ beta
    return out


def _new_coords(problem: MMRMProblem, values: pd.DataFrame) -> np.ndarray:
    """Visit indices (floats), or ``sp_exp`` times (k,) / points (k, c), of new rows."""
    if problem.structure.spatial:
        points = values.to_numpy(dtype=float)
        return points[:, 0] if points.shape[1] == 1 else points
    visits = values.iloc[:, 0]
    position = {level: i for i, level in enumerate(problem.visit_levels)}
    text = visits.astype(str).to_numpy()
    unknown = sorted(set(text) - set(position))
    if unknown:
        raise ModelSpecError(
            f"newdata has {problem.term.time} value(s) {unknown} that the fit does not know "
            f"(visits: {list(problem.visit_levels)})."
        )
    return np.array([position[v] for v in text], dtype=float)


def conditional_mean(
    problem: MMRMProblem, theta: np.ndarray, beta: np.ndarray, newdata: pd.DataFrame
) -> np.ndarray:
    """E[y | the subject's fitted rows] for the rows of ``newdata`` (see module docstring)."""
    pop = population_mean(problem, beta, newdata)
    term = problem.term
    coordinates = list(term.coordinates)
    _needed(newdata, [*coordinates, term.subject], "conditional prediction")
    rows = np.flatnonzero(
        np.isfinite(pop) & newdata[[*coordinates, term.subject]].notna().all(axis=1).to_numpy()
    )
    if rows.size == 0:
        return pop
    ids = problem.subject_ids.astype(str)
    subject = pd.Index(ids).get_indexer(newdata[term.subject].iloc[rows].astype(str))
    coords = _new_coords(problem, newdata[coordinates].iloc[rows])
    resid = problem.y - problem.X @ beta
    out = pop.copy()
    known = np.flatnonzero(subject >= 0)
    frame = pd.DataFrame({"row": rows[known], "subject": subject[known], "at": known})
    for i, part in frame.groupby("subject", sort=False):
        obs = problem.subject_rows[int(i)]  # type: ignore[call-overload]
        group = int(problem.subject_group[int(i)])  # type: ignore[call-overload]
        theta_g = np.asarray(theta)[problem.theta_slice(group)]
        c_new, c_obs = coords[part["at"].to_numpy()], problem.coords[obs]
        if problem.structure.spatial:
            S = problem.structure.sigma(theta_g, np.concatenate([c_new, c_obs]))
        else:
            full = problem.structure.sigma(theta_g)
            both = np.concatenate([c_new, c_obs]).astype(np.intp)
            S = full[np.ix_(both, both)]
        k = c_new.shape[0]
        scale = 1.0 / np.sqrt(problem.weights[obs])
        S_oo = S[k:, k:] * np.outer(scale, scale)
        S_no = S[:k, k:] * scale[None, :]
        rows_i = part["row"].to_numpy()
        out[rows_i] = pop[rows_i] + S_no @ np.linalg.solve(S_oo, resid[obs])
    return out
