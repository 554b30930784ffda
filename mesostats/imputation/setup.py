"""What multiple imputation needs from a trial's primary analysis (:func:`imputation_setup`).

The primary analysis (:func:`mesostats.fit_trial`) fits an MMRM to the visits people have;
the imputation model is that same MMRM (same fixed effects, same covariance structure).
Here the analysed people are laid out on the full person × scheduled-visit grid: the
observed change from baseline (NaN where missing), each person's arm and baseline, the
fixed-effects rows of every grid cell in the person's own arm and in the control arm (for
the reference-based means), the missingness patterns, and each person's last observed visit
(the visits after it are the *dropout* visits; missing visits before it are intermittent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError

__all__ = ["ImputationSetup", "imputation_setup"]


@dataclass(frozen=True, eq=False)
class ImputationSetup:
    """Arrays of the person × visit grid (n people, V visits, p fixed effects).

    Attributes
    ----------
    y : ndarray (n, V)
        Observed change from baseline, NaN where missing.
    observed : ndarray (n, V) of bool
    arm : ndarray (n,) of int
        Index into ``cocktails`` (0 = the control).
    baseline : ndarray (n,)
    X_own, X_ref : ndarray (n, V, p)
        Fixed-effects rows in the person's own arm and in the control arm.
    last : ndarray (n,) of int
        Index of the person's last observed visit.
    pattern : ndarray (n,) of int
        Missingness pattern of each person (index into ``masks``).
    masks : ndarray (n_patterns, V) of bool
        Observed visits of each pattern.
    theta, theta_cov : ndarray
        The fitted variance parameters and the inverse Hessian of −ℓ in θ.
    problem : MMRMProblem
        The primary fit's problem (Σ(θ), β̂(θ) and (XᵀV⁻¹X)⁻¹ at any θ).
    cocktails : tuple of str
    visits : tuple of int
    """

    y: np.ndarray
    observed: np.ndarray
    arm: np.ndarray
    baseline: np.ndarray
    X_own: np.ndarray
    X_ref: np.ndarray
    last: np.ndarray
    pattern: np.ndarray
    masks: np.ndarray
    theta: np.ndarray
    theta_cov: np.ndarray
    problem: Any
    cocktails: tuple[str, ...]
    visits: tuple[int, ...]

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_visits(self) -> int:
        return int(self.y.shape[1])

    @property
    def after_dropout(self) -> np.ndarray:
        """(n, V): visits after the person's last observed visit."""
        return np.arange(self.n_visits)[None, :] > self.last[:, None]


def imputation_setup(trial: Any) -> ImputationSetup:
    """Lay out a :class:`~mesostats.domain.trial_results.TrialResults` for imputation.

    Raises
    ------
    ModelSpecError
        Not a fit_trial result; a grouped or spatial covariance; θ's covariance not available
        (the Hessian at the estimate is singular).
    """
    model = getattr(trial, "model", None)
    problem = getattr(model, "problem", None)
    if problem is None or not hasattr(trial, "vs_control"):
        raise ModelSpecError(
            f"sensitivity needs the result of mesostats.fit_trial, got {type(trial).__name__}."
        )
    if problem.n_groups != 1 or problem.structure.spatial:
        raise ModelSpecError(
            "multiple imputation supports one covariance matrix over visit levels; the "
            f"primary model has {problem.n_groups} groups"
            + (" and a spatial structure" if problem.structure.spatial else "")
            + "."
        )
    theta: np.ndarray = np.asarray(trial.model.theta, dtype=np.float64)
    theta_cov: np.ndarray = np.asarray(trial.model.theta_cov, dtype=np.float64)
    if not np.all(np.isfinite(theta_cov)) or np.linalg.eigvalsh(theta_cov).min() <= 0:
        raise ModelSpecError(
            "the covariance parameters' sampling covariance (inverse Hessian of the "
            "likelihood) is not positive definite at the estimate, so their posterior cannot "
            "be drawn; refit the trial with a simpler covariance, e.g. covariance='toeph'."
        )
    visits = tuple(int(v) for v in trial.visits)
    levels = [str(v) for v in visits]
    if tuple(problem.visit_levels) != tuple(levels):
        raise ModelSpecError(
            f"the model's visit levels {list(problem.visit_levels)} are not the trial's "
            f"scheduled visits {levels}."
        )
    n, V = problem.n_subjects, len(visits)
    lengths = np.array([len(r) for r in problem.subject_rows], dtype=np.intp)
    order = np.concatenate(problem.subject_rows)
    who = np.repeat(np.arange(n), lengths)
    y = np.full((n, V), np.nan)
    y[who, problem.coords[order].astype(np.intp)] = problem.y[order]
    observed = np.isfinite(y)

    people = trial.data.groupby("subject_id", sort=False, observed=True).first()
    people = people.reindex(pd.Index(problem.subject_ids.astype(str)))
    cocktails = tuple(str(c) for c in trial.cocktails)
    arm = pd.Index(cocktails).get_indexer(people["cocktail"].astype(str))
    baseline = people["baseline"].to_numpy(dtype=float)
    X_own = _grid_matrix(
        problem, baseline, people["cocktail"].astype(str).to_numpy(), cocktails, levels
    )
    X_ref = _grid_matrix(
        problem, baseline, np.full(n, cocktails[0], dtype=object), cocktails, levels
    )

    last = V - 1 - np.argmax(observed[:, ::-1], axis=1)
    keys = np.packbits(observed, axis=1, bitorder="little")
    _, first, pattern = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return ImputationSetup(
        y=y,
        observed=observed,
        arm=arm.astype(np.intp),
        baseline=baseline,
        X_own=X_own,
        X_ref=X_ref,
        last=last.astype(np.intp),
        pattern=np.asarray(pattern, dtype=np.intp).reshape(n),
        masks=observed[first],
        theta=theta,
        theta_cov=theta_cov,
        problem=problem,
        cocktails=cocktails,
        visits=visits,
    )


def _grid_matrix(
    problem: Any,
    baseline: np.ndarray,
    arm: np.ndarray,
    cocktails: tuple[str, ...],
    levels: list[str],
) -> np.ndarray:
    """X (n, V, p) of every person at every visit with the given arm."""
    n, V = baseline.size, len(levels)
    frame = pd.DataFrame(
        {
            "baseline": np.repeat(baseline, V),
            "visit": pd.Categorical(np.tile(levels, n), categories=levels),
            "cocktail": pd.Categorical(np.repeat(arm, V), categories=list(cocktails)),
        }
    )
    return problem.fixed_matrix(frame).reshape(n, V, problem.p)
