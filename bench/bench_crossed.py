"""Benchmark: a large crossed LMM, lme4's InstEval, mesostats.fit_lmm against lme4::lmer.

Model (REML)::

    y ~ service + (1 | s) + (1 | d) + (1 | dept)

73,421 ratings; 2,972 students (s) × 1,128 lecturers (d) × 14 departments. The data ship with
lme4, so this benchmark needs R: ``bench/r/insteval.R`` writes them to
``bench/results/insteval.csv`` (git-ignored; never committed) on the first run.

Run from the repository root::

    .venv/bin/python bench/bench_crossed.py              # best of 3, each engine
    .venv/bin/python bench/bench_crossed.py --repeats 1

Each engine runs in its own process: ours via ``--child`` (one warm-up fit on the first 5,000
rows, then the best of ``--repeats`` full fits, formula and DataFrame in, MixedResults out),
lme4 inside R (``system.time`` around ``lmer`` only, after the same warm-up). Prints both
times, the ratio ours/lme4 and both REML log-likelihoods.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from common import RESULTS_DIR, best_of, machine_info, rscript, run_r, save_results

FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
WARMUP_ROWS = 5000
CSV = RESULTS_DIR / "insteval.csv"


def read_insteval(csv: Path) -> pd.DataFrame:
    """The CSV written by insteval.R, grouping factors as strings."""
    return pd.read_csv(csv, dtype={"s": str, "d": str, "dept": str})


def child(csv: Path, repeats: int) -> None:
    """In the child process: time ours and print one JSON line."""
    import mesostats

    data = read_insteval(csv)
    seconds, times, res, messages = best_of(
        lambda d: mesostats.fit_lmm(FORMULA, d, reml=True),
        data,
        repeats=repeats,
        warmup=data.iloc[:WARMUP_ROWS].reset_index(drop=True),
    )
    out = {
        "seconds": seconds,
        "times": times,
        "loglik": float(res.loglik),
        "theta": [float(t) for t in res.theta],
        "converged": bool(res.converged),
        "warnings": messages,
    }
    print(json.dumps(out))


def run_ours(csv: Path, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(csv), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="InstEval: mesostats vs lme4 (crossed LMM)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per engine (best)")
    parser.add_argument("--child", metavar="CSV", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child), args.repeats)
        return
    if rscript() is None:
        print("Rscript not found: InstEval ships with lme4, so this benchmark needs R.")
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    if not CSV.exists():
        run_r("insteval.R", CSV, [0], timeout=600)
    info = machine_info()
    ours = run_ours(CSV, args.repeats)
    lme4 = run_r("insteval.R", CSV, [args.repeats], timeout=3600)
    ratio = ours["seconds"] / lme4["seconds"]
    print(f"InstEval REML `{FORMULA}`; {info['date']}, load {info['load_average']}")
    print(f"  mesostats fit_lmm: {ours['seconds']:.2f} s (times {ours['times']})")
    print(f"  lme4 lmer:         {lme4['seconds']:.2f} s (times {lme4['times']})")
    print(f"  ratio ours / lme4: {ratio:.3f}")
    print(
        f"  logLik ours {ours['loglik']:.8f}, lme4 {lme4['logLik']:.8f}, "
        f"difference {ours['loglik'] - lme4['logLik']:.2e}"
    )
    path = save_results(
        "crossed", {"machine": info, "formula": FORMULA, "ours": ours, "lme4": lme4, "ratio": ratio}
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
