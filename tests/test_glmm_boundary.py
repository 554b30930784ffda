"""A GLMM whose maximum is inside is not reported at a variance of 0.

At a random-effect SD of 0 the gradient of the Laplace log-likelihood in the SD vanishes by
symmetry, so a gradient optimiser that lands there stays (before the boundary probe in
``mixed/glmm/optimise.py``, these four Poisson fits ended at SD = 0, 9–43 log-likelihood units
below the maximum). Reference: glmmTMB 1.1.5 and lme4 1.1-31 on the same data
(``reference/ref_glmm_boundary.R``). Tolerances as for grouseticks
(``reference/README.md``): logLik within 1e-6 of glmmTMB's or above it, fixed effects 1e-4
absolute, SD 1e-3 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from numpy.testing import assert_allclose

from mesostats.exceptions import SingularFitWarning
from mesostats.mixed.glmm import fit_glmm

REFERENCE = Path(__file__).parent / "reference"
DATA = pd.read_csv(REFERENCE / "glmm_boundary.csv", dtype={"pid": str})
REF = json.loads((REFERENCE / "ref_glmm_boundary.json").read_text())
DATASETS = sorted(DATA["dataset"].unique())


@pytest.mark.parametrize("name", DATASETS)
def test_poisson_sd_inside_matches_glmmtmb(name: str) -> None:
    ref = REF[name]["glmmTMB"]
    data = DATA[DATA["dataset"] == name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularFitWarning)
        fit = fit_glmm("y ~ x + (1 | pid)", data, family="poisson")
    assert fit.converged
    assert not fit.singular
    assert fit.loglik >= ref["loglik"] - 1e-6
    assert fit.loglik <= ref["loglik"] + 1e-4
    fe = fit.fixed_effects
    assert_allclose(
        fe["estimate"].to_numpy(), [ref["fixef"]["(Intercept)"], ref["fixef"]["x"]], atol=1e-4
    )
    sd = float(fit.variance_components["sdcor"].iloc[0])
    assert_allclose(sd, ref["sd"], rtol=1e-3)
