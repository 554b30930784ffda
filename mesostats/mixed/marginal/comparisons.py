"""Contrasts of estimated marginal means with multiplicity adjustment (emmeans' ``contrast``).

A contrast of the means ``m = L β`` with coefficients ``c`` is ``cᵀ L β``: its SE is
``sqrt(cᵀ L V Lᵀ c)`` and its df comes from the model for that linear function
(``df_for(cᵀL)``: Satterthwaite or Kenward–Roger; each contrast keeps its own df, as emmeans
does). Contrasts are formed within each ``by`` group and the multiplicity adjustment is applied
within each group (emmeans' families); see :mod:`mesostats.mixed.marginal.multiplicity`.

GLMM means on the response scale: contrasts are computed on the link scale (tests and
intervals there, as emmeans' ``type = "response"``) and, for log and logit links, reported
back-transformed as ratios (rate or odds ratios, labelled ``"A / P"``; SE by the delta method,
interval the exponentiated link interval). On the link scale they are differences ``"A - P"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.marginal.means import MarginalMeans, MeansState
from mesostats.mixed.marginal.multiplicity import (
    ADJUSTMENTS,
    adjusted_critical_values,
    adjusted_p_values,
)

__all__ = ["contrasts"]

_METHODS = ("trt.vs.ctrl", "pairwise")
_COLUMNS = ["estimate", "std_error", "df", "statistic", "p_value", "ci_lower", "ci_upper"]


def _level_labels(group: pd.DataFrame, specs: tuple[str, ...]) -> list[str]:
    return [" ".join(str(v) for v in row) for row in group[list(specs)].itertuples(index=False)]


def _coefficients(
    method: str | Mapping[str, Sequence[float]], labels: list[str], ref: str | None
) -> tuple[np.ndarray, list[str]]:
    """Contrast coefficients (contrasts × levels) and the contrast names."""
    k = len(labels)
    if isinstance(method, Mapping):
        rows, names = [], []
        for name, weights in method.items():
            c = np.asarray(weights, dtype=float)
            if c.shape != (k,):
                raise ModelSpecError(
                    f"Contrast {name!r} has {c.size} weights but there are {k} means per group "
                    f"({', '.join(labels)}); give one weight per mean, in that order."
                )
            rows.append(c)
            names.append(str(name))
        return np.array(rows), names
    if method == "trt.vs.ctrl":
        if ref is None:
            r = 0
        elif ref in labels:
            r = labels.index(ref)
        else:
            raise ModelSpecError(
                f"ref={ref!r} is not one of the levels compared ({', '.join(labels)})."
            )
        others = [i for i in range(k) if i != r]
        vs_ref = np.zeros((len(others), k))
        vs_ref[np.arange(len(others)), others] = 1.0
        vs_ref[:, r] = -1.0
        return vs_ref, [f"{labels[i]} - {labels[r]}" for i in others]
    if method == "pairwise":
        pairs = [(j, i) for j in range(k) for i in range(j)]
        pairwise = np.zeros((len(pairs), k))
        for row, (j, i) in enumerate(pairs):
            pairwise[row, j], pairwise[row, i] = 1.0, -1.0
        return pairwise, [f"{labels[j]} - {labels[i]}" for j, i in pairs]
    raise ModelSpecError(
        f"method must be 'trt.vs.ctrl', 'pairwise' or a dict name -> weights; got {method!r}."
    )


def _family(
    state: MeansState,
    positions: np.ndarray,
    coef: np.ndarray,
    adjust: str,
    level: float,
) -> dict[str, np.ndarray]:
    Lc = coef @ state.L[positions]
    est = Lc @ state.beta + coef @ state.offset[positions]
    cov = Lc @ state.vcov @ Lc.T
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    # a scalar df (one df for every linear function) is spread over the contrasts
    df = np.broadcast_to(
        np.asarray(state.df_for(Lc), dtype=float).reshape(-1), (Lc.shape[0],)
    ).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
        corr = cov / np.outer(se, se)
    n_means = coef.shape[1]
    p = adjusted_p_values(stat, df, adjust, corr=corr, n_means=n_means)
    crit = adjusted_critical_values(df, adjust, level, corr=corr, n_means=n_means)
    return {
        "estimate": est,
        "std_error": se,
        "df": df,
        "statistic": stat,
        "p_value": p,
        "ci_lower": est - crit * se,
        "ci_upper": est + crit * se,
    }


def contrasts(
    means: pd.DataFrame,
    method: str | Mapping[str, Sequence[float]] = "trt.vs.ctrl",
    *,
    ref: str | None = None,
    adjust: str = "dunnett",
    level: float = 0.95,
) -> pd.DataFrame:
    """Contrasts of marginal means with multiplicity-adjusted p-values and intervals.

    Parameters
    ----------
    means : MarginalMeans
        The table :func:`mesostats.marginal_means` returned (or a subset of its rows).
    method : {"trt.vs.ctrl", "pairwise"} or dict
        ``"trt.vs.ctrl"``: each level minus ``ref``; ``"pairwise"``: each level minus each
        earlier level (emmeans' ``revpairwise``: ``"B - A"`` when A comes first); a dict
        name → weights (one weight per mean of a ``by`` group, in table order).
    ref : str, optional
        Control level for ``"trt.vs.ctrl"`` (default the first level). With several
        ``specs`` a level is written as the values joined by spaces (``"A F"``).
    adjust : {"dunnett", "tukey", "holm", "bonferroni", "none"}
        Multiplicity adjustment within each ``by`` group. ``"dunnett"`` is the exact
        multivariate-t method for the contrasts' correlation (emmeans' ``"mvt"``; for
        ``trt.vs.ctrl`` it is Dunnett's test); ``"tukey"`` the studentized range (pairwise
        only); ``"holm"`` and ``"bonferroni"`` get Bonferroni intervals.
    level : float
        Confidence level of the (simultaneous) intervals.

    Returns
    -------
    pandas.DataFrame
        ``contrast``, the ``by`` columns, ``estimate, std_error, df, statistic, p_value,
        ci_lower, ci_upper``. ``statistic`` is t (z when df is infinite).

    References
    ----------
    Dunnett, C. W. (1955). A multiple comparison procedure for comparing several treatments
    with a control. *JASA* 50, 1096–1121. Tukey, J. W. (1953). *The problem of multiple
    comparisons*. Holm, S. (1979). *Scand. J. Statist.* 6, 65–70. Hothorn, T., Bretz, F. &
    Westfall, P. (2008). Simultaneous inference in general parametric models. *Biom. J.* 50,
    346–363.
    """
    state = means.means_state if isinstance(means, MarginalMeans) else None
    if state is None:
        raise ModelSpecError(
            "contrasts needs the table returned by marginal_means (it carries L, β and their "
            "covariance); this DataFrame has lost them (e.g. after pd.concat or "
            "pd.DataFrame(...)). Call contrasts on marginal_means(...) or a row subset of it."
        )
    if adjust not in ADJUSTMENTS:
        raise ModelSpecError(f"adjust must be one of {', '.join(ADJUSTMENTS)}; got {adjust!r}.")
    if adjust == "tukey" and method != "pairwise":
        raise ModelSpecError(
            "adjust='tukey' (the studentized range) applies to pairwise comparisons only; "
            f"method={method!r}. Use adjust='dunnett' (exact for any set of contrasts)."
        )
    if not 0.0 < level < 1.0:
        raise ModelSpecError(f"level must be between 0 and 1, got {level!r}.")
    rows = state.rows_for(means)
    by = list(state.by)
    table = pd.DataFrame(means[list(state.specs) + by]).reset_index(drop=True)
    table["_row"] = rows
    groups = [((), table)] if not by else list(table.groupby(by, sort=False, observed=True))
    parts = []
    for key, group in groups:
        labels = _level_labels(group, state.specs)
        coef, names = _coefficients(method, labels, ref)
        fam = _family(state, group["_row"].to_numpy(), coef, adjust, level)
        part = pd.DataFrame({"contrast": names})
        for name, value in zip(by, key if isinstance(key, tuple) else (key,), strict=True):
            part[name] = pd.Series([value] * len(names), dtype=means[name].dtype)
        for col in _COLUMNS:
            part[col] = fam[col]
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if state.ratios:
        ratio = np.exp(out["estimate"].to_numpy())
        out["std_error"] = ratio * out["std_error"].to_numpy()
        out["ci_lower"] = np.exp(out["ci_lower"].to_numpy())
        out["ci_upper"] = np.exp(out["ci_upper"].to_numpy())
        out["estimate"] = ratio
        out["contrast"] = out["contrast"].str.replace(" - ", " / ", regex=False)
    return out
