"""Between-within degrees of freedom of an MMRM (R mmrm's "Between-Within" method).

Each fixed-effect column is classified as the intercept, *between*-subject (constant within
every subject) or *within*-subject (varies within some subject). With n subjects and N
observations, between columns get n − (#between) − (#intercept) df and within columns and the
intercept get N − n − (#within) df (SAS PROC MIXED's DDFM=BETWITHIN as mmrm implements it,
Schluchter & Elashoff 1990, *J. Stat. Comput. Simul.* 37:11). A contrast gets the smallest df
among the coefficients it involves.
"""

from __future__ import annotations

import numpy as np

from mesostats.mixed.contrast_df import CoefficientMinimumDF
from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = ["between_within_df", "coefficient_kinds"]

_INTERCEPT_NAMES = ("(Intercept)", "Intercept")


def coefficient_kinds(problem: MMRMProblem) -> list[str]:
    """``"intercept"``, ``"between"`` or ``"within"`` per column of X."""
    order = np.concatenate(problem.subject_rows)
    lengths = np.array([r.size for r in problem.subject_rows])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    Xo = problem.X[order]
    varies = (
        np.maximum.reduceat(Xo, starts, axis=0) != np.minimum.reduceat(Xo, starts, axis=0)
    ).any(axis=0)
    return [
        "intercept" if name in _INTERCEPT_NAMES else ("within" if v else "between")
        for name, v in zip(problem.fixed_names, varies, strict=True)
    ]


def between_within_df(problem: MMRMProblem) -> CoefficientMinimumDF:
    """df function of the between-within method."""
    kinds = coefficient_kinds(problem)
    n_between = kinds.count("between")
    n_within = kinds.count("within")
    n_intercept = kinds.count("intercept")
    ddf_between = problem.n_subjects - n_between - n_intercept
    ddf_within = problem.n - problem.n_subjects - n_within
    per = np.array([ddf_between if k == "between" else ddf_within for k in kinds], dtype=float)
    return CoefficientMinimumDF(per)
