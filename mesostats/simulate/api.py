"""The public entry point :func:`simulate_study`: drawn tables, validated as any study."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mesostats.data.load import load_study
from mesostats.data.schema import resolve_schema
from mesostats.data.study import Study
from mesostats.simulate.draw import _draw_tables, simulate_tables
from mesostats.simulate.parameters import DEFAULT_DROPOUT, DEFAULT_MISSING_RATE


def simulate_study(
    n_subjects: int = 120,
    n_sessions: int = 8,
    *,
    seed: int | np.random.SeedSequence = 0,
    effects: Mapping[str, Any] | None = None,
    n_sites: int = 3,
    cocktails: Mapping[str, Any] | pd.DataFrame | None = None,
    dropout: float = DEFAULT_DROPOUT,
    missing_rate: float = DEFAULT_MISSING_RATE,
    n_followup: int | None = None,
) -> Study:
    """Simulate a randomised mesotherapy study with a known truth.

    Draws the tables with :func:`simulate_tables` (random-coefficients regrowth after Laird &
    Ware 1982, logistic-normal side effects after Breslow & Clayton 1993, site-stratified
    block randomisation, monotone dropout), validates them with
    :func:`mesostats.load_study`, and attaches the truth.

    Parameters
    ----------
    n_subjects, n_sessions, seed, effects, n_sites, cocktails, dropout, missing_rate, n_followup
        As in :func:`simulate_tables`.

    Returns
    -------
    Study
        The validated study; ``study.truth`` is the dict of every true value used (layout in
        :func:`simulate_tables`).

    Raises
    ------
    ModelSpecError
        Unknown or invalid keys in ``effects``, bad recipes or design settings.

    Examples
    --------
    >>> study = simulate_study(40, 6, seed=3, effects={"ingredient_slopes": {"biotin": 0.0}})
    >>> study.truth["ingredient_slopes"]["biotin"]
    0.0
    """

    tables, truth = simulate_tables(
        n_subjects,
        n_sessions,
        seed=seed,
        effects=effects,
        n_sites=n_sites,
        cocktails=cocktails,
        dropout=dropout,
        missing_rate=missing_rate,
        n_followup=n_followup,
    )
    return dataclasses.replace(load_study(tables), truth=truth)


# --------------------------------------------------------------------------------------------


def _simulated_study(
    n_subjects: int, n_sessions: int, *, seed: int | np.random.SeedSequence, **settings: Any
) -> Study:
    """:func:`simulate_study` without re-validating the drawn tables (trusted, internal).

    For repeated draws of one plan whose tables were validated once (the probe trial of
    :func:`mesostats.power`; every draw of a plan shares its cocktails and settings). The
    simulator's tables meet the schema by construction (keys generated, values clipped to
    the schema's ranges); what validation adds is the typing of
    :func:`mesostats.data.validate.typed_frame`, applied here: optional boolean columns as
    pandas' nullable ``boolean``, and the index named ``row``. The Study is the one
    :func:`simulate_study` returns (tested table by table), without the ~half of its time
    that validation costs; the adverse events' session rows, known from the draw, are handed
    to :meth:`Study.from_tables` instead of being matched by key. Not reachable from the
    public loaders.
    """
    tables, truth, event_rows = _draw_tables(n_subjects, n_sessions, seed=seed, **settings)
    schema = resolve_schema(None)
    typed: dict[str, pd.DataFrame] = {}
    for name, frame in tables.items():
        table_schema = schema.tables[name]
        out = frame.copy(deep=False)
        for spec in table_schema.fields:
            if spec.name not in out.columns:
                continue
            if spec.type == "boolean" and not (spec.required and not out[spec.name].isna().any()):
                out[spec.name] = out[spec.name].astype("boolean")
        out.index = pd.Index(out.index, name="row")
        typed[name] = out
    links = {("adverse_events", "sessions"): event_rows}  # (known from the draw)
    study = Study.from_tables(typed, schema, source="dict of DataFrames", links=links)
    return dataclasses.replace(study, truth=truth)
