"""marginal_means / contrasts of fit_mmrm results against emmeans 1.8.4 on R's mmrm 0.3.14.

Reference: ``reference/mmrm/ref_fev.json`` (written by ``reference/mmrm/ref_mmrm.R``): for
each REML block
``{structure}_reml_{df method}`` of ``FEV1 ~ RACE + SEX + ARMCD * AVISIT +
{structure}(AVISIT | USUBJID)``::

    e <- emmeans(fit, ~ ARMCD | AVISIT)                  # equal weights over RACE and SEX
    contrast(e, method = "trt.vs.ctrl", ref = 1)         # one contrast per visit: no adjustment

Tolerances (shared/reference/README.md): LS means, contrasts, SEs and intervals 1e-5
relative; df 1e-4 relative (as the model's own df); p-values 1e-4 relative.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ExclusionWarning

MMRM_DIR = Path(__file__).parent / "reference" / "mmrm"
REF = json.loads((MMRM_DIR / "ref_fev.json").read_text())
FIXED = "FEV1 ~ RACE + SEX + ARMCD * AVISIT"
METHODS = {
    "kenwardroger": "kenward-roger",
    "krlinear": "kenward-roger-linear",
    "satterthwaite": "satterthwaite",
    "residual": "residual",
    "betweenwithin": "between-within",
}
STRUCTURES = ("us", "toep", "toeph", "ar1", "ar1h", "ad", "adh", "cs", "csh")
BLOCKS = [
    (f"{s}_reml_{m}", s, METHODS[m])
    for s in STRUCTURES
    for m in METHODS
    if "emmeans" in REF.get(f"{s}_reml_{m}", {})
]


def fev_data() -> pd.DataFrame:
    data = pd.read_csv(MMRM_DIR / "fev_data.csv")
    data["ARMCD"] = pd.Categorical(data["ARMCD"], categories=["PBO", "TRT"])
    data["AVISIT"] = pd.Categorical(data["AVISIT"], categories=["VIS1", "VIS2", "VIS3", "VIS4"])
    data["RACE"] = pd.Categorical(
        data["RACE"], categories=["Asian", "Black or African American", "White"]
    )
    data["SEX"] = pd.Categorical(data["SEX"], categories=["Male", "Female"])
    return data


def _fit(structure: str, method: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)  # rows with missing FEV1
        return ms.fit_mmrm(
            f"{FIXED} + {structure}(AVISIT | USUBJID)", fev_data(), reml=True, df=method
        )


@pytest.mark.slow
@pytest.mark.parametrize(("key", "structure", "method"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_fev_lsmeans_and_trt_vs_ctrl_match_emmeans(key: str, structure: str, method: str):
    ref = REF[key]["emmeans"]
    fit = _fit(structure, method)
    means = ms.marginal_means(fit, "ARMCD", by="AVISIT")
    lsm = pd.DataFrame(ref["lsmeans"])
    assert list(means["ARMCD"].astype(str)) == list(lsm["ARMCD"])
    assert list(means["AVISIT"].astype(str)) == list(lsm["AVISIT"])
    assert_allclose(means["estimate"], lsm["emmean"], rtol=1e-5)
    assert_allclose(means["std_error"], lsm["SE"], rtol=1e-5)
    assert_allclose(means["df"], lsm["df"], rtol=1e-4)
    assert_allclose(means["ci_lower"], lsm["lower.CL"], rtol=1e-5)
    assert_allclose(means["ci_upper"], lsm["upper.CL"], rtol=1e-5)

    con = ms.contrasts(means, "trt.vs.ctrl", adjust="dunnett")
    ctr = pd.DataFrame(ref["contrasts"])
    assert list(con["contrast"]) == list(ctr["contrast"])
    assert list(con["AVISIT"].astype(str)) == list(ctr["AVISIT"])
    assert_allclose(con["estimate"], ctr["estimate"], rtol=1e-5)
    assert_allclose(con["std_error"], ctr["SE"], rtol=1e-5)
    assert_allclose(con["df"], ctr["df"], rtol=1e-4)
    assert_allclose(con["statistic"], ctr["t.ratio"], rtol=1e-5)
    assert_allclose(con["p_value"], ctr["p.value"], rtol=1e-4)
    assert_allclose(con["ci_lower"], ctr["lower.CL"], rtol=1e-5)
    assert_allclose(con["ci_upper"], ctr["upper.CL"], rtol=1e-5)


def test_fev_all_visits_dunnett_family_is_one_contrast_per_visit():
    """Within each visit there is one contrast: every adjustment equals the unadjusted test."""
    fit = _fit("us", "kenward-roger")
    means = ms.marginal_means(fit, "ARMCD", by="AVISIT")
    plain = ms.contrasts(means, adjust="none")
    for adjust in ("dunnett", "holm", "bonferroni"):
        adjusted = ms.contrasts(means, adjust=adjust)
        assert_allclose(adjusted["p_value"], plain["p_value"], rtol=1e-12)
        assert_allclose(adjusted["ci_lower"], plain["ci_lower"], rtol=1e-12)
    assert np.all(plain["df"] > 100)
