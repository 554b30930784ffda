"""Marginal means and contrasts of a negative-binomial (NB2) GLMM against R's emmeans.

Reference: ``tests/reference/ref_emmeans_nb.R`` (emmeans 1.8.4 on glmmTMB 1.1.5's ``nbinom2``
fit of Salamanders, ``count ~ spp + mined + (1 | site)``), frozen in ``ref_emmeans_nb.json``.
Our fit and glmmTMB's stop within ~1e-5 of each other (``test_glmm_negbin.py`` matches a
Newton-polished glmmTMB optimum to 1e-11), so estimates and SEs are compared at 1e-4
relative. emmeans gives glmmTMB fits t intervals with the residual df (634); a GLMM's Wald
inference here is on the normal scale (df = inf), so df and intervals are not compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms

REF = Path(__file__).parent / "reference"
FORMULA = "count ~ spp + mined + (1 | site)"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((REF / "ref_emmeans_nb.json").read_text())


@pytest.fixture(scope="module")
def nb_fit():
    data = pd.read_csv(REF / "salamanders.csv")
    for column in ("spp", "mined", "site"):
        data[column] = data[column].astype(str)
    return ms.fit_glmm(FORMULA, data, family="negative_binomial")


def _by_level(rows: list[dict], key: str) -> dict[str, dict]:
    return {row[key]: row for row in rows}


def test_nb_mean_counts_match_emmeans_response_scale(nb_fit, reference) -> None:
    means = ms.marginal_means(nb_fit, "mined")
    ref = _by_level(reference["mined_response"], "mined")
    for _, row in means.iterrows():
        assert_allclose(row["estimate"], ref[row["mined"]]["response"], rtol=1e-4)
        assert_allclose(row["std_error"], ref[row["mined"]]["SE"], rtol=1e-4)
        assert np.isinf(row["df"])


def test_nb_means_on_the_link_scale_match_emmeans(nb_fit, reference) -> None:
    means = ms.marginal_means(nb_fit, "mined", scale="link")
    ref = _by_level(reference["mined_link"], "mined")
    for _, row in means.iterrows():
        assert_allclose(row["estimate"], ref[row["mined"]]["emmean"], rtol=1e-4)
        assert_allclose(row["std_error"], ref[row["mined"]]["SE"], rtol=1e-4)


def test_nb_species_means_average_over_mined_as_emmeans(nb_fit, reference) -> None:
    means = ms.marginal_means(nb_fit, "spp")
    ref = _by_level(reference["spp_response"], "spp")
    assert sorted(means["spp"].astype(str)) == sorted(ref)
    for _, row in means.iterrows():
        assert_allclose(row["estimate"], ref[row["spp"]]["response"], rtol=1e-4)
        assert_allclose(row["std_error"], ref[row["spp"]]["SE"], rtol=1e-4)


def test_nb_treatment_vs_control_contrasts_match_emmeans(nb_fit, reference) -> None:
    means = ms.marginal_means(nb_fit, "spp", scale="link")
    ref = reference["spp_trt_vs_ctrl_link"]
    # emmeans writes a level with a hyphen in parentheses: "(EC-L) - GP"
    expected = {row["contrast"].replace("(", "").replace(")", ""): row for row in ref}
    control = next(iter(expected)).split(" - ")[1]
    table = ms.contrasts(means, "trt.vs.ctrl", ref=control, adjust="none")
    assert set(table["contrast"]) == set(expected)
    for _, row in table.iterrows():
        assert_allclose(row["estimate"], expected[row["contrast"]]["estimate"], rtol=1e-4)
        assert_allclose(row["std_error"], expected[row["contrast"]]["SE"], rtol=1e-4)
