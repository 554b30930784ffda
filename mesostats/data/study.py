"""The :class:`Study`: validated, typed study tables and their analysis views.

A Study is what :func:`mesostats.load_study` returns (and what the simulator builds): the four
tables with their schema types, the rows set aside from analyses (``exclusions``, with the
reason), and the active ingredients. Its methods build the analysis tables that the models
use: :meth:`Study.outcome_table` (CDISC baseline / change from baseline, per subject × visit)
and :meth:`Study.event_table` (per assessed session, count of side effects).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.arrays import ArrowStringArray

from mesostats.data import derive
from mesostats.data.parse import arrow_array, is_arrow_text
from mesostats.data.schema import StudySchema, load_schema
from mesostats.data.study_day import NO_REFERENCE_REASON
from mesostats.exceptions import ModelSpecError

__all__ = ["EXCLUSION_COLUMNS", "Study"]

EXCLUSION_COLUMNS = ["table", "row", "reason"]
SUBJECT_KEY = "subject_id"
NO_OUTCOME_REASON = "no outcome recorded at this visit: not in any outcome_table"


def _empty_exclusions() -> pd.DataFrame:
    return _EMPTY_EXCLUSIONS.copy()


_EMPTY_EXCLUSIONS = pd.DataFrame({c: pd.Series(dtype=object) for c in EXCLUSION_COLUMNS})


@dataclass(frozen=True, eq=False)
class Study:
    """A validated mesotherapy study.

    Attributes
    ----------
    subjects, cocktails, sessions, adverse_events : DataFrame
        Typed tables (text ``str``, numbers ``float64``, required integers ``int64``,
        optional integers ``Int64``, booleans ``bool``/``boolean``); the index holds each
        row's source label (file line number or input index label), named ``row``.
        ``adverse_events`` is empty (with its columns) when the study has none.
    exclusions : DataFrame
        ``table, row, reason``: rows kept out of some analysis, e.g. a visit whose outcome is
        missing (not in that outcome's ``outcome_table``) or an event recorded at a session
        whose reactions were not assessed (not counted in ``event_table``).
    ingredients : list of str
        Sorted active ingredient names of the cocktails (saline excluded).
    source : str
        Where the study was read from.
    truth : dict, optional
        True parameter values when the study was simulated.
    schema : StudySchema
        The schema the tables were validated against (default: the one shipped with
        mesostats); :attr:`outcomes` and :attr:`event_terms` come from it.
    """

    subjects: pd.DataFrame
    cocktails: pd.DataFrame
    sessions: pd.DataFrame
    adverse_events: pd.DataFrame
    exclusions: pd.DataFrame = field(default_factory=_empty_exclusions)
    ingredients: list[str] = field(default_factory=list)
    source: str = ""
    truth: dict[str, Any] | None = None
    schema: StudySchema = field(default_factory=load_schema, repr=False)
    # Session row of each adverse event, from the validator's key codes; trusted only while
    # the two tables are the very objects it was computed for (see _event_session_rows).
    _event_sessions: np.ndarray | None = field(default=None, repr=False)
    _event_sessions_for: tuple[int, int] = field(default=(0, 0), repr=False)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Outcome columns of ``sessions`` (fields marked as outcomes in the study's schema)."""
        return _present_outcomes(self.schema, self.sessions)

    @property
    def event_terms(self) -> tuple[str, ...]:
        """The coded event terms of the study's schema (``adverse_events.event`` enum)."""
        spec = self.schema.tables["adverse_events"].field("event")
        return tuple(str(t) for t in (spec.enum or ()))

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_tables(
        cls,
        tables: Mapping[str, pd.DataFrame],
        schema: StudySchema,
        *,
        source: str = "",
        links: Mapping[tuple[str, str], np.ndarray] | None = None,
    ) -> Study:
        """Build a Study from validated, typed tables (see :func:`mesostats.load_study`).

        ``links`` may hold the session row of every adverse event
        (``("adverse_events", "sessions")``, from
        :func:`mesostats.data.crosstable.reference_positions`); otherwise it is computed.
        """
        adverse_events = tables.get("adverse_events")
        if adverse_events is None:
            adverse_events = _empty_typed(schema, "adverse_events")
        sessions = tables["sessions"]
        outcomes = _present_outcomes(schema, sessions)
        event_sessions = (links or {}).get(("adverse_events", "sessions"))
        if event_sessions is None or len(event_sessions) != len(adverse_events):
            event_sessions = _event_session_rows(sessions, adverse_events)
        parts = [
            _no_day_exclusions(sessions),
            _missing_outcome_exclusions(sessions, outcomes),
            _unassessed_event_exclusions(sessions, adverse_events, event_sessions),
        ]
        filled = [part for part in parts if len(part)]
        if not filled:
            exclusions = _empty_exclusions()
        elif len(filled) == 1:
            exclusions = filled[0]
        else:
            exclusions = pd.concat(filled, ignore_index=True)
        return cls(
            subjects=tables["subjects"],
            cocktails=tables["cocktails"],
            sessions=sessions,
            adverse_events=adverse_events,
            exclusions=exclusions,
            ingredients=derive.active_ingredients(tables["cocktails"]),
            source=source,
            schema=schema,
            _event_sessions=event_sessions,
            _event_sessions_for=(id(sessions), id(adverse_events)),
        )

    # ----------------------------------------------------------------------------------------
    # analysis tables
    # ----------------------------------------------------------------------------------------

    def outcome_table(
        self,
        outcome: str = "hair_density",
        *,
        exposure: Literal["indicator", "dose"] = "indicator",
    ) -> pd.DataFrame:
        """One row per subject × visit with the outcome, its baseline and change.

        Parameters
        ----------
        outcome : str
            An outcome column of ``sessions`` (e.g. ``"hair_density"``, ``"shaft_diameter_um"``).
        exposure : {"indicator", "dose"}
            Ingredient columns as 0/1 indicators of the cocktail received, or as doses
            (concentration × volume injected).

        Returns
        -------
        DataFrame
            Columns ``subject_id, visit, day, week, cocktail_id, value, baseline, chg, pchg``,
            one column per ingredient, then the subject columns; index = the session's source
            row label. Rows whose outcome is missing, or without a study day (visit dates of a
            subject never injected), are left out (they are listed in ``study.exclusions``;
            :meth:`outcome_exclusions` picks them out).

        Notes
        -----
        CDISC ADaM BDS rules (see :mod:`mesostats.data.derive`): baseline is the flagged
        visit (``baseline_flag``) if any, else the last non-missing value on or before day 1;
        ``chg = value − baseline``; ``pchg = 100·chg/|baseline|``, missing when baseline is 0.
        """
        columns, keep = self._outcome_columns(outcome)
        return self._analysis_table(columns, exposure, keep)

    def _outcome_columns(self, outcome: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The outcome columns of :meth:`outcome_table` (``value, baseline, chg, pchg``) on
        every sessions row, and the rows it keeps (outcome and study day present)."""
        self._check_outcome(outcome)
        s = self.sessions
        value = s[outcome].to_numpy(dtype="float64", na_value=np.nan)
        flag = s["baseline_flag"] if "baseline_flag" in s.columns else None
        baseline = derive.baseline_values(s[SUBJECT_KEY], s["day"], value, flag)
        chg, pchg = derive.change_from_baseline(value, baseline)
        keep = ~np.isnan(value) & s["day"].notna().to_numpy(dtype=bool)
        return {"value": value, "baseline": baseline, "chg": chg, "pchg": pchg}, keep

    def event_table(self, event: str | None = None) -> pd.DataFrame:
        """One row per session whose reactions were assessed, with its count of events.

        Parameters
        ----------
        event : str, optional
            A coded event term (e.g. ``"erythema"``); ``None`` counts every event.

        Returns
        -------
        DataFrame
            Columns ``subject_id, visit, day, week, cocktail_id, events, any_event``, one 0/1
            column per ingredient, then the subject columns; index = the session's source
            row label. Events recorded at sessions whose reactions were not assessed are not
            counted (they are listed in ``study.exclusions``).
        """
        ae = self.adverse_events
        s = self.sessions
        rows = self._event_session_rows()
        if event is not None:
            self._check_event(event)
            rows = rows[(ae["event"] == event).to_numpy(dtype=bool)]
        assessed = s["reactions_assessed"].fillna(False).to_numpy(dtype=bool)
        counts = np.bincount(rows[rows >= 0], minlength=len(s))
        columns = {
            "events": counts.astype(np.int64),
            "any_event": (counts > 0).astype(np.int64),
        }
        return self._analysis_table(columns, "indicator", assessed)

    def outcome_exclusions(self, outcome: str = "hair_density") -> pd.DataFrame:
        """The rows of ``exclusions`` that :meth:`outcome_table` leaves out for ``outcome``.

        Returns
        -------
        DataFrame
            ``table, row, reason``: visits where ``outcome`` is missing (alone or with every
            other outcome), or that have no study day.
        """
        self._check_outcome(outcome)
        reasons = [NO_OUTCOME_REASON, _missing_outcome_reason(outcome), NO_REFERENCE_REASON]
        keep = self.exclusions["reason"].isin(reasons).to_numpy(dtype=bool)
        return self.exclusions[keep].reset_index(drop=True)

    # ----------------------------------------------------------------------------------------
    # helpers
    # ----------------------------------------------------------------------------------------

    def _event_session_rows(self) -> np.ndarray:
        """0-based sessions row of every adverse event (-1 if none)."""
        current = (id(self.sessions), id(self.adverse_events))
        if self._event_sessions is not None and self._event_sessions_for == current:
            return self._event_sessions
        return _event_session_rows(self.sessions, self.adverse_events)

    def _visit_columns(self) -> dict[str, Any]:
        """The columns every analysis table starts with: who, when, which cocktail."""
        s = self.sessions
        day = s["day"]
        return {
            "subject_id": _column_values(s[SUBJECT_KEY]),
            "visit": _column_values(s["visit"]),
            "day": _column_values(day),
            "week": derive.study_week(day),
            "cocktail_id": _column_values(self._cocktail_column()),
        }

    def _cocktail_column(self) -> pd.Series:
        s = self.sessions
        if "cocktail_id" in s.columns:
            return s["cocktail_id"]
        return pd.Series(pd.NA, index=s.index, dtype="str")

    def _analysis_table(
        self,
        columns: dict[str, np.ndarray],
        exposure: Literal["indicator", "dose"],
        keep: np.ndarray,
    ) -> pd.DataFrame:
        """The visit columns, ``columns``, the ingredient design and the subject columns,
        on the sessions rows where ``keep`` is true, built as one DataFrame (the rows are
        filtered column by column; the same table as concatenating and filtering)."""
        design = self._design_matrix(exposure)
        table: dict[str, Any] = {}
        for name, col in {**self._visit_columns(), **columns}.items():
            table[name] = col[keep]
        rows = design[keep]
        for j, name in enumerate(self.ingredients):
            table[name] = rows[:, j]
        self._add_subject_columns(table, keep)
        # every column is a fresh array (filtered or taken above): no copy needed
        return pd.DataFrame(table, index=self.sessions.index[keep], copy=False)

    def _add_subject_columns(self, table: dict[str, Any], keep: np.ndarray, skip: Any = ()) -> None:
        """The subject columns (each session row's subject's values) not yet in ``table``
        (nor in ``skip``), on the sessions rows where ``keep`` is true."""
        subjects = self.subjects
        codes = _subject_positions(subjects[SUBJECT_KEY], table[SUBJECT_KEY])
        for name, column in subjects.items():
            if name != SUBJECT_KEY and name not in table and name not in skip:
                table[cast(str, name)] = _column_values(column).take(codes)

    def _design_matrix(self, exposure: Literal["indicator", "dose"]) -> np.ndarray:
        """Sessions × :attr:`ingredients` exposure (:func:`derive.ingredient_matrix`)."""
        if exposure not in ("indicator", "dose"):
            raise ModelSpecError(f"exposure must be 'indicator' or 'dose', got {exposure!r}.")
        volume = self.sessions["volume_ml"] if "volume_ml" in self.sessions.columns else None
        if exposure == "dose" and volume is None:
            raise ModelSpecError(
                "exposure='dose' needs the volume_ml column of sessions, which this study "
                "lacks; use exposure='indicator'."
            )
        return derive.ingredient_matrix(
            self.cocktails,
            self._cocktail_column(),
            self.ingredients,
            kind=exposure,
            volume_ml=volume,
        )

    def _check_outcome(self, outcome: str) -> None:
        if outcome not in self.outcomes:
            available = ", ".join(self.outcomes) or "none"
            raise ModelSpecError(
                f"outcome {outcome!r} is not an outcome column of this study's sessions "
                f"table; available: {available}."
            )
        if self.sessions[outcome].isna().all():
            raise ModelSpecError(
                f"outcome {outcome!r} is missing on every session; choose another outcome "
                f"({', '.join(o for o in self.outcomes if o != outcome) or 'none'})."
            )

    def _check_event(self, event: str) -> None:
        if event in self.event_terms:
            return
        present = sorted(pd.unique(self.adverse_events["event"].dropna().astype(str)))
        raise ModelSpecError(
            f"event {event!r} is not a coded event term; use one of "
            f"{', '.join(self.event_terms)} (present in this study: "
            f"{', '.join(present) or 'none'}), or event=None for any event."
        )

    # ----------------------------------------------------------------------------------------
    # display
    # ----------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        n_sites = self.subjects["site"].nunique() if "site" in self.subjects else 0
        n_cocktails = self.cocktails["cocktail_id"].nunique()
        return (
            f"Study({len(self.subjects)} subjects at {n_sites} site"
            f"{'s' if n_sites != 1 else ''}, {len(self.sessions)} sessions, "
            f"{n_cocktails} cocktail{'s' if n_cocktails != 1 else ''}, "
            f"{len(self.adverse_events)} adverse events, {len(self.exclusions)} exclusions; "
            f"ingredients: {', '.join(self.ingredients) or 'none'}; source: {self.source})"
        )

    def _repr_html_(self) -> str:
        esc = html.escape
        counts = "".join(
            f"<tr><td>{esc(name)}</td><td>{len(frame)}</td></tr>"
            for name, frame in (
                ("subjects", self.subjects),
                ("sessions", self.sessions),
                ("cocktails (rows)", self.cocktails),
                ("adverse_events", self.adverse_events),
                ("exclusions", self.exclusions),
            )
        )
        sites = (
            sorted(pd.unique(self.subjects["site"].dropna().astype(str)))
            if "site" in self.subjects
            else []
        )
        recipes = (
            self.cocktails.groupby("cocktail_id", sort=True)["ingredient"]
            .agg(lambda x: ", ".join(sorted(str(v) for v in x)))
            .to_dict()
        )
        cocktail_rows = "".join(
            f"<tr><td>{esc(str(k))}</td><td>{esc(v)}</td></tr>" for k, v in recipes.items()
        )
        shown_sites = ", ".join(esc(s) for s in sites[:20]) + (" …" if len(sites) > 20 else "")
        return (
            '<div class="mesostats-study">'
            f"<p><strong>Study</strong> from {esc(self.source)}</p>"
            f"<table><thead><tr><th>table</th><th>rows</th></tr></thead>"
            f"<tbody>{counts}</tbody></table>"
            f"<p>Sites ({len(sites)}): {shown_sites}</p>"
            "<table><thead><tr><th>cocktail</th><th>ingredients</th></tr></thead>"
            f"<tbody>{cocktail_rows}</tbody></table>"
            f"<p>Active ingredients: {esc(', '.join(self.ingredients)) or 'none'}</p>"
            "</div>"
        )


def _subject_positions(subject_ids: pd.Series, wanted: Any) -> np.ndarray:
    """Row position in the subjects table of each ``wanted`` subject id (-1 if absent).

    The subjects table's ids are unique (its primary key). Text ids are matched by
    :func:`pyarrow.compute.index_in` (a C++ hash lookup), other ids by
    :meth:`pandas.Index.get_indexer`.
    """
    if is_arrow_text(subject_ids) and isinstance(wanted, ArrowStringArray):
        found = pc.index_in(pa.array(wanted), value_set=arrow_array(subject_ids))
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.intp)
    return np.asarray(pd.Index(subject_ids).get_indexer(pd.Index(wanted)), dtype=np.intp)


def _column_values(column: pd.Series) -> Any:
    """A column's values: its extension array, or its numpy array (no wrapper built)."""
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy()
    return column.array


def _present_outcomes(schema: StudySchema, sessions: pd.DataFrame) -> tuple[str, ...]:
    fields = schema.tables["sessions"].outcome_fields
    return tuple(c for c in fields if c in sessions.columns)


def _empty_typed(schema: StudySchema, name: str) -> pd.DataFrame:
    dtypes = {
        "string": "str",
        "integer": "int64",
        "number": "float64",
        "boolean": "bool",
        "date": "datetime64[ns]",
    }
    table = schema.tables[name]
    return pd.DataFrame(
        {f.name: pd.Series(dtype=dtypes[f.type]) for f in table.fields},
        index=pd.Index([], dtype=np.int64, name="row"),
    )


def _missing_outcome_reason(outcome: str) -> str:
    return f"{outcome} missing: not in outcome_table({outcome!r})"


def _missing_outcome_exclusions(sessions: pd.DataFrame, outcomes: tuple[str, ...]) -> pd.DataFrame:
    """Session rows left out of outcome tables, in table order: one row per visit without any
    outcome, and one row per (visit, outcome) for visits that miss only some outcomes."""
    if not outcomes:
        return _empty_exclusions()
    flags = np.empty((len(outcomes) + 1, len(sessions)), dtype=bool)  # reason × row
    for j, outcome in enumerate(outcomes, start=1):
        flags[j] = sessions[outcome].isna().to_numpy(dtype=bool)
    flags[0] = np.logical_and.reduce(flags[1:], axis=0)  # no outcome at all: one exclusion
    flags[1:, flags[0]] = False
    pos, reason_codes = np.nonzero(flags.T)  # ordered by row, then by reason
    if len(pos) == 0:
        return _empty_exclusions()
    reasons = [NO_OUTCOME_REASON, *(_missing_outcome_reason(o) for o in outcomes)]
    return pd.DataFrame(
        {
            "table": pd.Series(np.full(len(pos), "sessions", dtype=object), dtype=object),
            "row": sessions.index[pos],
            # object dtype: no per-row conversion of the (few distinct) reason strings
            "reason": pd.Series(np.asarray(reasons, dtype=object)[reason_codes], dtype=object),
        },
        index=pd.RangeIndex(len(pos)),
    )


def _no_day_exclusions(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions without a study day: dates of a subject never injected (:mod:`.study_day`)."""
    if "day" not in sessions.columns or not sessions["day"].isna().any():
        return _empty_exclusions()
    rows = sessions.index[sessions["day"].isna().to_numpy(dtype=bool)]
    return pd.DataFrame(
        {"table": "sessions", "row": rows, "reason": NO_REFERENCE_REASON},
        index=pd.RangeIndex(len(rows)),
    )


def _event_session_rows(sessions: pd.DataFrame, adverse_events: pd.DataFrame) -> np.ndarray:
    return derive.matching_rows(
        [adverse_events[SUBJECT_KEY], adverse_events["visit"].astype("Int64")],
        [sessions[SUBJECT_KEY], sessions["visit"].astype("Int64")],
    )


def _unassessed_event_exclusions(
    sessions: pd.DataFrame, adverse_events: pd.DataFrame, event_sessions: np.ndarray
) -> pd.DataFrame:
    if len(adverse_events) == 0:
        return _empty_exclusions()
    assessed = np.append(sessions["reactions_assessed"].fillna(False).to_numpy(dtype=bool), False)
    outside = ~assessed[event_sessions]  # (-1: no such session → the appended False)
    if not outside.any():
        return _empty_exclusions()
    return pd.DataFrame(
        {
            "table": "adverse_events",
            "row": adverse_events.index[outside],
            "reason": "recorded at a session whose reactions were not assessed "
            "(reactions_assessed false): not counted in event_table",
        }
    )
