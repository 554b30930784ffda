"""Seeded trial-shaped data for the MMRM benchmark (numpy only).

Like ``simdata.py``, this generator is separate from ``mesostats.simulate`` so that the
benchmark data stay the same from release to release. The trial: ``n_subjects`` randomised
(balanced, then shuffled) to three arms ``PBO``, ``TRT1``, ``TRT2``; a baseline ``base``;
the change from baseline ``chg`` at visits ``VIS01`` … ``VIS10``::

    chg_ij = μ_j + β_j·(base_i − 50) + τ_{arm(i), j} + e_ij,    e_i ~ N(0, Σ)

with ``μ_j = −0.5·j`` (a drift), ``β_j = −0.10 − 0.02·j`` (regression to the mean grows
over time), treatment effects ``τ_{TRT1, j} = 0.25·j`` and ``τ_{TRT2, j} = 0.40·j`` (zero
for placebo), and an unstructured ``Σ = D·R·D``: SDs rising from 3 at the first visit to 7
at the last, and correlations ``R = 0.3·J + 0.6·AR1(0.75) + 0.1·I`` (a compound-symmetric
part plus a decaying one, so neither ``cs`` nor ``ar1`` nor ``toep`` with constant SD is the
truth; the sum of positive-definite parts is positive definite).

Dropout is monotone and missing at random: after each observed visit ``j ≥ 1`` a subject
leaves with probability ``logistic(−3.6 + 0.12·(chg_ij − μ_j − τ_{arm, j}))``, i.e. depending on
the last *observed* value only. About a quarter of the subjects leave before the last
visit, and 12–14 % of the planned visits are missing (13.6 % at 1,000 subjects, 12.1 % at
10,000). Missing visits are absent rows (mmrm and ``fit_mmrm`` both drop rows without a
response; giving them no rows times the same work).

Values are rounded (``chg`` to 4 decimals, ``base`` to 2) so that the CSV text R reads
holds exactly the numbers Python fits. ``python bench/mmrm_data.py --subjects 1000`` writes
one trial as CSV into a fresh temporary folder (never into the repository).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from simdata import write_csv as write_csv  # bench_mmrm writes its trials with it
from simdata import write_temp_csv

DEFAULT_SEED = 20_261_204
N_VISITS = 10
ARMS = ("PBO", "TRT1", "TRT2")
#: benchmark sizes (subjects; every subject is planned for ``N_VISITS`` visits)
SIZES = (1_000, 10_000)

#: the true values used by :func:`simulate_mmrm_trial`
TRUTH: dict[str, float] = {
    "base_mean": 50.0,
    "base_sd": 10.0,
    "drift_per_visit": -0.5,
    "base_slope": -0.10,
    "base_slope_per_visit": -0.02,
    "effect_TRT1_per_visit": 0.25,
    "effect_TRT2_per_visit": 0.40,
    "sd_first": 3.0,
    "sd_last": 7.0,
    "corr_cs": 0.3,
    "corr_ar1_weight": 0.6,
    "corr_ar1_rho": 0.75,
    "dropout_intercept": -3.6,
    "dropout_slope": 0.12,
}


def visit_labels(n_visits: int = N_VISITS) -> list[str]:
    """``VIS01`` … : zero-padded so that the alphabetical order is the visit order."""
    return [f"VIS{j:02d}" for j in range(1, n_visits + 1)]


def true_covariance(n_visits: int = N_VISITS) -> np.ndarray:
    """The unstructured Σ (visits × visits) the residuals are drawn from."""
    t = TRUTH
    sd = np.linspace(t["sd_first"], t["sd_last"], n_visits)
    lag = np.abs(np.subtract.outer(np.arange(n_visits), np.arange(n_visits)))
    ar1 = t["corr_ar1_rho"] ** lag
    weight_iid = 1.0 - t["corr_cs"] - t["corr_ar1_weight"]
    corr = t["corr_cs"] + t["corr_ar1_weight"] * ar1 + weight_iid * np.eye(n_visits)
    return corr * np.outer(sd, sd)


def simulate_mmrm_trial(
    n_subjects: int, n_visits: int = N_VISITS, *, seed: int = DEFAULT_SEED
) -> pd.DataFrame:
    """Draw one trial (one row per subject × observed visit), vectorised over subjects.

    Returns a DataFrame with columns ``id`` (``S00001`` …, a string), ``arm`` (``PBO``,
    ``TRT1``, ``TRT2``), ``visit`` (``VIS01`` …), ``base`` and ``chg``, sorted by subject
    and visit; visits after a subject's dropout have no row.
    """
    if n_subjects < 6 or n_visits < 2:
        raise ValueError(f"need at least 6 subjects and 2 visits, got {n_subjects} x {n_visits}")
    t = TRUTH
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_subjects, n_visits]))
    arm = rng.permutation(np.resize(np.arange(len(ARMS)), n_subjects))
    base = np.round(rng.normal(t["base_mean"], t["base_sd"], n_subjects), 2)

    j = np.arange(1, n_visits + 1)
    mu = t["drift_per_visit"] * j
    slope = t["base_slope"] + t["base_slope_per_visit"] * j
    effect = np.vstack(
        [
            np.zeros(n_visits),
            t["effect_TRT1_per_visit"] * j,
            t["effect_TRT2_per_visit"] * j,
        ]
    )  # (arms, visits)
    chol = np.linalg.cholesky(true_covariance(n_visits))
    resid = rng.standard_normal((n_subjects, n_visits)) @ chol.T
    expected = mu + effect[arm]  # (subjects, visits), at base = 50
    chg = np.round(expected + np.outer(base - t["base_mean"], slope) + resid, 4)

    # monotone MAR dropout: leave after visit j with a probability set by chg at visit j
    logit = t["dropout_intercept"] + t["dropout_slope"] * (chg - expected)
    leave = rng.random((n_subjects, n_visits)) < 1.0 / (1.0 + np.exp(-logit))
    leave[:, -1] = False
    left_before = np.cumsum(leave, axis=1) - leave  # leaves counted strictly before visit j
    observed = left_before == 0

    subject, visit = np.nonzero(observed)
    labels = np.array(visit_labels(n_visits))
    return pd.DataFrame(
        {
            "id": np.char.add("S", np.char.zfill((subject + 1).astype(str), 5)),
            "arm": np.array(ARMS)[arm[subject]],
            "visit": labels[visit],
            "base": base[subject],
            "chg": chg[subject, visit],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--visits", type=int, default=N_VISITS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    data = simulate_mmrm_trial(args.subjects, args.visits, seed=args.seed)
    print(write_temp_csv(data, f"mmrm_{args.subjects}x{args.visits}"))


if __name__ == "__main__":
    main()
