"""Parametric-bootstrap intervals for variance components (see :mod:`mesostats.mixed.profile`).

Each replicate draws one response from the fitted model with
:func:`mesostats.mixed.simulation.simulate_mixed` (the package's one simulation path: new
random effects, then the family's response), from its own child stream of
``SeedSequence(seed)``, and is refitted with :meth:`ModelTemplate.estimates`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mesostats._parallel import blas_single_threaded
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.profile.likelihood import _check_level, _undefined_correlations
from mesostats.mixed.profile.objectives import _nagq
from mesostats.mixed.profile.parameters import (
    CONFINT_COLUMNS,
    sdcor_from_theta,
    variance_parameters,
)
from mesostats.mixed.refit import ModelTemplate
from mesostats.mixed.simulation import simulate_mixed

if TYPE_CHECKING:
    from mesostats.mixed.design import MixedDesign
    from mesostats.mixed.results import MixedResults


# --------------------------------------------------------------------------- bootstrap
@dataclass(frozen=True)
class VarianceBootstrap:
    """Parametric-bootstrap replicates of a mixed model and percentile intervals.

    Attributes
    ----------
    confint : DataFrame
        Same layout as :attr:`VarianceProfile.confint` (percentile intervals; ``estimate`` is
        the fitted value).
    replicates : DataFrame
        One row per replicate: every ``sdcor`` parameter (lme4 names), ``converged``.
    theta, sigma, beta : arrays
        Replicate θ (n_boot, n_theta), σ (n_boot,), β (n_boot, p); NaN rows for failed refits.
    seed, n_boot, n_failed : int
    """

    confint: pd.DataFrame
    replicates: pd.DataFrame
    theta: np.ndarray
    sigma: np.ndarray
    beta: np.ndarray
    seed: int
    n_boot: int
    n_failed: int

    def __repr__(self) -> str:
        return f"<VarianceBootstrap n_boot={self.n_boot} seed={self.seed} failed={self.n_failed}>"


@dataclass(frozen=True)
class _BootstrapModel:
    """Everything a worker needs to simulate from and refit a model (picklable)."""

    design: MixedDesign
    family: str
    reml: bool
    nagq: int
    beta: np.ndarray
    theta: np.ndarray
    sigma: float
    dispersion: float | None = None  # negative binomial: k (Var = μ + μ²/k)


def _refit(model: _BootstrapModel, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """Refit the model to a new response (:meth:`ModelTemplate.estimates`, the LMM from the
    fitted θ); returns θ, σ, β, converged."""
    template = ModelTemplate.from_design(
        model.design, family=model.family, reml=model.reml, nagq=model.nagq
    )
    est = template.estimates(y, start=model.theta if model.family == "gaussian" else None)
    return est.theta, est.sigma, est.beta, est.converged


@blas_single_threaded
def _bootstrap_chunk(
    model: _BootstrapModel, seeds: Sequence[np.random.SeedSequence]
) -> list[tuple[np.ndarray, float, np.ndarray, bool]]:
    out = []
    nan_theta = np.full(model.design.n_theta, np.nan)
    nan_beta = np.full(model.design.p, np.nan)
    for ss in seeds:
        y = simulate_mixed(
            model.design,
            family=model.family,
            beta=model.beta,
            theta=model.theta,
            sigma=model.sigma,
            n=1,
            rng=np.random.default_rng(ss),
            size=model.dispersion,
        )[:, 0]
        try:
            out.append(_refit(model, y))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ModelSpecError):
            out.append((nan_theta, math.nan, nan_beta, False))
    return out


def _check_bootstrap_args(n_boot: int, seed: int, n_jobs: int) -> None:
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 2:
        raise ModelSpecError(
            f"n_boot must be an integer ≥ 2 (e.g. 200 or more for 95 % intervals), got {n_boot!r}."
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ModelSpecError(f"seed must be a non-negative integer, got {seed!r}.")
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ModelSpecError(
            f"n_jobs must be a positive integer (or -1 for every core), got {n_jobs!r}."
        )


def bootstrap_variance_components(
    results: MixedResults,
    *,
    n_boot: int = 200,
    seed: int = 0,
    n_jobs: int = 1,
    level: float = 0.95,
) -> VarianceBootstrap:
    """Parametric-bootstrap percentile intervals for the SDs, correlations and σ.

    Parameters
    ----------
    results : MixedResults
        A fit from :func:`mesostats.fit_lmm` or :func:`mesostats.fit_glmm`.
    n_boot : int, default 200
        Number of simulated data sets (each refitted).
    seed : int, default 0
        Replicate ``i`` uses child ``i`` of ``numpy.random.SeedSequence(seed).spawn(n_boot)``:
        the same seed gives the same replicates for any ``n_jobs``.
    n_jobs : int, default 1
        joblib workers (``-1`` = every core).
    level : float, default 0.95

    Returns
    -------
    VarianceBootstrap
        ``.confint`` (percentile intervals), ``.replicates`` (one row per refit) and the raw
        replicate θ, σ and β for derived quantities.

    Raises
    ------
    ModelSpecError
        Bad ``n_boot``, ``seed``, ``n_jobs`` or ``level``.

    Notes
    -----
    Davison & Hinkley (1997), §2.2, §5.3; lme4's ``bootMer`` with ``type = "parametric"``
    and ``use.u = FALSE`` (new random effects are drawn for every replicate). Refits that
    fail are kept as NaN and counted in ``n_failed``; percentiles use the others.
    """
    _check_bootstrap_args(n_boot, seed, n_jobs)
    level = _check_level(level)
    from joblib import Parallel, delayed  # heavy (loky, cloudpickle): only when bootstrapping

    design = results.design
    model = _BootstrapModel(
        design=design,
        family=results.family,
        reml=results.method == "REML",
        nagq=_nagq(results.method),
        beta=np.asarray(results.params.values, dtype=float),
        theta=np.asarray(results.theta, dtype=float),
        sigma=float(results.sigma),
        dispersion=results.dispersion,
    )
    children = np.random.SeedSequence(int(seed)).spawn(int(n_boot))
    n_chunks = 1 if n_jobs == 1 else min(int(n_boot), 4 * (abs(int(n_jobs)) if n_jobs > 0 else 8))
    bounds = np.linspace(0, n_boot, n_chunks + 1).astype(int)
    chunks = [children[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    if n_jobs == 1:
        parts = [_bootstrap_chunk(model, c) for c in chunks]
    else:
        parts = Parallel(n_jobs=int(n_jobs))(delayed(_bootstrap_chunk)(model, c) for c in chunks)
    flat = [r for part in parts for r in part]
    theta = np.array([r[0] for r in flat])
    sigma = np.array([r[1] for r in flat])
    beta = np.array([r[2] for r in flat])
    converged = np.array([r[3] for r in flat], dtype=bool)
    params = variance_parameters(design, results.family)
    names = [p.name for p in params]
    phi = np.full((n_boot, len(params)), np.nan)
    ok = np.isfinite(sigma) & np.all(np.isfinite(theta), axis=1)
    for i in np.flatnonzero(ok):
        phi[i] = sdcor_from_theta(design, theta[i], float(sigma[i]), results.family)
    replicates = pd.DataFrame(phi, columns=names)
    replicates["converged"] = converged
    alpha = (1.0 - level) / 2.0
    est = sdcor_from_theta(design, results.theta, results.sigma, results.family)
    rows = []
    n_ok = int(ok.sum())
    method = f"parametric bootstrap (percentile, {n_ok} of {n_boot} refits)"
    for j, p in enumerate(params):
        col = phi[ok, j]
        lo, hi = np.quantile(col, [alpha, 1.0 - alpha]) if n_ok else (math.nan, math.nan)
        rows.append(
            {
                "parameter": p.name,
                "group": p.group,
                "var1": p.var1,
                "var2": p.var2,
                "kind": p.kind,
                "estimate": float(est[j]),
                "ci_lower": float(lo),
                "ci_upper": float(hi),
                "level": level,
                "method": method,
            }
        )
    table = pd.DataFrame(rows, columns=CONFINT_COLUMNS)
    undefined = _undefined_correlations(table.copy(), params, est)
    table["estimate"] = undefined["estimate"]
    return VarianceBootstrap(
        confint=table,
        replicates=replicates,
        theta=theta,
        sigma=sigma,
        beta=beta,
        seed=int(seed),
        n_boot=int(n_boot),
        n_failed=int(n_boot - n_ok),
    )
