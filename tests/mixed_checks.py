"""A statsmodels-style battery of checks for mixed-model fits against frozen lme4 values.

A test class mixes in :class:`CheckMixedFit`, sets ``res1`` (our fit) and ``ref`` (a
normalised reference dict, see :func:`normalise_sleepstudy` / :func:`normalise_varcorr`) and
gets every check. Tolerances are class attributes (reference/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

REFERENCE = Path(__file__).parent / "reference"


def load_reference(name: str) -> dict[str, Any]:
    with open(REFERENCE / name, encoding="utf-8") as fh:
        return json.load(fh)


def load_csv(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / name)


def normalise_sleepstudy(block: str) -> dict[str, Any]:
    """Reference dict for sleepstudy ``REML`` or ``ML`` (variance parameters from *_tight)."""
    raw = load_reference("ref_sleepstudy.json")
    default, tight = raw[block], raw[f"{block}_tight"]
    blups = pd.DataFrame(default["blups_first3"]).set_index("Subject")
    blups.index = blups.index.astype(int)
    return {
        "fixef": default["fixef"],
        "se": default["se"],
        "vcov": default["vcov_fixef"],
        "varcorr": [
            ("Subject", "Intercept", None, tight["sd_intercept"]),
            ("Subject", "Days", None, tight["sd_days"]),
            ("Subject", "Intercept", "Days", tight["corr_intercept_days"]),
            ("Residual", None, None, tight["sd_residual"]),
        ],
        "loglik": tight["logLik"],
        "loglik_default": default["logLik"],
        "aic": default["AIC"],
        "bic": default["BIC"],
        "df": default["satterthwaite"]["df"],
        "p": default["satterthwaite"]["p"],
        "ngroups": {"Subject": default["n_groups"]},
        "blups": {
            "Subject": (
                blups[["Intercept", "Days"]],
                blups[["condSD_Intercept", "condSD_Days"]].set_axis(["Intercept", "Days"], axis=1),
            )
        },
    }


def normalise_varcorr(name: str, block: str) -> dict[str, Any]:
    """Reference dict for the Penicillin / Pastes JSON layout (tightly converged lmerTest),
    with the BLUPs of ``ref_blups.json`` (lme4's ``ranef(condVar = TRUE)``, ref_blups.R)."""
    raw = load_reference(name)[block]
    dataset = name.removeprefix("ref_").removesuffix(".json")
    return {
        "fixef": raw["fixef"],
        "se": raw["se"],
        "varcorr": [(r["group"], r["var1"], r["var2"], r["sdcor"]) for r in raw["varcorr"]],
        "loglik": raw["logLik"],
        "loglik_default": None,
        "df": raw["satterthwaite_df"],
        "p": raw["p"],
        "ngroups": raw["ngroups"],
        "theta": raw["theta"],
        "blups": frozen_blups(dataset, block),
    }


def frozen_blups(
    dataset: str, block: str, file: str = "ref_blups.json"
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Group → (modes, conditional SDs) of the first levels (index as text), from the BLUP
    references (``ref_blups.json``: ref_blups.R; ``ref_blups_simulated.json``:
    ref_blups_simulated.R)."""
    raw = load_reference(file)[dataset]
    out = {}
    for group, rec in (raw[block] if block else raw).items():
        index = pd.Index([str(level) for level in rec["levels"]])
        columns = rec.get("columns", ["Intercept"])
        columns = [columns] if isinstance(columns, str) else list(columns)
        mode = np.asarray(rec["mode"], dtype=float).reshape(len(index), len(columns))
        sd = np.asarray(rec["cond_sd"], dtype=float).reshape(len(index), len(columns))
        out[group] = (
            pd.DataFrame(mode, index=index, columns=columns),
            pd.DataFrame(sd, index=index, columns=columns),
        )
    return out


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


class CheckMixedFit:
    """The battery: fixed effects, SEs, variance components, logLik, df, BLUPs."""

    res1: Any
    ref: ClassVar[dict[str, Any]]
    rtol_fixed = 1e-6
    rtol_se = 1e-4
    rtol_sd = 1e-3
    atol_loglik = 1e-6
    rtol_df = 1e-3
    blup_tol = 1e-3  # absolute, in units of the conditional SD

    def test_fixed_effects(self) -> None:
        ours = self.res1.fixed_effects["estimate"]
        ref = pd.Series(self.ref["fixef"])
        assert list(ours.index) == list(ref.index)
        assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=self.rtol_fixed)

    def test_std_errors(self) -> None:
        ours = self.res1.fixed_effects["std_error"]
        ref = pd.Series(self.ref["se"])
        assert_allclose(ours[ref.index].to_numpy(), ref.to_numpy(), rtol=self.rtol_se)

    def test_variance_components(self) -> None:
        vc = self.res1.variance_components
        assert list(vc.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
        assert len(vc) == len(self.ref["varcorr"])
        for row, (group, var1, var2, value) in zip(
            vc.itertuples(index=False), self.ref["varcorr"], strict=True
        ):
            assert row.group == group
            assert (_missing(row.var1) and _missing(var1)) or row.var1 == var1
            assert (_missing(row.var2) and _missing(var2)) or row.var2 == var2
            assert_allclose(row.sdcor, value, rtol=self.rtol_sd, err_msg=f"{group} {var1} {var2}")

    def test_loglik(self) -> None:
        ll = self.res1.loglik
        assert abs(ll - self.ref["loglik"]) <= self.atol_loglik
        if self.ref.get("loglik_default") is not None:
            assert ll >= self.ref["loglik_default"] - self.atol_loglik

    def test_information_criteria(self) -> None:
        if "aic" not in self.ref:
            assert_allclose(self.res1.deviance, -2 * self.ref["loglik"], atol=2e-6)
            return
        assert_allclose(self.res1.aic, self.ref["aic"], atol=1e-5)
        assert_allclose(self.res1.bic, self.ref["bic"], atol=1e-5)

    def test_satterthwaite_df(self) -> None:
        fe = self.res1.fixed_effects
        ref = pd.Series(self.ref["df"])
        assert_allclose(fe.loc[ref.index, "df"].to_numpy(), ref.to_numpy(), rtol=self.rtol_df)
        p_ref = pd.Series(self.ref["p"], dtype=float)
        # p-values down to 1e-18 magnify the SE differences of lme4's default optimum: compare
        # them on the log scale
        assert_allclose(
            np.log(fe.loc[p_ref.index, "p_value"].to_numpy()), np.log(p_ref.to_numpy()), atol=5e-3
        )

    def test_ngroups(self) -> None:
        assert self.res1.ngroups == self.ref["ngroups"]

    def test_blups(self) -> None:
        assert self.ref["blups"], "every reference dataset carries frozen BLUPs"
        for group, (modes, sds) in self.ref["blups"].items():
            ours_all, sd_all = self.res1.ranef[group], self.res1.ranef_se[group]
            ours_all.index = ours_all.index.astype(str)  # R's levels are text
            sd_all.index = sd_all.index.astype(str)
            ours = ours_all.loc[modes.index.astype(str), modes.columns]
            our_sd = sd_all.loc[sds.index.astype(str), sds.columns]
            err = np.abs(ours.to_numpy() - modes.to_numpy()) / sds.to_numpy()
            assert err.max() <= self.blup_tol
            assert_allclose(our_sd.to_numpy(), sds.to_numpy(), rtol=self.rtol_sd)

    def test_converged(self) -> None:
        assert self.res1.converged
        assert not self.res1.singular
        assert self.res1.messages == []
