"""CDISC ADaM datasets → mesostats' raw tables, with each cell's source record kept.

(An SDTM delivery is first renamed into this layout by :mod:`.cdisc_sdtm`; messages then use
its own names, :mod:`.cdisc_terms`.)

Follows ADaMIG 1.x (ADSL; the Basic Data Structure, BDS; ADAE as an occurrence dataset):

- ``ADSL`` → ``subjects``: USUBJID, SITEID, ARM (else TRT01P), SEX, AGE, and the sponsor
  variables DIAGNOS (AGA/FPHL/TE) and STAGE (Norwood–Hamilton/Ludwig grade);
- every **BDS** dataset (one holding PARAMCD and AVAL/AVALC, e.g. ``ADHAIR``) → ``sessions``:
  one session per USUBJID × AVISITN, one column per parameter (``params``, default
  :data:`ADAM_PARAMS`: HAIRDENS → hair_density, … REACTASS → reactions_assessed from AVALC
  Y/N), ADY → day, ABLFL = Y on any record of the visit → baseline_flag;
- ``ADEX`` (one record per administration: USUBJID, AVISITN, EXTRT = the cocktail, EXDOSE in
  EXDOSU = mL) → the session's cocktail_id and volume_ml;
- ``ADAE`` → ``adverse_events`` (USUBJID, AVISITN, AEDECOD, AETERM, AESEV, AESER, AEREL;
  values read as in :mod:`.cdisc`).

Analysis flags are honoured in BDS datasets and ADAE, and every record they set aside is listed
in ``exclusions`` (table = dataset, row = observation): a record with ``DTYPE`` filled is
derived (LOCF, imputed …), not observed; where the dataset has ``ANL01FL``, only records with
``ANL01FL = Y`` are analysis records. Two analysis records for one USUBJID × PARAMCD × AVISITN,
two ADY for one visit, an unknown PARAMCD and exposure at a visit without assessments are
problems, located by dataset, USUBJID, PARAMCD/AESEQ, AVISITN and observation number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.cdisc import apply_cdisc
from mesostats.data.cdisc_files import Dataset
from mesostats.data.cdisc_terms import ADAM, Vocabulary
from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.schema import StudySchema

__all__ = ["ADAM_PARAMS", "AdamTables", "build_adam_tables"]

#: BDS parameter code → sessions column.
ADAM_PARAMS: dict[str, str] = {
    "HAIRDENS": "hair_density",
    "HAIRCNT": "hair_count",
    "TAREA": "target_area_cm2",
    "SHAFTD": "shaft_diameter_um",
    "TERMDENS": "terminal_density",
    "VELDENS": "vellus_density",
    "ANAGEN": "anagen_pct",
    "GPA": "gpa_score",
    "PAINVAS": "pain_vas",
    "REACTASS": "reactions_assessed",
}
SUBJECT_VARIABLES = {"DIAGNOS": "diagnosis", "STAGE": "stage", "TRT01P": "arm"}
ADSL_COLUMNS = ["USUBJID", "SITEID", "ARM", "TRT01P", "SEX", "AGE", "DIAGNOS", "STAGE"]
ADAE_COLUMNS = ["USUBJID", "AVISITN", "AEDECOD", "AETERM", "AESEV", "AESER", "AEREL"]
_TEXT_PARAMS = ("reactions_assessed",)


@dataclass
class AdamTables:
    """The raw tables, what the flags set aside, and where every cell came from."""

    tables: dict[str, RawTable] = field(default_factory=dict)
    exclusions: list[tuple[str, Any, str]] = field(default_factory=list)
    # sessions column → (dataset, observation, PARAMCD) of each session row's source record
    session_origin: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    session_keys: list[tuple[str, Any]] = field(default_factory=list)  # USUBJID, AVISITN
    vocab: Vocabulary = ADAM


def build_adam_tables(
    datasets: Mapping[str, Dataset],
    params: Mapping[str, str],
    schema: StudySchema,
    log: ProblemLog,
    vocab: Vocabulary = ADAM,
) -> AdamTables:
    """Read ADSL, the BDS datasets, ADEX and ADAE (see the module docstring).

    ``datasets`` are keyed by role (``ADSL``, ``ADEX``, ``ADAE``, else a BDS dataset) and
    hold ADaM variable names; ``vocab`` names datasets and variables in messages (an SDTM
    delivery renamed by :mod:`.cdisc_sdtm` keeps its own names there).
    """
    out = AdamTables(vocab=vocab)
    adsl = datasets.get("ADSL")
    if adsl is None:
        what = "ADSL (ADaM) or DM (SDTM)" if vocab.standard == "ADaM" else vocab.subjects
        found = ", ".join(sorted(d.name for d in datasets.values())) or "none"
        log.add_one(
            vocab.subjects, None, None, None, "missing_table",
            f"no {what} dataset (datasets found: {found}).",
        )  # fmt: skip
    else:
        out.tables["subjects"] = _subjects(adsl, schema)
    bds = [d for name, d in datasets.items() if _is_bds(name, d)]
    for name, d in datasets.items():
        if name not in ("ADSL", "ADAE", "ADEX") and d not in bds:
            reason = (
                f"dataset {d.name} is not read: not {vocab.subjects}, {vocab.exposure}, "
                f"{vocab.events} nor a dataset of outcomes"
            )
            out.exclusions.append((d.name, None, reason))
    if not bds:
        log.add_one(
            "sessions",
            None,
            None,
            None,
            "missing_table",
            "no BDS dataset (one with PARAMCD and AVAL) holds the outcomes, e.g. ADHAIR."
            if vocab.standard == "ADaM"
            else "no findings domain (one with --TESTCD and --STRESN) holds the outcomes.",
        )
    else:
        records = pd.concat([_analysis_records(d, out) for d in bds], ignore_index=True)
        _sessions(records, datasets.get("ADEX"), params, schema, log, out)
    adae = datasets.get("ADAE")
    if adae is not None:
        kept = _analysis_records(adae, out)
        frame = adae.frame.loc[kept["obs"].to_numpy()]
        columns = [c for c in ADAE_COLUMNS if c in frame.columns]
        raw = RawTable(frame[columns].reset_index(drop=True), frame.index, adae.origin, None)
        out.tables["adverse_events"] = apply_cdisc(raw, schema.tables["adverse_events"])
    return out


def _is_bds(name: str, d: Dataset) -> bool:
    columns = set(d.frame.columns)
    return (
        name not in ("ADSL", "ADAE", "ADEX")
        and {"USUBJID", "PARAMCD"} <= columns
        and bool({"AVAL", "AVALC"} & columns)
    )


def _subjects(adsl: Dataset, schema: StudySchema) -> RawTable:
    frame = adsl.frame
    columns = [c for c in ADSL_COLUMNS if c in frame.columns]
    if "ARM" in columns and "TRT01P" in columns:
        columns.remove("TRT01P")
    renamed = frame[columns].rename(columns=SUBJECT_VARIABLES).reset_index(drop=True)
    raw = RawTable(renamed, frame.index, adsl.origin, None, columns)
    return apply_cdisc(raw, schema.tables["subjects"])


def _analysis_records(d: Dataset, out: AdamTables) -> pd.DataFrame:
    """The records the flags keep (with ``dataset`` and ``obs``); the others to exclusions."""
    frame = d.frame
    n = len(frame)
    derived = frame["DTYPE"].notna().to_numpy() if "DTYPE" in frame else np.zeros(n, bool)
    if "ANL01FL" in frame:
        not_analysis = ~frame["ANL01FL"].eq("Y").to_numpy(dtype=bool, na_value=False)
    else:
        not_analysis = np.zeros(n, dtype=bool)
    dropped = np.flatnonzero(derived | not_analysis)
    if len(dropped):
        where = _where(d, dropped, out.vocab)
        dtype = frame["DTYPE"].to_numpy(dtype=object) if "DTYPE" in frame else None
        for k, i in enumerate(dropped.tolist()):
            why = []
            if derived[i] and dtype is not None:
                why.append(f"DTYPE = {dtype[i]} (derived, not observed)")
            if not_analysis[i]:
                why.append("ANL01FL is not Y (not an analysis record)")
            out.exclusions.append((d.name, frame.index[i], f"{where[k]}: {'; '.join(why)}"))
    kept = frame.loc[~(derived | not_analysis)].copy()
    kept["dataset"] = d.name
    kept["obs"] = kept.index
    sequence = out.vocab.sequence(d.name)
    kept["SEQ"] = kept[sequence] if sequence and sequence in kept else np.nan
    return kept.reset_index(drop=True)


def _where(d: Dataset, rows: np.ndarray, vocab: Vocabulary) -> list[str]:
    """``ADHAIR USUBJID X, PARAMCD P, AVISITN 3 (obs 17)`` for each of ``rows``."""
    frame = d.frame.iloc[rows]
    text = d.name + " USUBJID " + frame["USUBJID"].astype(str)
    sequence = vocab.sequence(d.name)
    for key in dict.fromkeys(["PARAMCD", sequence or "AESEQ", "AESEQ", "AVISITN"]):
        if key in frame:
            values = frame[key]
            shown = (
                values.map(lambda v: f"{v:g}", na_action="ignore")
                if pd.api.types.is_float_dtype(values.dtype)
                else values
            )
            label = ", " + vocab.name(d.name, key) + " "
            text = text + (label + shown.astype(str)).where(values.notna(), "")
    obs = pd.Series(frame.index.astype(str), index=frame.index)
    return (text + " (obs " + obs + ")").tolist()


def _sessions(
    records: pd.DataFrame,
    adex: Dataset | None,
    params: Mapping[str, str],
    schema: StudySchema,
    log: ProblemLog,
    out: AdamTables,
) -> None:
    fields = set(schema.tables["sessions"].field_names)
    known = records["PARAMCD"].isin(list(params)).to_numpy(dtype=bool)
    v = out.vocab
    for code, group in records.loc[~known].groupby("PARAMCD", sort=False, dropna=False):
        first = group.iloc[0]
        test = v.test(str(first["dataset"]))
        log.add_one(
            str(first["dataset"]),
            first["obs"],
            test,
            code,
            "unknown_param",
            f"{first['dataset']} {test} {code} ({len(group)} records) is not a parameter "
            f"mesostats reads (known: {', '.join(params)}); its records are not read. Pass "
            f"params={{'{code}': '<sessions column>'}} to read it.",
        )
    records = records.loc[known].reset_index(drop=True)
    records["column"] = records["PARAMCD"].map(dict(params))
    unknown_columns = set(records["column"]) - fields
    for column in sorted(unknown_columns):
        log.add_one("sessions", None, column, None, "unknown_param", f"params maps to {column!r}, "
                    "which is not a sessions column.")  # fmt: skip
    records = records.loc[~records["column"].isin(sorted(unknown_columns))]
    records = _drop_duplicates(records, log, v)
    subject_rank = pd.factorize(records["USUBJID"])[0]
    records = records.assign(_rank=subject_rank).sort_values(
        ["_rank", "AVISITN", "obs"], kind="stable", na_position="last"
    )
    key = pd.MultiIndex.from_frame(records[["USUBJID", "AVISITN"]].astype(object))
    codes, keys = pd.factorize(key)
    first = pd.Series(np.arange(len(records))).groupby(codes).first().to_numpy()
    n = len(keys)
    dataset = records["dataset"].to_numpy(dtype=object)
    obs = records["obs"].to_numpy(dtype=object)
    paramcd = records["PARAMCD"].to_numpy(dtype=object)
    qualify = records["dataset"].nunique() > 1
    labels = [f"{dataset[i]}:{obs[i]}" if qualify else obs[i] for i in first]
    frame: dict[str, Any] = {
        "subject_id": pd.array([k[0] for k in keys], dtype="str"),
        "visit": np.array([k[1] for k in keys], dtype="float64"),
    }
    base_origin = (dataset[first], obs[first], paramcd[first])
    for name in ("subject_id", "visit", "day", "baseline_flag"):
        out.session_origin[name] = base_origin
    if "ADY" in records:
        frame["day"] = _per_visit_day(records, codes, n, log, v)
    if "ABLFL" in records:
        flagged = np.zeros(n, dtype=bool)
        np.logical_or.at(flagged, codes, records["ABLFL"].eq("Y").to_numpy(bool, na_value=False))
        frame["baseline_flag"] = pd.array(np.where(flagged, "true", "false"), dtype="str")
    present = set(records["column"])
    for column in [c for c in params.values() if c in present]:
        at = (records["column"] == column).to_numpy(dtype=bool)
        source = "AVALC" if column in _TEXT_PARAMS and "AVALC" in records else "AVAL"
        values = np.full(n, None if source == "AVALC" else np.nan, dtype=object)
        values[codes[at]] = records[source].to_numpy(dtype=object)[at]
        frame[column] = (
            pd.array(values, dtype="str")
            if source == "AVALC"
            else pd.to_numeric(pd.Series(values), errors="coerce").astype("float64")
        )
        origin_ds, origin_obs = dataset[first].copy(), obs[first].copy()
        origin_ds[codes[at]] = dataset[at]
        origin_obs[codes[at]] = obs[at]
        code = next(k for k, v in params.items() if v == column)
        out.session_origin[column] = (origin_ds, origin_obs, np.full(n, code, dtype=object))
    if adex is not None:
        _exposure(adex, keys, frame, out, log)
    out.session_keys = list(keys)
    data = pd.DataFrame({c: pd.Series(v).reset_index(drop=True) for c, v in frame.items()})
    origin = ", ".join(sorted(set(dataset)))
    out.tables["sessions"] = RawTable(data, pd.Index(labels), origin, None, list(data.columns))


def _drop_duplicates(records: pd.DataFrame, log: ProblemLog, v: Vocabulary) -> pd.DataFrame:
    """Report every record of a duplicated USUBJID × PARAMCD × AVISITN; keep the first."""
    dup = records.duplicated(["USUBJID", "PARAMCD", "AVISITN"], keep=False).to_numpy()
    for (subject, code, visit), group in records.loc[dup].groupby(
        ["USUBJID", "PARAMCD", "AVISITN"], sort=False
    ):
        shown = ", ".join(str(o) for o in group["obs"])
        for rec in group.itertuples(index=False):
            ds = str(rec.dataset)
            test = v.test(ds)
            fix = (
                "flag the one to analyse with ANL01FL = Y"
                if v.standard == "ADaM"
                else "keep one (repeated measurements belong in ADaM, flagged)"
            )
            log.add_one(
                ds,
                rec.obs,
                f"USUBJID, {test}, {v.visit}",
                f"{subject}, {code}, {visit:g}",
                "duplicate_record",
                f"{ds} USUBJID {subject}, {test} {code}, {v.visit} {visit:g}{_seq(rec, ds, v)} "
                f"(obs {rec.obs}): {len(group)} {'analysis ' if v.standard == 'ADaM' else ''}"
                f"records (obs {shown}) for one parameter at "
                f"one visit; {fix}.",
            )
    return records.loc[~records.duplicated(["USUBJID", "PARAMCD", "AVISITN"])]


@dataclass(frozen=True)
class _Record:
    SEQ: Any


def _seq(rec: Any, dataset: str, v: Vocabulary) -> str:
    """``, XHSEQ 4`` when the record has a sequence number."""
    name = v.sequence(dataset)
    value = getattr(rec, "SEQ", None) if name else None
    return "" if value is None or value != value else f", {name} {value:g}"


def _per_visit_day(
    records: pd.DataFrame, codes: np.ndarray, n: int, log: ProblemLog, v: Vocabulary
) -> Any:
    day = records["ADY"].to_numpy(dtype="float64")
    frame = pd.DataFrame({"code": codes, "day": day}).dropna()
    distinct = frame.drop_duplicates()
    clash = distinct["code"].duplicated(keep=False).to_numpy()
    for code in sorted(set(distinct.loc[clash, "code"])):
        rows = records.iloc[np.flatnonzero(codes == code)]
        first = rows.iloc[0]
        ds = str(first["dataset"])
        log.add_one(
            ds,
            first["obs"],
            v.day(ds),
            ", ".join(f"{d:g}" for d in sorted(set(rows["ADY"].dropna()))),
            "conflict",
            f"{ds} USUBJID {first['USUBJID']}, {v.visit} {first['AVISITN']:g}: the records of "
            f"one visit give different {v.day(ds)}; one visit has one study day.",
        )
    out = np.full(n, np.nan)
    firsts = frame.drop_duplicates("code")
    out[firsts["code"].to_numpy()] = firsts["day"].to_numpy()
    return out


def _exposure(
    adex: Dataset, keys: pd.Index, frame: dict[str, Any], out: AdamTables, log: ProblemLog
) -> None:
    kept = _analysis_records(adex, out)
    where = {k: i for i, k in enumerate(keys)}
    n = len(keys)
    cocktail = np.full(n, None, dtype=object)
    volume = np.full(n, np.nan)
    ds = np.full(n, None, dtype=object)
    obs = np.full(n, None, dtype=object)
    for rec in kept.to_dict("records"):
        pos = where.get((rec["USUBJID"], rec["AVISITN"]))
        loc = (
            f"{adex.name} USUBJID {rec['USUBJID']}, {out.vocab.visit} {rec.get('AVISITN'):g}"
            f"{_seq(_Record(rec.get('SEQ')), adex.name, out.vocab)} (obs {rec['obs']})"
        )
        unit = str(rec.get("EXDOSU") or "mL")
        if pos is None or obs[pos] is not None or unit.lower() != "ml":
            why = (
                "no assessment at this visit (an injection must be at an assessed visit)"
                if pos is None
                else f"EXDOSU is {unit}, not mL"
                if unit.lower() != "ml"
                else "a second administration at one visit (one cocktail per session)"
            )
            log.add_one(
                adex.name, rec["obs"], "EXTRT", rec.get("EXTRT"), "exposure", f"{loc}: {why}."
            )
            continue
        cocktail[pos], volume[pos] = rec.get("EXTRT"), rec.get("EXDOSE", np.nan)
        ds[pos], obs[pos] = adex.name, rec["obs"]
    frame["cocktail_id"] = pd.array(cocktail, dtype="str")
    frame["volume_ml"] = volume
    base_ds, base_obs, base_param = out.session_origin["subject_id"]
    has = obs != None  # noqa: E711
    origin = (np.where(has, ds, base_ds), np.where(has, obs, base_obs), base_param)
    out.session_origin["cocktail_id"] = origin
    out.session_origin["volume_ml"] = origin
