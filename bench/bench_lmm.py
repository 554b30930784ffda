"""Benchmark: mesostats.fit_lmm against statsmodels MixedLM and lme4::lmer (via Rscript).

Model (REML)::

    density ~ week * (minoxidil + dutasteride + biotin) + baseline + (1 + week | subject)

on the seeded trials of ``bench/simdata.py`` (200x8, 2000x10, 20000x10 subjects x sessions).

Run from the repository root::

    .venv/bin/python bench/bench_lmm.py                 # all sizes, all engines
    .venv/bin/python bench/bench_lmm.py --sizes 2000x10 --repeats 5
    .venv/bin/python bench/bench_lmm.py --memory        # 1,000,000 x 10, ours only

Timing rules (the same for every engine): one warm-up fit on the first 50 subjects, then the
best of ``--repeats`` timed fits on the full data, ``gc`` before each. Ours is timed as the
full call (formula and DataFrame in, MixedResults out). statsmodels is timed the same way,
but with fewer repeats when one fit is slow, and skipped at sizes where the extrapolated
time exceeds ``--statsmodels-max-seconds`` (always run at 2000x10, where the speed target is
a ratio). lme4 is timed inside R (``system.time`` around ``lmer`` only: R start-up and CSV
reading excluded) on the CSV written from the same DataFrame; R rows are skipped with a
note when ``Rscript`` is not on PATH (CI).

The timing harness (warm-up, best of k, Rscript runner, result tables, JSON output) is
``bench/common.py``, shared with ``bench_glmm.py`` and ``bench_crossed.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simdata
from common import (
    add_comparisons,
    bench_parser,
    comparison_columns,
    load_engine,
    machine_info,
    ours_fields,
    ours_sd,
    parse_size,
    peer_row,
    r_rows,
    report,
    rscript,
    run_r,
    save_results,
    time_ours,
    trials,
)

SM_EXPONENT = 1.5
#: columns of the R rows: row key -> key of bench/r/lmm.R's result
R_KEYS = {
    "sd_intercept": "sd_intercept",
    "sd_week": "sd_week",
    "corr": "corr_intercept_week",
    "sd_residual": "sd_residual",
    "theta": "theta",
    "feval": "feval",
}

LMM_FORMULA = (
    "density ~ week * (minoxidil + dutasteride + biotin) + baseline + (1 + week | subject)"
)
SM_FIXED = "density ~ week * (minoxidil + dutasteride + biotin) + baseline"
MEMORY_TARGET_GB = 4.0


# ----------------------------------------------------------------------------- engines


def fit_ours(
    fit_lmm: Callable[..., Any], data: pd.DataFrame, repeats: int, size: str
) -> dict[str, Any]:
    """Time mesostats.fit_lmm (formula -> MixedResults), best of ``repeats`` after a warm-up."""
    return time_ours(
        {"size": size, "engine": "mesostats fit_lmm", "ours": True},
        lambda d: fit_lmm(LMM_FORMULA, d, reml=True),
        data,
        repeats=repeats,
        describe=lambda res: {
            **ours_fields(res),
            "sd_intercept": ours_sd(res, "subject", "Intercept"),
            "sd_week": ours_sd(res, "subject", "week"),
            "corr": ours_sd(res, "subject", "Intercept", "week"),
            "sd_residual": ours_sd(res, "Residual", None),
        },
    )


def fit_statsmodels(data: pd.DataFrame) -> Any:
    """statsmodels MixedLM, REML, random intercept and slope on week per subject."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    model = MixedLM.from_formula(SM_FIXED, data, groups="subject", re_formula="~week")
    return model.fit(reml=True)


def statsmodels_row(res: Any, size: str, timing: dict[str, Any]) -> dict[str, Any]:
    """A table row from a statsmodels MixedLMResults and its timing."""
    cov = np.asarray(res.cov_re)
    sd = np.sqrt(np.diag(cov))
    return {
        "size": size,
        "engine": "statsmodels MixedLM",
        "seconds": timing["seconds"],
        "times": timing["times"],
        "loglik": float(res.llf),
        "fixef": {str(k): float(v) for k, v in res.fe_params.items()},
        "se": {str(k): float(v) for k, v in res.bse_fe.items()},
        "sd_intercept": float(sd[0]),
        "sd_week": float(sd[1]),
        "corr": float(cov[0, 1] / (sd[0] * sd[1])),
        "sd_residual": float(math.sqrt(res.scale)),
        "converged": bool(res.converged),
        "warnings": timing["messages"],
        "note": timing.get("note"),
    }


def run_lme4(
    csv: Path, size: str, repeats: int, variants: str, slow_seconds: float
) -> list[dict[str, Any]]:
    """lmer timed inside R; one row per lme4 variant."""
    out = run_r("lmm.R", csv, [repeats, variants, slow_seconds], timeout=7200)
    return r_rows(out, size, repeats, slow_seconds, R_KEYS)


# ----------------------------------------------------------------------------- memory


def memory_child(folder: str) -> None:
    """In the child process: read the trial, fit ours, print one JSON line."""
    # one .npy per column: the DataFrame wraps them without a reader's buffers (a Parquet
    # reader keeps ~1 GB of its own memory pool resident here, charged to no engine)
    columns = sorted(Path(folder).glob("*.npy"))  # "<position>_<column>.npy"
    data = pd.DataFrame({p.stem.split("_", 1)[1]: np.load(p) for p in columns}, copy=False)
    gc.collect()
    page_gb = os.sysconf("SC_PAGE_SIZE") / 1e9
    with open("/proc/self/statm") as statm:  # Linux: resident pages are the second field
        rss_gb = int(statm.read().split()[1]) * page_gb
    out: dict[str, Any] = {
        "n_obs": len(data),
        "data_mb": data.memory_usage(deep=True).sum() / 1e6,
        "rss_after_load_gb": rss_gb,
        "peak_rss_after_load_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }
    fit_lmm, reason = load_engine("fit_lmm")
    if fit_lmm is None:
        out["note"] = reason
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            try:
                res = fit_lmm(LMM_FORMULA, data, reml=True)
                out.update(loglik=float(res.loglik), converged=bool(res.converged))
            except Exception as exc:
                out["note"] = f"error: {type(exc).__name__}: {exc}"
            out["seconds"] = time.perf_counter() - start
            out["warnings"] = sorted({str(w.message) for w in caught})
    print(json.dumps(out))


def memory_write(folder: str, size: str) -> None:
    """In a helper process: draw the trial and save one ``<position>_<column>.npy`` per column."""
    trial = simdata.simulate_trial(*parse_size(size))
    for position, name in enumerate(trial.columns):
        np.save(Path(folder) / f"{position:02d}_{name}.npy", trial[name].to_numpy())


def run_memory(n_subjects: int, n_sessions: int) -> dict[str, Any]:
    """Fit ours at n_subjects x n_sessions in a child process; peak RSS from os.wait4.

    The data are drawn in a separate helper process: on Linux a child starts with its
    parent's peak RSS as its own ``ru_maxrss``, so this process must stay small.
    """
    size = simdata.size_label(n_subjects, n_sessions)
    with tempfile.TemporaryDirectory(prefix="mesostats-bench-") as tmp:
        writer = [sys.executable, __file__, "--memory-write", tmp, "--sizes", size]
        subprocess.run(writer, check=True)
        log = Path(tmp) / "child.out"
        cmd = [sys.executable, __file__, "--memory-child", tmp]
        with log.open("w") as handle:
            proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        text = log.read_text()
    result: dict[str, Any] = {
        "size": size,
        "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9,  # KiB on Linux; GB = 1e9 bytes
        "parent_peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "target_gb": MEMORY_TARGET_GB,
        "exit_code": proc.returncode,
    }
    try:
        result.update(json.loads(text.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        result["note"] = f"child failed: {text[-2000:]}"
    result["within_target"] = result["peak_rss_gb"] < MEMORY_TARGET_GB and "loglik" in result
    return result


# ----------------------------------------------------------------------------- main

COLUMNS = comparison_columns(
    ("sd_intercept", "SD int", ".3f"),
    ("sd_week", "SD week", ".3f"),
    ("corr", "corr", ".3f"),
    ("sd_residual", "SD res", ".3f"),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(
        "LMM benchmark: mesostats vs statsmodels, lme4",
        sizes=",".join(simdata.SIZES),
        engines="ours,statsmodels,lme4",
        seed=simdata.DEFAULT_SEED,
        statsmodels_max_seconds=True,
    )
    parser.add_argument(
        "--lme4-variants",
        default="default,calc_derivs_false,tight",
        help="variants of bench/r/lmm.R (default, calc_derivs_false, tight, lmertest)",
    )
    parser.add_argument("--statsmodels-always", default="2000x10", help="sizes never skipped")
    parser.add_argument("--memory", action="store_true", help="1,000,000 x 10, ours, peak RSS")
    parser.add_argument("--memory-child", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--memory-write", metavar="FOLDER", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.memory_write:
        memory_write(args.memory_write, args.sizes)
        return
    info = machine_info()
    if args.memory:
        result = run_memory(*simdata.MEMORY_SIZE)
        print(
            f"memory check {result['size']}: peak RSS of the child {result['peak_rss_gb']:.2f} GB"
        )
        print(
            f"(resident after reading the data: {result.get('rss_after_load_gb', math.nan):.2f} GB,"
            f" peak while reading {result.get('peak_rss_after_load_gb', math.nan):.2f} GB;"
            f" target < {MEMORY_TARGET_GB:g} GB; fit: {result.get('note') or 'ok'}"
            f" in {result.get('seconds', math.nan):.1f} s)"
        )
        path = save_results("lmm_memory", {"machine": info, "memory": result})
        print(f"saved {path}")
        return

    engines = set(args.engines.split(","))
    fit_lmm, reason = load_engine("fit_lmm")
    has_r = rscript() is not None
    notes = []
    if not has_r and "lme4" in engines:
        notes.append("Rscript not found: lme4 rows skipped (R is optional; CI has none).")
    rows: list[dict[str, Any]] = []
    reference: tuple[int, float] | None = None
    for label, data, tmp in trials(
        args.sizes, lambda n, k: simdata.simulate_trial(n, k, seed=args.seed)
    ):
        print(f"== {label}: {len(data)} rows", flush=True)
        if "ours" in engines:
            if fit_lmm is None:
                rows.append({"size": label, "engine": "mesostats fit_lmm", "note": reason})
            else:
                rows.append(fit_ours(fit_lmm, data, args.repeats, label))
            print(f"   ours: {rows[-1].get('seconds', rows[-1].get('note'))}", flush=True)
        if "statsmodels" in engines:
            row, reference = peer_row(
                fit_statsmodels,
                data,
                size=label,
                to_row=statsmodels_row,
                skipped={"engine": "statsmodels MixedLM"},
                repeats=args.repeats,
                max_seconds=args.statsmodels_max_seconds,
                forced=label in args.statsmodels_always.split(","),
                reference=reference,
                exponent=SM_EXPONENT,
            )
            rows.append(row)
            print(f"   statsmodels: {row.get('seconds', row.get('note'))}", flush=True)
        if "lme4" in engines and has_r:
            csv = simdata.write_csv(data, tmp, f"trial_{label}")
            peers = run_lme4(csv, label, args.repeats, args.lme4_variants, args.r_slow_seconds)
            rows.extend(peers)
            print(f"   lme4: {[r['seconds'] for r in peers]}", flush=True)
    add_comparisons(rows)
    title = f"LMM REML: `{LMM_FORMULA}`; {info['date']}, load {info['load_average']}"
    report("lmm", title, rows, COLUMNS, info=info, notes=notes, formula=LMM_FORMULA)


if __name__ == "__main__":
    main()
