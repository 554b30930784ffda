"""Observed side-effect rates and the population-average (GEE) sensitivity analysis.

Rates: events / assessed sessions (and people) with exact Clopper–Pearson intervals
(Clopper & Pearson 1934, *Biometrika* 26(4); ``statsmodels`` ``proportion_confint(method=
"beta")``) per ingredient, per cocktail and overall. GEE: Liang & Zeger (1986, *Biometrika*
73(1)), ``statsmodels`` GEE with an exchangeable working correlation; its odds ratios are
attenuated towards 1 relative to the subject-specific ones by about ``1/√(1 + c²σ²)`` on the
log scale, c = 16√3/(15π) (Zeger, Liang & Albert 1988, *Biometrics* 44(4)).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from mesostats._display import Summary, SummaryDisplay, table_from_frame
from mesostats._records import FrozenRecord
from mesostats.domain.common import _ATTENUATION_C2, GEE_COLUMNS, RATE_COLUMNS, SUBJECT
from mesostats.mixed.boundary import SINGULAR_TOL

if TYPE_CHECKING:
    from mesostats.mixed.results import MixedResults


@dataclass(frozen=True, eq=False, repr=False)
class PopulationAverage(FrozenRecord, SummaryDisplay):
    """GEE population-average odds ratios beside the GLMM subject-specific ones.

    Attributes
    ----------
    table : DataFrame
        ``ingredient, subject_specific_or, ss_ci_lower, ss_ci_upper, population_average_or,
        pa_ci_lower, pa_ci_upper, pa_p_value, expected_population_average_or`` (the last is
        the subject-specific OR attenuated by Zeger, Liang & Albert's factor).
    explanation : str
        One sentence on why the two kinds of odds ratio differ.
    working_correlation : float
        Estimated exchangeable within-person correlation.
    attenuation : float
        The factor 1/√(1 + c²σ²) applied to log ORs (σ = between-person SD of the GLMM).
    notes : tuple of str
        Warnings from the GEE fit, if any.
    """

    table: pd.DataFrame
    explanation: str
    working_correlation: float
    attenuation: float
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"<PopulationAverage GEE (exchangeable, ρ = {self.working_correlation:.3f}); "
            f"{len(self.table)} ingredients, attenuation factor {self.attenuation:.3f}>"
        )

    def summary(self) -> Summary:
        """The comparison table with the reason the two kinds of odds ratio differ."""
        return Summary(
            title="Population-average (GEE) vs subject-specific (GLMM) odds ratios",
            info=(("Why they differ", self.explanation),),
            tables=(table_from_frame(self.table, caption="Odds ratios"),),
            notes=tuple(self.notes),
        )


def _subject_sd(model: MixedResults) -> float:
    vc = model.variance_components
    row = vc[(vc["group"] == SUBJECT) & (vc["var1"] == "Intercept") & vc["var2"].isna()]
    return float(row["sdcor"].iloc[0]) if len(row) else 0.0


def event_rates(data: pd.DataFrame, ingredients: Sequence[str]) -> pd.DataFrame:
    """Observed side-effect rates with exact Clopper–Pearson 95 % intervals.

    Per session: sessions with ≥ 1 event / assessed sessions. Per person: people with ≥ 1
    event at such a session / people assessed at one. For all sessions (``level =
    "overall"``), per ingredient (sessions whose cocktail holds it) and per cocktail.
    Intervals by ``statsmodels.stats.proportion.proportion_confint(method="beta")``
    (Clopper & Pearson 1934).
    """
    # statsmodels: heavy, only for the rates
    from statsmodels.stats.proportion import proportion_confint

    any_event = data["any_event"].to_numpy(dtype=np.int64)
    count = data["events"].to_numpy(dtype=np.int64)
    subject, people = pd.factorize(data[SUBJECT])
    groups: list[tuple[str, str, np.ndarray]] = [("overall", "all", np.ones(len(data), dtype=bool))]
    groups += [("ingredient", ing, data[ing].to_numpy() != 0) for ing in ingredients]
    cocktail = data["cocktail_id"].astype(str).to_numpy(dtype=object)
    groups += [("cocktail", str(c), cocktail == c) for c in sorted(pd.unique(cocktail))]
    records = []
    for level, name, mask in groups:  # a few groups (ingredients, cocktails), vectorised inside
        events_in = int(count[mask].sum())
        assessed = np.bincount(subject[mask], minlength=len(people)) > 0
        with_event = np.bincount(subject[mask], weights=any_event[mask], minlength=len(people))
        records.append(
            (level, name, "session", int(any_event[mask].sum()), int(mask.sum()), events_in)
        )
        records.append(
            (level, name, "person", int((with_event > 0).sum()), int(assessed.sum()), events_in)
        )
    fields = [list(c) for c in zip(*records, strict=True)]
    k = np.asarray(fields[3], dtype=float)
    n = np.asarray(fields[4], dtype=float)
    lower, upper = proportion_confint(k, n, alpha=0.05, method="beta")
    # built column by column with their final dtypes (one DataFrame, no astype round trip)
    columns = {
        "level": pd.Series(fields[0], dtype="str"),
        "name": pd.Series(fields[1], dtype="str"),
        "per": pd.Series(fields[2], dtype="str"),
        "n_with_event": pd.Series(fields[3], dtype=np.int64),
        "n_assessed": pd.Series(fields[4], dtype=np.int64),
        "n_events": pd.Series(fields[5], dtype=np.int64),
        "rate": pd.Series(k / n),
        "ci_lower": pd.Series(np.asarray(lower, dtype=float)),
        "ci_upper": pd.Series(np.asarray(upper, dtype=float)),
    }
    return pd.DataFrame({col: columns[col] for col in RATE_COLUMNS})


def population_average(
    data: pd.DataFrame,
    ingredients: Sequence[str],
    subject_specific: pd.DataFrame,
    subject_sd: float,
) -> PopulationAverage:
    """GEE (binomial, logit, exchangeable, robust SEs) ORs beside the GLMM ORs.

    Method: Liang & Zeger (1986) via ``statsmodels`` ``GEE``; expected attenuation of a
    subject-specific log OR β to β/√(1 + c²σ²), c = 16√3/(15π) (Zeger, Liang & Albert 1988).
    When the GEE cannot be fitted, its columns are NaN and ``notes`` says why.

    Parameters
    ----------
    data : DataFrame
        Rows fitted: ``any_event``, ``subject_id`` and the ingredient columns.
    ingredients : sequence of str
    subject_specific : DataFrame
        The GLMM's ``ingredient_effects`` (same ingredient order).
    subject_sd : float
        Between-person SD of the GLMM (log-odds scale).
    """
    import statsmodels.api as sm  # statsmodels: heavy, only for the GEE

    y = data["any_event"].to_numpy(dtype=float)
    X = np.column_stack([np.ones(len(data)), data[list(ingredients)].to_numpy(dtype=float)])
    groups = pd.factorize(data[SUBJECT])[0]
    k = len(ingredients)
    params, bse, rho = np.full(k, np.nan), np.full(k, np.nan), math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GEE(
                y,
                X,
                groups=groups,
                family=sm.families.Binomial(),
                cov_struct=sm.cov_struct.Exchangeable(),
            ).fit()
            params = np.asarray(res.params, dtype=float)[1:]
            bse = np.asarray(res.bse, dtype=float)[1:]
            rho = float(np.asarray(res.cov_struct.dep_params).ravel()[0])
            failure = ""
        except (np.linalg.LinAlgError, ValueError) as err:
            failure = f"The GEE sensitivity analysis could not be fitted: {err}."
    notes = tuple(f"GEE: {w.message}" for w in caught) + ((failure,) if failure else ())
    z = stats.norm.ppf(0.975)
    attenuation = 1.0 / math.sqrt(1.0 + _ATTENUATION_C2 * subject_sd**2)
    ss_log = np.log(subject_specific["odds_ratio"].to_numpy(dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        pa_p = 2.0 * stats.norm.sf(np.abs(params / bse))
    table = pd.DataFrame(
        {
            "ingredient": pd.Series(list(ingredients), dtype="str"),
            "subject_specific_or": subject_specific["odds_ratio"].to_numpy(dtype=float),
            "ss_ci_lower": subject_specific["ci_lower"].to_numpy(dtype=float),
            "ss_ci_upper": subject_specific["ci_upper"].to_numpy(dtype=float),
            "population_average_or": np.exp(params),
            "pa_ci_lower": np.exp(params - z * bse),
            "pa_ci_upper": np.exp(params + z * bse),
            "pa_p_value": pa_p,
            "expected_population_average_or": np.exp(ss_log * attenuation),
        }
    )
    if subject_sd < SINGULAR_TOL:  # the engines' rule for an SD at zero
        why = "people hardly differ here (between-person SD ≈ 0), so the two agree"
    else:
        why = (
            f"because people differ (between-person SD {subject_sd:.2f} on the log-odds "
            f"scale), population-average log odds ratios are attenuated towards 0 (ORs towards "
            f"1) by a factor of about {attenuation:.2f} (Zeger, Liang & Albert 1988)"
        )
    explanation = (
        "Population-average odds ratios (GEE) compare everyone given an ingredient with "
        "everyone not given it, whereas subject-specific odds ratios (GLMM) compare a given "
        f"person with and without it; {why}."
    )
    return PopulationAverage(
        table=table[GEE_COLUMNS],
        explanation=explanation,
        working_correlation=rho,
        attenuation=attenuation,
        notes=notes,
    )
