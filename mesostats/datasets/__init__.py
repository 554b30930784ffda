"""The example study bundled with mesostats.

``example/`` holds the four tables (CSV) of a simulated, realistic randomised study: 150
subjects at 3 sites, 4 cocktails (a saline placebo and three that separate minoxidil,
dutasteride and biotin), 10 irregular visits (8 injection sessions, 2 follow-ups), dropout,
some missing measurements and adverse events with free-text verbatim terms. The files are
written by ``scripts/make_example_study.py``, i.e. ``simulate_tables(**EXAMPLE_SETTINGS)``
followed by :func:`mesostats.simulate.write_tables`; the same call returns the true values.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesostats.data.load import load_study

if TYPE_CHECKING:
    from mesostats.data.study import Study

__all__ = [
    "CDISC_EXAMPLE_DIR",
    "EXAMPLE_DIR",
    "EXAMPLE_SETTINGS",
    "REDCAP_EXAMPLE_DIR",
    "example_study",
]

#: Folder of the bundled example tables.
EXAMPLE_DIR: Path = Path(__file__).resolve().parent / "example"

#: The example study as a REDCap export (``records.csv``, ``dictionary.csv``, and
#: ``cocktails.csv``), written by ``scripts/make_redcap_example.py``; read it with
#: :func:`mesostats.load_redcap`.
REDCAP_EXAMPLE_DIR: Path = Path(__file__).resolve().parent / "redcap_example"

#: The first 12 subjects of the example study as CDISC ADaM datasets (SAS transport ``.xpt``:
#: ADSL, ADHAIR, ADEX, ADAE) and ``cocktails.csv``, written by
#: ``scripts/make_cdisc_example.py``; read them with :func:`mesostats.load_cdisc`.
CDISC_EXAMPLE_DIR: Path = Path(__file__).resolve().parent / "cdisc_example"

#: Arguments of :func:`mesostats.simulate.simulate_tables` that produce the example study.
EXAMPLE_SETTINGS: dict[str, Any] = {
    "n_subjects": 150,
    "n_sessions": 10,
    "seed": 13,
    "n_sites": 3,
    "dropout": 0.025,
    "missing_rate": 0.03,
    # the example keeps the hair counts it was published with (density × area, rounded);
    # simulate_study's default draws them NB2 (k = 40) around that mean
    "effects": {"hair_count_dispersion": None},
}


@functools.lru_cache(maxsize=1)
def _load_example() -> Study:
    # named for readers of the report, not by the folder it happens to be installed in
    return dataclasses.replace(
        load_study(EXAMPLE_DIR), source="the example study bundled with mesostats"
    )


def example_study() -> Study:
    """The bundled example study, read and validated with :func:`mesostats.load_study`.

    The files are read once per process; each call returns an independent copy, so changing
    its tables does not change later calls.

    Returns
    -------
    Study
        150 subjects at 3 sites, cocktails ``P`` (saline placebo), ``A`` (minoxidil +
        biotin), ``B`` (dutasteride + biotin) and ``C`` (minoxidil + dutasteride + biotin),
        up to 10 visits each. Its true values come from
        ``mesostats.simulate.simulate_tables(**EXAMPLE_SETTINGS)[1]``.

    Examples
    --------
    >>> study = example_study()
    >>> study.ingredients
    ['biotin', 'dutasteride', 'minoxidil']
    """
    return copy.deepcopy(_load_example())
