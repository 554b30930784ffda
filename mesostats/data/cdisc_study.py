"""Read CDISC ADaM or SDTM datasets (SAS transport or Dataset-JSON) into a validated Study.

:func:`load_cdisc` reads the files (:mod:`.cdisc_files`); an SDTM delivery (DM, no ADSL) is
renamed into the ADaM layout by :mod:`.cdisc_sdtm`; :mod:`.cdisc_adam` turns ADSL (DM), the BDS
outcome datasets (findings domains), ADEX (EX) and ADAE (AE) into mesostats' tables, honouring
``DTYPE``, ``ANL01FL`` and ``ABLFL`` (``--LOBXFL``, ``--STAT``); the tables are validated like
:func:`~mesostats.data.load.load_study`, and every problem is restated in the delivery's own
terms (:mod:`.cdisc_terms`): ``table`` is the dataset (ADSL, ADHAIR, ADEX, ADAE; DM, XH, EX,
AE), ``row`` the observation number, ``column`` the variable (AGE, AVAL/XHSTRESN, ADY/XHDY,
EXTRT, AESEV …), and the message starts with ``ADHAIR USUBJID X, PARAMCD HAIRDENS, AVISITN 3
(obs 17)`` or ``XH USUBJID X, XHTESTCD HAIRDENS, VISITNUM 3, XHSEQ 12 (obs 40)``.

References: CDISC ADaM Implementation Guide 1.3 (ADSL; BDS: PARAMCD, AVAL, AVALC, AVISITN,
ADY, ABLFL, ANL01FL, DTYPE; OCCDS for ADAE), SDTM Implementation Guide 3.4 (DM, SUPPDM, EX,
AE, findings domains: --TESTCD, --STRESN, --STRESC, --DY, --LOBXFL, --STAT, VISITNUM), CDISC
Dataset-JSON 1.1, SAS transport (XPORT) v5. Why hand-written: no library maps ADaM or SDTM
onto a project's own tables; reading the files is left to pyreadstat and the json module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mesostats.data.assemble import validated_study
from mesostats.data.cdisc_adam import ADAM_PARAMS, AdamTables, build_adam_tables
from mesostats.data.cdisc_files import Dataset, read_datasets
from mesostats.data.cdisc_sdtm import sdtm_as_adam
from mesostats.data.cdisc_terms import ADAM, SDTM, Vocabulary
from mesostats.data.problems import ProblemLog
from mesostats.data.recipes import read_cocktails
from mesostats.data.schema import StudySchema, resolve_schema
from mesostats.data.study import EXCLUSION_COLUMNS, Study

__all__ = ["load_cdisc"]

_VARIABLES = {
    "subjects": {"subject_id": "USUBJID", "site": "SITEID", "arm": "ARM", "sex": "SEX",
                 "age": "AGE", "diagnosis": "DIAGNOS", "stage": "STAGE"},
    "adverse_events": {"subject_id": "USUBJID", "visit": "AVISITN", "event": "AEDECOD",
                       "verbatim": "AETERM", "severity": "AESEV", "serious": "AESER",
                       "related": "AEREL"},
    "sessions": {"subject_id": "USUBJID", "visit": "AVISITN", "day": "ADY",
                 "baseline_flag": "ABLFL", "cocktail_id": "EXTRT", "volume_ml": "EXDOSE",
                 "reactions_assessed": "AVALC"},
}  # fmt: skip


def load_cdisc(
    source: Any,
    *,
    cocktails: Any = None,
    params: Mapping[str, str] | None = None,
    schema: StudySchema | str | os.PathLike[str] | None = None,
) -> Study:
    """Read CDISC ADaM or SDTM datasets, validate them like :func:`load_study`, return the Study.

    Parameters
    ----------
    source : str, Path or dict of DataFrame
        A folder of ``.xpt`` (SAS transport) and/or ``.json`` (Dataset-JSON 1.1 or 1.0)
        files, one dataset each, or a dict of DataFrames keyed by dataset name. ADaM:
        ``ADSL``, one or more BDS datasets holding the outcomes (``PARAMCD``/``AVAL``, e.g.
        ``ADHAIR``), and optionally ``ADEX`` and ``ADAE`` (:mod:`mesostats.data.cdisc_adam`);
        or SDTM: ``DM`` (with ``SUPPDM``), a findings domain holding the outcomes
        (``--TESTCD``/``--STRESN``), and optionally ``EX`` and ``AE``
        (:mod:`mesostats.data.cdisc_sdtm`).
    cocktails : str, Path or DataFrame
        The cocktails table (recipes): a CSV, Parquet or XLSX file, or a DataFrame.
    params : dict, optional
        BDS ``PARAMCD`` (SDTM ``--TESTCD``) → sessions column; default
        :data:`~mesostats.data.cdisc_adam.ADAM_PARAMS` (``HAIRDENS`` → ``hair_density``, …).
    schema : StudySchema or path, optional
        As in :func:`load_study`.

    Returns
    -------
    Study
        Row labels are observation numbers (a session: its first BDS record). Records set
        aside by ``DTYPE`` or ``ANL01FL`` are listed in ``exclusions`` (table = dataset).

    Raises
    ------
    ValidationError
        Every problem at once, located by dataset, USUBJID, PARAMCD/AVISITN (SDTM: --TESTCD,
        VISITNUM, --SEQ) and observation.

    Notes
    -----
    A record with ``DTYPE`` filled (LOCF, imputed …) is derived, not observed, and is left
    out; where a dataset has ``ANL01FL``, only records flagged ``Y`` are read. ``ABLFL = Y``
    marks the visit as the person's baseline (``baseline_flag``).
    """
    study_schema = resolve_schema(schema)
    log = ProblemLog(["ADSL", *study_schema.table_names, "ADEX", "ADAE"])
    datasets = read_datasets(source, log)
    vocab = SDTM if "DM" in datasets and "ADSL" not in datasets else ADAM
    sdtm_exclusions: list[tuple[str, Any, str]] = []
    if vocab is SDTM:
        datasets = sdtm_as_adam(datasets, log, sdtm_exclusions)
    adam = build_adam_tables(datasets, dict(params or ADAM_PARAMS), study_schema, log, vocab)
    adam.exclusions[:0] = sdtm_exclusions
    raw_cocktails = read_cocktails(cocktails, study_schema, log, "an ADaM delivery")
    tables = dict(adam.tables)
    if raw_cocktails is not None:
        tables["cocktails"] = raw_cocktails
    where = str(source) if isinstance(source, (str, Path)) else "DataFrames"
    set_aside = pd.DataFrame(adam.exclusions, columns=EXCLUSION_COLUMNS, dtype=object)
    return validated_study(
        tables,
        study_schema,
        log,
        in_source_terms=lambda problems: _in_cdisc_terms(problems, adam, datasets),
        source=f"CDISC {vocab.standard} {where}",
        set_aside=set_aside,
    )


def _in_cdisc_terms(
    problems: pd.DataFrame, adam: AdamTables, datasets: Mapping[str, Dataset]
) -> pd.DataFrame:
    """The validator's problems located by dataset, observation and variable."""
    v = adam.vocab
    sessions = adam.tables.get("sessions")
    position = {} if sessions is None else {lab: i for i, lab in enumerate(sessions.rows)}
    out = []
    for rec in problems.to_dict("records"):
        table, row, column = rec["table"], rec["row"], rec["column"]
        if table not in _VARIABLES:
            out.append(rec)
            continue
        columns = [] if column is None or column != column else str(column).split(", ")
        role = {"subjects": "ADSL", "adverse_events": "ADAE"}.get(table, "")
        dataset = datasets[role].name if role in datasets else table
        variables = [_VARIABLES[table].get(c, "AVAL") for c in columns]
        where = None
        if table == "sessions" and row in position:
            ds, obs, param = (
                adam.session_origin.get(columns[0] if columns else "subject_id")
                or adam.session_origin["subject_id"]
            )
            pos = position[row]
            subject, visit = adam.session_keys[pos]
            dataset, rec["row"] = ds[pos], obs[pos]
            code = f"{v.test(dataset)} {param[pos]}, " if dataset != v.exposure else ""
            where = f"{dataset} USUBJID {subject}, {code}{v.visit} {visit:g} (obs {obs[pos]})"
        elif table == "sessions":
            dataset = "BDS" if v.standard == "ADaM" else "findings"
        elif row is not None and row == row and role in datasets:
            where = _record(datasets[role], row, v)
        names = [v.name(dataset, name) for name in variables]
        prefix = ", ".join(p for p in (where, f"variable {', '.join(names)}") if p)
        rec["table"] = dataset
        rec["message"] = f"{prefix}: ({table}.{column}) {rec['message']}"
        if rec["rule"] == "missing_column":
            rec["message"] = _missing_variable(dataset, ", ".join(names), f"{table}.{column}", v)
        rec["column"] = ", ".join(names) if names else column
        out.append(rec)
    return pd.DataFrame(out, columns=list(problems.columns)).astype(object)


def _missing_variable(dataset: str, variable: str, column: str, v: Vocabulary) -> str:
    where = (
        " (SDTM keeps it in SUPPDM: QNAM " + variable + ", QVAL)"
        if v.standard == "SDTM" and variable in ("DIAGNOS", "STAGE")
        else ""
    )
    return f"{dataset} has no variable {variable}{where}; mesostats needs it for {column}."


def _record(dataset: Dataset, obs: Any, v: Vocabulary) -> str:
    if obs not in dataset.frame.index:
        return f"{dataset.name} (obs {obs})"
    row = dataset.frame.loc[obs]
    text = f"{dataset.name} USUBJID {row.get('USUBJID')}"
    sequence = v.sequence(dataset.name)
    if sequence and sequence in dataset.frame and pd.notna(row.get(sequence)):
        text += f", {sequence} {row.get(sequence):g}"
    return f"{text} (obs {obs})"
