"""fit_clmm against ordinal::clmm on the wine data, exact gradients, predictions and errors.

References (``reference/ref_clmm.R`` beside ``ref_clmm.json``; ordinal 2022.11.16, tight
control ``gradTol = 1e-8``)::

    clmm(rating ~ temp + contact + (1 | judge), wine)                        # Laplace
    clmm(..., threshold = "equidistant"), clmm(..., threshold = "symmetric")
    clmm(..., nAGQ = 10)                                                     # adaptive GHQ
    clmm(..., link = "probit")
    clmm(..., link = "loglog", nAGQ = 10)   # = our cloglog (ordinal's clmm swaps the two)
    clmm(rating ~ temp + contact + (1 | judge) + (1 | bottle), wine)       # bottle SD 0
    clmm(rating ~ contact + (1 | judge) + (1 | bottle), wine)              # crossed, both > 0
    clmm(rating ~ temp + contact + (1 + temp | judge), wine)               # random slope
    clmm(rating ~ temp + contact + (1 | judge / bottle), wine)             # nested

Tolerances (``reference/README.md``): thresholds and β 1e-4 absolute, log-likelihood 1e-6
absolute, SEs 1e-3 relative, SDs 1e-4 relative, conditional modes 1e-4 absolute and their
conditional variances 1e-3 relative. SEs are compared with clmm refitted at its default
control (see the R script: under the tight control clmm's finite-difference Hessian is noisy
at the 1 % level). clmm's probit Laplace log-likelihood is 1.8e-6 below an independent
evaluation (optimize + numDeriv per judge) at clmm's own estimates; ours is compared with the
independent value.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import mesostats as ms
from mesostats.exceptions import ModelSpecError, SingularFitWarning
from mesostats.mixed.clmm.dense import DenseOrdinal, TermBlock
from mesostats.mixed.clmm.links import get_link
from mesostats.mixed.clmm.scalar import ScalarOrdinal
from mesostats.mixed.clmm.thresholds import threshold_structure

REF_DIR = Path(__file__).parent / "reference"
REF = json.loads((REF_DIR / "ref_clmm.json").read_text())
ONE = "rating ~ temp + contact + (1 | judge)"

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "laplace_logit_flexible": (ONE, {}),
    "laplace_logit_equidistant": (ONE, {"threshold": "equidistant"}),
    "laplace_logit_symmetric": (ONE, {"threshold": "symmetric"}),
    "agq10_logit_flexible": (ONE, {"nagq": 10}),
    "laplace_probit_flexible": (ONE, {"link": "probit"}),
    "agq10_cloglog_flexible": (ONE, {"link": "cloglog", "nagq": 10}),
    "laplace_logit_two_terms": ("rating ~ temp + contact + (1 | judge) + (1 | bottle)", {}),
    "laplace_logit_crossed_bottle": ("rating ~ contact + (1 | judge) + (1 | bottle)", {}),
    "laplace_logit_random_slope": ("rating ~ temp + contact + (1 + temp | judge)", {}),
    "laplace_logit_nested": ("rating ~ temp + contact + (1 | judge / bottle)", {}),
}


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "wine.csv", dtype={"judge": str, "bottle": str})


@pytest.fixture(scope="module")
def fits(wine: pd.DataFrame) -> dict[str, ms.CLMMResults]:
    out = {}
    for key, (formula, kwargs) in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)
            out[key] = ms.fit_clmm(formula, wine, **kwargs)
    return out


def _values(d: dict[str, Any]) -> np.ndarray:
    return np.array(list(d.values()), dtype=float)


# --------------------------------------------------------------------------- against clmm
@pytest.mark.parametrize("key", list(CASES))
def test_wine_estimates_match_clmm(fits: dict[str, ms.CLMMResults], key: str) -> None:
    fit, ref = fits[key], REF[key]
    assert list(fit.coefficients.index) == [
        n.replace("temp", "temp[T.").replace("contact", "contact[T.") + "]"
        if n.startswith(("temp", "contact"))
        else n
        for n in ref["coefficients"]
    ]
    assert_allclose(fit.coefficients.to_numpy(), _values(ref["coefficients"]), atol=1e-4, rtol=0)
    assert_allclose(fit.params, fit.fixed_effects["estimate"], rtol=0, atol=0)
    assert_allclose(fit.thresholds["estimate"], ref["thresholds"], atol=1e-4, rtol=0)
    vc = fit.variance_components
    for group, sdcor in ref["sdcor"].items():
        ours = vc.loc[vc["group"] == group, "sdcor"].to_numpy()
        assert_allclose(ours, np.atleast_1d(sdcor), rtol=1e-4, atol=1e-6)
    assert fit.converged
    assert fit.nobs == ref["nobs"] == 72


@pytest.mark.parametrize("key", list(CASES))
def test_wine_loglik_matches_clmm(fits: dict[str, ms.CLMMResults], key: str) -> None:
    fit, ref = fits[key], REF[key]
    target = REF["independent_laplace_at_clmm_estimates"].get(key, [[ref["loglik"]]])[0][0]
    if key != "laplace_probit_flexible":
        target = ref["loglik"]
    assert fit.loglik >= ref["loglik"] - 1e-9  # never below clmm's own optimum
    assert_allclose(fit.loglik, target, atol=1e-6, rtol=0)
    assert_allclose([fit.aic, fit.bic], [ref["aic"], ref["bic"]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", list(CASES))
def test_wine_standard_errors_match_clmm(fits: dict[str, ms.CLMMResults], key: str) -> None:
    fit, ref = fits[key], REF[key]
    k = fit.coefficients.size
    se = _values(ref["std_errors_default"])[:k]
    assert_allclose(np.sqrt(np.diag(fit.full_vcov))[:k], se, rtol=1e-3)
    assert_allclose(np.sqrt(np.diag(fit.vcov)), se[ref["n_alpha"] :], rtol=1e-3)
    assert_allclose(fit.fixed_effects["std_error"], se[ref["n_alpha"] :], rtol=1e-3)
    assert_allclose(fit.thresholds["std_error"], ref["threshold_se_default"], rtol=1e-3)
    assert_allclose(fit.threshold_parameters["std_error"], se[: ref["n_alpha"]], rtol=1e-3)


@pytest.mark.parametrize("key", list(CASES))
def test_wine_conditional_modes_match_clmm(fits: dict[str, ms.CLMMResults], key: str) -> None:
    fit, ref = fits[key], REF[key]
    for group, modes in ref["ranef"].items():
        ours = fit.ranef[group].iloc[:, 0]
        assert_allclose(ours.loc[list(modes)], _values(modes), atol=1e-4, rtol=0)
        var = np.asarray(ref["ranef_var"].get(group) or [0.0])
        if np.any(var > 0):
            cond = fit.ranef_se[group].iloc[:, 0].loc[list(modes)] ** 2
            assert_allclose(cond, var, rtol=1e-3)


def test_wine_bottle_sd_on_boundary_warns(wine: pd.DataFrame) -> None:
    with pytest.warns(SingularFitWarning, match="bottle"):
        fit = ms.fit_clmm("rating ~ temp + contact + (1 | judge) + (1 | bottle)", wine)
    assert fit.singular
    assert fit.variance_components["sdcor"].iloc[1] < 1e-4
    assert np.isnan(fit.variance_parameter_cov.iloc[1, 1])


def test_cloglog_is_clms_definition() -> None:
    """Our cloglog is clm's F(x) = 1 − exp(−eˣ): clm's wine log-likelihood at its estimates."""
    ref = REF["clm_cloglog_no_random"]
    w = pd.read_csv(REF_DIR / "wine.csv")
    coef = _values(ref["coefficients"])
    eta = np.column_stack([w.temp == "warm", w.contact == "yes"]).astype(float) @ coef[4:]
    ext = np.concatenate([[-np.inf], coef[:4], [np.inf]])
    link = get_link("cloglog")
    y = w.rating.to_numpy()
    p = link.cdf(ext[y] - eta) - link.cdf(ext[y - 1] - eta)
    assert_allclose(np.sum(np.log(p)), ref["loglik"], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("n_levels", "jacobian", "names"),
    [  # ordinal:::makeThresholds(as.character(1:k), "symmetric") (ordinal 2022.11.16)
        (4, [[1, -1], [1, 0], [1, 1]], ["central", "spacing.1"]),
        (5, [[1, 0, -1], [1, 0, 0], [0, 1, 0], [0, 1, 1]], ["central.1", "central.2", "spacing.1"]),
        (
            6,
            [[1, 0, -1], [1, -1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1]],
            ["central", "spacing.1", "spacing.2"],
        ),
        (
            7,
            [[1, 0, 0, -1], [1, 0, -1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]],
            ["central.1", "central.2", "spacing.1", "spacing.2"],
        ),
    ],
)
def test_symmetric_thresholds_match_ordinal(
    n_levels: int, jacobian: list[list[int]], names: list[str]
) -> None:
    structure = threshold_structure("symmetric", [str(k) for k in range(1, n_levels + 1)])
    assert_allclose(structure.jacobian, jacobian, rtol=0, atol=0)
    assert list(structure.alpha_names) == names


# --------------------------------------------------------------------------- exact gradients
def _wine_arrays(wine: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y = wine["rating"].to_numpy() - 1
    X = np.column_stack([wine.temp == "warm", wine.contact == "yes"]).astype(float)
    judge = wine["judge"].astype(int).to_numpy() - 1
    bottle = wine["bottle"].astype(int).to_numpy() - 1
    return y, X, judge, bottle


def _fd_gradient(fun: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return np.array([(fun(x + e * h) - fun(x - e * h)) / (2 * h) for e in np.eye(x.size)])


@pytest.mark.parametrize(
    ("link", "nodes", "threshold"),
    [("logit", 1, "flexible"), ("probit", 7, "equidistant"), ("cloglog", 12, "symmetric")],
)
def test_scalar_gradient_matches_finite_differences(
    wine: pd.DataFrame, link: str, nodes: int, threshold: str
) -> None:
    y, X, judge, _ = _wine_arrays(wine)
    J = threshold_structure(threshold, list("12345")).jacobian
    z = np.linspace(0.5, 1.5, 72)  # a non-constant random-effect column too
    engine = ScalarOrdinal(get_link(link), y, X, z, judge, 9, J, nodes)
    x = np.concatenate(
        [np.linalg.lstsq(J, np.array([-1.0, 1.0, 3.0, 5.0]), rcond=None)[0], [2.0, 1.0, 0.9]]
    )
    grad = engine.evaluate(x).gradient
    fd = _fd_gradient(lambda v: engine.evaluate(v, gradient=False).loglik, x)
    assert_allclose(grad, fd, atol=1e-6, rtol=1e-6)


def test_dense_gradient_matches_finite_differences_random_slope(wine: pd.DataFrame) -> None:
    y, X, judge, bottle = _wine_arrays(wine)
    terms = [
        TermBlock(np.column_stack([np.ones(72), X[:, 0]]), judge, 9, 0),
        TermBlock(np.ones((72, 1)), bottle, 8, 18),
    ]
    engine = DenseOrdinal(get_link("probit"), y, X, terms, np.eye(4))
    x = np.array([-1.0, 1.0, 3.0, 5.0, 2.0, 1.0, 0.8, 0.3, 0.5, 0.4])
    grad = engine.evaluate(x).gradient
    fd = _fd_gradient(lambda v: engine.evaluate(v, gradient=False).loglik, x)
    assert_allclose(grad, fd, atol=1e-6, rtol=1e-6)


def test_dense_and_scalar_laplace_agree(wine: pd.DataFrame) -> None:
    y, X, judge, _ = _wine_arrays(wine)
    x = np.array([-1.5, 1.4, 4.0, 6.0, 3.0, 1.8, 1.2])
    scalar = ScalarOrdinal(get_link("logit"), y, X, np.ones(72), judge, 9, np.eye(4), 1)
    dense = DenseOrdinal(
        get_link("logit"), y, X, [TermBlock(np.ones((72, 1)), judge, 9, 0)], np.eye(4)
    )
    a, b = scalar.evaluate(x), dense.evaluate(x)
    assert_allclose(a.loglik, b.loglik, rtol=1e-13)
    assert_allclose(a.gradient, b.gradient, atol=1e-11)


# --------------------------------------------------------------------------- predictions
def test_probit_marginal_probabilities_have_closed_form(
    fits: dict[str, ms.CLMMResults], wine: pd.DataFrame
) -> None:
    fit = fits["laplace_probit_flexible"]
    probs = fit.predict(wine.head(8))
    eta = fit.fixed_matrix(wine.head(8)) @ fit.fixed_effects["estimate"].to_numpy()
    sd = float(fit.variance_components["sdcor"].iloc[0])
    cuts = fit.thresholds["estimate"].to_numpy()
    cum = stats.norm.cdf((cuts[None, :] - eta[:, None]) / np.sqrt(1.0 + sd**2))
    expected = np.diff(np.column_stack([np.zeros(8), cum, np.ones(8)]), axis=1)
    assert list(probs.columns) == ["1", "2", "3", "4", "5"]
    assert_allclose(probs.to_numpy(), expected, atol=1e-10)


def test_conditional_probabilities_use_the_persons_mode(
    fits: dict[str, ms.CLMMResults], wine: pd.DataFrame
) -> None:
    fit = fits["laplace_logit_flexible"]
    rows = wine.iloc[[0, 9, 18]]
    probs = fit.predict(rows, include_random=True).to_numpy()
    b = fit.ranef["judge"].loc[rows["judge"], "Intercept"].to_numpy()
    eta = fit.fixed_matrix(rows) @ fit.fixed_effects["estimate"].to_numpy() + b
    cuts = fit.thresholds["estimate"].to_numpy()
    cum = stats.logistic.cdf(cuts[None, :] - eta[:, None])
    expected = np.diff(np.column_stack([np.zeros(3), cum, np.ones(3)]), axis=1)
    assert_allclose(probs, expected, atol=1e-12)
    # an unseen judge is integrated over: the same as the marginal prediction
    new = rows.assign(judge="new judge")
    assert_allclose(
        fit.predict(new, include_random=True).to_numpy(), fit.predict(new).to_numpy(), atol=1e-14
    )
    assert list(fit.predict(rows, type="class", include_random=True)) == [
        fit.levels[k] for k in np.argmax(expected, axis=1)
    ]


def test_fitted_rows_probabilities_sum_to_one(fits: dict[str, ms.CLMMResults]) -> None:
    probs = fits["laplace_logit_crossed_bottle"].predict()
    assert probs.shape == (72, 5)
    assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


# --------------------------------------------------------------------------- response forms
def test_string_levels_and_ordered_categorical_give_the_integer_fit(
    wine: pd.DataFrame, fits: dict[str, ms.CLMMResults]
) -> None:
    names = {1: "none", 2: "slight", 3: "moderate", 4: "marked", 5: "severe"}
    order = list(names.values())
    text = wine.assign(rating=wine["rating"].map(names))
    by_levels = ms.fit_clmm(ONE, text, levels=order)
    cat = text.assign(rating=pd.Categorical(text["rating"], categories=order, ordered=True))
    by_cat = ms.fit_clmm(ONE, cat)
    base = fits["laplace_logit_flexible"]
    for fit in (by_levels, by_cat):
        assert list(fit.thresholds.index) == [
            "none|slight",
            "slight|moderate",
            "moderate|marked",
            "marked|severe",
        ]
        assert_allclose(fit.coefficients.to_numpy(), base.coefficients.to_numpy(), atol=1e-10)


def test_missing_response_rows_are_set_aside(wine: pd.DataFrame) -> None:
    data = wine.astype({"rating": float})
    data.loc[[3, 40], "rating"] = np.nan
    with pytest.warns(ms.ExclusionWarning, match="rating"):
        fit = ms.fit_clmm(ONE, data)
    assert fit.nobs == 70
    assert list(fit.excluded_rows["row"]) == [3, 40]


# --------------------------------------------------------------------------- bad input
def test_fewer_than_three_categories_is_refused(wine: pd.DataFrame) -> None:
    data = wine.assign(rating=np.where(wine["rating"] > 2, 2, 1))
    with pytest.raises(ModelSpecError, match=r"2 observed categories .*family='binomial'"):
        ms.fit_clmm(ONE, data)
    with pytest.raises(ModelSpecError, match=r"2 observed categories \('False', 'True'\)"):
        ms.fit_clmm(ONE, wine.assign(rating=wine["rating"] > 2))


def test_empty_category_is_named_with_how_to_merge(wine: pd.DataFrame) -> None:
    data = wine.assign(rating=wine["rating"].replace({3: 2}))
    data["rating"] = pd.Categorical(data["rating"], categories=[1, 2, 3, 4, 5], ordered=True)
    with pytest.raises(
        ModelSpecError, match=r"Category '3' .* never occurs.*levels=\['1', '2', '4', '5'\]"
    ):
        ms.fit_clmm(ONE, data)


def test_strings_without_an_order_are_refused(wine: pd.DataFrame) -> None:
    data = wine.assign(rating=wine["rating"].map({1: "a", 2: "b", 3: "c", 4: "d", 5: "e"}))
    with pytest.raises(ModelSpecError, match=r"no order given.*levels="):
        ms.fit_clmm(ONE, data)
    unordered = data.assign(rating=data["rating"].astype("category"))
    with pytest.raises(ModelSpecError, match=r"unordered categorical.*as_ordered"):
        ms.fit_clmm(ONE, unordered)


def test_value_outside_levels_is_refused(wine: pd.DataFrame) -> None:
    with pytest.raises(ModelSpecError, match=r"value\(s\) '5' .*not among"):
        ms.fit_clmm(ONE, wine, levels=[1, 2, 3, 4])


@pytest.mark.parametrize(
    ("kwargs", "formula", "message"),
    [
        ({"link": "logistic"}, ONE, "link must be one of"),
        ({"threshold": "free"}, ONE, "threshold must be one of"),
        ({"nagq": 0}, ONE, "nagq must be between 1"),
        ({"nagq": 5}, "rating ~ temp + (1 | judge) + (1 | bottle)", "single scalar random"),
        ({}, "rating ~ 0 + temp + (1 | judge)", "no intercept"),
        ({"nagq": 5}, "rating ~ temp", "needs a random effect"),  # no random term: clm
        ({}, "rating ~ 0 + temp", "no intercept"),
    ],
)
def test_bad_arguments_are_refused(
    wine: pd.DataFrame, kwargs: dict[str, Any], formula: str, message: str
) -> None:
    with pytest.raises(ModelSpecError, match=message):
        ms.fit_clmm(formula, wine, **kwargs)


def test_dense_path_too_large_is_refused() -> None:
    rng = np.random.default_rng(3)
    n = 30_000
    data = pd.DataFrame(
        {
            "g": rng.integers(1, 4, n),
            "a": np.arange(n) % 2000,
            "b": np.arange(n) // 15,
        }
    )
    with pytest.raises(ModelSpecError, match=r"4000 random effects over 30000 rows.*too large"):
        ms.fit_clmm("g ~ 1 + (1 | a) + (1 | b)", data)


def test_separation_is_reported(wine: pd.DataFrame) -> None:
    data = wine.assign(top=(wine["rating"] == 5).astype(float))
    with pytest.warns(ms.ConvergenceWarning) as record:
        fit = ms.fit_clmm("rating ~ temp + top + (1 | judge)", data)
    assert any("`top` is" in str(w.message) and "infinity" in str(w.message) for w in record)
    assert not fit.converged


# --------------------------------------------------------------------------- the results object
def test_results_are_immutable_and_print(fits: dict[str, ms.CLMMResults]) -> None:
    fit = fits["laplace_logit_equidistant"]
    with pytest.raises(AttributeError, match="immutable"):
        fit.link = "probit"  # type: ignore[misc]
    table = fit.thresholds
    table.loc[:, "estimate"] = 0.0
    assert fit.thresholds["estimate"].iloc[0] != 0.0
    text = str(fit)
    assert "Threshold coefficients" in text and "spacing" in text and "temp[T.warm]" in text
    assert fit.family == "ordinal" and fit.link == "logit" and fit.df_for(np.eye(2)) == np.inf
    assert list(fit.threshold_parameters.index) == ["threshold.1", "spacing"]
    assert fit.fixed_matrix(pd.DataFrame({"temp": ["warm"], "contact": ["no"]})).tolist() == [
        [1.0, 0.0]
    ]
    assert list(fit.params.index) == list(fit.vcov.index) == ["temp[T.warm]", "contact[T.yes]"]
    assert fit.model_frame.shape == (72, 4)
    slope = str(fits["laplace_logit_random_slope"].summary())
    assert "Intercept ~ temp[T.warm]" in slope and "0.649" in slope


# --------------------------------------------------------------------------- known truth
def test_simulated_trial_recovers_the_truth() -> None:
    """400 subjects × 6 sessions, 4 grades, logit, SD 1: every estimate within 3.5 SEs."""
    rng = np.random.default_rng(11)
    n_sub, n_ses = 400, 6
    subject = np.repeat(np.arange(n_sub), n_ses)
    treated = np.repeat(rng.integers(0, 2, n_sub), n_ses).astype(float)
    week = np.tile(np.arange(n_ses, dtype=float), n_sub)
    beta, cuts, sd = np.array([0.8, 0.2]), np.array([-0.5, 1.0, 2.5]), 1.0
    latent = np.column_stack([treated, week]) @ beta + rng.normal(0, sd, n_sub)[subject]
    grade = 1 + np.searchsorted(cuts, latent + rng.logistic(size=subject.size))
    data = pd.DataFrame({"grade": grade, "treated": treated, "week": week, "subject": subject})
    fit = ms.fit_clmm("grade ~ treated + week + (1 | subject)", data, nagq=10)
    fe, th = fit.fixed_effects, fit.thresholds
    assert np.all(np.abs(fe["estimate"] - beta) < 3.5 * fe["std_error"])
    assert np.all(np.abs(th["estimate"] - cuts) < 3.5 * th["std_error"])
    sd_se = float(np.sqrt(fit.variance_parameter_cov.iloc[0, 0]))
    assert abs(fit.variance_components["sdcor"].iloc[0] - sd) < 3.5 * sd_se
    # the marginal probabilities of the fitted rows average to the observed frequencies
    observed = np.bincount(grade - 1, minlength=4) / grade.size
    assert_allclose(fit.predict().mean(axis=0), observed, atol=0.02)
