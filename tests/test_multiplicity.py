"""Multiplicity adjustments against published tables, hand computation and R's mvtnorm/ptukey.

Table values: Dunnett (1955, JASA 50:1096, Table 1b, two-sided 95 %, printed to 2 decimals:
checked to 0.006) and the studentized range (Harter 1960 / any textbook table, 3 decimals:
checked to 6e-4). The multivariate-t routine is checked against Dunnett's one-dimensional
integral for equicorrelated contrasts (R's ``integrate``, exact to ~1e-10;
``tests/reference/ref_emmeans.R``, block ``multiplicity``): the probability at the exact
critical value within 3e-5 of 0.95 and the critical values within 2e-4 relative (worst: df = 5
with 9 contrasts, 2.4e-5 and 1.3e-4; typically 1e-5 and 2e-5); against ptukey/qtukey; and the
multivariate t of pairwise contrasts (singular) against the studentized range within 5e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from mesostats.mixed.marginal.multiplicity import (
    adjusted_critical_values,
    adjusted_p_values,
    max_abs_probability,
)

REF = json.loads((Path(__file__).parent / "reference" / "ref_emmeans.json").read_text())
MULT = REF["multiplicity"]


def _equicorrelated(k: int, rho: float = 0.5) -> np.ndarray:
    corr = np.full((k, k), rho)
    np.fill_diagonal(corr, 1.0)
    return corr


# Dunnett (1955), two-sided 95 %: (number of treatments, df) -> critical value
DUNNETT_1955 = {
    (2, 5): 3.03,
    (3, 5): 3.29,
    (5, 5): 3.62,
    (2, 10): 2.57,
    (3, 10): 2.76,
    (5, 10): 2.99,
    (2, 20): 2.38,
    (3, 20): 2.54,
    (2, np.inf): 2.21,
    (3, np.inf): 2.35,
    (5, np.inf): 2.51,
}


@pytest.mark.parametrize(("k", "df"), list(DUNNETT_1955))
def test_dunnett_critical_value_matches_dunnett_1955_table(k: int, df: float) -> None:
    crit = adjusted_critical_values(np.full(k, df), "dunnett", 0.95, corr=_equicorrelated(k))
    assert_allclose(crit, DUNNETT_1955[(k, df)], atol=0.006)


def test_dunnett_critical_values_match_dunnetts_integral() -> None:
    table = MULT["dunnett"]
    for row in table:
        k, df = int(row["k"]), row["df"]
        df = np.inf if df is None or df == "Inf" else float(df)
        crit = adjusted_critical_values(np.full(k, df), "dunnett", 0.95, corr=_equicorrelated(k))
        assert_allclose(crit, row["crit"], rtol=2e-4, err_msg=f"k={k}, df={df}")
        prob = max_abs_probability(np.array([row["crit"]]), _equicorrelated(k), df)
        assert_allclose(prob, 0.95, atol=3e-5, err_msg=f"k={k}, df={df}")


@pytest.mark.parametrize(
    ("n", "df", "q95"), [(3, 10, 3.877), (4, 20, 3.958), (5, np.inf, 3.858), (2, 5, 3.635)]
)
def test_tukey_critical_value_matches_studentized_range_table(n: int, df: float, q95: float):
    m = n * (n - 1) // 2
    crit = adjusted_critical_values(np.full(m, df), "tukey", 0.95, n_means=n)
    assert_allclose(crit * np.sqrt(2.0), q95, atol=6e-4)


def test_tukey_matches_ptukey_and_qtukey() -> None:
    for row in MULT["tukey"]:
        n = int(row["n"])
        df = np.inf if row["df"] in (None, "Inf") else float(row["df"])
        m = n * (n - 1) // 2
        t = np.full(m, 3.0 / np.sqrt(2.0))
        assert_allclose(
            adjusted_p_values(t, np.full(m, df), "tukey", n_means=n)[0],
            row["p_at_3"],
            rtol=1e-6,
            atol=1e-9,
        )
        crit = adjusted_critical_values(np.full(m, df), "tukey", 0.95, n_means=n)
        assert_allclose(crit[0] * np.sqrt(2.0), row["q95"], rtol=1e-6)


def test_multivariate_t_of_pairwise_contrasts_equals_studentized_range() -> None:
    """Pairwise contrasts of independent equal-variance means: mvt (singular) = Tukey."""
    coef = np.array(
        [[1, -1, 0, 0], [1, 0, -1, 0], [1, 0, 0, -1], [0, 1, -1, 0], [0, 1, 0, -1], [0, 0, 1, -1]],
        dtype=float,
    )
    cov = coef @ coef.T
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    t = np.array([2.7, 2.0, 3.5, 0.5, 1.0, 1.5])
    for df in (20.0, np.inf):
        dunnett = adjusted_p_values(t, np.full(6, df), "dunnett", corr=corr)
        tukey = adjusted_p_values(t, np.full(6, df), "tukey", n_means=4)
        assert_allclose(dunnett, tukey, atol=5e-5)


def test_holm_and_bonferroni_by_hand() -> None:
    """p = (0.01, 0.04, 0.03, 0.005, 0.2), m = 5; R's p.adjust gives the same."""
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    t = stats.norm.isf(p / 2.0)
    df = np.full(5, np.inf)
    # Holm: sorted 0.005·5, 0.01·4, 0.03·3, 0.04·2, 0.2·1, running maximum, capped at 1
    holm = np.array([0.04, 0.09, 0.09, 0.025, 0.2])
    assert_allclose(adjusted_p_values(t, df, "holm"), holm, rtol=1e-12)
    assert_allclose(adjusted_p_values(t, df, "holm"), MULT["holm_p"], rtol=1e-12)
    bonf = np.minimum(5 * p, 1.0)
    assert_allclose(adjusted_p_values(t, df, "bonferroni"), bonf, rtol=1e-12)
    assert_allclose(adjusted_p_values(t, df, "bonferroni"), MULT["bonferroni_p"], rtol=1e-12)
    assert_allclose(adjusted_p_values(t, df, "none"), p, rtol=1e-12)
    crit = adjusted_critical_values(df, "holm", 0.95)
    assert_allclose(crit, stats.norm.isf(0.05 / 10), rtol=1e-12)


def test_one_contrast_is_not_adjusted() -> None:
    t, df = np.array([2.1]), np.array([15.0])
    raw = 2 * stats.t.sf(2.1, 15)
    for method in ("dunnett", "holm", "bonferroni", "none"):
        assert_allclose(adjusted_p_values(t, df, method, corr=np.eye(1)), raw, rtol=1e-12)
        assert_allclose(
            adjusted_critical_values(df, method, 0.95, corr=np.eye(1)),
            stats.t.ppf(0.975, 15),
            rtol=1e-12,
        )


def test_dunnett_is_deterministic() -> None:
    corr = _equicorrelated(4, 0.3)
    first = adjusted_p_values(
        np.array([2.0, 2.5, 1.0, 3.0]), np.full(4, 12.0), "dunnett", corr=corr
    )
    again = adjusted_p_values(
        np.array([2.0, 2.5, 1.0, 3.0]), np.full(4, 12.0), "dunnett", corr=corr
    )
    assert np.array_equal(first, again)


def test_critical_values_with_distinct_df_match_one_solve_per_df() -> None:
    """Contrasts with different df: the secant steps from one df to the next land on the
    same roots as solving each df alone (Tukey: scipy's ppf; Dunnett: bracketing)."""
    df = np.array([25.0, 18.5, 40.0])
    tukey = adjusted_critical_values(df, "tukey", 0.95, n_means=3)
    assert_allclose(tukey * np.sqrt(2.0), stats.studentized_range.ppf(0.95, 3, df), rtol=1e-8)
    corr = _equicorrelated(3, 0.4)
    dunnett = adjusted_critical_values(df, "dunnett", 0.95, corr=corr)
    alone = [adjusted_critical_values(np.full(3, d), "dunnett", 0.95, corr=corr)[0] for d in df]
    assert_allclose(dunnett, alone, rtol=1e-7)
    assert dunnett[1] > dunnett[0] > dunnett[2]
