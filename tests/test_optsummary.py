"""Tests of mesostats.mixed.optsummary: the optimiser record behind optimizer_info."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import mesostats as ms
from mesostats.mixed.optsummary import OptSummary

REF = Path(__file__).parent / "reference"


def test_as_dict_has_the_common_keys_then_the_details() -> None:
    record = OptSummary(
        method="m",
        n_evaluations=3,
        gradient=np.array([1e-9, -2e-9]),
        newton_decrement=None,
        factorisation="scalar",
        seconds=0.5,
        details={"glm_loglik": -1.0},
    )
    assert record.as_dict() == {
        "method": "m",
        "n_evaluations": 3,
        "gradient": [1e-9, -2e-9],
        "newton_decrement": None,
        "factorisation": "scalar",
        "seconds": 0.5,
        "glm_loglik": -1.0,
    }


def test_lmm_fits_report_how_they_were_factorised_and_their_newton_decrement() -> None:
    sleep = pd.read_csv(REF / "sleepstudy.csv")
    info = ms.fit_lmm("Reaction ~ Days + (Days | Subject)", sleep).optimizer_info
    assert info["factorisation"] == "block-diagonal"
    assert 0.0 <= info["newton_decrement"] < 1e-6
    assert info["n_evaluations"] > 0 and len(info["gradient"]) == 3
    penicillin = pd.read_csv(REF / "penicillin.csv")
    info = ms.fit_lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", penicillin).optimizer_info
    assert info["factorisation"] == "dense Schur"
