"""The primary analysis of a randomised trial: :func:`fit_trial`.

Mixed model for repeated measures (MMRM) of the change from baseline at each scheduled
post-baseline visit::

    chg ~ baseline * visit + cocktail * visit + us(visit | subject_id)

with the cocktail the person was randomised to (the control as reference level), the visit as
a factor, an unstructured within-subject covariance (with the pre-specified fallback of
:mod:`mesostats.domain.trial_covariance`), REML and Kenward–Roger degrees of freedom
(Mallinckrodt et al. 2008, *Drug Inf. J.* 42(4); Kenward & Roger 1997, *Biometrics* 53(3)).
Least-squares means per cocktail and visit are taken at the mean baseline with equal weights
(Searle, Speed & Milliken 1980, *Am. Stat.* 34(4)); each cocktail is compared with the
control at every visit; at the primary visit, the confirmatory comparisons, p-values are
adjusted over the cocktails by Dunnett's (1955, *JASA* 50(272)) method.

The rows, arms and visits come from :mod:`mesostats.domain.trial_data`; the fit is
:func:`mesostats.fit_mmrm`, the means and contrasts :func:`mesostats.marginal_means` and
:func:`mesostats.contrasts`. This module assembles them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.domain.common import (
    SUBJECT,
    _check_study,
    _engine_exclusions,
    _reissue,
    _stack_exclusions,
)
from mesostats.domain.trial_covariance import (
    COVARIANCE_STRUCTURES,
    covariance_order,
    fit_with_fallback,
)
from mesostats.domain.trial_data import COCKTAIL, VISIT, TrialFrame, trial_frame
from mesostats.domain.trial_results import LSMEANS_COLUMNS, VS_CONTROL_COLUMNS, TrialResults
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.marginal import contrasts, marginal_means
from mesostats.mixed.mmrm import fit_mmrm
from mesostats.mixed.mmrm.dof import DF_METHODS  # re-exported: fit_mmrm's df methods

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = [
    "COVARIANCE_STRUCTURES",
    "DF_METHODS",
    "TrialEngine",
    "analyse_trial",
    "fit_trial",
    "trial_formula",
]


@dataclass(frozen=True)
class TrialEngine:
    """The three engine calls of the analysis (the real ones by default; tests may pass
    stand-ins)."""

    fit: Callable[..., Any]
    means: Callable[..., pd.DataFrame]
    contrasts: Callable[..., pd.DataFrame]


def _default_engine() -> TrialEngine:
    return TrialEngine(fit=fit_mmrm, means=marginal_means, contrasts=contrasts)


def fit_trial(
    study: Study,
    outcome: str = "hair_density",
    *,
    visit: int | None = None,
    control: str | None = None,
    covariance: str | Sequence[str] = "us",
    df: str = "kenward-roger",
) -> TrialResults:
    """Primary analysis of a randomised trial: MMRM of the change from baseline.

    Parameters
    ----------
    study : Study
    outcome : str, default "hair_density"
        An outcome column of the sessions table.
    visit : int, optional
        The primary visit (a visit number); default the last scheduled visit.
    control : str, optional
        The control cocktail; default the cocktail made only of saline (or placebo).
    covariance : str or sequence of str, default "us"
        Within-subject covariance: a structure of :func:`mesostats.fit_mmrm` (``us``,
        ``toep``, ``toeph``, ``ar1``, ``ar1h``, ``ad``, ``adh``, ``cs``, ``csh``). When it
        does not converge the analysis falls back along the pre-specified order us → toeph →
        ar1h → cs from the structure given (another structure is tried alone); a sequence
        is your own pre-specified order. ``results.messages`` says what was used and why.
    df : str, default "kenward-roger"
        Degrees of freedom: ``kenward-roger``, ``kenward-roger-linear``, ``satterthwaite``,
        ``between-within``, ``residual``.

    Returns
    -------
    TrialResults
        ``.lsmeans``, ``.vs_control``, ``.model``, ``.messages``, ``.excluded_rows``,
        ``.excluded_subjects``; ``summary()``.

    Raises
    ------
    ModelSpecError
        Unknown outcome, visit, control, covariance or df; no control or several; fewer
        than two cocktails or scheduled visits; no structure of the order could be fitted.

    Warns
    -----
    ConvergenceWarning, ExclusionWarning
        Passed on from the engine.

    Notes
    -----
    Model: ``chg ~ baseline * visit + cocktail * visit + us(visit | subject_id)`` on the
    scheduled post-baseline visits (rules in :mod:`mesostats.domain.trial_data`: people in
    their randomised arm, visits attended by at least a quarter of the people, people
    without a baseline set aside with the reason). LS means at the mean baseline, equal
    weights; ``vs_control``: each cocktail minus the control at each visit, unadjusted
    95 % CI and p; ``p_adjusted`` by Dunnett's method over the cocktails at the primary
    visit (the confirmatory family), missing at the other (supportive) visits.

    Examples
    --------
    >>> import mesostats as ms
    >>> trial = ms.fit_trial(ms.example_study())  # doctest: +SKIP
    >>> trial.vs_control.query("visit == 10")  # doctest: +SKIP
    """
    return analyse_trial(
        study,
        outcome,
        visit=visit,
        control=control,
        covariance=covariance,
        df=df,
        engine=_default_engine(),
    )


def trial_formula(structure: str, response: str = "chg") -> str:
    """The MMRM formula of the module docstring with the given covariance structure."""
    return (
        f"{response} ~ baseline * {VISIT} + {COCKTAIL} * {VISIT} + {structure}({VISIT} | {SUBJECT})"
    )


def analyse_trial(
    study: Study,
    outcome: str,
    *,
    visit: Any,
    control: str | None,
    covariance: str | Sequence[str],
    df: str,
    engine: TrialEngine,
) -> TrialResults:
    """:func:`fit_trial` with the engine calls given."""
    _check_study(study)
    if not isinstance(outcome, str):
        raise ModelSpecError(f"outcome must be a column name (str), got {outcome!r}.")
    if df not in DF_METHODS:
        raise ModelSpecError(f"df must be one of {', '.join(DF_METHODS)}, got {df!r}.")
    order = covariance_order(covariance)
    frame = trial_frame(study, outcome, control=control)
    primary = _primary_visit(frame, visit)
    notes = list(frame.notes)

    caught: dict[str, list[Any]] = {}

    def fit_one(structure: str) -> Any:
        model, caught[structure] = _fit_collecting(
            engine.fit, trial_formula(structure), frame.data, df=df
        )
        return model

    fitted = fit_with_fallback(fit_one, order)
    _reissue(caught.get(fitted.covariance, []), notes)
    model = fitted.model
    lsmeans, vs_control = _means_and_contrasts(engine, model, frame, primary)
    return TrialResults(
        study=study,
        outcome=outcome,
        model=model,
        data=frame.data,
        formula=trial_formula(fitted.covariance),
        control=frame.control,
        cocktails=frame.cocktails,
        visits=frame.visits,
        visit_weeks=frame.visit_weeks,
        primary_visit=primary,
        covariance=fitted.covariance,
        attempts=fitted.attempts,
        df_method=df,
        lsmeans=lsmeans,
        vs_control=vs_control,
        messages=(*fitted.messages, *(str(m) for m in getattr(model, "messages", ()) or ())),
        notes=tuple(notes),
        excluded_rows=_stack_exclusions(frame.excluded_rows, _model_exclusions(model, frame)),
        excluded_subjects=frame.excluded_subjects,
    )


def _fit_collecting(fit: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[Any]]:
    """Run one fit keeping its warnings: they are passed on only for the structure used."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit(*args, **kwargs)
    return model, list(caught)


def _primary_visit(frame: TrialFrame, visit: Any) -> int:
    if visit is None:
        return frame.visits[-1]
    number: int | None = None
    if isinstance(visit, (int, np.integer)) and not isinstance(visit, (bool, np.bool_)):
        number = int(visit)
    elif isinstance(visit, str) and visit.strip().isdigit():
        number = int(visit)
    if number is None or number not in frame.visits:
        raise ModelSpecError(
            f"visit {visit!r} is not a scheduled post-baseline visit; scheduled visits: "
            f"{', '.join(map(str, frame.visits))} (default: the last)."
        )
    return number


def _means_and_contrasts(
    engine: TrialEngine, model: Any, frame: TrialFrame, primary: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """LS means per cocktail × visit; each cocktail minus the control per visit with the
    unadjusted p, and the Dunnett-adjusted p at the primary visit (missing elsewhere)."""
    means = engine.means(model, COCKTAIL, by=VISIT)
    raw = engine.contrasts(means, "trt.vs.ctrl", ref=frame.control, adjust="none")
    at_primary = means[VISIT].astype(str).to_numpy() == str(primary)
    dunnett = engine.contrasts(
        means[at_primary], "trt.vs.ctrl", ref=frame.control, adjust="dunnett"
    )
    lsmeans = means.assign(
        cocktail=means[COCKTAIL].astype(str).to_numpy(), visit=_visit_numbers(means[VISIT])
    )
    lsmeans = _sorted(lsmeans, frame, by=COCKTAIL)[LSMEANS_COLUMNS]
    raw = raw.assign(visit=_visit_numbers(raw[VISIT]), contrast=raw["contrast"].astype(str))
    adjusted = dunnett.assign(visit=_visit_numbers(dunnett[VISIT]))
    key = ["contrast", VISIT]
    p_adj = adjusted.assign(contrast=adjusted["contrast"].astype(str)).set_index(key)["p_value"]
    adjusted_p = p_adj.reindex(pd.MultiIndex.from_frame(raw[key])).to_numpy(dtype=float)
    # a Dunnett p is never below the unadjusted one; the multivariate-t integration has an
    # absolute error near 1e-15, which can put it below a p-value smaller than that
    raw["p_adjusted"] = np.fmax(adjusted_p, raw["p_value"].to_numpy(dtype=float))
    raw.loc[np.isnan(adjusted_p), "p_adjusted"] = np.nan
    raw["_cocktail"] = raw["contrast"].str.split(" - ").str[0]
    vs_control = _sorted(raw, frame, by="_cocktail")[VS_CONTROL_COLUMNS]
    return lsmeans.reset_index(drop=True), vs_control.reset_index(drop=True)


def _visit_numbers(column: pd.Series) -> np.ndarray:
    return np.asarray(column.astype(str).astype(int), dtype=np.int64)


def _sorted(table: pd.DataFrame, frame: TrialFrame, *, by: str) -> pd.DataFrame:
    """Rows in visit order, then cocktail order (the control first)."""
    rank = {c: i for i, c in enumerate(frame.cocktails)}
    order = np.lexsort((table[by].map(rank).to_numpy(dtype=float), table[VISIT].to_numpy()))
    return table.iloc[order]


def _model_exclusions(model: Any, frame: TrialFrame) -> pd.DataFrame:
    ex = getattr(model, "excluded_rows", None)
    if ex is None or not len(ex) or "row" not in ex.columns:
        return frame.excluded_rows.iloc[:0]
    return _engine_exclusions(model, frame.data)
