"""Benchmark: mesostats.fit_glmm(family="negative_binomial") against glmmTMB ``nbinom2``.

Model (NB2, log link, hair counts in a target area with its area as exposure)::

    hair_count ~ minoxidil + dutasteride + biotin + week + offset(log(area)) + (1 | subject)

on the seeded trials of ``bench/simdata.py`` (covariates, subjects, sessions) with hair counts
drawn here from a stated NB2 truth (:data:`NB_TRUTH`; gamma–Poisson mixture, dispersion k).
Sizes 500x10, 2000x10 (and 20000x10 with ``--sizes``).

Run from the repository root::

    .venv/bin/python bench/bench_nb.py
    .venv/bin/python bench/bench_nb.py --sizes 500x10,2000x10,20000x10 --repeats 3

Both engines in one run: ours (Laplace; ``--nagq`` > 1 adds an AGQ row, not comparable with
glmmTMB), glmmTMB timed inside R (start-up and CSV reading excluded, ``bench/r/nb.R``).
Timing rules as ``bench_lmm.py`` (warm-up on the first 50 subjects, best of ``--repeats``).

Measured 2026-12-04 23:11–23:20 in one run (``--repeats 2``; 2-core development machine
shared with other work, load 1–5), glmmTMB 1.1.5 timed inside R:

| size     | ours (s) | glmmTMB (s) | ratio | logLik ours − glmmTMB | max rel. ΔSE |
|----------|----------|-------------|-------|-----------------------|--------------|
| 500x10   | 0.093    | 11.1        | 118   | +1.3e-08              | 3.0e-06      |
| 2000x10  | 0.32     | 39.8        | 124   | +5.5e-09              | 2.4e-06      |
| 20000x10 | 1.6      | 391         | 242   | +2.0e-06              | 6.3e-06      |

(glmmTMB once at 20000x10, one fit being over 60 s. Timings swing 2–3× with the load: best
of 3 on a quieter machine ours took 0.031 / 0.12 / 1.4 s.) AGQ(15), ours only (its log-k
derivative by differences): 0.94 s at 500x10, 4.5 s at 2000x10.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simdata
from bench_glmm import fit_ours as fit_glmm_ours
from common import (
    add_comparisons,
    bench_parser,
    comparison_columns,
    load_engine,
    machine_info,
    r_row,
    report,
    rscript,
    run_r,
    trials,
)

NB_FORMULA = (
    "hair_count ~ minoxidil + dutasteride + biotin + week + offset(log(area)) + (1 | subject)"
)
#: glmmTMB stops repeating a fit slower than this (seconds)
R_SLOW_SECONDS_NB = 60
#: log-scale effects, subject SD and the NB2 dispersion k (Var = μ + μ²/k) of the hair counts
NB_TRUTH = {
    "intercept": np.log(150.0),  # hairs per cm² at week 0
    "minoxidil": 0.10,
    "dutasteride": 0.06,
    "biotin": 0.0,
    "week": 0.004,
    "sd_subject": 0.25,
    "k": 12.0,
}


def nb_trial(n_subjects: int, n_sessions: int, seed: int) -> pd.DataFrame:
    """simdata's trial plus ``area`` (target area, cm²) and NB2 ``hair_count``."""
    data = simdata.simulate_trial(n_subjects, n_sessions, seed=seed)
    t = NB_TRUTH
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_subjects, n_sessions, 2]))
    area = rng.uniform(0.8, 1.2, n_subjects)
    subject = data["subject"].to_numpy() - 1
    eta = (
        np.log(area[subject])
        + t["intercept"]
        + t["minoxidil"] * data["minoxidil"].to_numpy()
        + t["dutasteride"] * data["dutasteride"].to_numpy()
        + t["biotin"] * data["biotin"].to_numpy()
        + t["week"] * data["week"].to_numpy()
        + rng.normal(0.0, t["sd_subject"], n_subjects)[subject]
    )
    mu = np.exp(eta)
    data["area"] = np.round(area[subject], 4)
    data["hair_count"] = rng.poisson(rng.gamma(t["k"], mu / t["k"]))
    return data


def fit_ours(fit_glmm: Any, data: pd.DataFrame, nagq: int, repeats: int, size: str) -> dict:
    """Ours, timed as ``bench_glmm`` times it, with the dispersion k."""
    return fit_glmm_ours(
        fit_glmm,
        data,
        nagq,
        repeats,
        size,
        formula=NB_FORMULA,
        family="negative_binomial",
        engine="mesostats fit_glmm NB2",
        extra=lambda res: {"k": res.dispersion},
    )


def fit_glmmtmb(csv: Path, size: str, repeats: int) -> dict[str, Any]:
    r = run_r("nb.R", csv, [repeats, R_SLOW_SECONDS_NB], timeout=14400)
    keys = {"method": "method", "sd_subject": "sd_subject", "k": "k"}
    return r_row(r, r["versions"], size, repeats, R_SLOW_SECONDS_NB, keys)


COLUMNS = comparison_columns(
    ("max_rel_dse", "max rel. ΔSE vs glmmTMB", ".2g"),
    ("sd_subject", "SD subject", ".4f"),
    ("k", "k", ".4f"),
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = bench_parser(
        "NB2 GLMM benchmark: mesostats vs glmmTMB",
        sizes="500x10,2000x10",
        engines="ours,r",
        seed=simdata.DEFAULT_SEED,
        r_slow_seconds=False,
    )
    parser.add_argument("--nagq", type=int, default=1, help="> 1 adds an AGQ row of ours")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    info = machine_info()
    engines = set(args.engines.split(","))
    fit_glmm, reason = load_engine("fit_glmm")
    if fit_glmm is None and "ours" in engines:
        raise SystemExit(reason)
    rows: list[dict[str, Any]] = []
    for label, data, tmp in trials(args.sizes, lambda n, k: nb_trial(n, k, args.seed)):
        print(f"== {label}: {len(data)} rows, mean count {data['hair_count'].mean():.1f}")
        if "ours" in engines:
            for nagq in sorted({1, args.nagq}):
                rows.append(fit_ours(fit_glmm, data, nagq, args.repeats, label))
                print(f"   ours nagq={nagq}: {rows[-1].get('seconds', rows[-1].get('note'))}")
        if "r" in engines and rscript() is not None:
            csv = simdata.write_csv(data, tmp, f"nb_{label}")
            rows.append(fit_glmmtmb(csv, label, args.repeats))
            print(f"   glmmTMB: {rows[-1]['seconds']:.3f} s")
    laplace = [r for r in rows if r.get("method") == "Laplace"]
    add_comparisons(laplace)
    for r in laplace:
        tmb = [t for t in laplace if t["size"] == r["size"] and not t.get("ours")]
        if r.get("ours") and r.get("se") and tmb:
            r["max_rel_dse"] = max(abs(r["se"][k] / tmb[0]["se"][k] - 1.0) for k in r["se"])
    title = f"NB2 GLMM: `{NB_FORMULA}`; truth {NB_TRUTH}; {info['date']}"
    report("nb", title, rows, COLUMNS, info=info, formula=NB_FORMULA)


if __name__ == "__main__":
    main()
