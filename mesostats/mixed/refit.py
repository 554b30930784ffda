"""Refit one mixed model on many responses or data sets: :class:`ModelTemplate`.

Simulation studies, parametric bootstraps, multiple imputation and profiling fit one model
again and again. Most of a small fit is set-up that does not change between the refits:
parsing the formula, building X and Z, finding the grouping factors, checking the response.
A :class:`ModelTemplate` does that once, from ``(formula, data)`` or from a fitted
:class:`~mesostats.mixed.results.MixedResults`, and then

* :meth:`ModelTemplate.fit` refits on a **new response vector** (same rows, same X and Z:
  nothing is rebuilt, only the response is checked) or on a **new DataFrame** of the same
  formula (the compiled formula pieces of :mod:`mesostats.mixed.compiled` are reused), and
  returns the same :class:`MixedResults` as :func:`mesostats.fit_lmm` /
  :func:`mesostats.fit_glmm` would (identical numbers: the same engines run);
* :meth:`ModelTemplate.estimates` refits a new response for the estimates only (θ, σ, β and
  the convergence flag; no standard errors, df, modes or results tables), optionally from a
  given start — what a parametric bootstrap needs (Davison & Hinkley 1997, *Bootstrap
  Methods and their Application*, ch. 2; used by
  :func:`mesostats.mixed.profile.bootstrap_variance_components`).

Example::

    from mesostats.mixed.refit import ModelTemplate

    template = ModelTemplate("Reaction ~ Days + (Days | Subject)", sleepstudy)
    fits = [template.fit(y) for y in simulated_responses]      # MixedResults each
    other = template.fit(another_sleepstudy_like_frame)        # same formula, new rows

The engines are those of :mod:`mesostats.mixed.lmm` (profiled REML/ML deviance, Bates et al.
2015, *J. Stat. Softw.* 67(1)) and :mod:`mesostats.mixed.glmm` (Laplace / adaptive
Gauss–Hermite quadrature).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.design import MixedDesign, build_design, single_threaded_blas
from mesostats.mixed.glmm.checks import _check_family, _check_nagq, _check_quadrature_structure
from mesostats.mixed.glmm.core import fit_arrays, term_arrays
from mesostats.mixed.glmm.fit import _fit_design as _fit_glmm_design
from mesostats.mixed.glmm.negbin import fit_negbin_arrays
from mesostats.mixed.laplace import CanonicalFamily
from mesostats.mixed.lmm.fit import _fit as _fit_lmm_design
from mesostats.mixed.lmm.gradient import ProfiledDeviance
from mesostats.mixed.lmm.optimise import optimise_theta

if TYPE_CHECKING:
    from mesostats.mixed.results import MixedResults

__all__ = ["ModelTemplate", "RefitEstimates"]


@dataclass(frozen=True)
class RefitEstimates:
    """Estimates of one refit (:meth:`ModelTemplate.estimates`).

    Attributes
    ----------
    theta : numpy.ndarray
        Relative covariance parameters (lme4 order).
    sigma : float
        Residual SD (1.0 for a GLMM).
    beta : numpy.ndarray
        Fixed effects.
    converged : bool
        The optimiser's optimality checks passed.
    """

    theta: np.ndarray
    sigma: float
    beta: np.ndarray
    converged: bool


class ModelTemplate:
    """One mixed model set up once, refitted on new responses or new data.

    Parameters
    ----------
    formula : str
        lme4 syntax, as for :func:`mesostats.fit_lmm` / :func:`mesostats.fit_glmm`.
    data : pandas.DataFrame
        The rows the template is built on (missing values set aside as in the fits).
    family : {"gaussian", "binomial", "poisson"}, default "gaussian"
        "gaussian" is the LMM of :func:`mesostats.fit_lmm`; the others the GLMM of
        :func:`mesostats.fit_glmm`.
    reml : bool, default True
        LMM only: REML or maximum likelihood.
    nagq : int, default 1
        GLMM only: 1 = Laplace, more = adaptive Gauss–Hermite nodes.
    df : {"satterthwaite", "kenward-roger"}, default "satterthwaite"
        LMM only: the denominator df of :meth:`fit`'s t tests, as ``fit_lmm(df=...)``.

    Raises
    ------
    ModelSpecError
        As the fits raise for the formula, data, family or ``nagq``.

    Notes
    -----
    Picklable (it holds the design arrays), so it can be sent to worker processes once.
    """

    __slots__ = ("_design", "_df", "_family", "_nagq", "_reml")

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        family: str = "gaussian",
        reml: bool = True,
        nagq: int = 1,
        df: str = "satterthwaite",
    ) -> None:
        family_name = "gaussian" if family == "gaussian" else _check_family(family)
        n_nodes = 1 if family_name == "gaussian" else _check_nagq(nagq)
        df_method = _check_df(df, family_name, bool(reml))
        design = build_design(formula, data, family=family_name)
        self._init(design, family_name, bool(reml), n_nodes, df_method)

    def _init(
        self, design: MixedDesign, family: str, reml: bool, nagq: int, df: str = "satterthwaite"
    ) -> None:
        if family != "gaussian":
            _check_quadrature_structure(design, nagq)
        self._design = design
        self._df = df
        self._family = family
        self._reml = reml
        self._nagq = nagq

    @classmethod
    def from_design(
        cls,
        design: MixedDesign,
        *,
        family: str,
        reml: bool = True,
        nagq: int = 1,
        df: str = "satterthwaite",
    ) -> ModelTemplate:
        """A template on an already built design (e.g. ``results.design``)."""
        template = cls.__new__(cls)
        template._init(design, family, bool(reml), int(nagq), _check_df(df, family, bool(reml)))
        return template

    @classmethod
    def from_results(cls, results: MixedResults) -> ModelTemplate:
        """The template of a fitted model: same design, family, REML/ML, ``nagq`` and df
        method (Satterthwaite or Kenward–Roger)."""
        method = str(results.method)
        nagq = int(method[4:-1]) if method.startswith("AGQ(") else 1
        df = results.df_method if results.family == "gaussian" else "satterthwaite"
        return cls.from_design(
            results.design, family=results.family, reml=method == "REML", nagq=nagq, df=df
        )

    # ------------------------------------------------------------------ description
    @property
    def design(self) -> MixedDesign:
        """The model matrices the template holds."""
        return self._design

    @property
    def formula(self) -> str:
        return self._design.formula

    @property
    def family(self) -> str:
        return self._family

    @property
    def nobs(self) -> int:
        """Number of fitted rows: the length a new response vector must have."""
        return int(self._design.n)

    def __repr__(self) -> str:
        method = (
            ("REML" if self._reml else "ML")
            if self._family == "gaussian"
            else ("Laplace" if self._nagq == 1 else f"AGQ({self._nagq})")
        )
        return f"<ModelTemplate {self.formula!r} {self._family} {method} nobs={self.nobs}>"

    # ------------------------------------------------------------------ refits
    def with_response(self, y: Any) -> MixedDesign:
        """The template's design with response ``y`` (checked for the family).

        ``y`` has one value per fitted row, on the design's scale: the response for a
        Gaussian model, 0/1 for a binomial 0/1 response, the proportion of successes
        (successes / trials, 0 where there are no trials) for a ``cbind`` response, counts
        for a Poisson model.
        """
        design = self._design
        arr = np.asarray(y, dtype=float)
        if arr.shape != (design.n,):
            raise ModelSpecError(
                f"The new response has shape {arr.shape}, the model has {design.n} fitted "
                "rows: pass one value per fitted row (in the order of `design.row_index`), or "
                "refit on a DataFrame with `template.fit(data)`."
            )
        _check_response(arr, design, self._family)
        return dataclasses.replace(design, y=arr)

    def fit(self, new: pd.DataFrame | Any) -> MixedResults:
        """Refit on a new response vector (same rows) or on a new DataFrame (same formula).

        Returns the :class:`MixedResults` that :func:`mesostats.fit_lmm` /
        :func:`mesostats.fit_glmm` would return for the same rows and response, with the
        same warnings.
        """
        t0 = time.perf_counter()
        if isinstance(new, pd.DataFrame):
            design = build_design(self.formula, new, family=self._family)
        else:
            design = self.with_response(new)
        if self._family == "gaussian":
            with single_threaded_blas():
                return _fit_lmm_design(design, reml=self._reml, t0=t0, df_method=self._df)
        return _fit_glmm_design(design, self._family, self._nagq, t0=t0)

    def estimates(self, y: Any, *, start: np.ndarray | None = None) -> RefitEstimates:
        """θ, σ, β and convergence of a refit on response ``y`` (no SEs, df or tables).

        ``start``: the θ to start the LMM optimiser from (e.g. the original fit's θ; default
        lme4's start). The GLMM optimiser chooses its own start.
        """
        design = self.with_response(y)
        with single_threaded_blas():
            return _estimates(design, self._family, self._reml, self._nagq, start)

    def __getstate__(self) -> tuple[MixedDesign, str, bool, int, str]:
        return self._design, self._family, self._reml, self._nagq, self._df

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._design, self._family, self._reml, self._nagq = state[:4]
        self._df = state[4] if len(state) > 4 else "satterthwaite"


def _check_df(df: str, family: str, reml: bool) -> str:
    """The df method, checked as :func:`mesostats.fit_lmm` checks it."""
    method = str(df).lower()
    if method not in ("satterthwaite", "kenward-roger"):
        raise ModelSpecError(f"df must be 'satterthwaite' or 'kenward-roger', got {df!r}.")
    if method == "kenward-roger" and (family != "gaussian" or not reml):
        raise ModelSpecError(
            "Kenward-Roger df are defined for REML fits of linear mixed models only "
            f"(family={family!r}, reml={reml}). Use df='satterthwaite'."
        )
    return method


def _estimates(
    design: MixedDesign, family: str, reml: bool, nagq: int, start: np.ndarray | None
) -> RefitEstimates:
    if family == "gaussian":
        problem = ProfiledDeviance(design, reml=reml)
        theta0 = design.theta_start() if start is None else np.array(start, dtype=float)
        opt = optimise_theta(problem, theta0)
        st = problem.state(opt.theta)
        return RefitEstimates(
            theta=np.asarray(opt.theta, dtype=float),
            sigma=math.sqrt(st.r2 / problem.dof),
            beta=np.asarray(problem.beta_ols + st.delta),
            converged=bool(opt.converged),
        )
    if family == "negative_binomial":
        nb = fit_negbin_arrays(
            design.y, design.prior_weights, design.offset, design.X, term_arrays(design), nagq
        )
        return RefitEstimates(
            theta=np.asarray(nb.theta, dtype=float),
            sigma=1.0,
            beta=np.asarray(nb.beta, dtype=float),
            converged=bool(nb.optimum.converged),
        )
    core = fit_arrays(
        CanonicalFamily(family),
        design.y,
        design.prior_weights,
        design.offset,
        design.X,
        term_arrays(design),
        nagq,
    )
    return RefitEstimates(
        theta=np.asarray(core.theta, dtype=float),
        sigma=1.0,
        beta=np.asarray(core.beta, dtype=float),
        converged=bool(core.optimum.converged),
    )


def _check_response(y: np.ndarray, design: MixedDesign, family: str) -> None:
    """The family's rules for a response vector (those of ``mixed.response`` for data)."""
    bad = ~np.isfinite(y)
    if family == "binomial":
        trials = np.asarray(design.prior_weights, dtype=float)
        with np.errstate(invalid="ignore"):
            successes = y * trials
        bad |= (y < 0) | (y > 1) | (np.abs(successes - np.round(successes)) > 1e-8)
        rule = (
            "0/1 (or, for a cbind response, the proportion of successes out of each row's trials)"
        )
    elif family in ("poisson", "negative_binomial"):
        bad |= (y < 0) | (y != np.round(y))
        rule = "non-negative whole-number counts"
    else:
        rule = "finite numbers"
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ModelSpecError(
            f"The new response must be {rule}; {int(bad.sum())} value(s) are not, e.g. "
            f"{y[i]!r} at position {i}. Check how the response was simulated or computed."
        )
