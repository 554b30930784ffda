"""Inference for mixed models: likelihood-ratio comparison of fits.

Satterthwaite df (LMM only) live in :mod:`mesostats.mixed.satterthwaite`; their names are
re-exported here for existing imports.

**compare()**: likelihood-ratio tests of nested fits on the same rows. When the larger model
adds one random effect to a grouping factor (a variance on its boundary under the null,
plus its covariances with the q effects already there), the null distribution is the
50:50 mixture of χ²_q and χ²_{q+1} (Self & Liang 1987, *JASA* 82:605; Stram & Lee 1994,
*Biometrics* 50:1171); the table says so in its ``note`` column. Other boundary tests use
the plain χ² (conservative) and say that too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from mesostats.exceptions import ModelSpecError
from mesostats.mixed.satterthwaite import SatterthwaiteResult, satterthwaite, varpar_hessian

if TYPE_CHECKING:
    from mesostats.mixed.results import MixedResults

__all__ = ["SatterthwaiteResult", "compare", "satterthwaite", "varpar_hessian"]


# --------------------------------------------------------------------------- compare
def _random_structure(res: MixedResults) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for term in res.design.terms:
        out.setdefault(term.group, set()).update(term.names)
    return out


def _same_rows(a: MixedResults, b: MixedResults) -> bool:
    da, db = a.design, b.design
    if da.n != db.n or not da.row_index.equals(db.row_index):
        return False
    return bool(np.array_equal(da.y, db.y) and np.array_equal(da.prior_weights, db.prior_weights))


def _label(res: MixedResults) -> str:
    return res.formula


def _boundary_note(small: MixedResults, big: MixedResults) -> tuple[str, int | None]:
    """Describe the test and return the df of the χ̄² mixture's lower component (or None)."""
    rs, rb = _random_structure(small), _random_structure(big)
    same_fixed = small.design.fixed_names == big.design.fixed_names
    added: list[tuple[str, str]] = []
    for group, names in rb.items():
        extra = names - rs.get(group, set())
        added.extend((group, n) for n in sorted(extra))
    if not added:
        return "χ² (fixed effects differ)", None
    if not same_fixed:
        return (
            "χ² (fixed and random parts both differ: the boundary makes this p-value conservative)",
            None,
        )
    if len(added) == 1:
        group, name = added[0]
        q_before = len(rs.get(group, set()))
        delta = big.n_params - small.n_params
        if delta in (q_before + 1, 1):
            lower = delta - 1
            return (
                f"χ̄²: 50:50 mixture of χ²_{lower} and χ²_{delta} (variance of `{name}` within "
                f"`{group}` on the boundary; Self & Liang 1987)",
                lower,
            )
    return (
        "χ² (several variances on the boundary under the null: conservative p-value)",
        None,
    )


def compare(*results: MixedResults) -> pd.DataFrame:
    """Likelihood-ratio comparison of nested mixed models fitted on the same rows.

    Parameters
    ----------
    *results : MixedResults
        Two or more fits of nested models (any order; sorted by number of parameters).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model, npar, loglik, aic, bic, chisq, df, p_value, note``;
        ``chisq``/``df``/``p_value`` compare each model with the one above it. When the
        larger model adds one random effect, p uses the 50:50 χ̄² mixture (``note`` says so).

    Raises
    ------
    ModelSpecError
        Fewer than two fits, fits on different rows or families, REML and ML fits mixed, REML
        fits whose fixed effects differ (refit with ``reml=False``), or models not nested.

    References
    ----------
    Self, S. G., Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood estimators
    and likelihood ratio tests under nonstandard conditions. *JASA* 82, 605–610.
    """
    if len(results) < 2:
        raise ModelSpecError("compare() needs at least two fitted models.")
    first = results[0]
    for other in results[1:]:
        if other.family != first.family:
            raise ModelSpecError(
                f"Cannot compare a {first.family} fit with a {other.family} fit: the "
                "likelihoods are not comparable."
            )
        if not _same_rows(first, other):
            raise ModelSpecError(
                f"The fits `{_label(first)}` ({first.nobs} rows) and `{_label(other)}` "
                f"({other.nobs} rows) are not on the same rows (different missing values or "
                "data). Likelihoods of different data cannot be compared; fit both models to "
                "the same complete rows."
            )
    methods = {r.method for r in results}
    if "REML" in methods and len(methods) > 1:
        raise ModelSpecError(
            f"Cannot compare REML with non-REML fits ({', '.join(sorted(methods))}); refit all "
            "models with the same method (reml=False to compare fixed effects)."
        )
    if methods == {"REML"}:
        fixed = {r.design.fixed_names for r in results}
        if len(fixed) > 1:
            raise ModelSpecError(
                "REML fits with different fixed effects cannot be compared: the REML criterion "
                "depends on X. Refit the models with `reml=False` (maximum likelihood)."
            )
    ordered = sorted(results, key=lambda r: r.n_params)
    rows = []
    prev: MixedResults | None = None
    for res in ordered:
        row: dict[str, object] = {
            "model": _label(res),
            "npar": res.n_params,
            "loglik": res.loglik,
            "aic": res.aic,
            "bic": res.bic,
            "chisq": np.nan,
            "df": np.nan,
            "p_value": np.nan,
            "note": "",
        }
        if prev is not None:
            if res.n_params == prev.n_params:
                raise ModelSpecError(
                    f"`{_label(prev)}` and `{_label(res)}` have the same number of parameters "
                    f"({res.n_params}); they are not nested. compare() tests nested models."
                )
            small_fixed = set(prev.design.fixed_names)
            if not small_fixed <= set(res.design.fixed_names):
                raise ModelSpecError(
                    f"`{_label(prev)}` is not nested in `{_label(res)}`: fixed effects "
                    f"{sorted(small_fixed - set(res.design.fixed_names))} are missing from the "
                    "larger model."
                )
            rs, rb = _random_structure(prev), _random_structure(res)
            for group, names in rs.items():
                if not names <= rb.get(group, set()):
                    raise ModelSpecError(
                        f"`{_label(prev)}` is not nested in `{_label(res)}`: random effects "
                        f"{sorted(names - rb.get(group, set()))} within `{group}` are missing "
                        "from the larger model."
                    )
            chisq = max(2.0 * (res.loglik - prev.loglik), 0.0)
            df = res.n_params - prev.n_params
            note, lower = _boundary_note(prev, res)
            if lower is None:
                p = float(stats.chi2.sf(chisq, df))
            else:
                upper_p = float(stats.chi2.sf(chisq, df))
                lower_p = float(stats.chi2.sf(chisq, lower)) if lower > 0 else float(chisq <= 0)
                p = 0.5 * lower_p + 0.5 * upper_p
            row.update(chisq=chisq, df=df, p_value=p, note=note)
        rows.append(row)
        prev = res
    return pd.DataFrame(rows)
