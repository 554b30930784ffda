"""Estimated marginal (least-squares) means of a fitted mixed model, as R's emmeans computes them.

``mean = L β`` with L from the reference grid (:mod:`mesostats.mixed.marginal.grid`), standard
error ``sqrt(L V Lᵀ)``, denominator df from the model (``df_for(L)``: Satterthwaite or
Kenward–Roger per mean; infinite for GLMMs, giving z intervals). References: Searle, Speed &
Milliken (1980, *Am. Stat.* 34:216); Lenth (2016, *J. Stat. Softw.* 69(1)).

Response scale (GLMM, ``scale="response"``): emmeans' ``type = "response"`` — the mean is the
inverse link of ``L β``, its SE by the delta method ``|dμ/dη| · SE(η)``, and the interval the
back-transformed link-scale interval (so it stays inside the response's range, e.g. (0, 1)
for probabilities; it is not ``mean ± q · SE``). emmeans' ``regrid`` (intervals built on the
response scale) is not offered.

The table is a :class:`MarginalMeans`, a pandas DataFrame subclass (the pandas-documented way
to carry extra state: ``_metadata`` plus ``_constructor``) holding an immutable
:class:`MeansState` — L, β, V, the df function, the link and the scale — that
:func:`~mesostats.mixed.marginal.comparisons.contrasts` needs. ``DataFrame.attrs`` was not used:
pandas documents it as experimental and drops or merges it in many operations. The state is
keyed by the rows' labels, so a subset of the rows (``means[means.visit == "W12"]``) still
contrasts correctly; a plain DataFrame (e.g. after ``pd.concat``) loses the state and
``contrasts`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.marginal.grid import MarginalGrid, marginal_grid
from mesostats.mixed.marginal.ordinal import ordinal_means
from mesostats.mixed.marginal.view import ModelView, model_view
from mesostats.mixed.wald import wald_quantile

__all__ = ["MarginalMeans", "MeansState", "inverse_link", "marginal_means"]

_RATIO_LINKS = ("log", "logit")


def inverse_link(link: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ = g⁻¹(η) and dμ/dη for the links of mesostats' families."""
    if link == "identity":
        return eta, np.ones_like(eta)
    if link == "logit":
        mu = special.expit(eta)
        return mu, mu * (1.0 - mu)
    if link == "log":
        mu = np.exp(eta)
        return mu, mu
    if link == "probit":
        return special.ndtr(eta), stats.norm.pdf(eta)
    if link == "cloglog":
        mu = -np.expm1(-np.exp(eta))
        return mu, np.exp(eta - np.exp(eta))
    raise ModelSpecError(f"No response scale for the link {link!r}; use scale='link'.")


@dataclass(frozen=True, eq=False)
class MeansState:
    """What :func:`contrasts` needs about a table of marginal means (immutable)."""

    L: np.ndarray  # (n_means, p), link scale
    offset: np.ndarray  # (n_means,)
    beta: np.ndarray
    vcov: np.ndarray
    df_for: Callable[[np.ndarray], np.ndarray]
    link: str
    scale: str
    specs: tuple[str, ...]
    by: tuple[str, ...]
    keys: tuple[tuple[Any, ...], ...]  # (specs..., by...) label of each row of L

    def rows_for(self, table: pd.DataFrame) -> np.ndarray:
        """Positions in L of the rows of ``table`` (matched by their spec/by labels)."""
        lookup = {key: i for i, key in enumerate(self.keys)}
        cols = [*self.specs, *self.by]
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ModelSpecError(
                f"The marginal-means table lacks its column(s) {missing}; pass the table "
                "marginal_means returned (a row subset is fine)."
            )
        out = []
        for key in table[cols].itertuples(index=False, name=None):
            if key not in lookup:
                raise ModelSpecError(f"Row {key} is not one of the marginal means computed.")
            out.append(lookup[key])
        return np.asarray(out, dtype=np.intp)

    @property
    def ratios(self) -> bool:
        """Contrasts reported as ratios (response scale of a log or logit link)."""
        return self.scale == "response" and self.link in _RATIO_LINKS


class MarginalMeans(pd.DataFrame):
    """A DataFrame of marginal means that remembers how they were computed (for contrasts)."""

    _metadata = ["_means_state"]  # noqa: RUF012 (pandas' documented class attribute)
    _means_state: MeansState | None

    @property
    def _constructor(self) -> Callable[..., MarginalMeans]:
        return MarginalMeans

    @property
    def means_state(self) -> MeansState | None:
        """The :class:`MeansState` behind the table (``None`` if it was lost)."""
        return getattr(self, "_means_state", None)


def _interval(est: np.ndarray, se: np.ndarray, df: np.ndarray, level: float) -> np.ndarray:
    q = wald_quantile(0.5 + level / 2.0, df)
    return np.stack([est - q * se, est + q * se])


def marginal_means(
    results: Any,
    specs: str | Sequence[str],
    *,
    by: str | Sequence[str] | None = None,
    at: Mapping[str, Any] | None = None,
    weights: str = "equal",
    scale: str = "response",
    level: float = 0.95,
    mode: str | None = None,
) -> MarginalMeans:
    """Estimated marginal (least-squares) means, as R's ``emmeans``.

    Parameters
    ----------
    results
        A fitted model: ``fit_lmm``, ``fit_glmm``, ``fit_mmrm`` (or ``fit_clmm``) results.
    specs : str or list of str
        Factor(s) whose level combinations get a mean each.
    by : str or list of str, optional
        Factor(s) that split the means into groups (``~ specs | by`` in emmeans); contrasts
        are formed, and multiplicity adjusted, within each group.
    at : dict, optional
        Values for the grid: a covariate's value(s) (default its mean over the fitted rows),
        or a subset of a factor's levels.
    weights : {"equal", "proportional", "outer", "cells"}
        How the grid is averaged over the factors not in ``specs``/``by`` (emmeans' meanings;
        see :mod:`mesostats.mixed.marginal.grid`).
    scale : {"response", "link"}
        GLMMs: ``"response"`` gives means on the data scale (probabilities, rates) with
        delta-method SEs and back-transformed intervals; ``"link"`` the linear predictor.
        Gaussian models are the same on both.
    level : float
        Confidence level of the intervals.
    mode : {"latent", "prob", "mean.class"}, optional
        Cumulative link models (``fit_clmm``) only, emmeans' ``mode`` (default ``"latent"``;
        ``scale`` is then ignored): ``"latent"`` the latent-scale mean ``x̄ᵀβ − mean(θ)``;
        ``"prob"`` the probability of each grade (one row per combination × grade, the
        grade in a column named after the response, varying slowest; contrasts are formed
        per grade); ``"mean.class"`` the expected grade numbered 1…K. Probabilities are
        those at random effects zero (an average person), as emmeans computes them, not
        averaged over persons; SEs by the delta method over (thresholds, β), intervals
        ``estimate ± z · SE``. See :mod:`mesostats.mixed.marginal.ordinal`.

    Returns
    -------
    MarginalMeans
        One row per combination of the ``specs`` (and ``by``) levels, the first spec varying
        fastest: the factor columns, ``estimate, std_error, df, ci_lower, ci_upper``.

    Notes
    -----
    ``estimate = L β (+ offset)``, ``std_error = sqrt(diag(L V Lᵀ))``, ``df = df_for(L)``;
    intervals ``estimate ± t_{df, (1+level)/2} · std_error`` (normal quantile when df is
    infinite).

    References
    ----------
    Searle, S. R., Speed, F. M. & Milliken, G. A. (1980). Population marginal means in the
    linear model. *The American Statistician* 34, 216–221.
    Lenth, R. V. (2016). Least-squares means: the R package lsmeans. *J. Stat. Softw.* 69(1).
    """
    if scale not in ("response", "link"):
        raise ModelSpecError(f"scale must be 'response' or 'link', got {scale!r}.")
    if not 0.0 < level < 1.0:
        raise ModelSpecError(f"level must be between 0 and 1, got {level!r}.")
    view = model_view(results)
    if view.family != "ordinal" and mode is not None:
        raise ModelSpecError(
            f"mode={mode!r} applies to cumulative link models (fit_clmm) only; this is a "
            f"{view.family} model: use scale='response' or 'link' instead."
        )
    grid = marginal_grid(view, specs, by=by, at=at, weights=weights)
    if view.family == "ordinal":
        return _ordinal_table(results, view, grid, specs, by, mode or "latent", level)
    L = grid.L
    eta = L @ view.beta + grid.offset
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", L, view.vcov, L), 0.0, None))
    estimable = np.all(np.isfinite(L), axis=1)
    df = np.full(len(eta), np.nan)
    if estimable.any():
        rows = L[estimable]
        df[estimable] = np.broadcast_to(
            np.asarray(view.df_for(rows), dtype=float).reshape(-1), (rows.shape[0],)
        )
    lo, hi = _interval(eta, se, df, level)
    if scale == "response" and view.link != "identity":
        eta_mu, deriv = inverse_link(view.link, eta)
        lo_mu, _ = inverse_link(view.link, lo)
        hi_mu, _ = inverse_link(view.link, hi)
        est, se = eta_mu, np.abs(deriv) * se
        lo, hi = np.minimum(lo_mu, hi_mu), np.maximum(lo_mu, hi_mu)
    else:
        est = eta
    table = MarginalMeans(grid.labels.copy())
    table["estimate"] = est
    table["std_error"] = se
    table["df"] = df
    table["ci_lower"] = lo
    table["ci_upper"] = hi
    spec_names = [specs] if isinstance(specs, str) else list(specs)
    by_names = [] if by is None else ([by] if isinstance(by, str) else list(by))
    keys = tuple(grid.labels[[*spec_names, *by_names]].itertuples(index=False, name=None))
    beta = np.array(view.beta)
    vcov = np.array(view.vcov)
    for arr in (beta, vcov):
        arr.setflags(write=False)
    table._means_state = MeansState(
        L=L,
        offset=grid.offset,
        beta=beta,
        vcov=vcov,
        df_for=view.df_for,
        link=view.link,
        scale=scale if view.link != "identity" else "link",
        specs=tuple(spec_names),
        by=tuple(by_names),
        keys=keys,
    )
    return table


def _names(value: str | Sequence[str] | None) -> list[str]:
    return [] if value is None else ([value] if isinstance(value, str) else list(value))


def _ordinal_table(
    results: Any,
    view: ModelView,
    grid: MarginalGrid,
    specs: str | Sequence[str],
    by: str | Sequence[str] | None,
    mode: str,
    level: float,
) -> MarginalMeans:
    """The table of a cumulative link model's means (:mod:`.ordinal`), with its state."""
    means, parts = ordinal_means(results, grid, mode)
    L = means.L
    est = means.estimate
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", L, parts.vcov, L), 0.0, None))
    df = np.full(est.size, np.inf)
    lo, hi = _interval(est, se, df, level)
    table = MarginalMeans(means.labels.copy())
    table["estimate"] = est
    table["std_error"] = se
    table["df"] = df
    table["ci_lower"] = lo
    table["ci_upper"] = hi
    spec_names = _names(specs)
    by_names = [*_names(by), *means.by]
    keys = tuple(means.labels[[*spec_names, *by_names]].itertuples(index=False, name=None))
    psi = np.array(parts.psi)
    vcov = np.array(parts.vcov)
    offset = np.array(means.offset)
    for arr in (psi, vcov, offset, L):
        arr.setflags(write=False)
    table._means_state = MeansState(
        L=L,
        offset=offset,
        beta=psi,
        vcov=vcov,
        df_for=view.df_for,
        link="identity",
        scale="link",
        specs=tuple(spec_names),
        by=tuple(by_names),
        keys=keys,
    )
    return table
