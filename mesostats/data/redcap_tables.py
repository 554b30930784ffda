"""REDCap rows → mesostats' raw tables: decoding, and problems in REDCap terms.

:func:`resolve_mapping` decides which REDCap field holds each mesostats column;
:class:`TableBuilder` decodes the mapped fields (choices, checkboxes, missing-data codes) and
builds the ``subjects``, ``sessions`` and ``adverse_events`` raw tables, remembering each row's
REDCap location, so that :meth:`TableBuilder.in_redcap_terms` can restate the validator's
problems as record / event / instance / field. The rules are those of :mod:`.redcap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.parse import RawTable, isin_values
from mesostats.data.problems import ProblemLog
from mesostats.data.redcap_dictionary import CHOICE_TYPES, DataDictionary, checkbox_suffix, slug
from mesostats.data.redcap_export import RECORDS, Export
from mesostats.data.redcap_mapping import EVENT, TABLES, MappingPlan
from mesostats.data.schema import FieldSpec, StudySchema
from mesostats.data.study import EXCLUSION_COLUMNS

__all__ = ["TableBuilder"]

KEY_CODES = ("cocktail_id",)  # choice fields mapped here give their code (a key, not a label)
_CHECKED = {"1", "checked"}
_UNCHECKED = {"0", "unchecked"}


@dataclass
class _Decoded:
    values: pd.Series  # mesostats text per records row (str; missing as NA)
    code: np.ndarray  # missing-data code per row, or None
    bad: np.ndarray  # problem message per row, or None
    filled: np.ndarray  # bool: the field holds something (a value, a code or a bad value)


class TableBuilder:
    """Build the raw tables of one export and restate problems in REDCap terms."""

    def __init__(
        self,
        export: Export,
        dd: DataDictionary,
        plan: MappingPlan,
        schema: StudySchema,
        missing_codes: Mapping[str, str],
        log: ProblemLog,
    ) -> None:
        self.export, self.dd, self.plan, self.schema = export, dd, plan, schema
        self.missing_codes = dict(missing_codes)
        self.log = log
        self._table_rows: dict[str, tuple[pd.Index, np.ndarray]] = {}  # labels, positions
        self._where: dict[str, dict[Any, int]] = {}  # table → row label → position
        self.code_cells: dict[tuple[str, Any, str], str] = {}
        self.reported: set[tuple[str, Any, str]] = set()
        self._exclusions: list[tuple[str, Any, str]] = []
        self._decoded: dict[tuple[str, str], _Decoded] = {}

    # ---------------------------------------------------------------------------------------
    def decoded(self, table: str, column: str) -> _Decoded:
        """The mapped field of ``table.column`` decoded over every records row."""
        name = self.plan.columns[table][column]
        key = (name, column)
        if key not in self._decoded:
            spec = self.schema.tables[table].field(column)
            f = self.dd.fields[name]
            if f.type == "checkbox":
                self._decoded[key] = self._checkbox(name, spec)
            else:
                self._decoded[key] = self._plain(name, spec)
        return self._decoded[key]

    def _plain(self, name: str, spec: FieldSpec) -> _Decoded:
        f = self.dd.fields[name]
        column = self.export.series(name)
        n = len(column)
        filled = column.notna().to_numpy(dtype=bool)
        bad = np.full(n, None, dtype=object)
        code = np.full(n, None, dtype=object)
        if f.type not in CHOICE_TYPES:  # text, notes, calc, slider: only missing-data codes
            is_code = (
                isin_values(column, list(self.missing_codes))
                if self.missing_codes and f.allows_missing_codes
                else np.zeros(n, dtype=bool)
            )
            if not is_code.any():
                return _Decoded(column, code, bad, filled)
            code[is_code] = column.to_numpy(dtype=object)[is_code]
            return _Decoded(column.mask(is_code), code, bad, filled)
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        shown = _represent(f.choices, spec)
        by_label = {lab: c for c, lab in f.choices.items()}
        value_of = np.full(len(uniques) + 1, None, dtype=object)
        code_of = np.full(len(uniques) + 1, None, dtype=object)
        bad_of = np.full(len(uniques) + 1, None, dtype=object)
        for i, u in enumerate(map(str, uniques)):
            if u in f.choices or u in by_label:
                value_of[i] = shown[u if u in f.choices else by_label[u]]
            elif u in self.missing_codes and f.allows_missing_codes:
                code_of[i] = u
            else:
                bad_of[i] = f"{u!r} is not a choice of {name} (choices: {_choices(f.choices)})"
        values = pd.Series(pd.array(value_of[codes], dtype="str"))
        return _Decoded(values, code_of[codes], bad_of[codes], filled)

    def _checkbox(self, name: str, spec: FieldSpec) -> _Decoded:
        f = self.dd.fields[name]
        n = len(self.export.record)
        shown = _represent(f.choices, spec)
        suffixes = {checkbox_suffix(c): c for c in f.choices}
        code_suffixes = (
            {checkbox_suffix(c): c for c in self.missing_codes} if f.allows_missing_codes else {}
        )
        checked: list[tuple[str, np.ndarray]] = []
        bad = np.full(n, None, dtype=object)
        for column in self.export.columns:
            base, sep, suffix = column.partition("___")
            if base != name or not sep:
                continue
            text = pd.Series(self.export.text(column), dtype=object).str.lower()
            is_checked = text.isin(_CHECKED).to_numpy(dtype=bool)
            odd = ~(is_checked | text.isin(_UNCHECKED).to_numpy(dtype=bool) | text.isna())
            for i in map(int, np.flatnonzero(odd)):
                bad[i] = f"checkbox column {column} holds {text.iloc[i]!r}, not 1/0"
            checked.append(
                (suffixes.get(suffix) or "\0" + code_suffixes.get(suffix, ""), is_checked)
            )
        values = np.full(n, None, dtype=object)
        code = np.full(n, None, dtype=object)
        count = np.zeros(n, dtype=np.int64)
        picked = np.full(n, "", dtype=object)
        for choice, is_checked in checked:
            count += is_checked
            picked[is_checked] = picked[is_checked] + f"{choice.lstrip(chr(0))}, "
            if choice.startswith("\0"):
                code[is_checked] = choice[1:]
            else:
                values[is_checked] = shown[choice]
        values[code != None] = None  # noqa: E711 (object array: elementwise comparison)
        several = count > 1
        for i in map(int, np.flatnonzero(several & (bad == None))):  # noqa: E711
            bad[i] = f"several boxes of {name} are checked ({picked[i].rstrip(', ')}); " + (
                f"{spec.name} holds one value"
            )
        values[several] = None
        if spec.type == "boolean" and len(f.choices) == 1:
            values = np.where(count == 1, "true", "false").astype(object)
            values[code != None] = None  # noqa: E711
        return _Decoded(pd.Series(pd.array(values, dtype="str")), code, bad, count > 0)

    # ---------------------------------------------------------------------------------------
    def build(self) -> dict[str, RawTable]:
        """The raw ``subjects``, ``sessions`` and ``adverse_events`` tables."""
        ex = self.export
        ok = ex.readable & (ex.record != None)  # noqa: E711
        for i in map(int, np.flatnonzero(ex.readable & ~ok)):
            self.log.add_one(
                RECORDS,
                ex.raw.rows[i],
                self.dd.record_id,
                None,
                "required",
                "this row has no record ID (the first field); every REDCap row belongs to a "
                "record.",
                position=int(i),
            )
        repeating = ex.instrument != None  # noqa: E711
        visit = self._visits()
        filled = {t: self._filled(t) for t in TABLES}
        ae_forms = {self.dd.fields[n].form for n in self.plan.columns["adverse_events"].values()}
        in_ae_form = np.isin(ex.instrument.astype(str), sorted(ae_forms)) & repeating
        nonrep = ok & ~repeating
        on_visit = np.array([v is not None for v in visit], dtype=bool)
        if self.plan.visit_field != EVENT:
            on_visit[:] = True  # the visit field numbers every row; empty → a required value
        sessions = nonrep & on_visit & filled["sessions"]
        events = ok & (in_ae_form | ~repeating) & filled["adverse_events"]
        self._not_a_visit(nonrep & ~on_visit & filled["sessions"], events & ~on_visit)
        other = ok & repeating & ~in_ae_form & (filled["sessions"] | filled["subjects"])
        for i in map(int, np.flatnonzero(other)):
            self._problem(
                "sessions", i, "redcap_repeat_instrument", ex.instrument[i],
                "repeating_instrument",
                f"repeating instrument {ex.instrument[i]} holds session or subject fields; "
                "mesostats reads one session per visit event and adverse events from a "
                "repeating instrument",
            )  # fmt: skip
        empty = (
            ok
            & ~(filled["subjects"] | filled["sessions"] | events | other)
            & (~repeating | in_ae_form)
        )
        for i in map(int, np.flatnonzero(empty)):
            self._exclusions.append(
                (RECORDS, ex.raw.rows[i], f"{ex.location(i)}: no mapped field is filled")
            )
        tables = {"subjects": self._subjects(nonrep & filled["subjects"], ok)}
        tables["sessions"] = self._rows("sessions", np.flatnonzero(sessions), visit)
        if self.plan.columns["adverse_events"]:
            ae_rows = np.flatnonzero(events & on_visit)
            tables["adverse_events"] = self._rows("adverse_events", ae_rows, visit)
        return tables

    def _not_a_visit(self, session_rows: np.ndarray, event_rows: np.ndarray) -> None:
        """One problem per event that holds session or adverse-event fields but no visit."""
        ex = self.export
        rows = np.flatnonzero(session_rows | event_rows)
        for event, positions in pd.Series(rows).groupby(ex.event[rows], sort=False):
            at = positions.to_numpy()
            tables = [t for t, m in (("sessions", session_rows), ("adverse_events", event_rows))
                      if m[at].any()]  # fmt: skip
            records = list(dict.fromkeys(ex.record[at]))
            shown = ", ".join(map(str, records[:5])) + (" …" if len(records) > 5 else "")
            self._problem(
                tables[0], int(at[0]), EVENT, event, "not_a_visit",
                f"{' and '.join(tables)} fields are filled on event {event} ({len(at)} "
                f"row(s), records {shown}), which holds no visit; declare its visit number "
                "with events=, or name the field that numbers the visits with "
                "mapping={'visit': …}",
            )  # fmt: skip

    def _visits(self) -> np.ndarray:
        ex = self.export
        if self.plan.visit_field == EVENT:
            return np.array(
                [None if e is None else ex.visit_of_event.get(e) for e in ex.event], dtype=object
            )
        if self.plan.visit_field not in ex.columns:
            return np.full(len(ex.record), None, dtype=object)
        text = ex.text(self.plan.visit_field)
        keys = (
            pd.Series(ex.record, dtype=object).astype(str)
            + "\x1f"
            + pd.Series(ex.event, dtype=object).astype(str)
        )
        known = pd.Series(text, index=keys).dropna()
        known = known[~known.index.duplicated()]
        return keys.map(known).to_numpy(dtype=object, na_value=None)

    def _filled(self, table: str) -> np.ndarray:
        out = np.zeros(len(self.export.record), dtype=bool)
        for column in self.plan.columns[table]:
            out |= self.decoded(table, column).filled
        return out

    def _subjects(self, holds: np.ndarray, ok: np.ndarray) -> RawTable:
        ex = self.export
        order = pd.Series(ex.record[ok]).drop_duplicates()
        first_row = pd.Series(np.flatnonzero(ok)[order.index.to_numpy()], index=order.to_numpy())
        with_data = pd.Series(np.flatnonzero(holds), index=ex.record[holds])
        with_data = with_data[~with_data.index.duplicated()]
        rows = with_data.reindex(first_row.index).fillna(first_row).astype(np.int64).to_numpy()
        records = first_row.index.to_numpy(dtype=object)
        columns: dict[str, np.ndarray] = {}
        for column in self.plan.columns["subjects"]:
            columns[column] = self._subject_values(column, holds, records, rows)
        frame = {"subject_id": self._subject_ids(rows), **columns}
        self._table_rows["subjects"] = (ex.raw.rows[rows], rows)
        return self._raw("subjects", frame, rows)

    def _subject_values(
        self, column: str, holds: np.ndarray, records: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        ex = self.export
        d = self.decoded("subjects", column)
        name = self.plan.columns["subjects"][column]
        at = np.flatnonzero(holds & d.filled)
        cells = pd.DataFrame(
            {"rec": ex.record[at], "val": d.values.iloc[at].to_numpy(dtype=object), "pos": at}
        )
        first = cells.drop_duplicates("rec").set_index("rec")["pos"]
        out = np.full(len(records), None, dtype=object)
        found = first.reindex(records).to_numpy(dtype="float64", na_value=np.nan)
        has = np.flatnonzero(~np.isnan(found))
        at_first = found[has].astype(np.int64)
        out[has] = d.values.iloc[at_first].to_numpy(dtype=object)
        notable = (d.code[at_first] != None) | (d.bad[at_first] != None)  # noqa: E711
        for k, pos in zip(has[notable].tolist(), at_first[notable].tolist(), strict=True):
            self._note_cell("subjects", column, ex.raw.rows[rows[k]], pos, d)
        distinct = cells.dropna(subset=["val"]).drop_duplicates(["rec", "val"])
        clash = distinct[distinct["rec"].duplicated(keep=False)]
        row_of = dict(zip(records, rows, strict=True))
        for rec, group in clash.groupby("rec", sort=False):
            pairs = zip(group.val, group.pos, strict=True)
            seen = ", ".join(f"{v} (event {ex.event[p]})" for v, p in pairs)
            self._problem(
                "subjects", int(row_of[rec]), name, ", ".join(map(str, group.val)), "conflict",
                f"{column} differs between events: {seen}; keep one value",
            )  # fmt: skip
            self.reported.add(("subjects", ex.raw.rows[row_of[rec]], column))
        return out

    def _rows(self, table: str, rows: np.ndarray, visit: np.ndarray) -> RawTable:
        ex = self.export
        frame: dict[str, np.ndarray | pd.Series] = {"subject_id": self._subject_ids(rows)}
        frame["visit"] = np.array([None if v is None else str(v) for v in visit[rows]], object)
        for column in self.plan.columns[table]:
            d = self.decoded(table, column)
            frame[column] = d.values.iloc[rows].reset_index(drop=True)
            for pos in rows[(d.code[rows] != None) | (d.bad[rows] != None)]:  # noqa: E711
                self._note_cell(table, column, ex.raw.rows[pos], int(pos), d)
        self._table_rows[table] = (ex.raw.rows[rows], rows)
        return self._raw(table, frame, rows)

    def _subject_ids(self, rows: np.ndarray) -> np.ndarray:
        ex = self.export
        if self.plan.subject_field == self.dd.record_id:
            return ex.record[rows]
        text = pd.Series(ex.text(self.plan.subject_field), index=ex.record).dropna()
        text = text[~text.index.duplicated()]
        return pd.Series(ex.record[rows]).map(text).to_numpy(dtype=object, na_value=None)

    def _note_cell(self, table: str, column: str, label: Any, pos: int, d: _Decoded) -> None:
        name = self.plan.columns[table][column]
        where = self.location(table, pos)
        if d.bad[pos] is not None:
            self._problem(table, pos, name, None, "choice", str(d.bad[pos]), label=label)
            self.reported.add((table, label, column))
        elif d.code[pos] is not None:
            code = str(d.code[pos])
            self.code_cells[(table, label, column)] = code
            self._exclusions.append(
                (
                    table,
                    label,
                    f"{where}, field {name}: REDCap missing-data code {code} "
                    f"({self.missing_codes.get(code, code)}); {column} read as missing",
                )
            )

    def _problem(
        self, table: str, pos: int, column: str | None, value: Any, rule: str, message: str,
        *, label: Any = None,
    ) -> None:  # fmt: skip
        ex = self.export
        row = ex.raw.rows[pos] if label is None else label
        where = self.location(table, pos)
        text = export_value(ex, pos, column) if value is None and column else value
        self.log.add_one(
            table, row, column, text, rule, f"{where}, field {column}: {message}.", position=pos
        )

    def location(self, table: str, pos: int) -> str:
        """Row ``pos`` of the export in REDCap terms (a subject: its record only)."""
        if table == "subjects":
            return f"record {self.export.record[pos]}"
        return self.export.location(pos)

    def _location_of_label(self, table: str, label: Any) -> str | None:
        if table not in self._table_rows or label is None or label != label:
            return None
        if table not in self._where:
            labels, positions = self._table_rows[table]
            self._where[table] = dict(zip(labels, positions.tolist(), strict=True))
        pos = self._where[table].get(label)
        return None if pos is None else self.location(table, pos)

    def _raw(
        self, table: str, frame: Mapping[str, np.ndarray | pd.Series], rows: np.ndarray
    ) -> RawTable:
        ex = self.export
        data = pd.DataFrame(
            {
                c: v if isinstance(v, pd.Series) else pd.array(v, dtype="str")
                for c, v in frame.items()
            },
            index=pd.RangeIndex(len(rows)),
        )
        labels = ex.raw.rows[rows]
        origin = f"{ex.raw.origin} ({table})"
        sources = [self._field_of(table, c) for c in data.columns]
        return RawTable(data, pd.Index(labels), origin, ex.raw.header_row, sources)

    def _field_of(self, table: str, column: str) -> str:
        if column == "subject_id":
            return self.plan.subject_field
        if column == "visit":
            return self.plan.visit_field
        return self.plan.columns[table].get(column, column)

    # ---------------------------------------------------------------------------------------
    def exclusions(self) -> pd.DataFrame:
        """Rows kept out: missing-data codes and rows with no mapped data."""
        rows = self._exclusions
        return pd.DataFrame(
            {
                c: pd.Series([r[i] for r in rows], dtype=object)
                for i, c in enumerate(EXCLUSION_COLUMNS)
            }
        )

    def in_redcap_terms(self, problems: pd.DataFrame) -> pd.DataFrame:
        """The validator's problems restated with REDCap locations and field names."""
        out = []
        for rec in problems.to_dict("records"):
            table, row, column = rec["table"], rec["row"], rec["column"]
            if table not in TABLES:
                out.append(rec)
                continue
            columns = [] if column is None or column != column else str(column).split(", ")
            if rec["rule"] == "missing_column" and any(
                (table, c) in self.plan.unmapped for c in columns
            ):
                continue  # already reported as a missing mapping
            if columns and (table, row, columns[0]) in self.reported:
                continue
            fields = [self._field_of(table, c) for c in columns]
            where = self._location_of_label(table, row)
            code = self.code_cells.get((table, row, columns[0])) if columns else None
            prefix = ", ".join(
                p for p in (where, f"field {', '.join(fields)}" if fields else None) if p
            )
            message = str(rec["message"])
            if code is not None:
                rec["value"] = code
                message += (
                    f" The cell holds REDCap missing-data code {code} "
                    f"({self.missing_codes.get(code, code)})."
                )
            if fields and fields != columns:
                message = f"({table}.{', '.join(columns)}) {message}"
            rec["message"] = f"{prefix}: {message}" if prefix else message
            rec["column"] = ", ".join(fields) if fields else column
            out.append(rec)
        return pd.DataFrame(out, columns=list(problems.columns)).astype(object)


def export_value(ex: Export, pos: int, column: str) -> Any:
    """The cell as written in the export, if the column exists."""
    return ex.text(column)[pos] if column in ex.columns else None


def _choices(choices: Mapping[str, str]) -> str:
    return ", ".join(f"{c} = {lab}" for c, lab in choices.items()) or "none"


def _represent(choices: Mapping[str, str], spec: FieldSpec) -> dict[str, str]:
    """Code → the mesostats value of each choice (see :mod:`.redcap`)."""
    if spec.type in ("integer", "number") or spec.name in KEY_CODES:
        return {c: c for c in choices}
    if spec.type == "boolean":
        true = {v.lower() for v in spec.true_values} | {"true", "yes"}
        false = {v.lower() for v in spec.false_values} | {"false", "no"}
        out = {}
        for c, lab in choices.items():
            if lab.lower() in true or (lab.lower() not in false and c.lower() in true):
                out[c] = "true"
            elif lab.lower() in false or c.lower() in false:
                out[c] = "false"
            else:
                out[c] = lab
        return out
    if spec.enum:
        members = {slug(str(e)): str(e) for e in spec.enum}
        return {
            c: members.get(slug(lab)) or members.get(slug(c)) or lab for c, lab in choices.items()
        }
    return dict(choices)
