"""Build the self-contained HTML report of a study: :func:`report`, :func:`render_report`,
:func:`build_report`.

The report answers the study's questions in six sections: (1) the data — who was
treated, with what, when, and every row set aside with its reason; (2) the trial's primary
analysis (:func:`mesostats.fit_trial`: MMRM of change from baseline, each cocktail against the
control; included when the study has a control cocktail and two scheduled post-baseline
visits, otherwise the section says why not); (3) regrowth by
ingredient (:func:`mesostats.fit_regrowth`); (4) side effects by ingredient
(:func:`mesostats.fit_side_effects`, adaptive Gauss–Hermite quadrature, with the GEE
population-average odds ratios beside them) and every serious adverse event verbatim; (5)
"varied results" (:func:`mesostats.variability`): between-person SDs with profile-likelihood
CIs, ICC, median odds ratio, prediction intervals, responders and per-person estimates;
(6) methods: formulas, software versions, the seed, and every warning or message of every
fit, which also appear in a banner at the top.

How it is built: the statistics come from the domain layer; the modules of
:mod:`mesostats.reporting.sections` only gather them into plain values (strings formatted by
:mod:`mesostats._display`, tables of strings, PNG data URIs) and this module renders the
Jinja2 templates in ``templates/`` (loaded with :class:`jinja2.PackageLoader`, so they ship
in the wheel). Safety and robustness rules:

* autoescaping is on for every template and no template marks a value ``|safe``: study
  values (ids, site and ingredient names, verbatim text) are always escaped. Figures are
  base64 PNG data URIs (only ``[A-Za-z0-9+/=]``, unchanged by escaping). No JavaScript, no
  external stylesheet, font or image: the file works offline.
* every model, table and figure is computed in its own guarded step
  (:func:`mesostats.reporting.steps.guarded`): one that fails shows its reason in place of
  its content (and in the banner) instead of failing the whole report. Warnings raised
  while fitting are captured and shown in the report, not re-issued.
* the file is written atomically (:func:`mesostats.reporting.write.write_atomic`), so a
  failure never leaves a partial report behind.
"""

from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from mesostats._defaults import SIDE_EFFECT_NAGQ
from mesostats._display import format_number
from mesostats.data.study import Study
from mesostats.domain import fit_regrowth, fit_side_effects
from mesostats.domain.variation import variability
from mesostats.exceptions import ModelSpecError
from mesostats.reporting.sections.checks import checks_section
from mesostats.reporting.sections.data import (
    analysis_exclusion_table,
    analysis_exclusions,
    data_section,
)
from mesostats.reporting.sections.graded import graded_section
from mesostats.reporting.sections.methods import SOFTWARE, methods_section
from mesostats.reporting.sections.overview import glance
from mesostats.reporting.sections.regrowth import regrowth_section
from mesostats.reporting.sections.sensitivity import sensitivity_section
from mesostats.reporting.sections.side_effects import side_effect_section
from mesostats.reporting.sections.trial import primary_analysis_section
from mesostats.reporting.sections.variability import variability_section
from mesostats.reporting.steps import Message, MessageLog, guarded, log_concerning_notes, log_model
from mesostats.reporting.vocabulary import unit_of
from mesostats.reporting.write import write_atomic

__all__ = [
    "SECTION_TITLES",
    "SIDE_EFFECT_NAGQ",
    "SOFTWARE",
    "BuiltReport",
    "build_report",
    "render_report",
    "report",
    "write_atomic",
]

#: Section anchors and headings, in report order.
SECTION_TITLES: dict[str, str] = {
    "data": "1. The data",
    "primary": "2. Primary analysis: change from baseline by cocktail",
    "sensitivity": "2b. Missing data: sensitivity of the primary analysis",
    "regrowth": "3. Regrowth by ingredient",
    "side_effects": "4. Side effects by ingredient",
    "graded": "4b. Graded outcomes: severity and global assessment",
    "variability": "5. Varied results: how much people differ",
    "checks": "6. Model checks",
    "methods": "7. Methods",
}


def _check_inputs(study: Any, outcome: Any, seed: Any, threshold: Any) -> None:
    """Refuse a non-Study, an unknown outcome, a bad seed or threshold (ModelSpecError)."""
    if not isinstance(study, Study):
        raise ModelSpecError(
            f"study must be a mesostats Study (from load_study, example_study or "
            f"simulate_study), got {type(study).__name__}."
        )
    if not isinstance(outcome, str) or outcome not in study.outcomes:
        raise ModelSpecError(
            f"outcome {outcome!r} is not an outcome column of this study's sessions table; "
            f"available: {', '.join(study.outcomes) or 'none'}."
        )
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ModelSpecError(f"seed must be a whole number ≥ 0, got {seed!r}.")
    if threshold is not None and (
        isinstance(threshold, (bool, np.bool_))
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not math.isfinite(float(threshold))
    ):
        raise ModelSpecError(
            f"threshold must be a finite number (a clinically meaningful change in outcome "
            f"units, e.g. 10) or None, got {threshold!r}."
        )


def fit_everything(study: Study, outcome: str, seed: int, log: MessageLog) -> dict[str, Any]:
    """Fit the regrowth and side-effect models and their "varied results" (each guarded)."""
    regrowth, reg_fail = guarded(log, "Regrowth model", lambda: fit_regrowth(study, outcome))
    log_model(log, "Regrowth model", regrowth)
    side, se_fail = guarded(
        log, "Side-effect model", lambda: fit_side_effects(study, nagq=SIDE_EFFECT_NAGQ)
    )
    log_model(log, "Side-effect model", side)
    reg_var, reg_var_fail = (None, reg_fail)
    if regrowth is not None:
        reg_var, reg_var_fail = guarded(
            log, "Varied results (regrowth)", lambda: variability(regrowth, seed=seed)
        )
        if reg_var is not None:
            log_concerning_notes(log, "Varied results (regrowth)", reg_var.notes)
    se_var, se_var_fail = (None, se_fail)
    if side is not None:
        se_var, se_var_fail = guarded(
            log, "Varied results (side effects)", lambda: variability(side, seed=seed)
        )
        if se_var is not None:
            log_concerning_notes(log, "Varied results (side effects)", se_var.notes)
    return {
        "regrowth": (regrowth, reg_fail),
        "side": (side, se_fail),
        "reg_var": (reg_var, reg_var_fail),
        "se_var": (se_var, se_var_fail),
    }


@dataclass(frozen=True)
class BuiltReport:
    """A rendered report: the HTML document and every warning or message it shows."""

    html: str
    messages: tuple[Message, ...]


def build_report(
    study: Study,
    *,
    outcome: str = "hair_density",
    seed: int = 0,
    threshold: float | None = None,
) -> BuiltReport:
    """Compute every section and render the report (nothing is written).

    Parameters are those of :func:`render_report`; the result also carries the messages of
    the banner (the command line prints them on stderr).
    """
    _check_inputs(study, outcome, seed, threshold)
    log = MessageLog()
    data = data_section(study, outcome, log)
    fits = fit_everything(study, outcome, int(seed), log)
    regrowth, reg_fail = fits["regrowth"]
    side, se_fail = fits["side"]
    reg_var, reg_var_fail = fits["reg_var"]
    se_var, se_var_fail = fits["se_var"]
    left_out, left_out_fail = guarded(
        log, "Data summary", lambda: analysis_exclusions(study, outcome, regrowth, side)
    )
    data["model_exclusions"] = (
        analysis_exclusion_table(left_out) if left_out is not None else left_out_fail
    )
    data["n_model_exclusions"] = len(left_out) if left_out is not None else 0
    context: dict[str, Any] = {
        "title": "Mesotherapy study report",
        "source": study.source or "tables given in memory",
        "outcome": outcome,
        "unit": unit_of(outcome, study.schema) or f"{outcome} units",
        "seed": int(seed),
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "sections": SECTION_TITLES,
        "data": data,
        "primary": (primary := primary_analysis_section(study, outcome, log)),
        "sensitivity": sensitivity_section(primary, outcome, log, seed=int(seed)),
        "regrowth": regrowth_section(regrowth, reg_fail, outcome, log),
        "side_effects": side_effect_section(study, side, se_fail, se_var, log),
        "graded": graded_section(study, log),
        "variability": variability_section(
            regrowth, reg_var, reg_var_fail, side, se_var, se_var_fail, outcome, threshold, log
        ),
        "methods": methods_section(fits, nagq=SIDE_EFFECT_NAGQ),
        "glance": glance(study, regrowth, side, reg_var, se_var, outcome),
        "checks": checks_section(fits, int(seed), log),
    }
    context["messages"] = log.items
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mesostats.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    html = env.get_template("report.html.j2").render(context)
    return BuiltReport(html=html, messages=tuple(log.items))


def render_report(
    study: Study,
    *,
    outcome: str = "hair_density",
    seed: int = 0,
    threshold: float | None = None,
) -> str:
    """The report of :func:`report` as an HTML string (nothing is written).

    Parameters
    ----------
    study : Study
    outcome : str, default "hair_density"
        Outcome column for the regrowth and "varied results" sections.
    seed : int, default 0
        Seed of every random step (reported in the methods section).
    threshold : float, optional
        Clinically meaningful change (outcome units) defining a responder; default from
        the schema's ``x-mesostats-responder-threshold`` of the outcome (10 hairs/cm² for
        hair density), else 0.

    Returns
    -------
    str
        A complete HTML document.
    """
    return build_report(study, outcome=outcome, seed=seed, threshold=threshold).html


def report(
    study: Study,
    path: str | os.PathLike[str],
    *,
    outcome: str = "hair_density",
    seed: int = 0,
    threshold: float | None = None,
) -> Path:
    """Write one self-contained HTML report of a study.

    Parameters
    ----------
    study : Study
        From :func:`mesostats.load_study`, :func:`mesostats.example_study` or
        :func:`mesostats.simulate_study`.
    path : str or path-like
        The HTML file to write; its folder must exist. An existing file is replaced
        atomically (only once the whole report is ready).
    outcome : str, default "hair_density"
        Outcome column for regrowth and "varied results".
    seed : int, default 0
        Seed of every random step; reported in the methods section.
    threshold : float, optional
        Clinically meaningful change (outcome units) that defines a responder; default
        the schema's ``x-mesostats-responder-threshold`` of the outcome (10 hairs/cm² for
        hair density), else 0.

    Returns
    -------
    Path
        The absolute path of the written report.

    Raises
    ------
    ModelSpecError
        ``study`` is not a Study, or ``outcome`` is not one of its outcome columns.
    FileNotFoundError, IsADirectoryError, PermissionError
        The folder of ``path`` does not exist, ``path`` is a folder, or it cannot be written.

    Notes
    -----
    Sections: the data (with every row set aside and its reason), regrowth by ingredient
    (:func:`mesostats.fit_regrowth`), side effects by ingredient
    (:func:`mesostats.fit_side_effects` with ``nagq=25``, GEE population-average odds
    ratios, serious adverse events verbatim), "varied results"
    (:func:`mesostats.variability` with profile-likelihood CIs) and methods (formulas,
    software versions, seed, every warning). A model that cannot be fitted shows its reason
    in its section; the rest of the report is still written. Warnings raised while fitting
    are captured into the report (a banner at the top and the methods section), not
    re-issued. The file uses no JavaScript and no external resource; figures are embedded
    PNGs.

    Examples
    --------
    >>> import mesostats as ms
    >>> ms.report(ms.example_study(), "report.html")  # doctest: +SKIP
    PosixPath('/…/report.html')
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(
            f"{str(target)!r} is a folder; give a file name such as report.html."
        )
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"folder {str(folder)!r} of the report does not exist; create it first or choose "
            "another path."
        )
    text = render_report(study, outcome=outcome, seed=seed, threshold=threshold)
    write_atomic(target, text)
    return target.resolve()
