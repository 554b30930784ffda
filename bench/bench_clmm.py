"""Benchmark: mesostats.fit_clmm against ordinal::clmm (via Rscript).

Model (cumulative logit, flexible thresholds)::

    grade ~ treated + week + baseline + dressing + (1 | subject)

on seeded simulated trials of 500 and 2,000 subjects × 10 sessions: a 4-grade outcome,
treatment and baseline per subject, week and a per-session dressing indicator, a random
intercept with SD 1 (data from this script, numpy only). Ours is timed with ``nagq=1``
(Laplace, clmm's default) and ``nagq=10``; R's ``clmm`` with the same ``nAGQ``, timed
inside R (start-up and CSV reading excluded); wall-clock and CPU time are both recorded
(the CPU ratio is the fairer one on a shared machine). A speed-up only counts when our
log-likelihood is not lower than clmm's (reported as ``loglik_ours - loglik_R``).

Run from the repository root::

    .venv/bin/python bench/bench_clmm.py                       # 500x10 and 2000x10
    .venv/bin/python bench/bench_clmm.py --sizes 500x10 --r-sizes 500x10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import machine_info, markdown_table, rscript, run_r, save_results

CUTS = np.array([-0.5, 1.0, 2.5])
BETA = np.array([0.8, 0.15, 0.5, -0.4])
FORMULA = "grade ~ treated + week + baseline + dressing + (1 | subject)"


def simulate(n_subjects: int, n_sessions: int, seed: int = 20261204) -> pd.DataFrame:
    """A seeded ordinal trial: 4 grades, 4 covariates, random intercept SD 1 (logistic)."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_sessions)
    treated = np.repeat(rng.integers(0, 2, n_subjects), n_sessions).astype(float)
    baseline = np.repeat(rng.normal(0.0, 1.0, n_subjects), n_sessions)
    week = np.tile(np.arange(n_sessions, dtype=float), n_subjects)
    dressing = rng.integers(0, 2, subject.size).astype(float)
    b = rng.normal(0.0, 1.0, n_subjects)[subject]
    eta = np.column_stack([treated, week, baseline, dressing]) @ BETA + b
    latent = eta + rng.logistic(size=subject.size)
    grade = 1 + np.searchsorted(CUTS, latent)
    return pd.DataFrame(
        {
            "grade": grade,
            "treated": treated,
            "week": week,
            "baseline": baseline,
            "dressing": dressing,
            "subject": [f"s{k:05d}" for k in subject],
        }
    )


def time_ours(data: pd.DataFrame, nagq: int, repeats: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mesostats as ms

    best, best_cpu, fit = np.inf, np.inf, None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ms.fit_clmm(FORMULA, data, nagq=nagq)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    assert fit is not None
    return {
        "seconds": best,
        "cpu_seconds": best_cpu,
        "loglik": fit.loglik,
        "coefficients": fit.coefficients.to_dict(),
        "std_errors": dict(zip(fit.full_vcov.index, np.sqrt(np.diag(fit.full_vcov)), strict=True)),
        "sd": float(fit.variance_components["sdcor"].iloc[0]),
        "converged": fit.converged,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500x10,2000x10")
    parser.add_argument("--r-sizes", default="500x10", help="sizes also fitted by clmm")
    parser.add_argument("--nagq", default="1,10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--r-timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    r_sizes = {tuple(int(v) for v in s.split("x")) for s in args.r_sizes.split(",") if s}
    rows: list[dict[str, Any]] = []
    # warm-up: imports and first-call costs out of the timings
    time_ours(simulate(50, 4), 1, 1)
    for n_sub, n_ses in sizes:
        data = simulate(n_sub, n_ses)
        for nagq in (int(v) for v in args.nagq.split(",")):
            ours = time_ours(data, nagq, args.repeats)
            row: dict[str, Any] = {
                "size": f"{n_sub}x{n_ses}",
                "nagq": nagq,
                "ours_s": ours["seconds"],
                "loglik_ours": ours["loglik"],
                "ours": ours,
            }
            if (n_sub, n_ses) in r_sizes and rscript() is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    csv = Path(tmp) / "clmm.csv"
                    data.to_csv(csv, index=False)
                    r = run_r("clmm.R", csv, [1, nagq], timeout=args.r_timeout)
                row.update(
                    r_s=r["seconds"],
                    speedup=r["seconds"] / ours["seconds"],
                    cpu_speedup=r.get("cpu_seconds", np.nan) / ours["cpu_seconds"],
                    dloglik=ours["loglik"] - r["loglik"],
                    r=r,
                )
            rows.append(row)
            print(
                f"{row['size']} nagq={nagq}: ours {ours['seconds']:.3f} s"
                + (
                    f", clmm {row['r_s']:.1f} s, ×{row['speedup']:.0f}, "
                    f"Δloglik {row['dloglik']:+.2e}"
                    if "r_s" in row
                    else ""
                ),
                flush=True,
            )
    columns = [
        ("size", "size", "s"),
        ("nagq", "nAGQ", "d"),
        ("ours_s", "ours (s)", ".3f"),
        ("r_s", "clmm (s)", ".1f"),
        ("speedup", "speed-up (wall)", ".0f"),
        ("cpu_speedup", "speed-up (CPU)", ".0f"),
        ("dloglik", "logLik ours − clmm", "+.2e"),
    ]
    print(markdown_table(rows, columns))
    path = save_results("clmm", {"machine": machine_info(), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
