"""Covariance of β̂ and denominator df of an MMRM: the one entry point the fit calls.

Contract with :mod:`mesostats.mixed.mmrm.fit`::

    vcov, df_for = inference(problem, theta, df=..., vcov=..., beta=None, theta_cov=None,
                             evaluation=None)

``problem`` is the fitted :class:`~mesostats.mixed.mmrm.problem.MMRMProblem`, ``theta`` the
(RE)ML estimate in mmrm's parameterisation, ``beta`` the GLS estimate and ``theta_cov`` the
inverse Hessian of −ℓ at θ̂ (mmrm's ``theta_vcov``; each computed when None — passing the
fit's saves one Hessian evaluation, about half the cost of KR for 1,000 subjects × 10 visits);
``evaluation`` the fit's order-2 evaluation at θ̂, whose M and ∂(XᵀV⁻¹X)/∂θ give the model-based
covariance and Satterthwaite's gradient without another pass over the patterns.
Returns the (p, p) covariance reported for β̂ and ``df_for``: a callable ``L (m, p) -> (m,)``
giving the df of each row's contrast lβ (per-coefficient df = ``df_for(np.eye(p))``). Every
combination follows R's mmrm 0.3.14 (``mmrm_control(method, vcov)``):

=========================  ==============================  ======================================
df                         vcov=None                       vcov="empirical…" (CR0, CR2, CR3)
=========================  ==============================  ======================================
kenward-roger              KR-adjusted Φ_A, KR df          refused (KR brings its own covariance)
kenward-roger-linear       Φ_A without R term, KR df       refused
satterthwaite              model-based Φ, Satterthwaite    empirical, Bell–McCaffrey df
between-within             model-based Φ, between-within   empirical, between-within df
residual                   model-based Φ, n − p            empirical, n − p
=========================  ==============================  ======================================

Methods: :mod:`~mesostats.mixed.mmrm.kenward_roger` (Kenward & Roger 1997; Satterthwaite),
:mod:`~mesostats.mixed.mmrm.empirical` (sandwich estimators),
:mod:`~mesostats.mixed.mmrm.between_within`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.contrast_df import ConstantDF
from mesostats.mixed.mmrm.between_within import between_within_df
from mesostats.mixed.mmrm.empirical import EMPIRICAL_KINDS, empirical_vcov
from mesostats.mixed.mmrm.kenward_roger import mmrm_kenward_roger, mmrm_satterthwaite
from mesostats.mixed.mmrm.likelihood import Evaluation
from mesostats.mixed.mmrm.problem import MMRMProblem

__all__ = ["DF_METHODS", "inference"]

DF_METHODS = (
    "kenward-roger",
    "kenward-roger-linear",
    "satterthwaite",
    "between-within",
    "residual",
)

DFFunction = Callable[[np.ndarray], np.ndarray]


def inference(
    problem: MMRMProblem,
    theta: np.ndarray,
    *,
    df: str = "kenward-roger",
    vcov: str | None = None,
    beta: np.ndarray | None = None,
    theta_cov: np.ndarray | None = None,
    evaluation: Evaluation | None = None,
) -> tuple[np.ndarray, DFFunction]:
    """Covariance of β̂ and the df function for one (df, vcov) choice (table above).

    Raises
    ------
    ModelSpecError
        Unknown method, Kenward–Roger with ML or with an empirical covariance.
    """
    method = str(df).lower()
    if method not in DF_METHODS:
        raise ModelSpecError(f"df must be one of {', '.join(map(repr, DF_METHODS))}, got {df!r}.")
    if vcov is not None and vcov not in EMPIRICAL_KINDS:
        raise ModelSpecError(
            f"vcov must be None (model-based) or one of "
            f"{', '.join(map(repr, EMPIRICAL_KINDS))}, got {vcov!r}."
        )
    theta = np.asarray(theta, dtype=float)
    if method.startswith("kenward-roger"):
        if vcov is not None:
            raise ModelSpecError(
                f"df={method!r} comes with its own adjusted covariance; vcov={vcov!r} cannot be "
                "combined with it. Use df='satterthwaite' with an empirical covariance."
            )
        linear = method.endswith("linear")
        return mmrm_kenward_roger(problem, theta, linear=linear, theta_cov=theta_cov)
    if vcov is not None:
        b = problem.beta(theta) if beta is None else np.asarray(beta, dtype=float)
        cov, emp_df = empirical_vcov(problem, theta, b, vcov)
        if method == "satterthwaite":
            return cov, emp_df
    else:
        if method == "satterthwaite":
            return mmrm_satterthwaite(problem, theta, theta_cov, evaluation)
        cov = problem.beta_cov(theta) if evaluation is None else evaluation.beta_cov
    if method == "between-within":
        return cov, between_within_df(problem)
    return cov, ConstantDF(float(problem.n - problem.p), problem.p)
