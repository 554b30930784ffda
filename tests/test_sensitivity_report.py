"""The report's missing-data sensitivity section (mesostats.reporting.sections.sensitivity):
its table holds ms.sensitivity's numbers at the primary visit for the four assumptions, its
tipping row ms.tipping_point's first δ that loses significance; a trial without missing
visits says why there is nothing to impute."""

from __future__ import annotations

import numpy as np
from sensitivity_trials import mar_trial

import mesostats as ms
from mesostats._display import format_number, format_signed
from mesostats.reporting.sections.sensitivity import REPORT_IMPUTATIONS, sensitivity_section
from mesostats.reporting.sections.trial import primary_analysis_section
from mesostats.reporting.steps import MessageLog


def test_section_shows_the_four_assumptions_and_the_tipping_point():
    study, _ = mar_trial(120, seed=6, dropout=0.1)
    log = MessageLog()
    primary = primary_analysis_section(study, "hair_density", log)
    values = sensitivity_section(primary, "hair_density", log, seed=0)
    assert values["why_not"] is None and values["failure"] is None, values
    trial = primary["trial"]
    rows = values["methods"].rows
    assert len(rows) == 5 * (len(trial.cocktails) - 1)
    j2r = ms.sensitivity(trial, method="jump_to_reference", n_imputations=REPORT_IMPUTATIONS)
    at = j2r[j2r["visit"] == trial.primary_visit].iloc[0]
    row = next(r for r in rows if r[0] == at["contrast"] and "J2R" in r[1])
    assert row[2] == format_number(at["estimate"])
    tip = ms.tipping_point(trial, n_imputations=REPORT_IMPUTATIONS)
    first = tip[tip["tips"]].iloc[0]
    shown = {r[0]: r[1] for r in values["tipping"].rows}
    assert shown[first["contrast"]] == format_signed(first["delta"])


def test_section_says_why_not_without_missing_visits():
    study = ms.simulate_study(40, 4, seed=1, dropout=0.0, missing_rate=0.0)
    log = MessageLog()
    primary = primary_analysis_section(study, "hair_density", log)
    values = sensitivity_section(primary, "hair_density", log)
    assert "nothing to impute" in values["why_not"]
    assert np.isfinite(primary["trial"].primary["estimate"]).all()
