"""Pieces shared by the graded-outcome fits (severity, global assessment).

* :func:`merge_empty_grades`: ``fit_clmm`` refuses a grade that never occurs (its threshold
  would run off to infinity); here such a grade is merged with its neighbour (the one below,
  or above for the lowest grade) and a note says so.
* :func:`grade_probabilities`: per cocktail, the probability of each grade marginal over
  persons, ∫ P(Y = j | b) φ(b; 0, σ²) db (:meth:`CLMMResults.predict`), and the mean grade.
* :func:`observed_shares`: the observed counterpart, per cocktail.
* :func:`odds_ratio_table`: exp of the latent-scale effects, Wald 95 % CI, Holm-adjusted p.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.domain.common import _wald_columns, holm_adjusted
from mesostats.mixed.clmm import fit_clmm

if TYPE_CHECKING:
    from mesostats.mixed.clmm import CLMMResults

__all__ = [
    "fit_clmm_quietly",
    "grade_probabilities",
    "merge_empty_grades",
    "observed_shares",
    "odds_ratio_table",
]


def fit_clmm_quietly(
    formula: str, data: pd.DataFrame, **kwargs: Any
) -> tuple[CLMMResults, list[warnings.WarningMessage]]:
    """:func:`mesostats.fit_clmm`, keeping its warnings so the domain layer can word them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_clmm(formula, data, **kwargs)
    return model, list(caught)


def merge_empty_grades(
    values: pd.Series, grades: Sequence[str], what: str, notes: list[str]
) -> tuple[pd.Series, list[str]]:
    """Recode ``values`` (labels among ``grades``) so every grade occurs; returns the ordered
    categorical response and the model's grade labels (merged ones joined with ``/``)."""
    counts = values.value_counts()
    groups: list[list[str]] = [[g] for g in grades]
    i = 0
    while i < len(groups) and len(groups) > 1:
        n = sum(int(counts.get(g, 0)) for g in groups[i])
        if n == 0:
            j = i - 1 if i > 0 else i + 1
            lo, hi = min(i, j), max(i, j)
            merged = groups[lo] + groups[hi]
            notes.append(
                f"{what}: grade {'/'.join(groups[i])!r} never occurs in the rows analysed, so "
                f"it is merged with its neighbour {'/'.join(groups[j])!r} (model grade "
                f"{'/'.join(merged)!r}); a cumulative link model cannot place a threshold "
                "next to an empty grade."
            )
            groups[lo : hi + 1] = [merged]
            i = lo
            continue
        i += 1
    labels = ["/".join(g) for g in groups]
    mapping = {g: lab for grp, lab in zip(groups, labels, strict=True) for g in grp}
    recoded = values.map(mapping)
    return (
        pd.Series(pd.Categorical(recoded, categories=labels, ordered=True), index=values.index),
        labels,
    )


def grade_probabilities(
    model: CLMMResults, rows: pd.DataFrame, by: str, mean_name: str, scores: Sequence[float]
) -> pd.DataFrame:
    """One row per ``rows[by]`` value: P(grade) marginal over persons, and the mean score."""
    rows = rows.copy()
    for term in model.design.terms:  # a person not in the fit: integrated over
        for column in term.group_columns:
            rows[column] = "(a new person)"
    probs = model.predict(rows, type="prob")
    assert isinstance(probs, pd.DataFrame)
    out = probs.reset_index(drop=True)
    out.insert(0, by, rows[by].astype(str).to_numpy())
    out[mean_name] = probs.to_numpy() @ np.asarray(scores, dtype=float)
    return out


def observed_shares(
    data: pd.DataFrame, by: str, response: str, order: Sequence[str]
) -> pd.DataFrame:
    """Observed share of rows per ``by`` value (in ``order``) and grade, with ``n``."""
    table = pd.crosstab(data[by].astype(str), data[response], dropna=False)
    table = table.reindex([str(o) for o in order], fill_value=0)
    n = table.sum(axis=1)
    shares = table.div(n, axis=0)
    shares.columns = [str(c) for c in shares.columns]
    shares["n"] = n.astype(np.int64)
    shares.index.name = by
    return shares.reset_index()


def odds_ratio_table(model: CLMMResults, effect_terms: dict[str, str], name: str) -> pd.DataFrame:
    """``name, odds_ratio, ci_lower, ci_upper, p_value, p_adjusted`` from latent-scale β."""
    wald = _wald_columns(model, effect_terms)
    with np.errstate(over="ignore"):  # a separated term's OR is reported as inf
        odds = {k: np.exp(wald[k]) for k in ("estimate", "ci_lower", "ci_upper")}
    table = pd.DataFrame(
        {
            name: pd.Series(list(effect_terms), dtype="str"),
            "odds_ratio": odds["estimate"],
            "ci_lower": odds["ci_lower"],
            "ci_upper": odds["ci_upper"],
            "p_value": wald["p_value"],
        }
    )
    table["p_adjusted"] = holm_adjusted(table["p_value"].to_numpy())
    return table
