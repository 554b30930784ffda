"""ModelTemplate keeps the fit's df method (Satterthwaite or Kenward–Roger) for its refits.

Compared against: fit_lmm on the same rows with the same df method (identical numbers:
the refit runs the same code on the same design).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from mixed_checks import load_csv
from numpy.testing import assert_allclose

import mesostats as ms
from mesostats.exceptions import ModelSpecError
from mesostats.mixed.refit import ModelTemplate

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _sleepstudy():  # type: ignore[no-untyped-def]
    data = load_csv("sleepstudy.csv")
    data["Subject"] = data["Subject"].astype(str)
    return data


@pytest.mark.parametrize("df", ["satterthwaite", "kenward-roger"])
def test_template_from_results_refits_with_the_fits_df_method(df: str) -> None:
    data = _sleepstudy()
    fit = ms.fit_lmm(SLEEP, data, df=df)
    assert fit.df_method == df
    template = pickle.loads(pickle.dumps(ModelTemplate.from_results(fit)))
    y = data["Reaction"].to_numpy(dtype=float) + np.linspace(0.0, 5.0, len(data))
    refit = template.fit(y)
    direct = ms.fit_lmm(SLEEP, data.assign(Reaction=y), df=df)
    assert refit.df_method == df
    assert_allclose(refit.fixed_effects["df"], direct.fixed_effects["df"], rtol=1e-12)
    assert_allclose(refit.fixed_effects["std_error"], direct.fixed_effects["std_error"], rtol=1e-12)


def test_template_rejects_kenward_roger_for_ml_and_unknown_methods() -> None:
    data = _sleepstudy()
    with pytest.raises(ModelSpecError, match="REML fits of linear mixed models only"):
        ModelTemplate(SLEEP, data, reml=False, df="kenward-roger")
    with pytest.raises(ModelSpecError, match="df must be 'satterthwaite' or 'kenward-roger'"):
        ModelTemplate(SLEEP, data, df="containment")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ModelTemplate(SLEEP, data).fit(data).df_method == "satterthwaite"
