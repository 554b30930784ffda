"""From the raw tables a source reader built to a validated :class:`Study`.

The REDCap and CDISC readers (and any reader of a source that is not a folder of tables) end
the same way: validate the four tables against the schema once, put every problem back in the
source's own terms (record and event, dataset and USUBJID, …), raise one
:class:`~mesostats.exceptions.ValidationError` listing everything the reader and the
validation found, or build the Study and add the rows the reader set aside to its
``exclusions``. This module is that one ending.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from mesostats.data.parse import RawTable
from mesostats.data.problems import ProblemLog
from mesostats.data.schema import StudySchema
from mesostats.data.study import EXCLUSION_COLUMNS, Study
from mesostats.data.validate import validate_tables
from mesostats.exceptions import ValidationError

__all__ = ["validated_study"]


def validated_study(
    tables: Mapping[str, RawTable],
    schema: StudySchema,
    log: ProblemLog,
    *,
    in_source_terms: Callable[[pd.DataFrame], pd.DataFrame],
    source: str,
    set_aside: pd.DataFrame | None = None,
) -> Study:
    """Validate ``tables``, raise every problem (``log``'s and the validation's, the latter
    passed through ``in_source_terms``) in one ValidationError, or return the Study with the
    reader's ``set_aside`` rows (columns ``table, row, reason``) added to its exclusions."""
    absent = {t for t in schema.table_names if t not in tables}
    links: dict[tuple[str, str], np.ndarray] = {}
    typed: dict[str, pd.DataFrame] = {}
    try:
        typed = validate_tables(dict(tables), schema, absent_tables=absent, links=links)
    except ValidationError as exc:
        log.extend(in_source_terms(exc.problems))
    if len(log):
        raise ValidationError(log.frame())
    study = Study.from_tables(typed, schema, source=source, links=links)
    if set_aside is None or not len(set_aside):
        return study
    exclusions = pd.concat([study.exclusions, set_aside], ignore_index=True)[EXCLUSION_COLUMNS]
    return dataclasses.replace(study, exclusions=exclusions.astype(object))
