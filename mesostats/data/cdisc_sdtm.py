"""SDTM datasets renamed into the layout :mod:`.cdisc_adam` reads, keeping SDTM names for messages.

Follows SDTMIG 3.4:

- ``DM`` (USUBJID, SITEID, ARM, SEX, AGE) → the subjects; the diagnosis and stage, which DM has
  no variable for, come from ``SUPPDM`` (QNAM ``DIAGNOS`` / ``STAGE``, QVAL) or from DM columns
  of those names;
- a **findings** domain holding the outcomes (any ``XX`` with ``XXTESTCD`` and ``XXSTRESN`` or
  ``XXSTRESC``, e.g. a sponsor domain ``XH`` for hair assessments): ``XXTESTCD`` is the parameter
  (the codes of :data:`~.cdisc_adam.ADAM_PARAMS`), ``XXSTRESN``/``XXSTRESC`` the result,
  ``VISITNUM`` the visit, ``XXDY`` the study day, ``XXLOBXFL`` (or the older ``XXBLFL``) = Y
  the baseline; a record with ``XXSTAT = NOT DONE`` has no result and is listed in
  ``exclusions``;
- ``EX`` (USUBJID, VISITNUM, EXTRT = the cocktail, EXDOSE in EXDOSU = mL): one record per
  injection;
- ``AE`` (AESEQ, AETERM, AEDECOD, AESEV, AESER, AEREL): the visit is ``VISITNUM`` when the
  sponsor kept it, else the visit whose study day is ``AESTDY``; an event whose start day is
  no visit of that subject is a problem (mesostats records events at sessions).

SDTM has no analysis flags (``ANL01FL``, ``DTYPE`` are ADaM): every record with a result is
read. Other domains (TS, TA, SUPPAE …) are listed in ``exclusions`` as not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.cdisc_files import Dataset
from mesostats.data.problems import ProblemLog

__all__ = ["sdtm_as_adam"]

_SUPPLEMENTAL = ("DIAGNOS", "STAGE")


def sdtm_as_adam(
    datasets: Mapping[str, Dataset], log: ProblemLog, exclusions: list[tuple[str, Any, str]]
) -> dict[str, Dataset]:
    """The SDTM datasets keyed by the ADaM role they play, with ADaM variable names."""
    out: dict[str, Dataset] = {}
    if "DM" in datasets:
        out["ADSL"] = _subjects(datasets["DM"], datasets.get("SUPPDM"))
    findings = [d for name, d in datasets.items() if _is_findings(name, d)]
    for d in findings:
        out[d.name] = _findings(d, exclusions)
    if "EX" in datasets:
        ex = datasets["EX"]
        out["ADEX"] = Dataset(ex.name, ex.frame.rename(columns={"VISITNUM": "AVISITN"}), ex.origin)
    if "AE" in datasets:
        out["ADAE"] = _events(datasets["AE"], [out[d.name] for d in findings], log)
    for name, d in datasets.items():
        if name not in ("DM", "SUPPDM", "EX", "AE") and d not in findings:
            out[name] = d
    return out


def _is_findings(name: str, d: Dataset) -> bool:
    columns = set(d.frame.columns)
    return (
        name not in ("DM", "EX", "AE")
        and not name.startswith("SUPP")
        and {"USUBJID", f"{name}TESTCD"} <= columns
        and bool({f"{name}STRESN", f"{name}STRESC"} & columns)
    )


def _subjects(dm: Dataset, supp: Dataset | None) -> Dataset:
    frame = dm.frame
    if supp is not None and {"USUBJID", "QNAM", "QVAL"} <= set(supp.frame.columns):
        wanted = supp.frame[supp.frame["QNAM"].isin(list(_SUPPLEMENTAL))]
        pivot = wanted.drop_duplicates(["USUBJID", "QNAM"]).pivot(
            index="USUBJID", columns="QNAM", values="QVAL"
        )
        added = {
            q: frame["USUBJID"].map(pivot[q])
            for q in _SUPPLEMENTAL
            if q in pivot and q not in frame
        }
        if added:
            frame = frame.assign(**added)
    return Dataset(dm.name, frame, dm.origin)


def _findings(d: Dataset, exclusions: list[tuple[str, Any, str]]) -> Dataset:
    x = d.name
    frame = d.frame
    baseline = f"{x}LOBXFL" if f"{x}LOBXFL" in frame else f"{x}BLFL"
    renamed = frame.rename(
        columns={
            f"{x}TESTCD": "PARAMCD",
            f"{x}STRESN": "AVAL",
            f"{x}STRESC": "AVALC",
            f"{x}DY": "ADY",
            "VISITNUM": "AVISITN",
            baseline: "ABLFL",
        }
    )
    if f"{x}STAT" in frame:
        not_done = frame[f"{x}STAT"].str.upper().eq("NOT DONE").to_numpy(bool, na_value=False)
        for obs in frame.index[not_done]:
            row = frame.loc[obs]
            seq = f", {x}SEQ {row[f'{x}SEQ']:g}" if f"{x}SEQ" in frame else ""
            exclusions.append(
                (
                    x,
                    obs,
                    f"{x} USUBJID {row['USUBJID']}, {x}TESTCD {row[f'{x}TESTCD']}, VISITNUM "
                    f"{row.get('VISITNUM', np.nan):g}{seq} (obs {obs}): {x}STAT = NOT DONE "
                    "(no result)",
                )
            )
        renamed = renamed.loc[~not_done]
    return Dataset(x, renamed, d.origin)


def _events(ae: Dataset, findings: list[Dataset], log: ProblemLog) -> Dataset:
    frame = ae.frame
    if "VISITNUM" in frame:
        return Dataset(ae.name, frame.rename(columns={"VISITNUM": "AVISITN"}), ae.origin)
    days = pd.concat(
        [
            d.frame[["USUBJID", "ADY", "AVISITN"]]
            for d in findings
            if {"ADY", "AVISITN"} <= set(d.frame)
        ]
        or [pd.DataFrame({"USUBJID": [], "ADY": [], "AVISITN": []})],
        ignore_index=True,
    ).dropna()
    visit_of = days.drop_duplicates(["USUBJID", "ADY"]).set_index(["USUBJID", "ADY"])["AVISITN"]
    start = frame["AESTDY"] if "AESTDY" in frame else pd.Series(np.nan, index=frame.index)
    keys = pd.MultiIndex.from_arrays([frame["USUBJID"].astype(object), start.astype("float64")])
    visit = pd.Series(visit_of.reindex(keys).to_numpy(), index=frame.index)
    unmatched = visit.isna().to_numpy()
    for obs in frame.index[unmatched]:
        row = frame.loc[obs]
        seq = f", AESEQ {row['AESEQ']:g}" if "AESEQ" in frame else ""
        log.add_one(
            ae.name,
            obs,
            "AESTDY",
            row.get("AESTDY"),
            "event_visit",
            f"AE USUBJID {row['USUBJID']}{seq} (obs {obs}): AESTDY {row.get('AESTDY')} is not "
            "the study day of a visit of this subject, and AE has no VISITNUM; mesostats "
            "records events at sessions: add VISITNUM to AE, or correct AESTDY.",
        )
    kept = frame.loc[~unmatched].assign(AVISITN=visit[~unmatched])
    return Dataset(ae.name, kept, ae.origin)
