"""The pre-specified covariance fallback (mesostats.domain.trial_covariance), driven by a
stand-in fitter whose structures converge, fail to converge or raise on demand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mesostats.domain.trial_covariance import (
    FALLBACK_ORDER,
    covariance_order,
    fit_with_fallback,
)
from mesostats.exceptions import ModelSpecError


def fitter(outcomes, calls):
    def fit(structure):
        calls.append(structure)
        result = outcomes.get(structure, True)
        if isinstance(result, BaseException):
            raise result
        return SimpleNamespace(converged=result, messages=[f"{structure} said so"], name=structure)

    return fit


def test_default_order_is_us_toeph_ar1h_cs():
    assert FALLBACK_ORDER == ("us", "toeph", "ar1h", "cs")
    assert covariance_order("us") == FALLBACK_ORDER
    assert covariance_order("ar1h") == ("ar1h", "cs")
    assert covariance_order("ad") == ("ad",)
    assert covariance_order(["cs", "us"]) == ("cs", "us")


@pytest.mark.parametrize("bad", ["unstructured", "", [], ["us", "us"], ["us", 3], None, 1])
def test_unknown_structure_is_refused_with_the_choices(bad):
    with pytest.raises(ModelSpecError, match=r"covariance must be one of us, toep, toeph"):
        covariance_order(bad)


def test_us_converging_is_used_without_fallback():
    calls = []
    fit = fit_with_fallback(fitter({}, calls), FALLBACK_ORDER)
    assert calls == ["us"]
    assert fit.covariance == "us" and fit.model.name == "us"
    assert fit.attempts.to_dict("list") == {
        "covariance": ["us"],
        "converged": [True],
        "used": [True],
        "message": ["converged"],
    }
    assert fit.messages == (
        "Covariance: unstructured (us), the first of the pre-specified order "
        "us → toeph → ar1h → cs, converged.",
    )


def test_fallback_moves_on_after_non_convergence_and_errors_and_says_why():
    calls = []
    outcomes = {"us": False, "toeph": np.linalg.LinAlgError("matrix not positive definite")}
    fit = fit_with_fallback(fitter(outcomes, calls), FALLBACK_ORDER)
    assert calls == ["us", "toeph", "ar1h"]
    assert fit.covariance == "ar1h"
    assert list(fit.attempts["converged"]) == [False, False, True]
    assert list(fit.attempts["used"]) == [False, False, True]
    (message,) = fit.messages
    assert message == (
        "Covariance fallback: unstructured (us) did not converge: us said so; heterogeneous "
        "Toeplitz (toeph) not fitted: matrix not positive definite. Used heterogeneous AR(1) "
        "(ar1h), the next structure of the pre-specified order us → toeph → ar1h → cs."
    )


def test_nothing_converging_raises_with_every_reason():
    outcomes = {"us": False, "toeph": False, "ar1h": ValueError("boom"), "cs": False}
    with pytest.raises(
        ModelSpecError,
        match=r"no covariance structure .*\(us → toeph → ar1h → cs\).*us: did not converge.*"
        r"ar1h: not fitted: boom.*covariance='cs'",
    ):
        fit_with_fallback(fitter(outcomes, []), FALLBACK_ORDER)


def test_a_programming_error_is_not_taken_for_non_convergence():
    with pytest.raises(TypeError, match="bug"):
        fit_with_fallback(fitter({"us": TypeError("bug")}, []), FALLBACK_ORDER)
