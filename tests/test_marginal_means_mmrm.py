"""marginal_means / contrasts of fit_mmrm results against emmeans 1.8.4 on R's mmrm 0.3.14.

Reference: ``reference/mmrm/ref_fev.json`` (written by ``reference/mmrm/ref_mmrm.R``): for
each REML block
``{structure}_reml_{df method}`` of ``FEV1 ~ RACE + SEX + ARMCD * AVISIT +
{structure}(AVISIT | USUBJID)``::

    e <- emmeans(fit, ~ ARMCD | AVISIT)                  # equal weights over RACE and SEX
    contrast(e, method = "trt.vs.ctrl", ref = 1)         # one contrast per visit: no adjustment

mmrm stops its optimiser short of the optimum (test_mmrm.py: our fits reach a higher logLik
and their coefficients are within 1e-3 SE of mmrm's), so the end-to-end tolerances are those
of the fit: estimates and interval bounds within 1e-3 standard errors, SEs and df 2e-4
relative, p-values 2e-3 relative (measured worst: 1.7e-4 SE for us, 7e-5 and 1.4e-4 for the
SEs and df of toeph, 1.4e-3 for its p). For ``cs``, where mmrm reaches the optimum, the match
is exact: LS means, contrasts, SEs, intervals 1e-6 relative, df 1e-6, p 1e-5 (measured
2e-7 and 1.5e-6). mmrm's "Residual" method uses the empirical covariance, hence
``vcov="empirical"`` for those blocks.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mmrm_data import FEV_FIXED, STRUCTURES, fev_data
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ExclusionWarning

REF = json.loads((Path(__file__).parent / "reference" / "mmrm" / "ref_fev.json").read_text())
METHODS = {
    "kenwardroger": "kenward-roger",
    "krlinear": "kenward-roger-linear",
    "satterthwaite": "satterthwaite",
    "residual": "residual",
    "betweenwithin": "between-within",
}
VCOV = {"residual": "empirical"}
BLOCKS = [
    (f"{s}_reml_{m}", s, m)
    for s in STRUCTURES
    for m in METHODS
    if "emmeans" in REF.get(f"{s}_reml_{m}", {})
]


def _fit(structure: str, method: str):
    extra = {"vcov": VCOV[method]} if method in VCOV else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExclusionWarning)  # rows with missing FEV1
        return ms.fit_mmrm(
            f"{FEV_FIXED} + {structure}(AVISIT | USUBJID)",
            fev_data(),
            reml=True,
            df=METHODS[method],
            **extra,
        )


@pytest.mark.slow
@pytest.mark.parametrize(("key", "structure", "method"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_fev_lsmeans_and_trt_vs_ctrl_match_emmeans(key: str, structure: str, method: str):
    exact = structure == "cs"
    est_se, rtol_se, rtol_df, rtol_p = (
        (1e-6, 1e-6, 1e-6, 1e-5) if exact else (1e-3, 2e-4, 2e-4, 2e-3)
    )
    ref = REF[key]["emmeans"]
    fit = _fit(structure, method)
    means = ms.marginal_means(fit, "ARMCD", by="AVISIT")
    lsm = pd.DataFrame(ref["lsmeans"])
    assert list(means["ARMCD"].astype(str)) == list(lsm["ARMCD"])
    assert list(means["AVISIT"].astype(str)) == list(lsm["AVISIT"])
    se = lsm["SE"].to_numpy()
    assert_allclose(means["estimate"], lsm["emmean"], rtol=0, atol=est_se * se.min())
    assert_allclose(means["std_error"], se, rtol=rtol_se)
    assert_allclose(means["df"], lsm["df"], rtol=rtol_df)
    assert_allclose(means["ci_lower"], lsm["lower.CL"], rtol=0, atol=est_se * se.min())
    assert_allclose(means["ci_upper"], lsm["upper.CL"], rtol=0, atol=est_se * se.min())

    con = ms.contrasts(means, "trt.vs.ctrl", adjust="dunnett")
    ctr = pd.DataFrame(ref["contrasts"])
    assert list(con["contrast"]) == list(ctr["contrast"])
    assert list(con["AVISIT"].astype(str)) == list(ctr["AVISIT"])
    cse = ctr["SE"].to_numpy()
    assert_allclose(con["estimate"], ctr["estimate"], rtol=0, atol=est_se * cse.min())
    assert_allclose(con["std_error"], cse, rtol=rtol_se)
    assert_allclose(con["df"], ctr["df"], rtol=rtol_df)
    assert_allclose(con["statistic"], ctr["t.ratio"], rtol=0, atol=2 * est_se)
    assert_allclose(con["p_value"], ctr["p.value"], rtol=rtol_p)
    assert_allclose(con["ci_lower"], ctr["lower.CL"], rtol=0, atol=est_se * cse.min())
    assert_allclose(con["ci_upper"], ctr["upper.CL"], rtol=0, atol=est_se * cse.min())


def test_fev_all_visits_dunnett_family_is_one_contrast_per_visit():
    """Within each visit there is one contrast: every adjustment equals the unadjusted test."""
    fit = _fit("us", "kenwardroger")
    means = ms.marginal_means(fit, "ARMCD", by="AVISIT")
    plain = ms.contrasts(means, adjust="none")
    for adjust in ("dunnett", "holm", "bonferroni"):
        adjusted = ms.contrasts(means, adjust=adjust)
        assert_allclose(adjusted["p_value"], plain["p_value"], rtol=1e-12)
        assert_allclose(adjusted["ci_lower"], plain["ci_lower"], rtol=1e-12)
    assert np.all(plain["df"] > 100)
