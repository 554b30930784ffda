"""The analysis frame of a trial's primary analysis: who is analysed, in which arm, at which
visits, with what change from baseline (:func:`trial_frame`).

Rules (each set-aside row or person gets its reason; nothing is dropped silently):

* **Arm.** A person is analysed in the cocktail they were randomised to (intention to treat,
  ICH E9 §5.2.1): ``subjects.arm`` when it names a cocktail of the study, else the first
  cocktail injected (:func:`mesostats.data.derive.first_cocktail`). People with neither are
  set aside.
* **Change from baseline.** CDISC ADaM BDS rules of :meth:`Study.outcome_table`: the baseline
  is the flagged visit, else the last value on or before day 1; ``chg = value − baseline``.
  People without a baseline value are set aside (the baseline is both the reference of the
  change and a covariate).
* **Visits.** The post-baseline visits (week > 0) where the outcome was measured. A visit
  number is *scheduled* when at least :data:`SCHEDULED_SHARE` of the analysed people have
  the outcome there: a protocol visit is attended by most people, dropout thins later
  visits but rarely below that share, while unscheduled or extra visits are attended by a
  few. Rows at other visit numbers are set aside (an unstructured covariance needs every
  visit's variance and correlations to be estimable). Each person contributes the scheduled
  visits they have (rows with a missing outcome are not rows of the model; the MMRM's
  likelihood uses everyone's observed visits, valid under missing at random).
* **Control.** The cocktail whose every ingredient is a placebo (:data:`PLACEBO_INGREDIENTS`),
  unless given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mesostats.data.derive import INACTIVE_INGREDIENTS, first_cocktail
from mesostats.domain.common import SUBJECT, TIME, _empty_exclusions, _exclusion_frame
from mesostats.exceptions import ModelSpecError

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = [
    "EXCLUDED_SUBJECT_COLUMNS",
    "PLACEBO_INGREDIENTS",
    "SCHEDULED_SHARE",
    "TrialFrame",
    "trial_frame",
]

#: A post-baseline visit number is scheduled when at least this share of the analysed people
#: have the outcome there.
SCHEDULED_SHARE = 0.25
#: Ingredient names of a placebo: a cocktail made only of these is a control.
PLACEBO_INGREDIENTS = frozenset(INACTIVE_INGREDIENTS | {"placebo", "vehicle"})
#: Columns of :attr:`TrialFrame.excluded_subjects`.
EXCLUDED_SUBJECT_COLUMNS = ["subject_id", "cocktail", "reason"]

#: Model columns of the analysis frame.
VISIT = "visit"
COCKTAIL = "cocktail"


@dataclass(frozen=True)
class TrialFrame:
    """What :func:`trial_frame` prepares.

    Attributes
    ----------
    data : DataFrame
        One row per analysed person × scheduled post-baseline visit: ``subject_id``,
        ``visit`` (categorical of visit-number strings, in visit order), ``visit_number``,
        ``day``, ``week``, ``cocktail`` (categorical, the control first), ``value``,
        ``baseline``, ``chg``; index = the session's row label.
    visits : tuple of int
        The scheduled post-baseline visit numbers, in order.
    visit_weeks : dict
        Visit number → median week of its rows (for plots and text).
    cocktails : tuple of str
        Cocktails analysed, the control first, then sorted.
    control : str
    arm_source : str
        How people were put in arms (``"arm"``, ``"first cocktail"`` or both, in words).
    excluded_rows : DataFrame
        Post-baseline visits with the outcome that are not analysed: ``row, subject_id,
        visit, reason``.
    excluded_subjects : DataFrame
        People of the study not analysed at all: ``subject_id, cocktail, reason``.
    notes : tuple of str
    """

    data: pd.DataFrame
    visits: tuple[int, ...]
    visit_weeks: dict[int, float]
    cocktails: tuple[str, ...]
    control: str
    arm_source: str
    excluded_rows: pd.DataFrame
    excluded_subjects: pd.DataFrame
    notes: tuple[str, ...]


def trial_frame(study: Study, outcome: str, *, control: str | None = None) -> TrialFrame:
    """The rows, arms and visits of the primary analysis (rules in the module docstring).

    Raises
    ------
    ModelSpecError
        Unknown outcome; no control (or several) among the analysed cocktails, or an unknown
        ``control``; fewer than two cocktails or two scheduled visits; a cocktail with no
        one at a scheduled visit.
    """
    table = study.outcome_table(outcome)
    arms, arm_source = subject_arms(study)
    people = pd.Index(study.subjects[SUBJECT].astype(str))
    arm_of = arms.reindex(people)
    subj = table[SUBJECT].astype(str).to_numpy()
    row_arm = arm_of.reindex(subj).to_numpy(dtype=object)
    table = table.assign(_arm=row_arm)
    post = (table[TIME].to_numpy(dtype=float) > 0) & pd.notna(row_arm)
    post &= table["baseline"].notna().to_numpy(dtype=bool)
    has_base = set(table.loc[table["baseline"].notna().to_numpy(dtype=bool), SUBJECT].astype(str))
    candidates = table[post]
    n_people = candidates[SUBJECT].nunique()
    visits, counts = _scheduled_visits(candidates, n_people)
    scheduled = candidates["visit"].astype("Int64").isin(visits).to_numpy(dtype=bool)
    data = candidates[scheduled]
    analysed = set(data[SUBJECT].astype(str))

    later = (table[TIME].to_numpy(dtype=float) > 0) & ~post
    excluded_rows = _row_exclusions(table[later], row_arm[later], outcome)
    unscheduled = candidates[~scheduled]
    if len(unscheduled):
        reasons = [
            f"visit {int(v)} is not a scheduled visit: {outcome} measured in "
            f"{counts.get(int(v), 0)} of {n_people} people (under "
            f"{SCHEDULED_SHARE:.0%})"
            for v in unscheduled["visit"]
        ]
        excluded_rows = pd.concat(
            [excluded_rows, _exclusion_frame(unscheduled, reasons)], ignore_index=True
        )
    excluded_subjects = _subject_exclusions(people, arm_of, has_base, analysed, outcome)

    cocktails_seen = sorted(str(c) for c in pd.unique(data["_arm"]))
    chosen = _control(study, cocktails_seen, control)
    order = [chosen, *(c for c in cocktails_seen if c != chosen)]
    _check_design(data, order, visits, outcome)
    frame = _model_frame(data, order, visits)
    weeks = frame.groupby("visit_number", sort=True)[TIME].median()
    notes = _notes(study, outcome, frame, excluded_rows, excluded_subjects, arm_source)
    return TrialFrame(
        data=frame,
        visits=tuple(visits),
        visit_weeks=dict(
            zip(weeks.index.astype(int).tolist(), weeks.astype(float).tolist(), strict=True)
        ),
        cocktails=tuple(order),
        control=chosen,
        arm_source=arm_source,
        excluded_rows=excluded_rows,
        excluded_subjects=excluded_subjects,
        notes=tuple(notes),
    )


def subject_arms(study: Study) -> tuple[pd.Series, str]:
    """Each person's randomised cocktail (index subject_id) and how it was found, in words.

    ``subjects.arm`` where it names a cocktail of the study (the randomised assignment), else
    the first cocktail injected; people with neither are absent.
    """
    ids = pd.unique(study.cocktails["cocktail_id"].astype(str))
    subjects = study.subjects
    people = subjects[SUBJECT].astype(str).to_numpy()
    if "arm" in subjects.columns:
        named = subjects["arm"].astype(object).where(subjects["arm"].notna(), None)
    else:
        named = pd.Series(None, index=subjects.index, dtype=object)
    arm = named.to_numpy(dtype=object)
    by_arm = (named.notna() & named.astype(str).isin(ids)).to_numpy(dtype=bool)
    first = first_cocktail(study.sessions)
    first.index = first.index.astype(str)
    injected = first.reindex(people).to_numpy(dtype=object)
    cocktail = np.where(by_arm, arm, injected)
    out = pd.Series(cocktail, index=pd.Index(people, name=SUBJECT), name=COCKTAIL, dtype=object)
    out = out[out.notna()].astype(str)
    n_arm = int(by_arm.sum())
    n_first = int((~by_arm & pd.notna(injected)).sum())
    parts = []
    if n_arm:
        parts.append(f"{n_arm} by their randomised arm (subjects.arm)")
    if n_first:
        parts.append(f"{n_first} by the first cocktail injected (their arm names no cocktail)")
    return out, "; ".join(parts) or "nobody could be put in an arm"


def placebo_cocktails(study: Study, among: Sequence[str]) -> list[str]:
    """The cocktails of ``among`` whose every ingredient is a placebo."""
    c = study.cocktails
    names = c["ingredient"].astype(str).str.strip().str.lower()
    inactive = names.isin(PLACEBO_INGREDIENTS).groupby(c["cocktail_id"].astype(str)).all()
    return [str(k) for k in among if bool(inactive.get(k, False))]


def recipes_text(study: Study, cocktails: Sequence[str]) -> str:
    """``A (minoxidil, biotin); P (saline)`` for the given cocktails."""
    c = study.cocktails
    parts = []
    for cid in cocktails:
        ings = c.loc[c["cocktail_id"].astype(str) == cid, "ingredient"].astype(str)
        parts.append(f"{cid} ({', '.join(ings)})")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------


def _scheduled_visits(post: pd.DataFrame, n_people: int) -> tuple[list[int], dict[int, int]]:
    """Visit numbers with the outcome for ≥ SCHEDULED_SHARE of the people; people per visit."""
    per_visit = post.groupby(post["visit"].astype("Int64"))[SUBJECT].nunique()
    counts = dict(
        zip(per_visit.index.astype(int).tolist(), per_visit.astype(int).tolist(), strict=True)
    )
    keep = [v for v, n in sorted(counts.items()) if n >= SCHEDULED_SHARE * n_people]
    return keep, counts


def _row_exclusions(rows: pd.DataFrame, arm: np.ndarray, outcome: str) -> pd.DataFrame:
    """Post-baseline visits of people without a baseline or without an arm."""
    if rows.empty:
        return _empty_exclusions()
    no_arm = pd.isna(arm)
    reasons = np.where(
        no_arm,
        "no arm: the person was never injected and subjects.arm names no cocktail",
        f"no baseline {outcome}: the change from baseline and the baseline covariate need it",
    )
    return _exclusion_frame(rows, list(reasons))


def _subject_exclusions(
    people: pd.Index, arm_of: pd.Series, has_base: set[str], analysed: set[str], outcome: str
) -> pd.DataFrame:
    """People of the study not in the analysis, with the first reason that applies."""
    left_out = ~people.isin(list(analysed))
    arm = arm_of.to_numpy(dtype=object)[left_out]
    who = people[left_out]
    no_arm = pd.isna(arm)
    no_base = ~who.isin(list(has_base))
    why = np.select(
        [no_arm, no_base],
        [
            "no arm: never injected and subjects.arm names no cocktail",
            f"no baseline {outcome} (on or before day 1)",
        ],
        default=f"no {outcome} at a scheduled post-baseline visit",
    )
    return pd.DataFrame(
        {
            "subject_id": pd.Series(list(who), dtype=object),
            "cocktail": pd.Series(list(arm), dtype=object).where(~no_arm, None),
            "reason": pd.Series(list(why), dtype=object),
        },
        columns=EXCLUDED_SUBJECT_COLUMNS,
    )


def _control(study: Study, cocktails: list[str], control: Any) -> str:
    """The control cocktail: the one given, else the only all-placebo cocktail analysed."""
    listing = recipes_text(study, cocktails)
    if control is not None:
        if not isinstance(control, str) or control not in cocktails:
            raise ModelSpecError(
                f"control {control!r} is not a cocktail of the analysed people; cocktails: "
                f"{listing}. Pass one of {', '.join(cocktails)}."
            )
        return control
    found = placebo_cocktails(study, cocktails)
    if len(found) == 1:
        return found[0]
    what = "no cocktail is" if not found else f"{len(found)} cocktails ({', '.join(found)}) are"
    raise ModelSpecError(
        f"{what} made only of a placebo ({', '.join(sorted(PLACEBO_INGREDIENTS))}) among the "
        f"analysed cocktails: {listing}. Say which cocktail is the control, e.g. "
        f"fit_trial(study, control={(found or cocktails)[0]!r})."
    )


def _check_design(data: pd.DataFrame, order: list[str], visits: list[int], outcome: str) -> None:
    """Two cocktails, two scheduled visits, and someone in every cocktail × visit cell."""
    if len(order) < 2:
        raise ModelSpecError(
            f"the primary analysis compares cocktails with a control, but the analysed people "
            f"received only {', '.join(order) or 'no cocktail'}."
        )
    if len(visits) < 2:
        raise ModelSpecError(
            f"{outcome} is measured at {len(visits)} scheduled post-baseline visit"
            f"{'s' if len(visits) != 1 else ''} ({', '.join(map(str, visits)) or 'none'}); the "
            "MMRM of change from baseline needs at least 2. With one visit, an ANCOVA of the "
            "change (fit_lmm or a linear model on study.outcome_table) is the analysis."
        )
    arm = data["_arm"]
    cells = pd.crosstab(arm, data["visit"].astype(int))
    cells = cells.reindex(index=order, columns=visits, fill_value=0)
    empty = [(c, v) for c in order for v in visits if cells.loc[c, v] == 0]
    if empty:
        listed = ", ".join(f"{c} at visit {v}" for c, v in empty)
        raise ModelSpecError(
            f"no one has {outcome} in {listed}: the cocktail × visit effects there cannot be "
            "estimated. Check the visit numbers of those sessions."
        )


def _model_frame(data: pd.DataFrame, order: list[str], visits: list[int]) -> pd.DataFrame:
    number = data["visit"].astype(int).to_numpy()
    labels = [str(v) for v in visits]
    return pd.DataFrame(
        {
            SUBJECT: data[SUBJECT].astype(str).to_numpy(),
            VISIT: pd.Categorical(number.astype(str), categories=labels),
            "visit_number": number,
            "day": data["day"].to_numpy(dtype=float),
            TIME: data[TIME].to_numpy(dtype=float),
            COCKTAIL: pd.Categorical(data["_arm"].to_numpy(dtype=object), categories=order),
            "value": data["value"].to_numpy(dtype=float),
            "baseline": data["baseline"].to_numpy(dtype=float),
            "chg": data["chg"].to_numpy(dtype=float),
        },
        index=data.index,
    )


def _notes(
    study: Study,
    outcome: str,
    frame: pd.DataFrame,
    excluded_rows: pd.DataFrame,
    excluded_subjects: pd.DataFrame,
    arm_source: str,
) -> list[str]:
    n_people = frame[SUBJECT].nunique()
    notes = [
        f"{len(frame)} post-baseline visits of {n_people} people with a baseline {outcome}; "
        f"arms: {arm_source}."
    ]
    missing = len(study.outcome_exclusions(outcome))
    if missing:
        notes.append(
            f"{missing} visits have no {outcome} (listed in study.exclusions): they are not "
            "rows of the model; each person contributes the visits they have (MAR)."
        )
    if len(excluded_subjects):
        by = excluded_subjects.groupby("reason", sort=False).size()
        notes.append(
            f"{len(excluded_subjects)} of {n_people + len(excluded_subjects)} people are not "
            "analysed: " + "; ".join(f"{n} with {r}" for r, n in by.items()) + "."
        )
    if len(excluded_rows):
        notes.append(
            f"{len(excluded_rows)} post-baseline visits with {outcome} are set aside "
            "(results.excluded_rows lists each with its reason)."
        )
    return notes
